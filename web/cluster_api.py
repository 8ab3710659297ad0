"""The cluster's nodes (issue 17): list them, drain one, put it back.

- `GET /api/cluster` → `{"node_id": this node or "", "nodes": [{"node_id", "state"
  (up | draining | down), "asked", "sip", "web", "started_at", "last_heartbeat",
  "heartbeat_age_s", "active_calls", "self"}]}`: every node that ever joined; `down` when
  its last heartbeat is older than `[cluster] down_after_s`. Admins and supervisors.
- `POST /api/cluster/{node_id}/drain` / `POST /api/cluster/{node_id}/resume` → the node's
  entry: asks it to take no new calls (OPTIONS and INVITE answered 503; calls up go on) or
  to take calls again; the node acts at its next heartbeat. Admins only; audited as
  `cluster_drain` / `cluster_resume`. 404 for an unknown node.

The bootstrap puts the node's membership (`callcenter.cluster.pg_node.ClusterNode`) at
`app[CLUSTER]`; without one the list is empty.
"""

from __future__ import annotations

from aiohttp import web

from web import auth, timefmt
from web.app import CTX, USER, api_auth, json_error, require_admin

__all__ = ["CLUSTER", "setup"]

CLUSTER = web.AppKey("cluster", object)
VIEW_ROLES = ("admin", "supervisor")


@api_auth
async def api_cluster(request: web.Request) -> web.Response:
    if request[USER].role not in VIEW_ROLES:
        return json_error(403, "forbidden", "只有系统管理员或班长可以查看集群节点")
    node = request.app.get(CLUSTER)
    nodes = await node.nodes() if node is not None else []
    return web.json_response({"node_id": getattr(node, "node_id", ""), "nodes": nodes}, dumps=timefmt.dumps)


async def _ask(request: web.Request, state: str, action: str) -> web.Response:
    refused = require_admin(request)
    if refused is not None:
        return refused
    node = request.app.get(CLUSTER)
    target = request.match_info["node_id"]
    if node is None:
        return json_error(404, "not_found", f"没有集群节点 {target[:32]}")
    try:
        await node.ask(target, state)
    except LookupError:  # no such node
        return json_error(404, "not_found", f"没有集群节点 {target[:32]}")
    ctx = request.app[CTX]
    await ctx.audit.record(request[USER].username, action, target,
                           auth.client_address(request, ctx.auth_settings.trust_proxy), {}, ctx.local_now())
    entry = next((n for n in await node.nodes() if n["node_id"] == target), {"node_id": target})
    entry["asked"] = state
    return web.json_response(entry, dumps=timefmt.dumps)


@api_auth
async def api_cluster_drain(request: web.Request) -> web.Response:
    return await _ask(request, "draining", "cluster_drain")


@api_auth
async def api_cluster_resume(request: web.Request) -> web.Response:
    return await _ask(request, "up", "cluster_resume")


def setup(app: web.Application) -> None:
    app.router.add_get("/api/cluster", api_cluster)
    app.router.add_post("/api/cluster/{node_id}/drain", api_cluster_drain)
    app.router.add_post("/api/cluster/{node_id}/resume", api_cluster_resume)

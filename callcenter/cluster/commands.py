"""`hotline cluster list|drain NODE|resume NODE`: the cluster's nodes from any machine that
reaches the shared database (the nodes act on a drain or resume at their next heartbeat)."""

from __future__ import annotations

import asyncio
import json

from callcenter.cli import UserError, _now, _repo
from callcenter.cluster.pg_node import UnknownNode, ask_state, list_nodes


def _nodes(settings) -> list[dict]:
    async def run():
        repo = _repo(settings)
        try:
            return await list_nodes(repo.engine, _now(settings), settings.cluster.down_after_s)
        finally:
            await repo.close()

    return asyncio.run(run())


def cmd_cluster_list(settings, args) -> int:
    nodes = _nodes(settings)
    if args.json:
        print(json.dumps(nodes, default=str, ensure_ascii=False, indent=1))
        return 0
    if not nodes:
        print("no cluster node has joined this database ([cluster] node_id)")
        return 0
    for n in nodes:
        print(f"{n['node_id']:<16} {n['state']:<9} sip {n['sip'] or '-':<22} web {n['web'] or '-':<28} "
              f"calls {n['active_calls']:<4} heartbeat {n['heartbeat_age_s']} s ago")
    return 0


def _ask(settings, node_id: str, state: str) -> int:
    async def run():
        repo = _repo(settings)
        try:
            await ask_state(repo.engine, node_id, state)
        finally:
            await repo.close()

    try:
        asyncio.run(run())
    except UnknownNode:
        raise UserError(f"no cluster node {node_id!r} in this database (see `hotline cluster list`)") from None
    what = "drains: no new calls, current ones go on" if state == "draining" else "takes calls again"
    print(f"{node_id} {what} (at its next heartbeat, within [cluster] heartbeat_s)")
    return 0


def cmd_cluster_drain(settings, args) -> int:
    return _ask(settings, args.node, "draining")


def cmd_cluster_resume(settings, args) -> int:
    return _ask(settings, args.node, "up")


def register(sub, common) -> None:
    cluster = sub.add_parser("cluster", help="cluster nodes behind Kamailio").add_subparsers(
        dest="cluster_command", required=True)
    p = cluster.add_parser("list", parents=[common], help="nodes with state (up/draining/down) and heartbeat")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cluster_list)
    p = cluster.add_parser("drain", parents=[common], help="a node takes no new calls, finishes current ones")
    p.add_argument("node", metavar="NODE")
    p.set_defaults(func=cmd_cluster_drain)
    p = cluster.add_parser("resume", parents=[common], help="a drained node takes calls again")
    p.add_argument("node", metavar="NODE")
    p.set_defaults(func=cmd_cluster_resume)

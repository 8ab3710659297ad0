"""Bans of the SIP port's defence, for admins: list them, lift one by hand.

- `GET /api/sip/bans` → `{"bans": [{"source", "reason", "until", "remaining_s"}], "count"}`:
  the sources the defence (`callcenter.sip.defence`) drops unread now, the latest to end first.
- `DELETE /api/sip/bans/{addr}` → `{"source", "unbanned": true, "dropped"}`: the source is
  answered again at once; audited as `sip_unban` with the admin as actor and the admin's
  address as source (detail: `by_hand`, `dropped`). 404 when that address is not banned,
  400 when it is not an IP address.

Admins only (an admin's session, or a token of scope `admin`), like `GET /api/audit`. The
running SIP endpoint (`callcenter.twisted_sip.SipEndpoint`) is put at `app[SIP_ENDPOINT]`
by the bootstrap; without one (web alone) the list is empty and nothing can be lifted.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime

from aiohttp import web

from web import auth, timefmt
from web.app import CTX, USER, api_auth, json_error, require_admin

__all__ = ["SIP_ENDPOINT", "setup"]

SIP_ENDPOINT = web.AppKey("sip_endpoint", object)


def _defence(request: web.Request):
    endpoint = request.app.get(SIP_ENDPOINT)
    return endpoint, getattr(endpoint, "defence", None)


@api_auth
async def api_sip_bans(request: web.Request) -> web.Response:
    refused = require_admin(request)
    if refused is not None:
        return refused
    endpoint, defence = _defence(request)
    bans = []
    if defence is not None:
        now = endpoint.clock.seconds()
        for source, reason, until in defence.bans(now):
            at = datetime.fromtimestamp(until, timefmt.local_zone()).replace(tzinfo=None)
            bans.append({"source": source, "reason": reason, "until": timefmt.iso(at),
                         "remaining_s": max(0, round(until - now))})
    return web.json_response({"count": len(bans), "bans": bans}, dumps=timefmt.dumps)


@api_auth
async def api_sip_unban(request: web.Request) -> web.Response:
    refused = require_admin(request)
    if refused is not None:
        return refused
    text = request.match_info["addr"].strip("[]")
    try:
        source = str(ipaddress.ip_address(text))
    except ValueError:
        return json_error(400, "bad_address", f"“{text[:64]}” 不是 IP 地址")
    endpoint, defence = _defence(request)
    dropped = endpoint.lift_ban(source) if defence is not None else None
    if dropped is None:
        return json_error(404, "not_banned", f"{source} 目前没有被封禁")
    ctx = request.app[CTX]
    admin = request[USER].username
    await ctx.audit.record(admin, "sip_unban", source, auth.client_address(request, ctx.auth_settings.trust_proxy),
                           {"by_hand": True, "dropped": dropped}, ctx.local_now())
    return web.json_response({"source": source, "unbanned": True, "dropped": dropped})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/sip/bans", api_sip_bans)
    app.router.add_delete("/api/sip/bans/{addr}", api_sip_unban)

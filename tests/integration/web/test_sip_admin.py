"""GET /api/sip/bans and DELETE /api/sip/bans/{addr}: the SIP defence's bans for admins, a ban
lifted by hand is audited (sip_unban, the admin as actor) and the source is answered again."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from callcenter.sip.defence import Defence, DefencePolicy
from callcenter.sip.ua import UserAgent
from callcenter.twisted_sip import SipEndpoint
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from tests.fakes import FakeReactor
from tests.unit.sip.helpers import request
from web.app import WebContext, create_app
from web.sip_admin import SIP_ENDPOINT

NOW = datetime(2026, 12, 7, 9, 0)
ATTACKER = ("192.0.2.66", 5060)


@pytest.fixture
async def env(sqlite_url, aiohttp_client):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    for name, role in (("admin", "admin"), ("agent1", "agent")):
        await repo.create_user(username=name, password="pw-123456", role=role, now=NOW)
    reactor = FakeReactor()
    reactor.advance(NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp())
    endpoint = SipEndpoint(UserAgent(local_host="127.0.0.1", local_port=5060, rng=random.Random(1)), reactor)
    endpoint.defence = Defence(DefencePolicy(auth_max_failures=3, ban_s=600))
    port = reactor.listenUDP(5060, endpoint, interface="127.0.0.1")
    ctx = WebContext(repo=repo, service=CaseService(repo), secret=b"k" * 32, now=reactor.seconds)
    app = create_app(ctx)
    app[SIP_ENDPOINT] = endpoint
    client = await aiohttp_client(app)
    tokens = {}
    for name, scope in (("agent1", "write"), ("admin", "write"), ("admin", "admin")):
        tokens[(name, scope)] = {"Authorization": f"Bearer {(await ctx.auth_store.create_token(name, NOW, scope=scope))[1]}"}
    yield ctx, client, endpoint, reactor, port, tokens
    endpoint.stop()
    await repo.close()


async def test_admin_lists_and_lifts_a_ban(env):
    ctx, client, endpoint, reactor, port, tokens = env
    admin = tokens[("admin", "admin")]
    for _ in range(3):
        endpoint.digest_failed(ATTACKER, "1001", "INVITE digest bad")
    endpoint.datagramReceived(request("OPTIONS", branch="z9hG4bKb1"), ATTACKER)
    assert port.written == []  # banned: dropped unread
    reactor.advance(100.0)

    for headers in ({}, tokens[("agent1", "write")], tokens[("admin", "write")]):
        assert (await client.get("/api/sip/bans", headers=headers)).status in (401, 403)
        assert (await client.delete("/api/sip/bans/192.0.2.66", headers=headers)).status in (401, 403)
    assert endpoint.defence.banned(ATTACKER[0], reactor.seconds())

    resp = await client.get("/api/sip/bans", headers=admin)
    body = await resp.json()
    assert resp.status == 200 and body["count"] == 1
    [ban] = body["bans"]
    assert ban["source"] == "192.0.2.66" and ban["reason"] == "digest" and ban["remaining_s"] == 500
    assert ban["until"] == "2026-12-07T09:10:00+08:00"

    assert (await client.delete("/api/sip/bans/not-an-ip", headers=admin)).status == 400
    assert (await client.delete("/api/sip/bans/192.0.2.77", headers=admin)).status == 404
    resp = await client.delete("/api/sip/bans/192.0.2.66", headers=admin)
    assert resp.status == 200 and await resp.json() == {"source": "192.0.2.66", "unbanned": True, "dropped": 1}
    assert (await client.delete("/api/sip/bans/192.0.2.66", headers=admin)).status == 404
    assert (await (await client.get("/api/sip/bans", headers=admin)).json())["count"] == 0

    endpoint.datagramReceived(request("OPTIONS", branch="z9hG4bKb2"), ATTACKER)
    assert len(port.written) == 1  # answered again
    entries, total = await ctx.audit.query(action="sip_unban")
    assert total == 1
    assert (entries[0].actor, entries[0].target, entries[0].source_ip) == ("admin", "192.0.2.66", "127.0.0.1")
    assert entries[0].detail == {"by_hand": True, "dropped": 1}

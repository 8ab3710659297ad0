"""Issue 14 web gaps: live case events held to what a user may see, per-route JSON body caps
(413, zh-CN), users' passwords hashed off the event loop, and the listen-in audit entry."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime

import pytest
from sqlalchemy import update

from case_core import security
from case_core.adapters import migrate, orm
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from tests.integration.case_core.test_workflow_orm import demo_reference
from tests.integration.web.test_desk_actions import FETCH, env  # noqa: F401 - the desk on its fakes
from web.app import WebContext, create_app
from web.desk import ACTION_MAX_BYTES, FORM_MAX_BYTES
from web.field import POSITION_MAX_BYTES

NOW = datetime(2026, 11, 23, 10, 0)
USERS = {"agent1": ("agent", None), "light1": ("department", "lighting"), "san1": ("department", "sanitation"),
         "insp1": ("inspector", None)}


@pytest.fixture
async def city(aiohttp_client, sqlite_url):
    """An app with an agent, two departments' staff and an inspector; one case per department."""
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    for name, (role, dept) in USERS.items():
        await repo.create_user(username=name, password="pw-123456", role=role, now=NOW, department=dept)
    service = CaseService(repo, reference=demo_reference())
    ids = {}
    for dept, text in (("lighting", "长江路路灯不亮"), ("sanitation", "中山路垃圾满溢")):
        case = await service.create_case(channel="12319", description=text, actor="agent1", role="agent", now=NOW,
                                         reporter_phone="13800000001")
        async with repo.engine.begin() as conn:
            await conn.execute(update(orm.cases).where(orm.cases.c.id == case.id).values(department=dept))
        ids[dept] = case.id
    ctx = WebContext(repo=repo, service=service, secret=b"k" * 32, now=lambda: NOW.timestamp())
    client = await aiohttp_client(create_app(ctx))
    tokens = {name: await repo.create_token(name, NOW) for name in USERS}
    yield ctx, client, tokens, ids
    await repo.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- live events -------------------------------------------------------------------------------
async def test_live_case_events_reach_department_staff_only_for_their_department(city):
    """A case event reaches the agent and the case's department, not another department; an event
    naming no case (a message transcript) does not reach department staff; a screen pop stays personal."""
    ctx, client, tokens, ids = city
    sockets = {name: await client.ws_connect("/ws", headers=_bearer(tokens[name])) for name in ("agent1", "light1", "san1")}
    for _ in range(1000):  # the handler registers the socket just after the handshake
        if len(list(ctx.hub._clients)) == 3:
            break
        await asyncio.sleep(0)
    hub = ctx.hub
    hub.publish("case_changed", {"id": ids["lighting"], "number": "L", "status": "dispatched"})
    hub.publish("case_changed", {"id": ids["sanitation"], "number": "S", "status": "dispatched"})
    hub.publish("transcript_ready", {"recording_id": 9, "case_id": None, "kind": "message", "text": "留言内容"})
    hub.publish("screen_pop", {"call_id": "call-1"}, to_user="agent1")
    await asyncio.gather(*list(hub._pending))  # the held clients' case look-ups are done and sent
    for name in sockets:  # a last event to each user: everything sent before it has arrived
        hub.publish("end_of_test", {}, to_user=name)
    seen = {}
    for name, ws in sockets.items():
        got = []
        while (msg := json.loads((await ws.receive(timeout=30)).data))["type"] != "end_of_test":
            got.append((msg["type"], msg.get("number") or msg.get("call_id") or msg.get("text")))
        seen[name] = sorted(got)
        await ws.close()
    assert seen["agent1"] == [("case_changed", "L"), ("case_changed", "S"), ("screen_pop", "call-1"),
                              ("transcript_ready", "留言内容")]
    assert seen["light1"] == [("case_changed", "L")]
    assert seen["san1"] == [("case_changed", "S")]


# -- body caps ---------------------------------------------------------------------------------
async def _post_raw(client, token, path, data: bytes, content_type="application/json"):
    resp = await client.post(path, data=data, headers={**_bearer(token), "Content-Type": content_type})
    return resp.status, await resp.text()


async def test_desk_and_field_json_routes_refuse_bodies_past_their_cap(city):
    """Past its route's cap a desk or field body gets 413 with a Chinese message; just under it, the
    route reads it (422 for a description over 2,000 characters, not 413)."""
    ctx, client, tokens, _ = city
    big_form = json.dumps({"description": "灯" * (FORM_MAX_BYTES // 3 + 10)}, ensure_ascii=False).encode()
    status, text = await _post_raw(client, tokens["agent1"], "/api/desk/cases", big_form)
    assert status == 413, text
    body = json.loads(text)
    assert body["error"] == "too_large" and "请求体过大" in body["message"] and "32 KB" in body["message"]
    under = json.dumps({"description": "灯" * 3000}, ensure_ascii=False).encode()
    assert len(under) < FORM_MAX_BYTES
    status, text = await _post_raw(client, tokens["agent1"], "/api/desk/cases", under)
    assert status == 422 and "2000" in text
    padded = json.dumps({"call_id": "x" * ACTION_MAX_BYTES}).encode()
    status, text = await _post_raw(client, tokens["agent1"], "/api/desk/link", padded)
    assert status == 413 and "请求体过大" in json.loads(text)["message"]
    position = json.dumps({"lat": 32.05, "lon": 118.78, "note": "x" * POSITION_MAX_BYTES}).encode()
    status, text = await _post_raw(client, tokens["insp1"], "/api/field/position", position)
    assert status == 413 and "位置上报" in json.loads(text)["message"]
    form = ("description=" + "x" * (100 * 1024)).encode()
    status, text = await _post_raw(client, tokens["insp1"], "/api/field/reports", form,
                                   "application/x-www-form-urlencoded")
    assert status == 413 and "请求体过大" in json.loads(text)["message"]


# -- hashing off the loop -----------------------------------------------------------------------
async def test_created_and_changed_passwords_hash_in_the_login_pool(sqlite_url, monkeypatch):
    """repo.create_user and update_user(password=…) hash in the web's password-hash threads once a
    WebContext is wired, and in a worker thread without one — never on the event loop's thread."""
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    threads: list[str] = []
    real = security.hash_password

    def spy(password: str) -> str:
        threads.append(threading.current_thread().name)
        return real(password)

    monkeypatch.setattr(security, "hash_password", spy)
    loop_thread = threading.current_thread().name
    try:
        await repo.create_user(username="plain", password="pw-123456", role="agent", now=NOW)
        assert len(threads) == 1 and threads[0] != loop_thread
        WebContext(repo=repo, service=CaseService(repo, reference=demo_reference()), secret=b"k" * 32,
                   now=lambda: NOW.timestamp())
        await repo.create_user(username="wired", password="pw-123456", role="agent", now=NOW)
        await repo.update_user("wired", password="new-pw-654321")
        await repo.create_user(username="wired", password="ignored", role="agent", now=NOW)  # exists: no hash
        assert len(threads) == 3 and all(name.startswith("password-hash") for name in threads[1:]), threads
        assert await repo.check_password("wired", "new-pw-654321") is not None
    finally:
        await repo.close()


# -- listen-in audit ----------------------------------------------------------------------------
async def test_a_listen_in_is_audited_and_a_refused_one_is_not(aiohttp_client, env):  # noqa: F811
    """A shift lead's listen-in leaves `listen_in` (who, which call, from where); an agent's attempt
    (403) and one the phone cannot take (409: extension not registered) leave nothing."""
    router = env.desk.router
    registered: set[str] = set()
    listened: list[tuple[str, str]] = []
    router.bindings_for = lambda extension: ["sip:lead@127.0.0.1"] if extension in registered else []

    def listen_in(call_id, extension):
        listened.append((call_id, extension))
        return True

    router.listen_in = listen_in
    env.desk.extensions["lead1"] = "1009"
    client = await aiohttp_client(create_app(env))
    tokens = {name: await env.repo.create_token(name, NOW) for name in ("agent1", "lead1")}

    async def listen(name):
        resp = await client.post("/api/wallboard/listen", json={"call_id": "call-7"}, headers=_bearer(tokens[name]))
        return resp.status, await resp.json()

    assert (await listen("agent1"))[0] == 403
    status, body = await listen("lead1")
    assert status == 409 and "未注册" in body["message"]
    assert (await env.audit.query(action="listen_in"))[1] == 0
    registered.add("1009")
    status, body = await listen("lead1")
    assert status == 202 and listened == [("call-7", "1009")], body
    entries, total = await env.audit.query(action="listen_in")
    assert total == 1
    assert (entries[0].actor, entries[0].target, entries[0].source_ip) == ("lead1", "call:call-7", "127.0.0.1")

"""Web handlers through aiohttp's test client against a real SQLite repository."""

from __future__ import annotations

import wave
from datetime import datetime

import pytest

from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from web.app import WebContext, create_app

NOW = datetime(2026, 11, 21, 9, 0)


@pytest.fixture
async def ctx(sqlite_url, tmp_path):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    await repo.create_user(username="admin", password="pw-123456", role="admin", now=NOW)
    wav = tmp_path / "m.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(bytes(16000))
    await repo.call_started(call_id="call-1", direction="inbound", did="12319", caller="13800000001", now=NOW)
    rec = await repo.add_recording(call_id="call-1", kind="message", path=str(wav), channels=1, duration_s=1.0, now=NOW)
    service = CaseService(repo)
    await service.file_report(
        channel="12319", reporter_phone="13800000001", call_id="call-1", recording_ids=(rec,), variables={}, now=NOW
    )
    yield WebContext(repo=repo, service=service, secret=b"k" * 32, now=lambda: NOW.timestamp())
    await repo.close()


@pytest.fixture
async def client(aiohttp_client, ctx):
    return await aiohttp_client(create_app(ctx))


async def test_healthz(client):
    """/healthz answers {"status": "ok"}."""
    resp = await client.get("/healthz")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}


async def test_api_requires_a_valid_bearer_token(client, ctx):
    """Without or with a wrong token the API answers 401 JSON; with a token it lists cases."""
    assert (await client.get("/api/cases")).status == 401
    assert (await client.get("/api/cases", headers={"Authorization": "Bearer nope"})).status == 401
    token = await ctx.repo.create_token("admin", NOW)
    resp = await client.get("/api/cases", headers={"Authorization": f"Bearer {token}"})
    [case] = await resp.json()
    assert {"id", "number", "channel", "reporter_phone", "status", "created_at", "recordings"} <= set(case)
    assert case["status"] == "accepted" and case["reporter_phone"] == "13800000001"
    [rec] = case["recordings"]
    assert rec["duration_s"] == 1.0
    wav = await client.get(rec["url"], headers={"Authorization": f"Bearer {token}"})
    assert wav.status == 200 and (await wav.read())[:4] == b"RIFF"
    assert (await client.get(rec["url"])).status == 401


async def test_bad_query_parameter_is_a_clear_400(client, ctx):
    """A non-numeric limit gets a 400 naming the parameter, not a 500."""
    token = await ctx.repo.create_token("admin", NOW)
    resp = await client.get("/api/cases?limit=abc", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 400
    assert "limit" in await resp.text()


async def test_cases_page_needs_login_and_then_lists_the_case(client):
    """/cases redirects to /login; a wrong password says so in Chinese; a right one shows the case."""
    resp = await client.get("/cases", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
    bad = await client.post("/login", data={"username": "admin", "password": "wrong"})
    assert bad.status == 401 and "用户名或密码错误" in await bad.text()
    empty = await client.post("/login", data={"username": "", "password": ""})
    assert empty.status == 400 and "请输入用户名和密码" in await empty.text()
    ok = await client.post("/login", data={"username": "admin", "password": "pw-123456", "next": "/cases"})
    html = await ok.text()
    assert ok.status == 200 and "13800000001" in html and "已受理" in html and "<audio" in html


async def test_login_refuses_open_redirects(client):
    """A `next` pointing to another site is replaced by /cases."""
    resp = await client.post(
        "/login", data={"username": "admin", "password": "pw-123456", "next": "//evil.example/"}, allow_redirects=False
    )
    assert resp.status == 302 and resp.headers["Location"] == "/cases"


async def test_cookie_writes_need_the_csrf_header(aiohttp_client, ctx):
    """A logged-in browser's POST without X-Requested-With (a cross-site form) is refused with 403."""
    from aiohttp import web as aioweb

    from web.app import api_auth

    @api_auth
    async def echo(request):
        return aioweb.json_response({"ok": True})

    app = create_app(ctx)
    app.router.add_post("/api/echo", echo)
    client = await aiohttp_client(app)
    await client.post("/login", data={"username": "admin", "password": "pw-123456"})
    assert (await client.post("/api/echo", json={})).status == 403
    ok = await client.post("/api/echo", json={}, headers={"X-Requested-With": "fetch"})
    assert ok.status == 200
    evil = await client.post("/api/echo", json={}, headers={"X-Requested-With": "fetch", "Origin": "http://evil.example"})
    assert evil.status == 403

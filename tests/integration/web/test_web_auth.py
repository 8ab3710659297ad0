"""Logins, sessions, tokens, headers and the audit API through aiohttp's test client (SQLite file)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from callcenter import cli
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from web import auth
from web.app import WebContext, create_app

NOW = datetime(2026, 12, 7, 9, 0)
ZONE = ZoneInfo("Asia/Shanghai")
PW = "pw-123456"


class Clock:
    def __init__(self):
        self.t = NOW.replace(tzinfo=ZONE).timestamp()

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def env(sqlite_url, tmp_path, aiohttp_client):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    for name, role in (("admin", "admin"), ("agent1", "agent")):
        await repo.create_user(username=name, password=PW, role=role, now=NOW)
    clock = Clock()
    settings = auth.AuthSettings(login_max_failures_per_user=3, login_max_failures_per_source=6,
                                 login_lockout_s=60, session_idle_s=1800, session_max_s=8 * 3600)
    ctx = WebContext(repo=repo, service=CaseService(repo), secret=b"k" * 32, now=clock, auth_settings=settings)
    client = await aiohttp_client(create_app(ctx))
    config = tmp_path / "hotline.toml"
    config.write_text(f'[database]\nurl = "{sqlite_url}"\n')

    async def run_cli(*argv: str) -> int:
        return await asyncio.to_thread(cli.main, [*argv, "--config", str(config)])

    yield ctx, client, clock, run_cli
    await repo.close()


async def login(client, user="admin", password=PW, headers=None, **extra):
    return await client.post("/login", data={"username": user, "password": password, **extra},
                             allow_redirects=False, headers=headers)


def cookie_of(resp) -> str:
    return resp.cookies[auth.SESSION_COOKIE].value


async def status_with_cookie(client, cookie: str, path: str = "/api/cases") -> int:
    client.session.cookie_jar.clear()
    resp = await client.get(path, headers={"Cookie": f"{auth.SESSION_COOKIE}={cookie}"}, allow_redirects=False)
    return resp.status


async def test_login_throttled_per_user_with_retry_after(env):
    """Past 3 failures for a name the login answers 429 with Retry-After and a zh-CN message, even with the right password."""
    ctx, client, clock, _ = env
    for _ in range(3):
        assert (await login(client, password="wrong-pass")).status == 401
    resp = await login(client)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) == 60
    assert "登录失败次数过多" in await resp.text() and auth.SESSION_COOKIE not in resp.cookies
    json_resp = await client.post("/login", json={"username": "admin", "password": PW})
    body = await json_resp.json()
    assert json_resp.status == 429 and body["error"] == "too_many_attempts" and "Retry-After" in json_resp.headers
    assert (await login(client, user="agent1")).status == 302  # another name is not locked
    for _ in range(3):  # a flood while locked adds no audit rows beyond the first refusal's
        assert (await login(client)).status == 429
    clock.t += 61
    assert (await login(client)).status == 302
    rows, _ = await ctx.audit.query(action="login_failed")
    assert len(rows) == 3 and rows[0].target == "admin" and rows[0].source_ip == "127.0.0.1"
    assert (await ctx.audit.query(action="login_throttled"))[1] == 1
    assert (await ctx.audit.query(action="login", actor="admin"))[1] == 1


async def test_login_throttled_per_source(env):
    """One address guessing many names is refused (429) once it passes the per-source limit."""
    _, client, _, _ = env
    for i in range(6):
        await login(client, user=f"guess{i}", password="wrong-pass")
    resp = await login(client, user="agent1")
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1


async def test_next_cannot_leave_the_site(env):
    """`next=/%09/evil.example` and friends end on /cases, a same-site path is kept."""
    _, client, _, _ = env
    for bad in ("/%09/evil.example", "/\t/evil.example", "//evil.example", "/\\/evil.example"):
        resp = await login(client, next=bad)
        assert resp.status == 302 and resp.headers["Location"] == "/cases", bad
    assert (await login(client, next="/desk")).headers["Location"] == "/desk"
    page = await (await client.get("/login?next=/%09/evil.example")).text()
    assert 'value="/cases"' in page


async def test_session_is_server_side_and_ends_at_logout(env):
    """The cookie is an opaque id; after logout the same cookie no longer opens anything."""
    ctx, client, _, _ = env
    cookie = cookie_of(await login(client))
    assert "admin" not in cookie and "." not in cookie
    assert await status_with_cookie(client, cookie) == 200
    client.session.cookie_jar.clear()
    resp = await client.get("/logout", headers={"Cookie": f"{auth.SESSION_COOKIE}={cookie}"}, allow_redirects=False)
    assert resp.status == 302
    assert await status_with_cookie(client, cookie) == 401
    assert await status_with_cookie(client, cookie, "/cases") == 302
    assert (await ctx.audit.query(action="logout"))[1] == 1


async def test_session_idle_and_absolute_expiry(env):
    """A session unused for longer than session_idle_s ends; so does one older than session_max_s."""
    _, client, clock, _ = env
    cookie = cookie_of(await login(client))
    clock.t += 1700
    assert await status_with_cookie(client, cookie) == 200  # used: the idle time restarts
    clock.t += 1700
    assert await status_with_cookie(client, cookie) == 200
    clock.t += 1801
    assert await status_with_cookie(client, cookie) == 401
    cookie = cookie_of(await login(client))
    for _ in range(18):  # kept busy, but 8 h after login it ends anyway
        clock.t += 1700
        await status_with_cookie(client, cookie)
    assert await status_with_cookie(client, cookie) == 401


async def test_password_change_disable_and_cli_revoke_end_sessions(env):
    """`user set --new-password`, `user set --disable` and `user sessions revoke` each end live sessions."""
    ctx, client, clock, run_cli = env
    cookie = cookie_of(await login(client, user="agent1"))
    assert await run_cli("user", "sessions", "revoke", "agent1") == 0
    assert await status_with_cookie(client, cookie) == 401

    cookie = cookie_of(await login(client, user="agent1"))
    import os
    os.environ["HOTLINE_PASSWORD"] = "new-pass-123"
    try:
        assert await run_cli("user", "set", "agent1", "--new-password") == 0
    finally:
        del os.environ["HOTLINE_PASSWORD"]
    assert await status_with_cookie(client, cookie) == 401
    assert (await login(client, user="agent1")).status == 401
    cookie = cookie_of(await login(client, user="agent1", password="new-pass-123"))
    token = (await ctx.auth_store.create_token("agent1", ctx.local_now()))[1]
    assert await run_cli("user", "set", "agent1", "--disable") == 0
    assert await status_with_cookie(client, cookie) == 401
    assert (await client.get("/api/cases", headers={"Authorization": f"Bearer {token}"})).status == 401
    assert (await login(client, user="agent1", password="new-pass-123")).status == 401
    assert (await ctx.repo.get_user("agent1")).disabled
    assert await run_cli("user", "set", "agent1", "--enable") == 0
    assert not (await ctx.repo.get_user("agent1")).disabled
    assert (await login(client, user="agent1", password="new-pass-123")).status == 302
    actions = [r.action for r in (await ctx.audit.query(actor="cli"))[0]]
    for expected in ("session_revoked", "password_changed", "user_disabled", "user_enabled"):
        assert expected in actions
    assert await run_cli("user", "sessions", "revoke", "nobody") == 2


async def test_role_change_is_audited(env):
    """`user set --role` records the old and new role."""
    ctx, _, _, run_cli = env
    assert await run_cli("user", "set", "agent1", "--role", "shift_lead") == 0
    rows, _ = await ctx.audit.query(action="role_changed")
    assert rows[0].target == "agent1" and rows[0].detail["old"]["role"] == "agent"
    assert rows[0].detail["new"]["role"] == "shift_lead"


async def test_user_set_password_alone_changes_it_and_ends_sessions(env):
    """G2: `user set NAME --password X` (without --new-password) sets the password and revokes
    the sessions, as `--new-password --password X` does (it used to exit 0 and change nothing)."""
    ctx, client, _, run_cli = env
    cookie = cookie_of(await login(client, user="agent1"))
    assert await run_cli("user", "set", "agent1", "--password", "N3w-pass-word-42") == 0
    assert await status_with_cookie(client, cookie) == 401
    assert (await login(client, user="agent1")).status == 401
    assert (await login(client, user="agent1", password="N3w-pass-word-42")).status == 302
    rows, _ = await ctx.audit.query(action="password_changed")
    assert rows[0].target == "agent1" and rows[0].detail["sessions_revoked"] == 1
    assert await run_cli("user", "set", "agent1", "--password", "short") == 2  # too short: refused


async def test_user_add_is_audited_and_department_role_needs_a_department(env):
    """G6: `user add` leaves a `user_created` entry (role, department); G1: a department user
    without --department is refused, on add and on set (they would see no case at all)."""
    ctx, _, _, run_cli = env
    assert await run_cli("user", "add", "deptx", "--role", "department", "--password", PW) == 2
    assert await ctx.repo.get_user("deptx") is None
    assert await run_cli("user", "add", "deptx", "--role", "department", "--department", "municipal",
                         "--password", PW) == 0
    rows, _ = await ctx.audit.query(action="user_created")
    assert [(r.actor, r.target) for r in rows] == [("cli", "deptx")]
    assert rows[0].detail == {"role": "department", "department": "municipal"}
    assert await run_cli("user", "set", "deptx", "--department", "") == 2  # would unbind it
    assert await run_cli("user", "set", "agent1", "--role", "department") == 2  # no department given
    assert (await ctx.repo.get_user("agent1")).role == "agent"
    assert await run_cli("user", "set", "agent1", "--role", "department", "--department", "lighting") == 0
    assert (await ctx.repo.get_user("deptx")).department == "municipal"


async def test_a_wrong_password_from_elsewhere_does_not_lock_the_user_out(env, aiohttp_client):
    """G5: 3 wrong passwords for admin from one address lock that address out for admin, while
    admin logs in from another; the per-user limit across sources (here 5) locks it everywhere."""
    ctx, _, clock, _ = env
    settings = auth.AuthSettings(login_max_failures_per_user=3, login_max_failures_per_source=100,
                                 login_max_failures_per_user_all=5, login_lockout_s=60, trust_proxy=True)
    proxied = WebContext(repo=ctx.repo, service=ctx.service, secret=b"k" * 32, now=clock, auth_settings=settings)
    client = await aiohttp_client(create_app(proxied))

    async def login_from(source: str, password: str) -> int:
        client.session.cookie_jar.clear()
        return (await login(client, password=password, headers={"X-Forwarded-For": source})).status

    assert [await login_from("203.0.113.66", "wrong-pass") for _ in range(4)] == [401, 401, 401, 429]
    assert await login_from("198.51.100.7", PW) == 302  # the owner, elsewhere: not locked out
    # (that success cleared the name's counters) 5 more failures, from 5 addresses: locked everywhere
    assert [await login_from(f"203.0.113.{i}", "wrong-pass") for i in range(1, 6)] == [401] * 5
    assert await login_from("198.51.100.7", PW) == 429


async def test_token_expiry_scope_and_revoke(env, capsys):
    """A token stops at its expiry and when revoked; a read token may not write."""
    ctx, client, clock, run_cli = env
    _, short = await ctx.auth_store.create_token("admin", ctx.local_now(), expires_at=ctx.local_now() + timedelta(hours=1))
    bearer = {"Authorization": f"Bearer {short}"}
    assert (await client.get("/api/cases", headers=bearer)).status == 200
    clock.t += 3601
    assert (await client.get("/api/cases", headers=bearer)).status == 401

    capsys.readouterr()
    assert await run_cli("token", "create", "admin", "--scope", "read", "--days", "1") == 0
    read_token = capsys.readouterr().out.strip()
    headers = {"Authorization": f"Bearer {read_token}"}
    assert (await client.get("/api/cases", headers=headers)).status == 200
    resp = await client.post("/api/cases", json={}, headers=headers)
    assert resp.status == 403 and (await resp.json())["error"] == "token_scope"
    assert await run_cli("token", "revoke", read_token) == 0
    assert (await client.get("/api/cases", headers=headers)).status == 401
    assert await run_cli("token", "revoke", read_token) == 2  # nothing left to revoke
    assert (await ctx.audit.query(action="token_revoked"))[1] == 1
    capsys.readouterr()
    assert await run_cli("token", "list", "--user", "admin", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(t["scope"], t["revoked_at"] is not None) for t in listed] == [("write", False), ("read", True)]
    # times as the web API gives them: ISO 8601 with the center's offset, to the second
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00", t[k])
               for t in listed for k in ("created_at", "expires_at")), listed


async def test_audit_api_for_admins_only(env):
    """GET /api/audit: 403 for an agent and a write-scope admin token, entries for an admin session or admin token."""
    ctx, client, _, _ = env
    await login(client, user="agent1", password="bad-password")
    _, agent = await ctx.auth_store.create_token("agent1", ctx.local_now())
    _, admin_write = await ctx.auth_store.create_token("admin", ctx.local_now())
    _, admin_full = await ctx.auth_store.create_token("admin", ctx.local_now(), scope="admin")
    assert (await client.get("/api/audit", headers={"Authorization": f"Bearer {agent}"})).status == 403
    assert (await client.get("/api/audit", headers={"Authorization": f"Bearer {admin_write}"})).status == 403
    assert (await client.get("/api/audit")).status == 401
    resp = await client.get("/api/audit?action=login_failed", headers={"Authorization": f"Bearer {admin_full}"})
    body = await resp.json()
    assert resp.status == 200 and body["total"] == 1
    entry = body["entries"][0]
    assert entry["target"] == "agent1" and entry["at"].endswith("+08:00") and entry["source_ip"] == "127.0.0.1"
    cookie = cookie_of(await login(client))
    client.session.cookie_jar.clear()
    resp = await client.get("/api/audit?since=2026-12-07&limit=1", headers={"Cookie": f"{auth.SESSION_COOKIE}={cookie}"})
    body = await resp.json()
    assert resp.status == 200 and body["total"] == 2 and len(body["entries"]) == 1
    assert body["entries"][0]["action"] == "login"
    bad = await client.get("/api/audit?since=yesterday", headers={"Authorization": f"Bearer {admin_full}"})
    assert bad.status == 400


async def test_security_headers_on_every_answer(env):
    """Pages, JSON, static files and errors carry CSP without inline script, nosniff and framing rules."""
    _, client, _, _ = env
    for path in ("/login", "/api/cases", "/static/desk.js", "/no-such-page", "/healthz"):
        resp = await client.get(path, allow_redirects=False)
        csp = resp.headers.get("Content-Security-Policy", "")
        assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp, path
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert resp.headers["Referrer-Policy"] == "same-origin", path
    resp = await client.get("/wallboard", allow_redirects=False)
    assert "frame-ancestors 'self'" in resp.headers["Content-Security-Policy"]


async def test_secure_cookie_over_https_or_trusted_proxy(env):
    """Plain HTTP: no Secure flag; behind a trusted proxy saying https: Secure (and the client address from it)."""
    ctx, client, _, _ = env
    resp = await login(client, **{})
    assert not resp.cookies[auth.SESSION_COOKIE]["secure"]
    resp = await client.post("/login", data={"username": "admin", "password": PW},
                             headers={"X-Forwarded-Proto": "https"}, allow_redirects=False)
    assert not resp.cookies[auth.SESSION_COOKIE]["secure"]  # not trusted by default
    ctx.auth_settings = auth.AuthSettings(trust_proxy=True)
    resp = await client.post("/login", data={"username": "admin", "password": PW}, allow_redirects=False,
                             headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"})
    assert resp.cookies[auth.SESSION_COOKIE]["secure"]
    rows, _ = await ctx.audit.query(action="login")
    assert rows[0].source_ip == "198.51.100.7"


async def test_open311_api_key_obeys_expiry_revocation_and_scope(env):
    """An Open311 api_key that expired, was revoked or only reads cannot file a request."""
    ctx, client, clock, _ = env
    now = ctx.local_now()
    _, expiring = await ctx.auth_store.create_token("agent1", now, expires_at=now + timedelta(minutes=5))
    _, revoked = await ctx.auth_store.create_token("agent1", now)
    _, reader = await ctx.auth_store.create_token("agent1", now, scope="read")
    await ctx.auth_store.revoke_tokens(now, token=revoked)
    clock.t += 600
    for key, why in ((expiring, "expired"), (revoked, "revoked"), (reader, "read scope")):
        resp = await client.post("/open311/v2/requests.json", data={"api_key": key, "service_code": "x"})
        assert resp.status == 403, why


async def test_live_socket_closes_when_the_session_is_revoked(env, monkeypatch):
    """An open /ws of a session revoked meanwhile is closed with code 4401."""
    from web import app as app_module

    monkeypatch.setattr(app_module, "LIVE_RECHECK_S", 0.05)
    ctx, client, _, _ = env
    cookie = cookie_of(await login(client, user="agent1"))
    client.session.cookie_jar.clear()
    ws = await client.ws_connect("/ws", headers={"Cookie": f"{auth.SESSION_COOKIE}={cookie}"})
    await asyncio.sleep(0.15)
    assert not ws.closed
    await ctx.auth_store.revoke_user_sessions("agent1", ctx.local_now())
    msg = await asyncio.wait_for(ws.receive(), timeout=5)
    assert ws.closed and ws.close_code == app_module.WS_SESSION_ENDED, msg

"""Every error a person or program can get from the web side speaks Chinese, as UTF-8.

The test walks every route of the app (with no login, as an agent, as an admin; with
unknown ids, bad query parameters and bad bodies) and checks each 4xx/5xx answer: a JSON
`message` (Open311: `description`) or a text body must contain Chinese, and JSON must not
be `\\u`-escaped.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from tests.integration.case_core.test_workflow_orm import demo_reference
from web import auth
from web.app import WebContext, create_app

NOW = datetime(2026, 11, 23, 10, 0)
CJK = re.compile(r"[\u4e00-\u9fff]")
BAD_QUERY = "?limit=x&offset=x&start=x&end=x&status=nope&group_by=nope&kind=nope&from=x&to=x&q="


@pytest.fixture
async def ctx(sqlite_url):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    for name, role in (("agent1", "agent"), ("dept1", "department"), ("admin", "admin")):
        await repo.create_user(username=name, password="pw-123456", role=role, now=NOW,
                               department="municipal" if role == "department" else None)
    service = CaseService(repo, reference=demo_reference())
    now_ts = NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    yield WebContext(repo=repo, service=service, secret=b"k" * 32, now=lambda: now_ts)
    await repo.close()


def _paths(app) -> list[tuple[str, str]]:
    """(method, concrete path) for every route, dynamic parts filled with ids nobody has."""
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        if "directory" in info or route.method == "HEAD":
            continue
        if "path" in info:
            path = info["path"]
        else:
            values = defaultdict(lambda: "nope", {"fmt": "json", "action": "close"})
            path = info["formatter"].format_map(
                {k: ("999999" if "id" in k or k == "number" else values[k])
                 for k in re.findall(r"{(\w+)}", info["formatter"])})
        out.append((route.method, path))
    return out


def _problem(status: int, content_type: str, raw: bytes) -> str | None:
    """What is wrong with an error answer, or None."""
    text = raw.decode("utf-8", errors="replace")
    if content_type == "application/json":
        if "\\u" in text:
            return "JSON with \\u-escaped text (ensure_ascii)"
        body = json.loads(text)
        if isinstance(body, list) and body and isinstance(body[0], dict):  # Open311 errors
            message = body[0].get("description")
        else:
            message = body.get("message") if isinstance(body, dict) else None
        if not message or not CJK.search(str(message)):
            return f"message not in Chinese: {message!r}"
        return None
    if not CJK.search(text):
        return f"{content_type} body not in Chinese: {text[:80]!r}"
    return None


async def test_every_error_answer_is_chinese_utf8(aiohttp_client, ctx):
    """Walking all routes with no login, agent, department and admin tokens, unknown ids and bad input:
    every 4xx/5xx message contains Chinese and no JSON error is \\u-escaped."""
    app = create_app(ctx)
    client = await aiohttp_client(app)
    tokens = {u: await ctx.repo.create_token(u, NOW) for u in ("agent1", "dept1", "admin")}
    session = await ctx.auth_store.create_session(await ctx.repo.get_user("admin"), ctx.local_now(), absolute_s=3600)
    headers_by_who = {"nobody": {}, "bad_token": {"Authorization": "Bearer nope"},
                      **{u: {"Authorization": f"Bearer {t}"} for u, t in tokens.items()},
                      # a logged-in browser's write without X-Requested-With: refused as cross-site
                      "cookie_no_csrf": {"Cookie": f"{auth.SESSION_COOKIE}={session}"}}
    problems, errors_seen = [], 0
    for method, path in _paths(app):
        if path in ("/ws", "/logout", "/login") or path.startswith("/static"):
            continue
        for who, headers in headers_by_who.items():
            for suffix, body in (("", None), (BAD_QUERY, b"not json {")):
                resp = await client.request(method, path + suffix, headers=headers, data=body,
                                            allow_redirects=False)
                raw = await resp.read()
                if resp.status < 400:
                    continue
                errors_seen += 1
                problem = _problem(resp.status, resp.content_type, raw)
                if problem:
                    problems.append(f"{method} {path}{suffix} as {who} → {resp.status}: {problem}")
    assert errors_seen > 100  # the walk did reach the refusals
    assert problems == [], "\n".join(problems)


async def test_unknown_api_route_and_csrf_refusal_read_in_chinese(aiohttp_client, ctx):
    """An unknown /api/ URL answers JSON 404 in Chinese; the CSRF refusal is UTF-8 text, not \\u escapes."""
    client = await aiohttp_client(create_app(ctx))
    resp = await client.get("/api/no-such-thing")
    assert resp.status == 404 and (await resp.json())["message"] == "没有这个接口"
    session = await ctx.auth_store.create_session(await ctx.repo.get_user("admin"), ctx.local_now(), absolute_s=3600)
    resp = await client.post("/api/cases", json={}, headers={"Cookie": f"{auth.SESSION_COOKIE}={session}"})
    raw = (await resp.read()).decode()
    assert resp.status == 403 and "跨站请求被拒绝" in raw and "\\u" not in raw
    resp = await client.get("/api/cases/999999", headers={"Authorization": f"Bearer {await ctx.repo.create_token('admin', NOW)}"})
    assert resp.status == 404 and (await resp.json())["message"] == "案卷不存在"

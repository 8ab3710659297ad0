"""One time convention: ISO 8601 with the center's offset (+08:00) in JSON and CSV, YYYY-MM-DD HH:MM on pages."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from callcenter.notify.outbox import enqueue_sms
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from tests.integration.case_core.test_workflow_orm import demo_reference
from web import timefmt
from callcenter.bootstrap import install_web_stores
from web.app import WebContext, create_app

NOW = datetime(2026, 11, 23, 10, 0)  # local (Asia/Shanghai)
LOOKS_LIKE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$")


@pytest.fixture
async def ctx(sqlite_url):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    await repo.create_user(username="lead1", password="pw-123456", role="shift_lead", now=NOW)
    await repo.create_user(username="admin", password="pw-123456", role="admin", now=NOW)
    service = CaseService(repo, reference=demo_reference())
    now_ts = NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    yield WebContext(repo=repo, service=service, secret=b"k" * 32, now=lambda: now_ts)
    await repo.close()


def _times(obj, path="") -> list[tuple[str, str]]:
    """Every (where, value) string in a JSON document that looks like a date-time."""
    if isinstance(obj, dict):
        return [t for k, v in obj.items() for t in _times(v, f"{path}.{k}")]
    if isinstance(obj, list):
        return [t for i, v in enumerate(obj) for t in _times(v, f"{path}[{i}]")]
    return [(path, obj)] if isinstance(obj, str) and LOOKS_LIKE_TIME.match(obj) else []


def test_timefmt_gives_naive_and_foreign_times_the_local_offset():
    """Naive (stored local) times get +08:00; a UTC time is converted; pages get YYYY-MM-DD HH:MM."""
    assert timefmt.iso(datetime(2026, 11, 23, 10, 0, 5, 123)) == "2026-11-23T10:00:05+08:00"
    assert timefmt.iso(datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)) == "2026-11-23T10:00:00+08:00"
    assert timefmt.iso("2026-11-23T10:00:00") == "2026-11-23T10:00:00+08:00"
    assert timefmt.page(datetime(2026, 3, 4, 5, 6, 7)) == "2026-03-04 05:06" and timefmt.page(None) == ""


async def test_json_apis_and_csv_carry_the_offset_and_pages_show_minutes(aiohttp_client, ctx):
    """Cases (list, detail with history and deadlines), SMS, CDR CSV: every time ISO 8601 with +08:00;
    /cases and the case page show YYYY-MM-DD HH:MM, never mm-dd, mm/dd/yyyy or seconds."""
    app = create_app(ctx)
    install_web_stores(app, ctx.repo.engine)
    client = await aiohttp_client(app)
    token = await ctx.repo.create_token("admin", NOW)
    auth = {"Authorization": f"Bearer {token}"}
    await ctx.repo.call_started(call_id="c1", direction="inbound", did="12319", caller="13800000001", now=NOW)
    await ctx.repo.call_answered("c1", NOW + timedelta(seconds=3))
    await ctx.repo.call_ended("c1", NOW + timedelta(seconds=60), "caller_hangup")
    resp = await client.post("/api/cases", json={"description": "长江路井盖缺失", "address": "长江路12号",
                                                 "category": "component:01002"}, headers=auth)
    case = await resp.json()
    assert resp.status == 201, case
    async with ctx.repo.engine.begin() as conn:
        await enqueue_sms(conn, to="13800138001", template="accepted", context={}, case_number=case["number"],
                          event="CaseAccepted", now=NOW, dedupe_key="k1")

    documents = {
        "/api/cases": await (await client.get("/api/cases", headers=auth)).json(),
        "/api/cases/{id}": await (await client.get(f"/api/cases/{case['id']}", headers=auth)).json(),
        "/api/sms/messages": await (await client.get("/api/sms/messages", headers=auth)).json(),
        "/api/evaluation": await (await client.get("/api/evaluation?start=2026-11-01&end=2026-11-24",
                                                   headers=auth)).json(),
    }
    seen = []
    for url, doc in documents.items():
        for where, value in _times(doc):
            seen.append(where)
            assert WITH_OFFSET.match(value), (url, where, value)
    assert {".created_at", ".updated_at"} <= {w[w.index("."):] for w in seen if w.startswith("[0]")}
    assert any("history" in w for w in seen) and any("created_at" in w for w in seen)
    assert documents["/api/cases/{id}"]["created_at"] == "2026-11-23T10:00:00+08:00"
    assert documents["/api/evaluation"]["start"] == "2026-11-01T00:00:00+08:00"

    cdr = await client.get("/api/cdr.csv?from=2026-11-23", headers=auth)
    assert cdr.status == 200
    rows = list(csv.DictReader(io.StringIO(await cdr.text())))
    assert rows and (rows[0]["started_at"], rows[0]["answered_at"], rows[0]["ended_at"]) == (
        "2026-11-23T10:00:00+08:00", "2026-11-23T10:00:03+08:00", "2026-11-23T10:01:00+08:00")

    await client.post("/login", data={"username": "admin", "password": "pw-123456", "next": "/cases"})
    for page_url in ("/cases", f"/cases/{case['id']}"):
        page = await (await client.get(page_url)).text()
        assert "2026-11-23 10:00" in page, page_url
        assert not re.search(r"\d{1,2}/\d{1,2}/\d{4}", page), page_url
        assert not re.search(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}", page), page_url
        assert not re.search(r"(?<![\d-])\d{2}-\d{2} \d{2}:\d{2}", page), page_url


async def test_deadlines_kept_in_history_fields_carry_the_offset(aiohttp_client, ctx):
    """A step's deadline the workflow stores in an action's fields (send_verify → verify_deadline) comes out of
    the case detail as ISO 8601 with +08:00, to the second, like every other time."""
    client = await aiohttp_client(create_app(ctx))
    auth = {"Authorization": f"Bearer {await ctx.repo.create_token('lead1', NOW)}"}
    resp = await client.post("/api/cases", json={"description": "长江路井盖缺失", "address": "长江路12号",
                                                 "category": "component:01002"}, headers=auth)
    case = await resp.json()
    assert resp.status == 201, case
    resp = await client.post(f"/api/cases/{case['id']}/actions/send_verify",
                             json={"fields": {}, "expected_version": case["version"]}, headers=auth)
    assert resp.status == 200, await resp.text()
    detail = await (await client.get(f"/api/cases/{case['id']}", headers=auth)).json()
    fields = detail["history"][-1]["fields"]
    assert "verify_deadline" in fields, detail["history"]
    assert WITH_OFFSET.match(fields["verify_deadline"]), fields
    assert [(w, v) for w, v in _times(detail) if not WITH_OFFSET.match(v)] == []

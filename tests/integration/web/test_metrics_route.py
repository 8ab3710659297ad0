"""GET /metrics through aiohttp's test client: the bearer token, and the database figures
(cases, overdue, SMS, callbacks, RTF) from one cached query on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, update

from callcenter.callbacks.dialer import callbacks_table
from callcenter.metrics import HotlineMetrics
from callcenter.notify.outbox import enqueue_sms
from callcenter.stt.store import transcript_jobs
from case_core.adapters.orm import cases
from case_core.service import CaseService
from web import metrics as metrics_route

NOW = datetime(2026, 12, 7, 10, 0)
TOKEN = "s3cret-scrape-token-123"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def _report(repo, phone: str) -> str:
    service = CaseService(repo)
    return await service.file_report(channel="12319", reporter_phone=phone, call_id=None,
                                        recording_ids=(), variables={}, now=NOW)


async def _app(aiohttp_client, repo, clock, token=""):
    sources = SimpleNamespace(router=None, acd=None, rtp=None, stt_status=lambda: {"queued": 0})
    m = HotlineMetrics(sources, node="test-node", engine=repo.engine, now_dt=lambda: NOW, db_ttl_s=5.0, clock=clock)
    app = web.Application()
    metrics_route.setup(app, m, token=token)
    return await aiohttp_client(app), m


def _values(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def test_open_metrics_without_a_token(aiohttp_client, repo):
    """With no token configured /metrics answers in the Prometheus text format to anyone."""
    client, _ = await _app(aiohttp_client, repo, Clock())
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    v = _values(await resp.text())
    assert [dict(k)["node"] for (name, k) in v if name == "hotline_build_info"] == ["test-node"]
    assert v[("hotline_cases_overdue", ())] == 0


async def test_token_is_required_when_configured(aiohttp_client, repo):
    """With [metrics] token set, no header or a wrong token is a 401 in Chinese; the right one works."""
    client, _ = await _app(aiohttp_client, repo, Clock(), token=TOKEN)
    missing = await client.get("/metrics")
    assert missing.status == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "令牌" in (await missing.json())["message"]
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status == 401
    assert (await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})).status == 401
    ok = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status == 200 and "hotline_cases" in await ok.text()


async def test_database_figures_and_their_cache(aiohttp_client, repo):
    """Cases by status, overdue, SMS by state, callbacks due and RTF come from the database;
    a second scrape within cache_s reuses the figures, a later one sees new rows."""
    clock = Clock()
    first = await _report(repo, "13800000001")
    await _report(repo, "13800000002")
    async with repo.engine.begin() as conn:
        await conn.execute(update(cases).where(cases.c.number == first).values(due_at=NOW - timedelta(hours=1)))
        await enqueue_sms(conn, to="13800000001", template="accepted", context={"number": "1"}, case_number="1",
                          event="CaseAccepted", now=NOW, dedupe_key="t-1")
        for i, (status, due) in enumerate([("pending", NOW - timedelta(minutes=5)), ("pending", NOW + timedelta(hours=2)),
                                           ("answered", None)]):
            await conn.execute(insert(callbacks_table).values(
                id=f"cb-{i}", kind="follow_up", number="13800000001", status=status, due_at=due,
                created_at=NOW, updated_at=NOW))
    await repo.call_started(call_id="c-1", direction="inbound", did="12319", caller="13800000001", now=NOW)
    for rtf in (0.2, 0.4):
        rec = await repo.add_recording(call_id="c-1", kind="call", path=f"/tmp/{rtf}.wav", channels=2,
                                       duration_s=10.0, now=NOW)
        async with repo.engine.begin() as conn:
            await conn.execute(insert(transcript_jobs).values(
                recording_id=rec, status="done", engine="whisper", rtf=rtf, norm_text="", queued_at=NOW,
                finished_at=NOW))
    client, m = await _app(aiohttp_client, repo, clock)
    v = _values(await (await client.get("/metrics")).text())
    assert v[("hotline_cases", (("status", "accepted"),))] == 2
    assert v[("hotline_cases_overdue", ())] == 1
    assert sum(n for (name, _), n in v.items() if name == "hotline_sms_outbox") == 1
    assert v[("hotline_callbacks", (("status", "pending"),))] == 2
    assert v[("hotline_callbacks_due", ())] == 1
    assert v[("hotline_transcription_rtf", ())] == pytest.approx(0.3)

    await _report(repo, "13800000003")
    cached = _values(await (await client.get("/metrics")).text())
    assert cached[("hotline_cases", (("status", "accepted"),))] == 2
    clock.t += 6
    fresh = _values(await (await client.get("/metrics")).text())
    assert fresh[("hotline_cases", (("status", "accepted"),))] == 3

"""The single database writer: call and recording rows in order, batched, retried through a
busy or locked database, one bad row isolated — nothing lost (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from callcenter.acd_store import AcdStore, queue_events
from callcenter.write_queue import QueuedCallServices, WriteQueue, retry_transient
from case_core.adapters import orm

NOW = datetime(2026, 12, 7, 10, 0, 0)


@pytest.fixture
def sync_engine(engine, db_url):
    """The writer's blocking engine on the same (migrated) database as `engine`."""
    from case_core.adapters.sqlalchemy_repo import make_sync_engine

    eng = make_sync_engine(db_url)
    yield eng
    eng.dispose()


class _Service:
    """The case service as far as the router's row writes go: only the transcription hook."""

    def __init__(self):
        self.finished: list[int] = []

    def on_recording_finished(self, recording_id: int) -> None:
        self.finished.append(recording_id)


class _FlakyEngine:
    """The real engine, but the first `failures` transactions fail as a locked database would."""

    def __init__(self, engine, failures: int):
        self.engine = engine
        self.failures = failures

    def begin(self):
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("BEGIN", {}, Exception("database is locked"))
        return self.engine.begin()


async def _count(engine, table) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


async def test_a_flood_of_calls_keeps_every_row_in_order(engine, sync_engine):
    """500 calls started, answered, recorded and ended at once: every row lands, updates after inserts, in few batches."""
    writer = WriteQueue(sync_engine, max_batch=200)
    service = _Service()
    calls = QueuedCallServices(service, writer)

    async def one(i: int) -> int:
        cid = f"flood-{i}"
        started = asyncio.ensure_future(calls.call_started(call_id=cid, direction="inbound", did="12319",
                                                           caller="13800000000", now=NOW))
        answered = asyncio.ensure_future(calls.call_answered(cid, NOW))
        rec = await calls.recording_started(call_id=cid, kind="call", path=f"/r/{cid}.wav", channels=2, now=NOW)
        await calls.recording_finished(rec, 1.5)
        await calls.call_ended(cid, NOW, "remote:BYE", "1")
        await asyncio.gather(started, answered)
        return rec

    ids = await asyncio.gather(*(one(i) for i in range(500)))
    await writer.close()
    assert len(set(ids)) == 500 and sorted(service.finished) == sorted(ids)
    async with engine.connect() as conn:
        ended = (await conn.execute(select(func.count()).select_from(orm.calls).where(
            orm.calls.c.answered_at.is_not(None), orm.calls.c.end_reason == "remote:BYE"))).scalar_one()
        durations = (await conn.execute(select(func.count()).select_from(orm.recordings).where(
            orm.recordings.c.duration_s == 1.5))).scalar_one()
    assert (ended, durations) == (500, 500)
    assert writer.batches < writer.written / 5  # batched, not one transaction per row


async def test_a_locked_database_delays_writes_but_loses_none(engine, sync_engine):
    """Three failed transactions (database is locked) are retried: the queue event and the call row are stored."""
    flaky = _FlakyEngine(sync_engine, failures=3)
    writer = WriteQueue(flaky, sleep=lambda s: asyncio.sleep(0))
    store = AcdStore(engine, writer=writer)

    class Ev:
        at, kind, queue, call, agent, caller = NOW, "join", "report", "locked-1", None, "13800000000"
        position, wait_s, talk_s, wrap_s, detail = 1, None, None, None, None

    await asyncio.gather(
        store.log_event(Ev()),
        QueuedCallServices(_Service(), writer).call_started(call_id="locked-1", direction="inbound", did="12319",
                                                             caller="13800000000", now=NOW))
    await writer.close()
    assert writer.retries == 3
    assert (await _count(engine, queue_events), await _count(engine, orm.calls)) == (1, 1)


async def test_one_bad_row_does_not_take_its_batch_down(engine, sync_engine):
    """A duplicate call id fails alone; the other rows of its batch are written."""
    writer = WriteQueue(sync_engine)
    calls = QueuedCallServices(_Service(), writer)
    results = await asyncio.gather(
        *(calls.call_started(call_id=cid, direction="inbound", did="12319", caller=None, now=NOW)
          for cid in ("a", "b", "a", "c")),
        return_exceptions=True)
    await writer.close()
    assert [isinstance(r, Exception) for r in results] == [False, False, True, False]
    assert await _count(engine, orm.calls) == 3 and writer.failed == 1


async def test_retry_transient_gives_up_on_real_errors():
    """A passing failure is retried until it succeeds; a programming error is raised at once."""
    tries = []

    async def flaky():
        tries.append(1)
        if len(tries) < 3:
            raise OperationalError("UPDATE", {}, Exception("database is locked"))
        return "ok"

    assert await retry_transient(flaky, what="test", sleep=lambda s: asyncio.sleep(0)) == "ok"

    async def broken():
        raise ValueError("bad")

    with pytest.raises(ValueError):
        await retry_transient(broken, what="test", sleep=lambda s: asyncio.sleep(0))


def test_recordings_reach_the_disk_every_few_seconds(tmp_path, monkeypatch):
    """An open recording is fdatasync'ed at its first flush, then not again before SYNC_EVERY_S, then again; and when closed."""
    from concurrent.futures import Future
    from types import SimpleNamespace

    from twisted.internet.task import Clock

    from callcenter import calls
    from callcenter.media.wav import WavWriter

    synced: list[int] = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd))

    class RunNow:
        def submit(self, fn, *args):
            f = Future()
            f.set_result(fn(*args))
            return f

    router = SimpleNamespace(_flushes=[], _synced_at={}, clock=Clock(), executor=RunNow())
    router._write_flushes = lambda: calls.CallRouter._write_flushes(router)
    rec = calls._Recording(recording_id=None, writer=WavWriter(tmp_path / "s.wav", channels=2), pending=bytearray())

    def second_of_audio():
        rec.pending += b"\x01\x00" * 2 * 8000
        calls.CallRouter.flush(router, rec)
        router.clock.advance(1.0)

    for _ in range(7):
        second_of_audio()
    assert len(synced) == 2  # at 0 s and at 5 s
    asyncio.run(calls.CallRouter.close_recording(router, rec))
    assert len(synced) == 3

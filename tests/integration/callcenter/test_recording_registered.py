"""A recording completes on two facts in either order — its file closed and its row registered
(`recording_registered`) — with no polling for the row id."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from datetime import datetime
from types import SimpleNamespace

from twisted.internet.task import Clock

from callcenter.calls import recording


class RunNowExecutor:
    def submit(self, fn, *args):
        f = Future()
        f.set_result(fn(*args))
        return f


class Services:
    """The case service's recording rows: the insert waits until the test lets it answer."""

    def __init__(self):
        self.insert_done = asyncio.Event()
        self.finished: list[tuple[int, float]] = []

    async def recording_started(self, **kw) -> int:
        await self.insert_done.wait()
        return 41

    async def recording_finished(self, recording_id: int, duration_s: float) -> None:
        self.finished.append((recording_id, duration_s))


def _io(tmp_path, services):
    tasks: list = []
    io = SimpleNamespace(storage_dir=tmp_path, now_dt=lambda: datetime(2026, 12, 8, 9, 0),
                         clock=Clock(), executor=RunNowExecutor(), _flushes=[], _synced_at={}, services=services,
                         spawn=lambda coro: tasks.append(asyncio.ensure_future(coro)))
    for name in ("recording_path", "flush", "_write_flushes", "close_recording", "start_recording",
                 "finish_recording"):
        setattr(io, name, getattr(recording.RecordingIO, name).__get__(io))
    return io, tasks


async def _settle(tasks):
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)


async def test_closed_before_registered_completes_when_the_row_arrives(tmp_path):
    """Hang-up before the row insert answered: the duration is stored, and the message's
    follower runs, only once the row id is there — and then at once."""
    services = Services()
    io, tasks = _io(tmp_path, services)
    rec = io.start_recording(call_id="c1", kind="message", name="msg-m1", channels=1, ivr_id="m1")
    rec.pending += b"\x01\x00" * 8000  # one second
    done: list = []
    io.finish_recording(rec, lambda r: done.append((r.ivr_id, r.recording_id, r.duration)))
    for _ in range(20):
        await asyncio.sleep(0)
    assert rec.duration == 1.0 and not rec.registered
    assert done == [] and services.finished == []
    services.insert_done.set()
    await _settle(tasks)
    assert services.finished == [(41, 1.0)]
    assert done == [("m1", 41, 1.0)]


async def test_registered_before_closed_completes_on_close(tmp_path):
    """The usual order: the row exists first; closing the file completes the recording."""
    services = Services()
    services.insert_done.set()
    io, tasks = _io(tmp_path, services)
    rec = io.start_recording(call_id="c2", kind="call", name="call", channels=2)
    await _settle(tasks)
    assert rec.registered and rec.recording_id == 41 and services.finished == []
    rec.pending += b"\x00\x00" * 2 * 4000
    io.finish_recording(rec)
    await _settle(tasks)
    assert services.finished == [(41, 0.5)]


async def test_a_failed_insert_still_lets_the_call_go_on(tmp_path):
    """No row (the insert raised): nothing is stored for it, but the follower still runs."""

    class Broken(Services):
        async def recording_started(self, **kw) -> int:
            raise RuntimeError("database down")

    services = Broken()
    io, tasks = _io(tmp_path, services)
    rec = io.start_recording(call_id="c3", kind="message", name="msg-m1", channels=1)
    done: list = []
    io.finish_recording(rec, lambda r: done.append(r.recording_id))
    results: list[str] = []
    for _ in range(20):
        await asyncio.sleep(0)
    for t in tasks:
        try:
            await t
        except RuntimeError as exc:
            results.append(str(exc))
    await _settle([t for t in tasks if not t.done()])
    assert results == ["database down"]
    assert done == [None] and services.finished == []

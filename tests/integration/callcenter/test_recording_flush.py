"""Recording flushes: every recording due in one tick is written by one writer-thread job."""

import asyncio
from concurrent.futures import Future
from types import SimpleNamespace

from twisted.internet.task import Clock

from callcenter import calls
from callcenter.media.wav import WavWriter, read_wav


class RunNowExecutor:
    """Runs each job at once and counts the jobs."""

    def __init__(self):
        self.jobs = 0

    def submit(self, fn, *args):
        self.jobs += 1
        f = Future()
        f.set_result(fn(*args))
        return f


def _router():
    router = SimpleNamespace(_flushes=[], _synced_at={}, clock=Clock(), executor=RunNowExecutor())
    router._write_flushes = lambda: calls.CallRouter._write_flushes(router)
    return router


def _rec(tmp_path, name, frame: bytes):
    rec = calls._Recording(recording_id=None, writer=WavWriter(tmp_path / name, channels=2), pending=bytearray())
    rec.pending += frame * 50
    return rec


def test_flushes_of_one_tick_are_one_job(tmp_path):
    """Three recordings due together cost one executor job, and each file gets its own audio."""
    router = _router()
    recs = [_rec(tmp_path, f"r{i}.wav", bytes([i + 1]) * 640) for i in range(3)]
    for rec in recs:
        calls.CallRouter.flush(router, rec)
        assert not rec.pending
    assert router.executor.jobs == 0  # written after the tick, not inside it
    router.clock.advance(0)
    assert router.executor.jobs == 1
    for i, rec in enumerate(recs):
        _, _, pcm = read_wav(rec.writer.path)
        assert pcm == bytes([i + 1]) * 640 * 50


def test_close_writes_queued_chunks_first(tmp_path):
    """A recording closed in the tick its last flush was queued keeps that audio."""
    router = _router()
    rec = _rec(tmp_path, "c.wav", b"\x01\x02" * 320)
    calls.CallRouter.flush(router, rec)
    rec.pending += b"\x03\x04" * 320
    duration = asyncio.run(calls.CallRouter.close_recording(router, rec))
    _, _, pcm = read_wav(rec.writer.path)
    assert pcm == b"\x01\x02" * 320 * 50 + b"\x03\x04" * 320
    assert duration == 51 * 0.02
    router.clock.advance(0)  # the scheduled write finds nothing left to do
    assert router.executor.jobs == 2

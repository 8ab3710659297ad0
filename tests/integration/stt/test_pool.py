"""The transcription worker pool: separate processes, priorities, errors, shutdown."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from callcenter.stt.pool import PoolClosed, Priority, TranscriptionPool
from callcenter.stt.port import SttError, Transcript

from .conftest import MESSAGE_CLIP, reference


class TextFileRecognizer:
    """Fake backend: the 'audio' is a text file whose content is the transcript; a file
    starting with ``hold:`` waits until the named release file exists."""

    engine = "fake"

    def transcribe(self, path):
        text = Path(path).read_text() if Path(path).exists() else None
        if text is None:
            raise SttError(f"cannot read audio {path}")
        if text.startswith("hold:"):
            release = Path(text[5:])
            while not release.exists():
                os.sched_yield()
            text = "held"
        if text == "pid":
            text = str(os.getpid())
        return Transcript(text, (), self.engine, "zh", 1.0, 0.0)


def make_fake():
    return TextFileRecognizer()


async def _until(condition, what: str) -> None:
    # A bounded wait for a state change, so a broken pool fails instead of hanging.
    async def poll():
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout=60)


def _job(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def test_jobs_run_in_another_process(tmp_path):
    """Recognition runs in a worker process, not in the process of the event loop."""
    async with TranscriptionPool(make_fake, workers=1) as pool:
        result = await pool.transcribe(_job(tmp_path, "a", "pid"))
    assert result.text.isdigit() and int(result.text) != os.getpid()


async def test_messages_overtake_queued_recordings(tmp_path):
    """With the one worker busy, a later voice message runs before earlier recordings."""
    release = tmp_path / "release"
    done: list[str] = []
    async with TranscriptionPool(make_fake, workers=1) as pool:
        async def run(name, text, priority):
            result = await pool.transcribe(_job(tmp_path, name, text), priority=priority)
            done.append(name)
            return result

        blocker = asyncio.create_task(run("blocker", f"hold:{release}", Priority.RECORDING))
        await _until(lambda: pool.running == 1, "blocker started")
        rec1 = asyncio.create_task(run("rec1", "r1", Priority.RECORDING))
        rec2 = asyncio.create_task(run("rec2", "r2", Priority.RECORDING))
        msg = asyncio.create_task(run("msg", "m", Priority.MESSAGE))
        await _until(lambda: pool.queued == 3, "three jobs queued")
        release.touch()
        await asyncio.gather(blocker, rec1, rec2, msg)
    assert done == ["blocker", "msg", "rec1", "rec2"]


async def test_a_failed_job_does_not_stop_the_pool(tmp_path):
    """An unreadable file fails its own job with SttError; the next job still runs."""
    async with TranscriptionPool(make_fake, workers=1) as pool:
        with pytest.raises(SttError, match="cannot read audio"):
            await pool.transcribe(tmp_path / "missing.wav")
        assert (await pool.transcribe(_job(tmp_path, "ok", "fine"))).text == "fine"


async def test_close_fails_queued_jobs_and_finishes_running_ones(tmp_path):
    """Shutdown lets the running job finish, fails the queued one, refuses new ones."""
    release = tmp_path / "release"
    pool = TranscriptionPool(make_fake, workers=1)
    running = asyncio.create_task(pool.transcribe(_job(tmp_path, "run", f"hold:{release}")))
    await _until(lambda: pool.running == 1, "job started")
    queued = asyncio.create_task(pool.transcribe(_job(tmp_path, "q", "later")))
    await _until(lambda: pool.queued == 1, "job queued")
    closing = asyncio.create_task(pool.close())
    await _until(lambda: queued.done(), "queued job failed")
    release.touch()
    await closing
    assert (await running).text == "held"
    with pytest.raises(PoolClosed):
        await queued
    with pytest.raises(PoolClosed):
        await pool.transcribe(_job(tmp_path, "late", "x"))


@pytest.mark.slow
async def test_whisper_in_the_pool(phone_message, whisper_cache):
    """The real backend through the pool: a message transcribed by a worker process."""
    from callcenter.stt.whisper_stt import load_recognizer
    from callcenter.stt.quality import cer

    async with TranscriptionPool(load_recognizer, (str(whisper_cache),), workers=1) as pool:
        transcript = await pool.transcribe(phone_message, priority=Priority.MESSAGE)
    assert transcript.engine == "whisper"
    assert cer(reference(MESSAGE_CLIP), transcript.text) < 0.5


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc")
async def test_pause_freezes_the_workers_and_resume_lets_the_job_finish(tmp_path):
    """Yielding to the media tick: a paused worker is stopped (state T) mid-job; after
    resume the same job completes; close() while paused does not hang."""
    release = tmp_path / "release"
    async with TranscriptionPool(make_fake, workers=1) as pool:
        assert (await pool.transcribe(_job(tmp_path, "warm", "pid"))).text.isdigit()
        [process] = list(pool._executor._processes.values())
        job = asyncio.ensure_future(pool.transcribe(_job(tmp_path, "held", f"hold:{release}")))
        await _until(lambda: pool.running == 1, "job started")
        pool.pause()
        assert pool.paused
        await _until(lambda: _state(process.pid) == "T", "worker stopped")
        release.write_text("go")
        await asyncio.sleep(0.3)
        assert not job.done()  # frozen: it cannot see the release file
        pool.resume()
        assert (await asyncio.wait_for(job, 60)).text == "held"
        assert pool.pauses == 1 and pool.paused_s > 0.2
        pool.pause()  # closing while paused resumes first
    assert not pool.paused


_KILLED_PARENT = """
import asyncio, os, signal, sys
from callcenter.stt.pool import TranscriptionPool
from tests.integration.stt.test_pool import make_fake

async def main():
    pool = TranscriptionPool(make_fake, workers=1)
    print((await pool.transcribe(sys.argv[1])).text, flush=True)
    pool.pause()
    await asyncio.sleep(0.3)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc")
def test_a_paused_worker_dies_with_a_killed_server(tmp_path):
    """kill -9 of the server while its worker is frozen (SIGSTOP) must not leave the worker
    stopped forever: the kernel's parent-death signal ends it."""
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-c", _KILLED_PARENT, str(_job(tmp_path, "a", "pid"))],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    worker = int(proc.stdout.split()[0])
    for _poll in range(200):
        try:
            state = _state(worker)
        except FileNotFoundError:
            return  # gone
        if state in ("Z", "X"):
            return  # dead, waiting to be reaped by init
        time.sleep(0.05)
    raise AssertionError(f"worker {worker} still in state {_state(worker)} after its parent was killed")

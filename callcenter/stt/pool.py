"""A bounded pool of recognition worker processes behind an asyncio API.

``await pool.transcribe(path, priority=Priority.MESSAGE)`` queues a job; at most
``workers`` jobs run at once, each in its own process with the model loaded once by the
process initializer. Waiting jobs sit in a priority queue in the parent, so a caller's
voice message overtakes call recordings queued before it. Workers run at a lower CPU
priority (nice) so the media tick in the main process keeps its time; the event loop only
awaits futures and is never blocked by recognition.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from callcenter.stt.port import Recognizer, SttError, Transcript

__all__ = ["Priority", "TranscriptionPool", "PoolClosed", "default_workers"]


class Priority(enum.IntEnum):
    """Lower runs first."""

    MESSAGE = 0     # a caller's voice message (留言): someone is waiting for a callback
    RECORDING = 10  # a finished call's recording: for search and quality review


class PoolClosed(SttError):
    """The pool was shut down before this job ran."""


def default_workers() -> int:
    """One worker per two cores, at least one (recognition uses a whole core)."""
    return max(1, (os.cpu_count() or 1) // 2)


# ---------------------------------------------------------------- worker process side
_recognizer: Recognizer | None = None


def _init_worker(factory: Callable[..., Recognizer], args: tuple, nice: int,
                 cpus: frozenset[int] | None = None) -> None:
    global _recognizer
    from callcenter.cpus import settle_worker

    _die_with_parent()
    # Batch recognition: off the media core (callcenter/cpus.py), niced, SCHED_IDLE.
    settle_worker(cpus, nice=nice, idle=True)
    _recognizer = factory(*args)


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the server dies, even while it is paused
    (SIGSTOP) and so cannot notice the closed pipe itself."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl: do not linger
        os._exit(1)


def _run_job(path: str) -> Transcript:
    assert _recognizer is not None, "worker initializer did not run"
    return _recognizer.transcribe(path)


# ---------------------------------------------------------------- parent side
@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    path: str = field(compare=False)
    future: asyncio.Future = field(compare=False)


class TranscriptionPool:
    """``factory(*factory_args)`` builds the recogniser inside each worker; it must be a
    picklable top-level callable such as ``whisper_stt.load_recognizer``. ``cpus``: where
    the workers run (`callcenter.cpus.plan`; None: wherever the kernel puts them)."""

    def __init__(self, factory: Callable[..., Recognizer], factory_args: tuple = (), *,
                 workers: int | None = None, nice: int = 10,
                 cpus: frozenset[int] | None = None, mp_context: Any = None) -> None:
        self.workers = workers if workers is not None else default_workers()
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        # spawn: a forked child would inherit the reactor, sockets and threads of the parent.
        ctx = mp_context or multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=ctx,
            initializer=_init_worker, initargs=(factory, tuple(factory_args), nice, cpus))
        self._queue: asyncio.PriorityQueue[_Job] | None = None
        self._dispatchers: list[asyncio.Task] = []
        self._seq = itertools.count()
        self._closed = False
        self.running = 0
        self.completed = 0
        self._paused_since: float | None = None
        self.paused_s = 0.0
        self.pauses = 0

    # -- yielding to the media tick (see callcenter/stt/yielding.py) ------------------------
    @property
    def paused(self) -> bool:
        return self._paused_since is not None

    def _signal_workers(self, signum: int) -> None:
        for process in list(getattr(self._executor, "_processes", {}).values()):
            try:
                os.kill(process.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def pause(self) -> None:
        """Freeze the worker processes where they are (SIGSTOP): a running job just takes
        longer. Jobs queue as before. Calling it again while paused is harmless."""
        if self._closed:
            return
        self._signal_workers(signal.SIGSTOP)  # again when paused: catches a worker started since
        if self._paused_since is None:
            self._paused_since = time.monotonic()
            self.pauses += 1

    def paused_total_s(self) -> float:
        """Seconds paused so far, the current pause included."""
        since = self._paused_since
        return self.paused_s + (time.monotonic() - since if since is not None else 0.0)

    def resume(self) -> None:
        if self._paused_since is not None:
            self._signal_workers(signal.SIGCONT)
            self.paused_s += time.monotonic() - self._paused_since
            self._paused_since = None

    def stats(self) -> dict:
        """The pool's figures (for GET /api/stt/status)."""
        return {"workers": self.workers, "queued": self.queued, "running": self.running,
                "completed": self.completed, "paused": self.paused, "pauses": self.pauses,
                "paused_s": round(self.paused_total_s(), 1)}

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def _start(self) -> None:
        if self._queue is None:
            self._queue = asyncio.PriorityQueue()
            self._dispatchers = [asyncio.get_running_loop().create_task(self._dispatch())
                                 for _ in range(self.workers)]

    async def transcribe(self, path: str | os.PathLike, *,
                         priority: int = Priority.RECORDING) -> Transcript:
        """Queue ``path`` and wait for its transcript (raises SttError on failure)."""
        if self._closed:
            raise PoolClosed("the transcription pool is shut down")
        self._start()
        assert self._queue is not None
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(int(priority), next(self._seq), os.fspath(Path(path)), future))
        return await future

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            try:
                if job.future.cancelled():
                    continue
                self.running += 1
                try:
                    result = await loop.run_in_executor(self._executor, _run_job, job.path)
                except SttError as exc:
                    _settle(job.future, exc=exc)
                except Exception as exc:  # a crashed worker or a backend bug: fail this job only
                    _settle(job.future, exc=SttError(f"transcribing {job.path} failed: {exc!r}"))
                else:
                    _settle(job.future, result=result)
                finally:
                    self.running -= 1
                    self.completed += 1
            finally:
                self._queue.task_done()

    async def close(self, *, cancel_queued: bool = True) -> None:
        """Stop taking jobs; fail queued ones (or let them finish), wait for running ones,
        then stop the worker processes. Safe to call twice."""
        if self._closed:
            return
        self.resume()
        self._closed = True
        if self._queue is not None:
            if cancel_queued:
                while not self._queue.empty():
                    job = self._queue.get_nowait()
                    _settle(job.future, exc=PoolClosed("the transcription pool shut down first"))
                    self._queue.task_done()
            await self._queue.join()
            for task in self._dispatchers:
                task.cancel()
            await asyncio.gather(*self._dispatchers, return_exceptions=True)
        # Joining worker processes blocks; do it off the loop.
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self._executor.shutdown(wait=True, cancel_futures=True))

    async def __aenter__(self) -> "TranscriptionPool":
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _settle(future: asyncio.Future, *, result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)

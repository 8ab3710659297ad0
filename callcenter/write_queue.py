"""The single database writer for what calls produce: call rows, recording rows, queue events.

Under a flood of short calls every call used to spawn its own tasks that each waited for the
(one-connection, on SQLite) pool; past the pool's timeout the write was lost — calls without
rows, WAV files without recording rows. Here every such write is an operation on a FIFO
queue; one task takes up to `max_batch` of them and runs them in one transaction (one commit
for a hundred rows), in order, so an update always follows its insert. A batch that fails
for a passing reason (database locked, pool timeout, connection lost) is retried with
backoff, never dropped; an operation that fails on its own (bad data) is isolated, logged
and only that one is given up. The backlog is visible (`backlog()`) so call admission can
answer new calls 503 before memory grows; a growing backlog is logged once every 10 s.

`QueuedCallServices` puts the call router's row writes (`CallServices`) through the queue;
`retry_transient()` is the same retry policy for writers outside the queue (transcripts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable

from sqlalchemy import insert, update
from sqlalchemy.exc import DBAPIError, OperationalError

from case_core.adapters import orm

log = logging.getLogger(__name__)

# One write: a plain function of a synchronous SQLAlchemy Connection. A batch runs them all
# on the writer's own thread and blocking engine: one hand-off to and from the event loop per
# batch. (The async engine costs a loop round trip per statement: with hundreds of calls'
# media on the loop, a flood's writes crawled at a few per second and the rows fell behind.)
Operation = Callable[[Any], Any]


def is_transient(exc: BaseException) -> bool:
    """A failure that trying again later can cure: locked database, pool timeout, lost connection."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, OperationalError, ConnectionError, OSError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return type(exc).__name__ in ("TimeoutError", "InterfaceError", "ConnectionDoesNotExistError")


async def retry_transient(make: Callable[[], Awaitable[Any]], *, what: str, attempts: int = 30,
                          sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Any:
    """Await `make()`, again after a backoff (0.05 s doubling to 2 s) while it fails transiently."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return await make()
        except Exception as exc:
            if not is_transient(exc) or attempt == attempts - 1:
                raise
            log.warning("%s: %s; retrying in %.2f s", what, type(exc).__name__, delay)
            await sleep(delay)
            delay = min(2.0, delay * 2)
    raise AssertionError("unreachable")


@dataclass
class _Item:
    op: Operation
    future: asyncio.Future
    label: str


class WriteQueue:
    """One writer task feeding one thread with a blocking SQLAlchemy engine
    (`case_core.adapters.sqlalchemy_repo.make_sync_engine`); see the module docstring."""

    def __init__(self, engine, *, max_batch: int = 200, warn_backlog: int = 1000,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic):
        from concurrent.futures import ThreadPoolExecutor

        self.engine = engine
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")
        self.max_batch = max_batch
        self.warn_backlog = warn_backlog
        self._sleep = sleep
        self._clock = clock
        self._items: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._warned_at = float("-inf")
        # Figures (GET /metrics may read them): written, batches, retries, given up.
        self.written = 0
        self.batches = 0
        self.retries = 0
        self.failed = 0
        self.peak_backlog = 0

    def backlog(self) -> int:
        return len(self._items)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def submit(self, op: Operation, label: str = "write") -> asyncio.Future:
        """Queue one operation (`op(conn)` on a synchronous Connection, inside the batch's
        transaction); the future has its result. Never refused: admission keeps the backlog
        bounded."""
        future = asyncio.get_running_loop().create_future()
        self._items.append(_Item(op, future, label))
        n = len(self._items)
        if n > self.peak_backlog:
            self.peak_backlog = n
        if n >= self.warn_backlog and self._clock() - self._warned_at >= 10.0:
            self._warned_at = self._clock()
            log.warning("database writer behind: %d writes queued (written so far %d, retries %d)",
                        n, self.written, self.retries)
        self._wake.set()
        if self._task is None:
            self.start()
        return future

    async def drain(self) -> None:
        """Wait until everything queued so far is written (or given up)."""
        while self._items or (self._task is not None and self._busy):
            await self._sleep(0.01)

    async def close(self) -> None:
        """Write what is queued, then stop the writer task."""
        await self.drain()
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        self._thread.shutdown(wait=True)

    _busy = False

    async def _run(self) -> None:
        delay = 0.05
        while True:
            if not self._items:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._items.popleft() for _ in range(min(self.max_batch, len(self._items)))]
            self._busy = True
            try:
                ok = await self._write(batch)
            finally:
                self._busy = False
            if ok:
                delay = 0.05
                continue
            # Back to the front, in order; wait and try again.
            self._items.extendleft(reversed(batch))
            self.retries += 1
            await self._sleep(delay)
            delay = min(2.0, delay * 2)

    async def _write(self, batch: list[_Item]) -> bool:
        """True when the batch is done (written, or its bad items given up); False to retry."""
        ops = [item.op for item in batch]
        engine = self.engine

        def run() -> list:
            with engine.begin() as conn:
                return [op(conn) for op in ops]

        try:
            results = await asyncio.get_running_loop().run_in_executor(self._thread, run)
        except Exception as exc:
            if is_transient(exc):
                log.warning("database writer: %d writes wait (%s: %s)", len(batch), type(exc).__name__, exc)
                return False
            if len(batch) == 1:
                item = batch[0]
                self.failed += 1
                log.error("database writer: %s given up (%s)", item.label, exc)
                if not item.future.done():
                    item.future.set_exception(exc)
                return True
            # One bad item spoilt the transaction: write them one by one to find it.
            for item in batch:
                while not await self._write([item]):
                    self.retries += 1
                    await self._sleep(0.2)
            return True
        self.batches += 1
        self.written += len(batch)
        for item, result in zip(batch, results):
            if not item.future.done():
                item.future.set_result(result)
        return True


class QueuedCallServices:
    """The router's `CallServices` with every call and recording row written through the
    queue; case filing and look-ups go straight to the case service."""

    def __init__(self, service, writer: WriteQueue, *, node_id: str | None = None):
        self._service = service
        self.writer = writer
        self.node_id = node_id  # [cluster] node_id, written on call and recording rows

    def __getattr__(self, name: str):
        return getattr(self._service, name)

    async def call_started(self, *, call_id: str, direction: str, did: str | None, caller: str | None,
                           now: datetime) -> None:
        values = dict(call_id=call_id, direction=direction, did=did, caller=caller, started_at=now, ivr_path="",
                      node_id=self.node_id)
        await self.writer.submit(lambda conn: conn.execute(insert(orm.calls).values(**values)), f"call {call_id}")

    async def call_answered(self, call_id: str, now: datetime) -> None:
        stmt = update(orm.calls).where(orm.calls.c.call_id == call_id).values(answered_at=now)
        await self.writer.submit(lambda conn: conn.execute(stmt), f"call {call_id} answered")

    async def call_ended(self, call_id: str, now: datetime, reason: str, ivr_path: str) -> None:
        stmt = (update(orm.calls).where(orm.calls.c.call_id == call_id)
                .values(ended_at=now, end_reason=reason[:64], ivr_path=ivr_path))
        await self.writer.submit(lambda conn: conn.execute(stmt), f"call {call_id} ended")

    async def recording_started(self, *, call_id: str, kind: str, path: str, channels: int, now: datetime) -> int:
        stmt = (insert(orm.recordings)
                .values(call_id=call_id, case_id=None, kind=kind, path=path, channels=channels, duration_s=0.0,
                        created_at=now, node_id=self.node_id)
                .returning(orm.recordings.c.id))
        return await self.writer.submit(lambda conn: conn.execute(stmt).scalar_one(), f"recording of {call_id}")

    async def recording_finished(self, recording_id: int, duration_s: float) -> None:
        stmt = update(orm.recordings).where(orm.recordings.c.id == recording_id).values(duration_s=duration_s)
        await self.writer.submit(lambda conn: conn.execute(stmt), f"recording {recording_id} finished")
        hook = getattr(self._service, "on_recording_finished", None)
        if hook is not None:
            hook(recording_id)

"""The SMS dispatcher: an asyncio task that claims due messages and sends them through a driver.

Safe with several nodes on one PostgreSQL database (claims skip rows another node holds) and
across crashes (a claim expires after `lease_s`; a sent message is never claimed again).
The only window for a duplicate is a crash between the gateway accepting a message and the
`sent` mark being committed; a delivery report arriving later still marks it sent.
Time comes from the `clock` given, or explicitly to `run_once(now)` in tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.notify import outbox
from callcenter.notify.driver import OutgoingSms, SendResult, SmsDriver, mask_number
from callcenter.notify.policy import backoff_delay, in_quiet_hours, rate_limited_until
from callcenter.notify.settings import NotifySettings

__all__ = ["Dispatcher", "DispatchReport", "make_driver"]

log = logging.getLogger(__name__)


def make_driver(settings: NotifySettings) -> SmsDriver:
    if settings.driver == "kannel":
        from callcenter.notify.kannel import KannelDriver

        return KannelDriver(settings)
    if settings.driver == "smpp":
        from callcenter.notify.smpp import SmppDriver

        return SmppDriver(settings)
    from callcenter.notify.log_driver import LogDriver

    return LogDriver()


@dataclass
class DispatchReport:
    """What one pass did (for logs, tests and `hotline sms dispatch --once`)."""

    quiet: bool = False
    requeued: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    suppressed: int = 0

    @property
    def claimed(self) -> int:
        return self.sent + self.retried + self.failed + self.deferred + self.suppressed


class Dispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        driver: SmsDriver,
        settings: NotifySettings,
        *,
        clock: Callable[[], datetime],
        node: str | None = None,
    ) -> None:
        self.engine = engine
        self.driver = driver
        self.settings = settings
        self.clock = clock
        self.node = node or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        # A driver that hears back from the gateway on its own (SMPP delivery receipts) writes
        # them to the same outbox.
        attach = getattr(driver, "attach", None)
        if attach is not None:
            attach(engine, clock)

    # -- one pass ---------------------------------------------------------------------
    async def run_once(self, now: datetime | None = None) -> DispatchReport:
        """Send what is due at `now` (default: the clock), one batch."""
        now = now or self.clock()
        s = self.settings
        report = DispatchReport()
        start, end = s.quiet_hours
        if in_quiet_hours(now, start, end):
            # Night: nothing is claimed, so queued messages simply wait for the morning.
            report.quiet = True
            return report
        async with self.engine.begin() as conn:
            report.requeued = await outbox.requeue_stale(conn, now=now, lease=timedelta(seconds=s.lease_s))
        async with self.engine.begin() as conn:
            claimed = await outbox.claim_due(conn, now=now, node=self.node, limit=s.batch)
        for msg in claimed:
            await self._process(msg, now, report)
        return report

    async def _process(self, msg: outbox.OutboxMessage, now: datetime, report: DispatchReport) -> None:
        s = self.settings
        async with self.engine.begin() as conn:
            if await outbox.is_opted_out(conn, msg.to_number):
                await outbox.mark_suppressed(conn, msg.id, now=now, reason="opted out (退订)", node=self.node)
                report.suppressed += 1
                return
            window = timedelta(seconds=s.rate_limit_window_s)
            recent = await outbox.recent_sends(conn, msg.to_number, since=now - window)
            until = rate_limited_until(recent, now, s.rate_limit_count, window)
            if until is not None:
                await outbox.defer(conn, msg.id, now=now, until=until, node=self.node,
                                   reason=f"rate limit: {s.rate_limit_count} per {s.rate_limit_window_s:g} s")
                report.deferred += 1
                return
        sms = OutgoingSms(msg.id, msg.to_number, msg.text, msg.encoding, msg.parts, msg.dlr_token)
        try:
            result = await asyncio.wait_for(self.driver.send(sms), timeout=s.timeout_s)
        except asyncio.TimeoutError:
            result = SendResult(ok=False, error=f"{self.driver.name}: no answer within {s.timeout_s:g} s")
        except Exception as exc:  # a driver bug must not stop the other messages
            log.exception("sms #%d: driver %s failed", msg.id, self.driver.name)
            result = SendResult(ok=False, error=f"{self.driver.name}: {type(exc).__name__}: {exc}")
        attempts = msg.attempts + 1
        async with self.engine.begin() as conn:
            if result.ok:
                await outbox.mark_sent(conn, msg.id, now=now, gateway_id=result.gateway_id, node=self.node)
                report.sent += 1
            elif result.permanent or attempts >= s.max_attempts:
                await outbox.mark_failed(conn, msg.id, now=now, error=result.error or "failed", node=self.node)
                report.failed += 1
                log.warning("sms #%d to %s failed for good after %d attempt(s): %s",
                            msg.id, mask_number(msg.to_number), attempts, result.error)
            else:
                at = now + backoff_delay(attempts, s.backoff_base_s, s.backoff_max_s)
                await outbox.mark_retry(conn, msg.id, now=now, at=at, error=result.error or "failed", node=self.node)
                report.retried += 1
                log.info("sms #%d: attempt %d failed (%s); next at %s", msg.id, attempts, result.error, at)

    # -- the task ---------------------------------------------------------------------
    def wake(self) -> None:
        """Look for due messages now rather than at the next poll (call after queueing)."""
        self._wake.set()

    async def run(self) -> None:
        connect = getattr(self.driver, "connect", None)
        if connect is not None:
            # Stay connected from the start, so receipts for messages sent before a restart arrive.
            connect()
        while True:
            try:
                report = await self.run_once()
                if report.claimed:
                    log.debug("sms pass: %s", report)
                busy = report.claimed >= self.settings.batch
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly away; try again at the next poll
                log.warning("sms dispatch pass failed", exc_info=True)
                busy = False
            if busy:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def start(self) -> asyncio.Task:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self.run())
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.driver.close()

"""Twisted UDP driver for the sans-I/O SIP user agent: moves datagrams and re-arms one timer.

All protocol decisions live in `callcenter.sip.ua`; this file only feeds it bytes and time,
sends what it wants sent, and hands its events to a listener (the call router).
"""

from __future__ import annotations

import logging
from typing import Callable, Protocol

from twisted.internet.protocol import DatagramProtocol

from callcenter.sip.ua import UserAgent

log = logging.getLogger(__name__)


class SipEventListener(Protocol):
    def sip_event(self, event: object) -> None: ...


class SipEndpoint(DatagramProtocol):
    """One listening SIP socket. Commands mirror the UserAgent's and flush at once."""

    def __init__(self, ua: UserAgent, clock, listener: SipEventListener | None = None):
        self.ua = ua
        self.clock = clock
        self.listener = listener
        self._timer = None
        self._timer_at: float | None = None
        self.datagrams_in = 0
        self.errors = 0
        # Sees every datagram in and out: on_message(data, "in" | "out") (callcenter.metrics).
        self.on_message: Callable[[bytes, str], None] | None = None

    # -- I/O in -------------------------------------------------------------------------
    def datagramReceived(self, data: bytes, addr) -> None:
        self.datagrams_in += 1
        if self.on_message is not None:
            self.on_message(data, "in")
        now = self.clock.seconds()
        try:
            self.ua.receive_datagram(data, (addr[0], addr[1]), now)
        except Exception:  # the UA must never take the process down with it
            self.errors += 1
            log.exception("SIP core failed on a datagram from %s:%s", *addr[:2])
        self._after()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.ua.handle_timer(self.clock.seconds())
        except Exception:
            self.errors += 1
            log.exception("SIP core failed in a timer")
        self._after()

    # -- commands -------------------------------------------------------------------------
    def command(self, name: str, *args, **kwargs):
        """Run a UserAgent command (ringing, answer, reject, hangup…) at the current time."""
        method: Callable = getattr(self.ua, name)
        try:
            result = method(*args, now=self.clock.seconds(), **kwargs)
        except Exception:
            self.errors += 1
            log.exception("SIP command %s failed", name)
            result = None
        self._after()
        return result

    def flush(self) -> None:
        """Send what the UA has queued outside a datagram or a command (e.g. started clients)."""
        self._after()

    # -- I/O out ---------------------------------------------------------------------------
    def _after(self) -> None:
        if self.transport is not None:
            on_message = self.on_message
            for data, addr in self.ua.datagrams_to_send():
                if on_message is not None:
                    on_message(data, "out")
                try:
                    self.transport.write(data, addr)
                except OSError as exc:
                    log.warning("SIP send to %s failed: %s", addr, exc)
        events = self.ua.events()
        for ev in events:
            if self.listener is not None:
                try:
                    self.listener.sip_event(ev)
                except Exception:
                    self.errors += 1
                    log.exception("call router failed on %r", ev)
        if events and self.transport is not None:
            # Listeners may have issued commands; those already flushed themselves.
            pass
        self._rearm()

    def _rearm(self) -> None:
        at = self.ua.get_timer()
        if at == self._timer_at:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self.clock.callLater(max(0.0, at - self.clock.seconds()), self._on_timer)

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

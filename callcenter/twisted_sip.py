"""Twisted UDP driver for the sans-I/O SIP user agent: moves datagrams and re-arms one timer.

All protocol decisions live in `callcenter.sip.ua`; this file only feeds it bytes and time,
sends what it wants sent, and hands its events to a listener (the call router).
"""

from __future__ import annotations

import logging
from typing import Callable, Protocol

from twisted.internet.protocol import DatagramProtocol

from callcenter.sip.defence import Defence, LogTally, SourceBanned
from callcenter.sip.events import DigestFailed, MessageRejected
from callcenter.sip.ua import UserAgent

log = logging.getLogger(__name__)

# How often bans are swept for their end and aggregated bad-input log lines written.
SWEEP_S = 10.0


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
        # The SIP port's defence (callcenter.sip.defence), asked before a datagram is parsed;
        # on_defence(event) hears its bans and unbans (metrics, audit log).
        self.defence: Defence | None = None
        self.on_defence: Callable[[object], None] | None = None
        self.dropped = 0
        # Bad input answered (by status) or dropped ("dropped"), and bans by reason (/metrics).
        self.rejected: dict[str, int] = {}
        self.bans: dict[str, int] = {}
        self._tally = LogTally(period_s=SWEEP_S * 6)
        self._sweep = None

    # -- I/O in -------------------------------------------------------------------------
    def datagramReceived(self, data: bytes, addr) -> None:
        self.datagrams_in += 1
        now = self.clock.seconds()
        defence = self.defence
        if defence is not None and not defence.admit(addr[0], data, now):
            self.dropped += 1
            self._defence_events(now)
            return
        if self.on_message is not None:
            self.on_message(data, "in")
        try:
            self.ua.receive_datagram(data, (addr[0], addr[1]), now)
        except Exception:  # the UA must never take the process down with it
            self.errors += 1
            log.exception("SIP core failed on a datagram from %s:%s", *addr[:2])
        self._after()

    # -- defence and bad input ------------------------------------------------------------
    def _bad_input(self, ev, now: float) -> None:
        ip, port = ev.source[0], ev.source[1]
        if isinstance(ev, DigestFailed):
            line = f"SIP digest failure from {ip}:{port} for {ev.user!r}: {ev.reason}"
            self._log(f"SIP digest failures from {ip}", line, now, logging.INFO)
            if self.defence is not None:
                self.defence.auth_failed(ip, now)
                self._defence_events(now)
            return
        key = str(ev.status or "dropped")
        self.rejected[key] = self.rejected.get(key, 0) + 1
        line = f"SIP message from {ip}:{port} rejected ({key}): {ev.reason}"
        self._log(f"SIP bad input from {ip}", line, now, logging.WARNING)

    def _defence_events(self, now: float) -> None:
        for ev in self.defence.events():
            if isinstance(ev, SourceBanned):
                self.bans[ev.reason] = self.bans.get(ev.reason, 0) + 1
                line = (f"SIP source {ev.source} banned for {ev.until - now:.0f} s "
                        f"({ev.reason}, {ev.count})")
            else:
                line = f"SIP source {ev.source} unbanned ({ev.dropped} datagrams dropped meanwhile)"
            self._log(f"SIP bans of {ev.source}", line, now, logging.WARNING)
            if self.on_defence is not None:
                try:
                    self.on_defence(ev)
                except Exception:
                    log.exception("defence listener failed on %r", ev)

    def _log(self, key: str, line: str, now: float, level: int) -> None:
        """Bad input is logged once per key and period, then as one count (LogTally)."""
        first = self._tally.note(key, line, now)
        if first is not None:
            log.log(level, "%s", first)
        if self._sweep is None:
            self._sweep = self.clock.callLater(SWEEP_S, self._on_sweep)

    def _on_sweep(self) -> None:
        self._sweep = None
        now = self.clock.seconds()
        if self.defence is not None:
            self.defence.handle_timer(now)
            self._defence_events(now)
        for line in self._tally.flush(now):
            log.warning("%s", line)
        busy = self._tally.pending() or (self.defence is not None and self.defence.banned_count())
        if busy and self._sweep is None:
            self._sweep = self.clock.callLater(SWEEP_S, self._on_sweep)

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
            if isinstance(ev, (MessageRejected, DigestFailed)):
                self._bad_input(ev, self.clock.seconds())
                continue
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
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

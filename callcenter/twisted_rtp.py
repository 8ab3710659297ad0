"""Twisted driver for RTP: UDP ports per session and ONE drift-corrected 20 ms tick for all calls.

The tick's n-th firing is scheduled for start + n·20 ms (not "now + 20 ms"), so scheduling
latency never accumulates into rate drift. If the loop stalls, frames due in the stall are sent
in a burst (up to `max_catch_up`) and the rest are skipped and counted, so a stall costs a
short gap instead of a growing delay.
"""

from __future__ import annotations

import logging
from typing import Callable

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol

from callcenter.media.session import MediaSession

log = logging.getLogger(__name__)

FRAME_S = 0.02


class PortsExhausted(RuntimeError):
    pass


class _RtpProtocol(DatagramProtocol):
    def __init__(self, leg: "RtpLeg"):
        self.leg = leg

    def datagramReceived(self, data: bytes, addr) -> None:
        leg = self.leg
        try:
            events = leg.session.receive(data, (addr[0], addr[1]), leg.engine.clock.seconds())
        except Exception:  # a hostile packet must not end the call or the process
            log.exception("RTP receive failed on port %s", leg.port)
            return
        if events:
            leg.deliver(events)


class RtpLeg:
    """One media session bound to one local UDP port."""

    def __init__(self, engine: "RtpEngine", session: MediaSession, port: int, listener):
        self.engine = engine
        self.session = session
        self.port = port
        self.listener = listener  # callable(list[events])
        self.protocol = _RtpProtocol(self)
        self.udp = None
        self.sent = 0

    def deliver(self, events) -> None:
        try:
            self.listener(events)
        except Exception:
            log.exception("media listener failed on port %s", self.port)

    def close(self) -> None:
        self.engine.release(self)


class RtpEngine:
    def __init__(self, clock, *, host: str, port_min: int, port_max: int, max_catch_up: int = 5):
        self.clock = clock
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self.max_catch_up = max_catch_up
        self.legs: dict[int, RtpLeg] = {}
        self._next_port = port_min
        self._t0: float | None = None
        self._n = 0
        self._call = None
        self.frames_skipped = 0
        self.ticks = 0
        self.on_tick: list[Callable[[float], None]] = []

    # -- ports ------------------------------------------------------------------------------
    def open(self, session: MediaSession, listener) -> RtpLeg:
        """Bind the next free port of the range for a new session.

        Every port is used, odd ones too: we send no RTCP, so pairing would halve capacity.
        """
        span = self.port_max - self.port_min + 1
        for _ in range(span):
            port = self._next_port
            self._next_port = port + 1 if port < self.port_max else self.port_min
            if port in self.legs:
                continue
            leg = RtpLeg(self, session, port, listener)
            try:
                leg.udp = self.clock.listenUDP(port, leg.protocol, interface=self.host)
            except CannotListenError:
                continue
            self.legs[port] = leg
            self._ensure_ticking()
            return leg
        raise PortsExhausted(f"no free RTP port in {self.port_min}-{self.port_max}")

    def release(self, leg: RtpLeg) -> None:
        if self.legs.pop(leg.port, None) is not None and leg.udp is not None:
            leg.udp.stopListening()

    # -- the tick ------------------------------------------------------------------------------
    def _ensure_ticking(self) -> None:
        if self._call is None:
            self._t0 = self.clock.seconds()
            self._n = 0
            self._call = self.clock.callLater(0, self._fire)

    def _fire(self) -> None:
        self._call = None
        now = self.clock.seconds()
        due = int((now - self._t0) / FRAME_S) + 1 - self._n
        if due > self.max_catch_up:
            self.frames_skipped += due - self.max_catch_up
            self._n += due - self.max_catch_up
            due = self.max_catch_up
        for _ in range(max(due, 1)):
            self._tick_all(now)
            self._n += 1
        if not self.legs and not self.on_tick:
            return
        next_at = self._t0 + self._n * FRAME_S
        self._call = self.clock.callLater(max(0.0, next_at - self.clock.seconds()), self._fire)

    def _tick_all(self, now: float) -> None:
        self.ticks += 1
        for leg in list(self.legs.values()):
            try:
                datagram, events = leg.session.tick(now)
            except Exception:
                log.exception("media tick failed on port %s", leg.port)
                continue
            if datagram is not None and leg.udp is not None:
                remote = leg.session.remote
                try:
                    leg.udp.write(datagram, remote)
                    leg.sent += 1
                except OSError:
                    pass
            if events:
                leg.deliver(events)
        for fn in self.on_tick:
            fn(now)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        for leg in list(self.legs.values()):
            self.release(leg)

"""Twisted driver for RTP: UDP ports per session and ONE drift-corrected 20 ms tick for all calls.

The tick's n-th firing is scheduled for start + n·20 ms (not "now + 20 ms"), so scheduling
latency never accumulates into rate drift. If the loop stalls, frames due in the stall are sent
in a burst (up to `max_catch_up`) and the rest are skipped and counted, so a stall costs a
short gap instead of a growing delay.

The sockets are bound through the reactor (`listenUDP`) but not watched by it: with hundreds
of calls, one reactor callback per received packet (event-loop handle, Twisted's `doRead` and
its logging context, a second `recvfrom` that fails) cost more than the media work itself.
Instead a *read pass* half a frame after each send tick asks one `epoll` set over the RTP
sockets which have packets (one syscall) and reads each ready socket once per round. Sending
stays alone at the tick's instant, so its timing does not depend on how much arrived, and the
loop serves SIP and the web between the two passes. Within a tick all frames are sent before
any of the events they cause are handled (recording, prompt ends), so a leg's send time does
not depend on how long the other legs' event work takes. A packet waits on average 10 ms for the
read pass and 10 ms more for the next send when it is bridged (before: 10 ms in total). If the
loop is so late that a read pass is still pending when the next tick fires, that tick reads
first, then sends. Frames go out with the socket's own `sendto` (Twisted's `Port.write`
re-validates the address three times per packet). A port without a real socket (test fakes)
keeps the reactor's reading and `write`.

With the C helper (`callcenter.rtpio`, built by the set-up) both passes make one Python call
for all legs: a tick builds every leg's frame, then hands all of them to one `send_many`; a
read round is one `recv_ready` (epoll and a `recvfrom` per ready socket in C). The syscalls
are the same; the Python call, argument parsing and address objects per packet go. Without
it (not built, not Linux, `HOTLINE_RTPIO=pure`) the loops below do the same per packet.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from typing import Callable

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol

from callcenter import rtpio
from callcenter.media.session import MediaSession

log = logging.getLogger(__name__)

FRAME_S = 0.02
# The read pass runs this long after each send tick (half a frame: furthest from both sends).
READ_OFFSET_S = FRAME_S / 2
# Per socket and tick: enough for a burst after a stall, bounded so a flooding peer cannot
# hold the tick (the rest waits in the kernel buffer, which drops the excess).
MAX_READS_PER_TICK = 16
_RECV_BYTES = 4096
_MAX_EVENTS = 4096
_said_which_path = False


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
        # Set when the engine releases the leg (a listener may close legs during a tick).
        self.closed = False
        # Set when the engine polls this leg's socket itself (a real UDP port).
        self._recvfrom = None
        self._sendto = None
        self._fd: int | None = None
        # Sent and read through the batch helper (rtpio).
        self._batched = False

    def deliver(self, events) -> None:
        try:
            self.listener(events)
        except Exception:
            log.exception("media listener failed on port %s", self.port)

    def close(self) -> None:
        self.engine.release(self)


class RtpEngine:
    def __init__(self, clock, *, host: str, port_min: int, port_max: int, max_catch_up: int = 5,
                 batch_io: bool | None = None):
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
        # Seconds spent in the send ticks and read passes (what `busy_share` is made of).
        self.busy_s = 0.0
        self.on_tick: list[Callable[[float], None]] = []
        # Called once per firing after its frames are sent (the GC pacer); unlike on_tick it
        # does not keep the tick running when no call is up.
        self.after_tick: Callable[[float], None] | None = None
        # Called once per firing with how late it fired after its due time (callcenter.metrics).
        self.on_lag: Callable[[float], None] | None = None
        # Sockets the tick reads itself, by file descriptor, and one epoll set over them
        # (Linux), so a tick asks the kernel once which sockets have packets.
        self._polled: dict[int, RtpLeg] = {}
        self._epoll = None
        self._read_call = None
        # The C batch helper (None: each packet through the socket's own methods).
        if batch_io is None:
            batch_io = rtpio.helper is not None
        elif batch_io and rtpio.helper is None:
            raise RuntimeError(f"the RTP batch I/O helper is not built: {rtpio.WHY_NOT}")
        self._io = rtpio.helper if batch_io else None
        global _said_which_path
        if not _said_which_path:
            _said_which_path = True
            if self._io is not None:
                log.info("RTP: batch I/O through the C helper (callcenter/_rtpio.c)")
            else:
                log.info("RTP: pure Python socket I/O (batch helper: %s)", rtpio.WHY_NOT or "not asked for")

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
            self._take_over_socket(leg)
            self.legs[port] = leg
            self._ensure_ticking()
            return leg
        raise PortsExhausted(f"no free RTP port in {self.port_min}-{self.port_max}")

    def _take_over_socket(self, leg: RtpLeg) -> None:
        """Poll the port's socket from the tick instead of one reactor callback per packet."""
        sock = getattr(leg.udp, "socket", None)
        if not isinstance(sock, socket.socket) or not hasattr(leg.udp, "stopReading"):
            return
        leg.udp.stopReading()
        leg._recvfrom = sock.recvfrom
        leg._sendto = sock.sendto
        fd = sock.fileno()
        if self._epoll is None and hasattr(select, "epoll"):
            self._epoll = select.epoll()
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)
        leg._fd = fd
        # The helper sends to IPv4 addresses; other legs keep their socket's own sendto.
        leg._batched = self._io is not None and self._epoll is not None and sock.family == socket.AF_INET
        self._polled[fd] = leg

    def release(self, leg: RtpLeg) -> None:
        if self.legs.pop(leg.port, None) is None:
            return
        leg.closed = True
        if leg._fd is not None:
            if self._polled.get(leg._fd) is leg:
                del self._polled[leg._fd]
                if self._epoll is not None:
                    try:
                        self._epoll.unregister(leg._fd)
                    except OSError:
                        pass
            if self._io is not None:
                self._io.forget(leg._fd)
            leg._fd = None
            leg._batched = False
        if leg.udp is not None:
            leg.udp.stopListening()

    # -- the tick ------------------------------------------------------------------------------
    def _ensure_ticking(self) -> None:
        if self._call is None:
            self._t0 = self.clock.seconds()
            self._n = 0
            self._call = self.clock.callLater(0, self._fire)

    def _fire(self) -> None:
        started = time.perf_counter()
        try:
            self._fire_timed()
        finally:
            self.busy_s += time.perf_counter() - started

    def _fire_timed(self) -> None:
        self._call = None
        now = self.clock.seconds()
        if self._read_call is not None:
            # The loop was too late to read between the ticks: read first, then send.
            if self._read_call.active():
                self._read_call.cancel()
            self._read_call = None
            self._read_all(now)
        if self.on_lag is not None:
            self.on_lag(max(0.0, now - (self._t0 + self._n * FRAME_S)))
        due = int((now - self._t0) / FRAME_S) + 1 - self._n
        if due > self.max_catch_up:
            self.frames_skipped += due - self.max_catch_up
            self._n += due - self.max_catch_up
            due = self.max_catch_up
        for _ in range(max(due, 1)):
            self._tick_all(now)
            self._n += 1
        if self.after_tick is not None:
            try:
                self.after_tick(now)
            except Exception:
                log.exception("after-tick hook failed")
        if not self.legs and not self.on_tick:
            return
        next_at = self._t0 + self._n * FRAME_S
        after = self.clock.seconds()
        if self._polled:
            read_at = next_at - FRAME_S + READ_OFFSET_S
            self._read_call = self.clock.callLater(max(0.0, read_at - after), self._fire_read)
        self._call = self.clock.callLater(max(0.0, next_at - after), self._fire)

    def _fire_read(self) -> None:
        started = time.perf_counter()
        self._read_call = None
        if self._polled:
            self._read_all(self.clock.seconds())
        self.busy_s += time.perf_counter() - started

    def _tick_all(self, now: float) -> None:
        """Send every leg's frame first, then hand out the events the frames caused.

        The events (the sent audio for the recorder, a prompt that finished, a digit) cost
        more than building and sending a frame; done between the sends they would push each
        later leg's send back by all the earlier legs' event work, so any slowdown of that
        work (a busy cache, a longer recording flush) would show as jitter on the later
        calls. Sent first, the n-th leg's frame leaves after n frame builds only.
        """
        self.ticks += 1
        legs = list(self.legs.values())
        caused: list[tuple[RtpLeg, list]] = []
        # The batch helper's share: all frames built first, then one call sends them.
        fds: list[int] = []
        datagrams: list[bytes] = []
        remotes: list = []
        batched: list[RtpLeg] = []
        for leg in legs:
            if leg.closed:
                continue  # closed by a listener during this tick
            try:
                datagram, events = leg.session.tick(now)
            except Exception:
                log.exception("media tick failed on port %s", leg.port)
                continue
            if datagram is not None and leg._batched:
                fds.append(leg._fd)
                datagrams.append(datagram)
                remotes.append(leg.session.remote)
                batched.append(leg)
                leg.sent += 1  # taken back below if it was not sent
            elif datagram is not None:
                remote = leg.session.remote
                sendto = leg._sendto
                try:
                    if sendto is not None:
                        sendto(datagram, remote)
                    elif leg.udp is not None:
                        leg.udp.write(datagram, remote)
                    else:
                        remote = None
                    if remote is not None:
                        leg.sent += 1
                except OSError:  # full socket buffer, unreachable peer: the frame is lost
                    pass
            if events:
                caused.append((leg, events))
        if fds:
            self._send_batch(fds, datagrams, remotes, batched)
        for leg, events in caused:
            if not leg.closed:  # not closed by an earlier listener meanwhile
                leg.deliver(events)
        for fn in self.on_tick:
            fn(now)

    def _send_batch(self, fds: list, datagrams: list, remotes: list, legs: list) -> None:
        for i, err in self._io.send_many(fds, datagrams, remotes):
            leg = legs[i]
            if err == 0:  # not an IPv4 literal: the socket's own sendto resolves it
                try:
                    leg._sendto(datagrams[i], remotes[i])
                    continue
                except OSError:
                    pass
            leg.sent -= 1  # full socket buffer, unreachable peer: the frame is lost

    def _read_batched(self, now: float) -> None:
        """The read pass through the helper: each round is one C call for all ready sockets."""
        recv = self._io.recv_ready
        epfd = self._epoll.fileno()
        polled = self._polled
        for _ in range(MAX_READS_PER_TICK):
            ready = recv(epfd, _MAX_EVENTS)
            if not ready:
                return
            # The legs as they were when the round was read: a listener may close a leg and
            # a new one may get its descriptor number before the round is handed out.
            get = dict(polled).get
            for fd, data, addr in ready:
                leg = get(fd)
                if leg is None or leg.closed:
                    continue
                try:
                    events = leg.session.receive(data, addr, now)
                except Exception:  # a hostile packet must not end the call or the process
                    log.exception("RTP receive failed on port %s", leg.port)
                    continue
                if events:
                    leg.deliver(events)

    def _read_all(self, now: float) -> None:
        """Hand every packet waiting on a polled socket to its session.

        Each round asks epoll which sockets have packets and reads one packet from each; a
        socket with more (a burst, 10 ms packets) is still ready in the next round. The
        rounds are bounded, so a flooding peer cannot hold the tick: the rest waits in the
        kernel buffer, which drops the excess.
        """
        polled = self._polled
        if self._io is not None and self._epoll is not None:
            self._read_batched(now)
            return
        if self._epoll is None:  # no epoll: try every socket until it is empty
            for fd, leg in list(polled.items()):
                for _ in range(MAX_READS_PER_TICK):
                    if polled.get(fd) is not leg or not self._read_one(leg, now):
                        break
            return
        poll = self._epoll.poll
        get = polled.get
        for _ in range(MAX_READS_PER_TICK):
            ready = poll(0)
            if not ready:
                return
            # _read_one, inlined: this runs once per received packet of every call.
            for fd, _events in ready:
                leg = get(fd)  # None: closed by a listener during this tick
                if leg is None:
                    continue
                try:
                    data, addr = leg._recvfrom(_RECV_BYTES)
                except OSError:  # BlockingIOError: empty; ECONNREFUSED etc.: now cleared
                    continue
                try:
                    events = leg.session.receive(data, addr, now)
                except Exception:  # a hostile packet must not end the call or the process
                    log.exception("RTP receive failed on port %s", leg.port)
                    continue
                if events:
                    leg.deliver(events)

    @staticmethod
    def _read_one(leg: RtpLeg, now: float) -> bool:
        try:
            data, addr = leg._recvfrom(_RECV_BYTES)
        except OSError:  # BlockingIOError: empty; ECONNREFUSED etc.: an error, now cleared
            return False
        try:
            events = leg.session.receive(data, addr, now)
        except Exception:  # a hostile packet must not end the call or the process
            log.exception("RTP receive failed on port %s", leg.port)
            return True
        if events:
            leg.deliver(events)
        return True

    def stop(self) -> None:
        for call in (self._call, self._read_call):
            if call is not None and call.active():
                call.cancel()
        self._call = None
        self._read_call = None
        for leg in list(self.legs.values()):
            self.release(leg)
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None

"""The RTP driver with real loopback sockets: the engine reads them itself (not the reactor).

The engine binds its ports through the reactor but reads the sockets in a read pass half a
frame after each send tick, and sends with the sockets' own sendto. These tests move time with a manual clock (no reactor runs, nothing is timed) and
exchange real datagrams with a plain socket standing in for the phone.
"""

from __future__ import annotations

import socket

import pytest
from twisted.internet.task import Clock

from callcenter.media import g711
from callcenter.media.events import AudioReceived, RemoteLatched
from callcenter.media.rtp import HEADER, parse_rtp
from callcenter.media.session import MediaSession
from callcenter.twisted_rtp import MAX_READS_PER_TICK, READ_OFFSET_S, RtpEngine

from tests.e2e.peers.ports import free_udp_port_block


class SocketClock(Clock):
    """A manual clock whose listenUDP binds real sockets through the global reactor."""

    def __init__(self):
        super().__init__()
        from twisted.internet import reactor

        self.reactor = reactor
        self.ports = []

    def listenUDP(self, port, protocol, interface=""):
        p = self.reactor.listenUDP(port, protocol, interface=interface)
        self.ports.append(p)
        return p


@pytest.fixture
def phone():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    yield s
    s.close()


@pytest.fixture
def engine():
    clock = SocketClock()
    lo = free_udp_port_block(8)
    eng = RtpEngine(clock, host="127.0.0.1", port_min=lo, port_max=lo + 7)
    yield clock, eng
    eng.stop()
    # stopListening leaves closing the socket to the reactor's next turn; no reactor runs here.
    for p in clock.ports:
        sock = getattr(p, "socket", None)
        if sock is not None:
            sock.close()


def _session(remote, i=0):
    return MediaSession(codec="PCMU", payload_type=0, dtmf_payload_type=101, remote=remote,
                        ssrc=4242 + i, initial_sequence=100, initial_timestamp=0)


def _packet(seq: int, ssrc: int = 777) -> bytes:
    return HEADER.pack(0x80, 0, seq, seq * 160, ssrc) + g711.ulaw_encode(bytes(320))


def _settle():
    """Loopback delivery is synchronous on Linux; this only keeps the tests honest elsewhere."""
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()


def test_packets_are_read_between_ticks_and_frames_sent_from_the_bound_port(engine, phone):
    """A burst the phone sends is delivered, in order, by the read pass after the next tick;
    each tick sends one frame from the leg's own port, and sending follows the phone's
    address once the session latched onto it."""
    clock, eng = engine
    got = []
    leg = eng.open(_session(("127.0.0.1", 9)), got.extend)
    for seq in range(10, 15):
        phone.sendto(_packet(seq), ("127.0.0.1", leg.port))
    _settle()
    clock.advance(0)  # first tick: a frame to the SDP address, nothing read yet
    assert not any(isinstance(e, AudioReceived) for e in got)
    clock.advance(READ_OFFSET_S)  # the read pass
    audio = [e.sequence for e in got if isinstance(e, AudioReceived)]
    assert audio == [10, 11, 12, 13, 14]
    assert [e for e in got if isinstance(e, RemoteLatched)] == [RemoteLatched(phone.getsockname())]
    clock.advance(0.02 - READ_OFFSET_S)
    for _ in range(3):
        clock.advance(0.02)
    frames = [phone.recvfrom(2048) for _ in range(4)]
    assert all(addr == ("127.0.0.1", leg.port) for _, addr in frames)
    seqs = [parse_rtp(d).sequence for d, _ in frames]
    assert seqs == [101, 102, 103, 104]  # 100 went to the SDP address before latching
    assert leg.sent == 5


def test_a_flood_is_read_in_bounded_rounds_per_pass_and_nothing_is_lost(engine, phone):
    """More packets than one read pass takes wait in the kernel buffer for the next passes."""
    clock, eng = engine
    got = []
    leg = eng.open(_session(("127.0.0.1", 9)), got.extend)
    n = 3 * MAX_READS_PER_TICK + 5
    for seq in range(n):
        phone.sendto(_packet(seq), ("127.0.0.1", leg.port))
    _settle()
    per_tick = []
    clock.advance(READ_OFFSET_S)
    for _ in range(5):
        per_tick.append(sum(isinstance(e, AudioReceived) for e in got))
        got.clear()
        clock.advance(0.02)
    assert per_tick[:4] == [MAX_READS_PER_TICK] * 3 + [5]
    assert leg.session.packets_received == n


def test_a_listener_closing_legs_mid_read_leaves_the_others_served(engine, phone):
    """A leg closed by a listener during a read pass (a hang-up on a digit, say) is not
    read or ticked again; the other legs still get their packets and send their frames."""
    clock, eng = engine
    received = {0: 0, 1: 0, 2: 0}
    legs = []

    def listener(i):
        def on_events(events):
            for ev in events:
                if isinstance(ev, AudioReceived):
                    received[i] += 1
                    if i == 0:
                        legs[1].close()
                        legs[0].close()
        return on_events

    for i in range(3):
        legs.append(eng.open(_session(("127.0.0.1", 9), i), listener(i)))
    for seq in range(3):
        for leg in legs:
            phone.sendto(_packet(seq, ssrc=900 + leg.port), ("127.0.0.1", leg.port))
    _settle()
    clock.advance(READ_OFFSET_S)  # tick 0 sends, then the read pass
    clock.advance(0.02)  # tick 1 sends, then the next read pass
    assert received[0] == 1
    assert received[2] == 3
    assert set(eng.legs) == {legs[2].port}
    assert legs[2].sent == 2 and legs[0].sent == 1  # leg 0 sent tick 0 before it closed


def test_a_listener_closing_a_leg_mid_tick_stops_its_events_and_frames(engine, phone):
    """Events of a leg closed by an earlier leg's listener in the same tick are not handed
    out, and the closed leg is not ticked again; the others go on."""
    clock, eng = engine
    heard = {0: 0, 1: 0, 2: 0}
    legs = []

    def listener(i):
        def on_events(events):
            heard[i] += len(events)
            if i == 0 and not legs[1].closed:
                legs[1].close()
        return on_events

    for i in range(3):
        s = MediaSession(codec="PCMU", payload_type=0, dtmf_payload_type=101, remote=phone.getsockname(),
                         ssrc=50 + i, initial_sequence=0, initial_timestamp=0, record_sent=True)
        legs.append(eng.open(s, listener(i)))
    clock.advance(0)  # tick 0: three frames sent, then leg 0's listener closes leg 1
    clock.advance(0.02)  # tick 1: legs 0 and 2 only
    assert legs[1].closed and set(eng.legs) == {legs[0].port, legs[2].port}
    assert heard == {0: 2, 1: 0, 2: 2}
    assert (legs[0].sent, legs[1].sent, legs[2].sent) == (2, 1, 2)

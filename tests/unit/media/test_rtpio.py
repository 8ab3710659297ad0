"""The RTP engine's C batch I/O helper (callcenter/_rtpio.c) against the pure socket path.

The helper is built by the project's set-up (.ci/setup-venv.sh); these tests import it
directly, so a set-up that failed to build it fails here instead of silently testing the
fallback. Everything runs over real loopback sockets with a manual clock: the same calls
are run once through the helper and once through the engine's pure Python loops, and the
datagrams the phone receives and the events the sessions report must be identical.
"""

from __future__ import annotations

import errno
import select
import socket

import pytest
from twisted.internet.task import Clock

from callcenter import _rtpio  # noqa: F401  (built by the set-up: no fallback here)
from callcenter import rtpio
from callcenter.media import g711
from callcenter.media.rtp import HEADER
from callcenter.media.session import MediaSession
from callcenter.twisted_rtp import READ_OFFSET_S, RtpEngine
from tests.e2e.peers.ports import free_udp_port_block


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


@pytest.fixture
def socks():
    made = []

    def make(n):
        for _ in range(n):
            made.append(_udp())
        return made[-n:]

    yield make
    for s in made:
        s.close()


def test_the_module_in_use_is_the_c_helper():
    """The engine picks the built helper by default (HOTLINE_RTPIO unset in the suite)."""
    assert rtpio.helper is _rtpio and rtpio.WHY_NOT is None


def test_send_many_sends_each_datagram_from_its_socket_to_its_remote(socks):
    """Every datagram arrives byte for byte, from its own socket's port, at its own remote."""
    senders = socks(3)
    phone_a, phone_b = socks(2)
    remotes = [phone_a.getsockname(), phone_b.getsockname(), phone_a.getsockname()]
    datagrams = [bytes([i]) * (12 + 160 * i) for i in range(1, 4)]
    failed = _rtpio.send_many([s.fileno() for s in senders], datagrams, remotes)
    assert failed == []
    got_a = sorted(phone_a.recvfrom(4096) for _ in range(2))
    got_b = phone_b.recvfrom(4096)
    assert got_a == sorted([(datagrams[0], senders[0].getsockname()), (datagrams[2], senders[2].getsockname())])
    assert got_b == (datagrams[1], senders[1].getsockname())


def test_send_many_reports_what_it_could_not_send(socks):
    """A remote that is no IPv4 literal is handed back (errno 0); an OS error is reported
    with its errno, as socket.sendto raises it; the rest is still tried."""
    sender, phone = socks(2)
    fd = sender.fileno()
    too_big = bytes(70000)
    with pytest.raises(OSError) as pure:
        sender.sendto(too_big, phone.getsockname())
    failed = _rtpio.send_many([fd, fd, fd, fd], [b"one", b"two", too_big, b"four"],
                              [phone.getsockname(), ("localhost", phone.getsockname()[1]),
                               phone.getsockname(), ("::1", 5)])
    assert failed == [(1, 0), (2, pure.value.errno), (3, 0)]
    assert pure.value.errno == errno.EMSGSIZE
    assert phone.recv(100) == b"one"
    with pytest.raises(BlockingIOError):
        phone.recv(100)
    with pytest.raises(ValueError):
        _rtpio.send_many([fd], [], [])


def test_a_new_remote_tuple_is_followed_at_once(socks):
    """The parsed address is remembered per descriptor by tuple identity: a new tuple (a
    session that latched onto another source) is parsed again before the next send."""
    sender, a, b = socks(3)
    fd = sender.fileno()
    for phone in (a, b, a):
        assert _rtpio.send_many([fd], [b"x"], [phone.getsockname()]) == []
        assert phone.recv(10) == b"x"


def test_recv_ready_reads_one_packet_per_ready_socket_as_recvfrom_gives_it(socks):
    """One round reads one datagram from each ready socket (data and source address as
    socket.recvfrom returns them); the rest wait for the next round; idle ones are not listed."""
    legs = socks(3)
    phone = _udp()
    ep = select.epoll()
    try:
        for s in legs:
            ep.register(s.fileno(), select.EPOLLIN)
        assert _rtpio.recv_ready(ep.fileno(), 64) == []
        phone.sendto(b"first", legs[0].getsockname())
        phone.sendto(b"second", legs[0].getsockname())
        phone.sendto(b"other", legs[2].getsockname())
        rounds = [_rtpio.recv_ready(ep.fileno(), 64) for _ in range(3)]
        src = phone.getsockname()
        assert sorted(rounds[0]) == sorted([(legs[0].fileno(), b"first", src), (legs[2].fileno(), b"other", src)])
        assert rounds[1] == [(legs[0].fileno(), b"second", src)]
        assert rounds[2] == []
        # The same bytes and address through the socket module, for comparison.
        phone.sendto(b"again", legs[1].getsockname())
        assert _rtpio.recv_ready(ep.fileno(), 64)[0][1:] == (b"again", src)
        phone.sendto(b"again", legs[1].getsockname())
        assert legs[1].recvfrom(4096) == (b"again", src)
    finally:
        ep.close()
        phone.close()


# -- the engine with and without the helper: bit-exact ----------------------------------------


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


def _run_calls(batch_io: bool, ticks: int = 40, n: int = 4):
    """n legs playing a prompt to one phone that sends speech (and a DTMF digit, a stray
    source and a malformed packet); what the phone received and the events, in order."""
    clock = SocketClock()
    lo = free_udp_port_block(n + 2)
    engine = RtpEngine(clock, host="127.0.0.1", port_min=lo, port_max=lo + n + 1, batch_io=batch_io)
    phone = _udp()
    stray = _udp()
    events: list = []
    prompt = bytes((i * 37) & 0xFF for i in range(320 * 30))
    try:
        legs = []
        for i in range(n):
            s = MediaSession(codec="PCMA" if i % 2 else "PCMU", payload_type=8 if i % 2 else 0,
                             dtmf_payload_type=101, remote=phone.getsockname(), ssrc=7000 + i,
                             initial_sequence=10 * i, initial_timestamp=1000 * i, record_sent=True)
            s.play(prompt, f"p{i}")
            legs.append(engine.open(s, lambda evs, i=i: events.extend((i, e) for e in evs)))
        for t in range(ticks):
            for k, leg in enumerate(legs):
                pcm = bytes(((t * 7 + k + j) & 0x7F for j in range(320)))
                phone.sendto(HEADER.pack(0x80, 0, 500 + t, 160 * t, 99 + k) + g711.ulaw_encode(pcm),
                             ("127.0.0.1", leg.port))
            if t == 5:
                stray.sendto(HEADER.pack(0x80, 0, 1, 0, 5) + bytes(160), ("127.0.0.1", legs[0].port))
                phone.sendto(b"\x80", ("127.0.0.1", legs[1].port))
            if t == 9:
                legs[2].session.send_dtmf("5")
            clock.advance(READ_OFFSET_S if t == 0 else 0.02)
        received = []
        while True:
            try:
                received.append(phone.recvfrom(4096))
            except BlockingIOError:
                break
        stats = [leg.session.stats() for leg in legs]
        sent = [leg.sent for leg in legs]
        return received, events, stats, sent
    finally:
        engine.stop()
        for p in clock.ports:
            sock = getattr(p, "socket", None)
            if sock is not None:
                sock.close()
        phone.close()
        stray.close()


def test_the_engine_sends_and_receives_the_same_with_and_without_the_helper():
    """Four legs (PCMU and PCMA, a prompt, the caller's speech, a DTMF digit, a stray source
    and a malformed packet) over 40 ticks: the datagrams the phone gets (bytes and source
    port, per leg in order), the sessions' events and their counters are identical."""
    fast = _run_calls(batch_io=True)
    pure = _run_calls(batch_io=False)

    def per_port(received):
        out: dict = {}
        for data, addr in received:
            out.setdefault(addr[1] - min(a[1] for _, a in received), []).append(data)
        return out

    assert len(fast[0]) == len(pure[0]) == 4 * 40
    assert per_port(fast[0]) == per_port(pure[0])
    assert fast[1] == pure[1]
    assert fast[2] == pure[2]
    assert fast[3] == pure[3] == [40] * 4
    audio = [e for _, e in fast[1] if type(e).__name__ == "AudioReceived"]
    assert len(audio) == 4 * 40


def test_asking_for_the_helper_uses_it():
    """batch_io=True takes the C path (legs flagged), batch_io=False the pure one."""
    clock = SocketClock()
    lo = free_udp_port_block(2)
    for want in (True, False):
        engine = RtpEngine(clock, host="127.0.0.1", port_min=lo, port_max=lo + 1, batch_io=want)
        s = MediaSession(codec="PCMU", payload_type=0, dtmf_payload_type=None, remote=("127.0.0.1", 9),
                         ssrc=1, initial_sequence=0, initial_timestamp=0)
        leg = engine.open(s, lambda evs: None)
        assert leg._batched is want
        engine.stop()
    for p in clock.ports:
        p.socket.close()

"""The RTP driver: one drift-corrected 20 ms tick for all sessions, ports from the range."""

from __future__ import annotations

import pytest

from callcenter.media.rtp import parse_rtp
from callcenter.media.session import MediaSession
from callcenter.twisted_rtp import PortsExhausted, RtpEngine
from tests.fakes import FakeReactor


def _session(i: int = 0) -> MediaSession:
    return MediaSession(
        codec="PCMU", payload_type=0, dtmf_payload_type=101, remote=("127.0.0.1", 40000 + i),
        ssrc=1000 + i, initial_sequence=0, initial_timestamp=0,
    )


def test_fifty_packets_per_second_per_session_without_drift():
    """Over 10 simulated seconds with jittery wake-ups, each session sends exactly 500 packets."""
    clock = FakeReactor()
    engine = RtpEngine(clock, host="127.0.0.1", port_min=30000, port_max=30009)
    legs = [engine.open(_session(i), lambda evs: None) for i in range(3)]
    clock.run_for(10.0, step=0.007)  # wake-ups never line up with the 20 ms grid
    for leg in legs:
        port = clock.ports[leg.port]
        assert len(port.written) in (500, 501)
        stamps = [parse_rtp(d).timestamp for _, d, _ in port.written]
        assert all(b - a == 160 for a, b in zip(stamps, stamps[1:]))
    assert engine.frames_skipped == 0


def test_a_stall_is_caught_up_in_a_bounded_burst_and_counted():
    """A 500 ms loop stall sends at most max_catch_up frames at once and counts the rest as skipped."""
    clock = FakeReactor()
    engine = RtpEngine(clock, host="127.0.0.1", port_min=30000, port_max=30001, max_catch_up=5)
    leg = engine.open(_session(), lambda evs: None)
    clock.run_for(0.1)
    before = len(clock.ports[leg.port].written)
    clock.advance(0.5)
    burst = len(clock.ports[leg.port].written) - before
    assert burst <= 5
    assert engine.frames_skipped >= 20


def test_ports_skip_busy_ones_and_run_out_cleanly():
    """Busy ports are skipped; when the range is full, PortsExhausted is raised."""
    clock = FakeReactor(busy={30000})
    engine = RtpEngine(clock, host="127.0.0.1", port_min=30000, port_max=30003)
    a = engine.open(_session(1), lambda evs: None)
    b = engine.open(_session(2), lambda evs: None)
    assert (a.port, b.port) == (30001, 30002)
    engine.open(_session(3), lambda evs: None)
    with pytest.raises(PortsExhausted):
        engine.open(_session(4), lambda evs: None)
    a.close()
    assert a.port not in clock.ports

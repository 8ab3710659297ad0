"""The metrics hooks on the real drivers (fake reactor): each media tick's lateness, each SIP
datagram in and out, the screen-pop timing and the event-loop probe."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from callcenter.media.session import MediaSession
from callcenter.metrics import HotlineMetrics
from callcenter.sip.ua import UserAgent
from callcenter.twisted_rtp import RtpEngine
from callcenter.twisted_sip import SipEndpoint
from tests.fakes import FakeReactor

OPTIONS = (b"OPTIONS sip:12319@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKm1\r\n"
           b"From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:12319@127.0.0.1>\r\nCall-ID: m1@test\r\n"
           b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def test_each_media_tick_reports_its_lateness_once():
    """On time the lag is ~0; after a 300 ms stall one firing reports ~0.3 s, not one per frame."""
    metrics = HotlineMetrics(SimpleNamespace(), node="t")
    clock = FakeReactor()
    engine = RtpEngine(clock, host="127.0.0.1", port_min=30000, port_max=30001)
    engine.on_lag = metrics.tick_lag.observe
    engine.open(MediaSession(codec="PCMU", payload_type=0, dtmf_payload_type=101, remote=("127.0.0.1", 40000),
                             ssrc=1, initial_sequence=0, initial_timestamp=0), lambda evs: None)
    clock.run_for(1.0)  # wakes every 1 ms, like a loop that is on time
    on_time = metrics.tick_lag.count
    assert on_time >= 45 and metrics.tick_lag.buckets()[1][1] == on_time  # all within 1 ms
    clock.advance(0.3)
    assert metrics.tick_lag.count == on_time + 1
    assert 0.28 <= metrics.tick_lag.sum <= 0.3 + 1e-9


def test_sip_datagrams_in_and_out_are_counted():
    """An OPTIONS in is counted as a request; the 200 OK the UA sends back as a response."""
    metrics = HotlineMetrics(SimpleNamespace(), node="t")
    reactor = FakeReactor()
    endpoint = SipEndpoint(UserAgent(local_host="127.0.0.1", local_port=5060), reactor)
    reactor.listenUDP(5060, endpoint, interface="127.0.0.1")
    endpoint.on_message = metrics.sip_message
    endpoint.datagramReceived(OPTIONS, ("127.0.0.1", 5070))
    [(_, sent, _)] = reactor.ports[5060].written
    assert sent.startswith(b"SIP/2.0 200")
    assert metrics.sip_messages == {("in", "OPTIONS", ""): 1, ("out", "OPTIONS", "200"): 1}


async def test_screen_pop_time_and_loop_lag_are_observed():
    """The wrapped desk lookup is timed per kind; the loop probe records its wake-ups."""
    now = [10.0]
    metrics = HotlineMetrics(SimpleNamespace(), node="t", clock=lambda: now[0])

    async def lookup(agent, call):
        now[0] += 0.04  # the history reads take 40 ms
        return {"earlier_calls": []}

    class CallbackCall:
        pass

    timed = metrics.timed_screen_pop(lookup)
    assert await timed("agent1", SimpleNamespace()) == {"earlier_calls": []}
    await timed("agent1", CallbackCall())
    assert metrics.screen_pops["call"].count == 1 and metrics.screen_pops["callback"].count == 1
    assert abs(metrics.screen_pops["call"].sum - 0.04) < 1e-9
    metrics.start_loop_probe(interval_s=0.01)
    for _ in range(100):
        if metrics.loop_lag.count >= 2:
            break
        await asyncio.sleep(0.01)
    await metrics.stop()
    assert metrics.loop_lag.count >= 2

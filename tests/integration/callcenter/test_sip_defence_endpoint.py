"""The defence wired into the Twisted SIP driver on a fake reactor: a banned source's datagrams
never reach the user agent, digest failures ban, bans end on the sweep, bad input is logged
once per source and period."""

from __future__ import annotations

import logging
import random

from callcenter.sip.defence import Defence, DefencePolicy, SourceBanned, SourceUnbanned
from callcenter.sip.digest import build_authorization, ha1, parse_challenge
from callcenter.sip.message import parse_message
from callcenter.sip.registrar import Registrar
from callcenter.sip.ua import UserAgent
from callcenter.twisted_sip import SWEEP_S, SipEndpoint
from tests.fakes import FakeReactor
from tests.unit.sip.helpers import request

ATTACKER = ("192.0.2.66", 5060)
PHONE = ("192.0.2.10", 5062)


class _Listener:
    def __init__(self):
        self.events = []

    def sip_event(self, ev):
        self.events.append(ev)


def _setup(**policy):
    reactor = FakeReactor()
    reactor.advance(1000.0)
    registrar = Registrar(realm="hotline", rng=random.Random(1),
                          lookup=lambda u, a: ha1(u, "hotline", "agent-pass-1", a) if u == "1001" else None)
    ua = UserAgent(local_host="127.0.0.1", local_port=5060, registrar=registrar, rng=random.Random(2))
    endpoint = SipEndpoint(ua, reactor)
    endpoint.defence = Defence(DefencePolicy(**policy))
    heard = []
    endpoint.on_defence = heard.append
    port = reactor.listenUDP(5060, endpoint, interface="127.0.0.1")
    endpoint.listener = _Listener()
    return reactor, endpoint, port, heard


def _options(branch: str, ua: str = "Linphone") -> bytes:
    return request("OPTIONS", branch=branch, extra=f"User-Agent: {ua}")


def test_flooding_source_is_banned_and_others_still_answered():
    """Past flood_max_requests the source gets no more answers (its datagrams are not even
    parsed); another source is answered; the ban is heard once."""
    reactor, endpoint, port, heard = _setup(flood_window_s=2.0, flood_max_requests=5, ban_s=60)
    for i in range(50):
        endpoint.datagramReceived(_options(f"z9hG4bKf{i}"), ATTACKER)
    assert len(port.written) == 5 and endpoint.dropped == 45
    assert [type(e) for e in heard] == [SourceBanned]
    endpoint.datagramReceived(b"\x00garbage that would be parsed", ATTACKER)
    assert endpoint.dropped == 46
    endpoint.datagramReceived(_options("z9hG4bKok"), PHONE)
    assert parse_message(port.written[-1][1]).status == 200 and port.written[-1][2] == PHONE
    reactor.advance(61.0)
    reactor.advance(SWEEP_S)
    assert [type(e) for e in heard] == [SourceBanned, SourceUnbanned]
    endpoint.stop()


def _register(endpoint, branch, cseq, auth=None, source=ATTACKER):
    extra = "Expires: 600" + (f"\r\nAuthorization: {auth}" if auth else "")
    data = request("REGISTER", uri="sip:127.0.0.1", branch=branch, cseq=cseq, call_id="reg-x", extra=extra)
    data = data.replace(b"sip:12319@198.51.100.1", b"sip:1001@127.0.0.1").replace(b"sip:13800138000@", b"sip:1001@")
    endpoint.datagramReceived(data, source)


def test_password_guessing_is_banned_after_the_limit_even_for_the_right_password():
    """auth_max_failures wrong digests ban the source: the right password guessed next gets
    no answer at all, and nothing is bound."""
    reactor, endpoint, port, heard = _setup(auth_max_failures=3)
    guesses = ["123456", "password", "1001", "agent-pass-1"]
    for i, guess in enumerate(guesses):
        before = len(port.written)
        _register(endpoint, f"z9hG4bKc{i}a", 2 * i + 1)
        if len(port.written) == before:
            break
        challenge = parse_message(port.written[-1][1]).headers.get("WWW-Authenticate")
        auth = build_authorization(parse_challenge(challenge), username="1001", password=guess,
                                   method="REGISTER", uri="sip:127.0.0.1", cnonce="c")
        _register(endpoint, f"z9hG4bKc{i}b", 2 * i + 2, auth)
    statuses = [parse_message(d).status for _, d, _ in port.written]
    assert statuses == [401, 403, 401, 403, 401, 403]
    assert [(type(e), e.reason) for e in heard] == [(SourceBanned, "digest")]
    assert endpoint.ua.registrar.bindings("sip:1001@127.0.0.1", reactor.seconds()) == []
    endpoint.stop()


def test_bad_input_is_logged_once_per_source_then_counted(caplog):
    """Hundreds of unparsable datagrams from one source give one log line now and one count
    line at the next sweep after the period."""
    reactor, endpoint, port, heard = _setup(flood_max_requests=10_000)
    caplog.set_level(logging.INFO, logger="callcenter.twisted_sip")
    for i in range(300):
        endpoint.datagramReceived(b"INVITE sip:x SIP/2.0\r\nVia: broken\r\n\r\n", ("192.0.2.77", 5060))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "192.0.2.77" in lines[0]
    for _ in range(7):
        reactor.advance(SWEEP_S)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "299 more" in lines[1]
    endpoint.stop()


def test_scanner_gets_no_answer():
    """A friendly-scanner OPTIONS gets no answer and bans its source."""
    reactor, endpoint, port, heard = _setup()
    endpoint.datagramReceived(_options("z9hG4bKs1", ua="friendly-scanner"), ATTACKER)
    endpoint.datagramReceived(_options("z9hG4bKs2"), ATTACKER)
    assert port.written == [] and [e.reason for e in heard] == ["scanner"]
    endpoint.stop()


def test_metrics_show_drops_bans_and_rejections():
    """/metrics families: dropped by reason, bans by reason, banned sources now, rejected by status."""
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from callcenter.metrics import HotlineMetrics

    reactor, endpoint, port, heard = _setup(flood_max_requests=3)
    endpoint.datagramReceived(b"INVITE sip:x SIP/2.0\r\n\r\n", ATTACKER)  # unanswerable: dropped
    for i in range(5):
        endpoint.datagramReceived(_options(f"z9hG4bKm{i}"), ATTACKER)
    text = generate_latest(HotlineMetrics(SimpleNamespace(sip=endpoint), node="t").registry).decode()
    assert 'hotline_sip_rejected_total{status="dropped"} 1.0' in text
    assert 'hotline_sip_dropped_total{reason="flood"} 1.0' in text
    assert 'hotline_sip_dropped_total{reason="banned"} 2.0' in text
    assert 'hotline_sip_bans_total{reason="flood"} 1.0' in text
    assert "hotline_sip_banned_sources 1.0" in text
    endpoint.stop()


def test_banned_source_gets_no_more_retransmissions():
    """Our 407 to an INVITE is re-sent until its ACK (RFC 3261 §17.2.1); once the source is banned
    (here for digest failures) nothing more is sent to it, so a cracker hears silence at once."""
    from callcenter.sip.events import CallOffered
    from tests.unit.sip.helpers import invite

    reactor, endpoint, port, heard = _setup(auth_max_failures=3)
    endpoint.datagramReceived(invite(branch="z9hG4bKi1"), ATTACKER)
    [offered] = [e for e in endpoint.listener.events if isinstance(e, CallOffered)]
    endpoint.command("reject", offered.call_id, 407)
    reactor.run_for(1.6, step=0.05)
    statuses = [parse_message(d).status for _, d, _ in port.written]
    assert statuses[0] == 100 and statuses.count(407) == 3  # at once, at 0.5 s and 1.5 s
    for _ in range(3):
        endpoint.digest_failed(ATTACKER, "1001", "INVITE digest bad")
    assert [e.reason for e in heard] == ["digest"]
    sent = len(port.written)
    reactor.run_for(30.0, step=0.5)
    assert len(port.written) == sent and endpoint.withheld >= 4
    endpoint.stop()

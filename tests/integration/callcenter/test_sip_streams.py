"""SIP over TCP/TLS in the Twisted driver, on a fake clock and fake stream transports: framing,
answers on the connection, transport in Via/Contact, no retransmissions, idle timeouts,
connection caps, and SDES keys taken and given on TLS legs (SRTP)."""

from __future__ import annotations

import base64
import random

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from callcenter.media.srtp import SdesCalls, SrtpContext, SrtpSession
from callcenter.sip.events import CallOffered
from callcenter.sip.framing import StreamFramer
from callcenter.sip.message import SipRequest, SipResponse, parse_message
from callcenter.sip.sdp import build_offer, negotiate, sdes_offer
from callcenter.sip.ua import UserAgent
from callcenter.twisted_sip import SipEndpoint, SipStreamFactory
from tests.fakes import FakeReactor
from tests.unit.sip.helpers import OFFER, invite, request

PHONE_IP = "192.0.2.10"
KEY = bytes(range(30))


class Router:
    """Records events; answers offered calls with a negotiated answer on RTP port 20000."""

    def __init__(self, endpoint: SipEndpoint, answer: bool = True):
        self.endpoint = endpoint
        self.answer = answer
        self.events: list = []

    def sip_event(self, ev) -> None:
        self.events.append(ev)
        if self.answer and isinstance(ev, CallOffered):
            n = negotiate(ev.sdp, local_host="127.0.0.1", local_port=20000, session_id=1)
            self.endpoint.command("answer", ev.call_id, n.answer)


class Leg:
    def __init__(self):
        self.session = object()


def make(transport_name: str = "TCP", **limits):
    reactor = FakeReactor()
    reactor.advance(1000.0)
    ua = UserAgent(local_host="127.0.0.1", local_port=5060, rng=random.Random(3))
    endpoint = SipEndpoint(ua, reactor)
    udp = reactor.listenUDP(5060, endpoint, interface="127.0.0.1")
    endpoint.listener = Router(endpoint)
    leg = Leg()
    endpoint.sdes = SdesCalls("optional", lambda n: bytes(n))
    endpoint.rtp_leg = {20000: leg}.get
    factory = SipStreamFactory(endpoint, reactor, transport_name, **limits)
    factory.local_port = 5061 if transport_name == "TLS" else 5060
    return reactor, endpoint, udp, factory, leg


def connect(factory, port: int = 40001, ip: str = PHONE_IP):
    proto = factory.buildProtocol(IPv4Address("TCP", ip, port))
    if proto is None:
        return None, None
    tr = StringTransport(peerAddress=IPv4Address("TCP", ip, port))
    proto.makeConnection(tr)
    return proto, tr


def messages(tr: StringTransport) -> list[SipRequest | SipResponse]:
    return [parse_message(m) for m in StreamFramer().feed(tr.value())]


def stream_invite(transport: str, body: bytes = OFFER, **kw) -> bytes:
    """An INVITE as a phone on a stream sends it: Via names the transport, no rport."""
    return invite(body=body, via_params="", **kw).replace(
        b"SIP/2.0/UDP 192.0.2.10:5062", f"SIP/2.0/{transport} 192.0.2.10:5062".encode())


def test_split_and_coalesced_messages_are_answered_on_the_connection():
    """An INVITE in two reads and an OPTIONS glued to its end: both answered on the stream, none on UDP."""
    _, endpoint, udp, factory, _ = make("TCP")
    endpoint.listener.answer = False
    proto, tr = connect(factory)
    data = stream_invite("TCP") + request("OPTIONS", branch="z9hG4bKopt1", call_id="o1", via_params="")
    proto.dataReceived(data[:100])
    assert tr.value() == b""
    proto.dataReceived(data[100:])
    assert [m.status for m in messages(tr)] == [100, 200]
    assert udp.written == []
    [offered] = [e for e in endpoint.listener.events if isinstance(e, CallOffered)]
    assert offered.source == (PHONE_IP, 40001)


def test_answer_over_tls_names_the_transport_and_only_the_2xx_is_retransmitted():
    """The 200 carries a transport=tls Contact on the TLS port and is re-sent until the ACK
    (RFC 3261 §13.3.1.4); our BYE says SIP/2.0/TLS and is sent once (a stream is reliable)."""
    reactor, endpoint, udp, factory, _ = make("TLS")
    proto, tr = connect(factory)
    proto.dataReceived(stream_invite("TLS"))
    reactor.run_for(1.6, step=0.05)  # Timer G: at 0.5 s, then 1 s later
    answers = [m for m in messages(tr) if isinstance(m, SipResponse) and m.status == 200]
    assert len(answers) == 3
    assert answers[0].headers.get("Contact") == "<sip:127.0.0.1:5061;transport=tls>"
    [offered] = [e for e in endpoint.listener.events if isinstance(e, CallOffered)]
    ack = request("ACK", cseq=1, to_tag=answers[0].headers.get("To").split("tag=")[1], branch="z9hG4bKack",
                  via_params="").replace(b"SIP/2.0/UDP", b"SIP/2.0/TLS")
    proto.dataReceived(ack)
    tr.clear()
    endpoint.command("hangup", offered.call_id)
    reactor.run_for(10.0, step=0.1)  # Timer E would re-send a BYE over UDP 5 times
    [bye] = messages(tr)
    assert bye.method == "BYE" and bye.headers.get("Via").startswith("SIP/2.0/TLS 127.0.0.1:5061;")
    assert udp.written == []


def test_idle_and_first_message_timeouts():
    """Silent connections close after first_message_s; trickled bytes do not keep one open; whole messages do until idle_s."""
    reactor, _, _, factory, _ = make("TCP", first_message_s=10, idle_s=100)
    _, silent = connect(factory, 40001)
    proto, trickle = connect(factory, 40002)
    busy_proto, busy = connect(factory, 40003)
    busy_proto.dataReceived(b"\r\n\r\n")  # a keep-alive ping counts as a whole message
    for _ in range(9):
        reactor.advance(1.0)
        proto.dataReceived(b"O")
    reactor.advance(1.1)
    assert silent.disconnecting and trickle.disconnecting and not busy.disconnecting
    assert busy.value() == b"\r\n"  # the pong
    reactor.advance(87.0)  # 97.1 s after its ping
    assert not busy.disconnecting
    reactor.advance(3.0)
    assert busy.disconnecting
    assert factory.timeouts == 3


def test_connection_caps_per_source_and_in_total():
    """Beyond max_per_source from one IP, or max_connections in all, connections are refused; a closed one frees its place."""
    _, _, _, factory, _ = make("TCP", max_per_source=2, max_connections=3)
    first, _ = connect(factory, 40001)
    connect(factory, 40002)
    assert connect(factory, 40003) == (None, None)
    connect(factory, 40004, ip="192.0.2.11")
    assert connect(factory, 40005, ip="192.0.2.12") == (None, None)
    first.connectionLost(None)
    assert connect(factory, 40006, ip="192.0.2.12")[0] is not None
    assert factory.refused == 2


def test_unframeable_input_closes_the_connection():
    """A head without Content-Length loses the message boundaries: the connection is closed, nothing answered."""
    _, endpoint, _, factory, _ = make("TCP")
    proto, tr = connect(factory)
    proto.dataReceived(b"OPTIONS sip:12319@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP x\r\n\r\n")
    assert tr.disconnecting and tr.value() == b""
    assert factory.framing_errors == 1
    proto.connectionLost(None)
    assert endpoint.streams == {}


def _savp(body: bytes = OFFER) -> bytes:
    key = base64.b64encode(KEY).decode()
    return body.replace(b"RTP/AVP", b"RTP/SAVP").replace(
        b"a=sendrecv\r\n", f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\na=sendrecv\r\n".encode())


def test_srtp_offer_on_tls_gets_our_key_and_the_leg_is_wrapped():
    """On TLS the controller sees plain RTP/AVP; our 200 carries RTP/SAVP with our key; the RTP leg now speaks SRTP."""
    _, endpoint, _, factory, leg = make("TLS")
    proto, tr = connect(factory)
    proto.dataReceived(stream_invite("TLS", body=_savp()))
    [offered] = [e for e in endpoint.listener.events if isinstance(e, CallOffered)]
    assert b"RTP/AVP" in offered.sdp and b"crypto" not in offered.sdp
    [answer] = [m for m in messages(tr) if isinstance(m, SipResponse) and m.status == 200]
    proto_name, keys = sdes_offer(answer.body)
    assert proto_name == "RTP/SAVP" and len(keys) == 1 and keys[0].key != KEY
    assert isinstance(leg.session, SrtpSession)
    assert leg.session.context.remote_key == KEY and leg.session.context.local_key == keys[0].key


def test_srtp_offer_over_plain_tcp_is_refused():
    """SDES keys must not cross an unencrypted leg: an RTP/SAVP offer over TCP gets 488 and never reaches the controller."""
    _, endpoint, _, factory, leg = make("TCP")
    proto, tr = connect(factory)
    proto.dataReceived(stream_invite("TCP", body=_savp()))
    assert [m.status for m in messages(tr)][-1] == 488
    assert not [e for e in endpoint.listener.events if isinstance(e, CallOffered)]
    assert not isinstance(leg.session, SrtpSession)


def test_call_placed_to_a_tls_phone_offers_srtp():
    """An INVITE we send to a phone on a TLS connection goes on it, with Via TLS and an RTP/SAVP offer carrying a key."""
    _, endpoint, udp, factory, _ = make("TLS")
    _, tr = connect(factory)
    call_id = endpoint.command("invite", target_uri="sip:1001@192.0.2.10:5062;transport=tls",
                               remote=(PHONE_IP, 40001), from_user="12319",
                               sdp=build_offer(local_host="127.0.0.1", local_port=20000, session_id=1))
    [inv] = messages(tr)
    assert inv.method == "INVITE" and inv.headers.get("Via").startswith("SIP/2.0/TLS")
    assert inv.headers.get("Contact") == "<sip:127.0.0.1:5061;transport=tls>"
    proto_name, keys = sdes_offer(inv.body)
    assert proto_name == "RTP/SAVP" and len(keys) == 1
    assert call_id in endpoint.sdes and udp.written == []
    ours = SrtpContext(keys[0].key, KEY)
    assert SrtpContext(KEY, keys[0].key).unprotect(ours.protect(b"\x80\x08\x00\x01" + bytes(168)))


def test_tls_context_checks_the_pair(tmp_path):
    """A certificate and its key make a context; a key of another certificate, or a missing file, is a ValueError."""
    import pytest

    from callcenter.twisted_sip import tls_context
    from tests.e2e.peers.certs import make_test_certificate

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    cert, key = make_test_certificate(one)
    _, other_key = make_test_certificate(two)
    assert tls_context(cert, key).getContext() is not None
    with pytest.raises(ValueError, match="not a matching"):
        tls_context(cert, other_key)
    with pytest.raises(ValueError, match="cannot read"):
        tls_context(tmp_path / "missing.pem", key)


def test_sips_request_gets_a_sips_contact():
    """An INVITE to a sips: URI over TLS is answered with a sips: Contact (RFC 3261 §8.1.1.8)."""
    _, _, _, factory, _ = make("TLS")
    proto, tr = connect(factory)
    proto.dataReceived(stream_invite("TLS", uri="sips:12319@198.51.100.1"))
    [answer] = [m for m in messages(tr) if isinstance(m, SipResponse) and m.status == 200]
    assert answer.headers.get("Contact") == "<sips:127.0.0.1:5061>"


def test_connections_count_towards_the_flood_ban():
    """Each new connection counts as a request: past the flood limit the source is banned, its
    open connection closes after its next message, and new ones are refused."""
    from callcenter.sip.defence import Defence, DefencePolicy

    reactor, endpoint, _, factory, _ = make("TCP", max_per_source=100)
    endpoint.defence = Defence(DefencePolicy(flood_window_s=10.0, flood_max_requests=5))
    open_one, tr = connect(factory, 40000)
    accepted = [connect(factory, 40001 + i)[0] is not None for i in range(6)]
    assert accepted == [True, True, True, True, False, False]
    open_one.dataReceived(request("OPTIONS", branch="z9hG4bKo9", call_id="o9", via_params=""))
    assert tr.disconnecting and tr.value() == b""  # dropped unread, then closed
    assert factory.refused == 2


def test_nothing_is_sent_to_a_closed_connection():
    """After its connection closed, a request to that peer is dropped (not sprayed over UDP to its ephemeral port)."""
    _, endpoint, udp, factory, _ = make("TLS")
    proto, tr = connect(factory)
    proto.connectionLost(None)
    endpoint.command("invite", target_uri="sip:1001@192.0.2.10:5062;transport=tls", remote=(PHONE_IP, 40001),
                     from_user="12319", sdp=build_offer(local_host="127.0.0.1", local_port=20000, session_id=1))
    assert udp.written == [] and tr.value() == b""
    proto2, tr2 = connect(factory)  # the same address connects again: reachable again
    endpoint.command("invite", target_uri="sip:1001@192.0.2.10:5062;transport=tls", remote=(PHONE_IP, 40001),
                     from_user="12319", sdp=build_offer(local_host="127.0.0.1", local_port=20000, session_id=1))
    assert [m.method for m in messages(tr2)] == ["INVITE"]


def test_a_peer_that_does_not_read_is_not_read_either():
    """When our answers pile up unread, the transport pauses the connection: its requests stay unread until it drains."""
    _, _, _, factory, _ = make("TCP")
    proto, tr = connect(factory)
    assert tr.producer is proto and tr.streaming
    proto.pauseProducing()  # what the transport does once its send buffer is full
    assert tr.producerState == "paused" and factory.paused == 1
    proto.resumeProducing()
    assert tr.producerState == "producing"


def test_registrations_end_with_their_connection():
    """A phone registered over TCP is bound to that connection: when it closes, the binding goes
    and the controller hears ContactsChanged (nothing could reach the phone there any more)."""
    from callcenter.sip.digest import build_authorization, parse_challenge
    from callcenter.sip.events import ContactsChanged
    from callcenter.sip.registrar import Registrar
    from tests.integration.callcenter.test_sip_endpoint import _Cache

    reactor = FakeReactor()
    reactor.advance(1000.0)
    registrar = Registrar(realm="hotline", lookup=_Cache({"1001": "agent-pass-1"}).lookup, rng=random.Random(1))
    ua = UserAgent(local_host="127.0.0.1", local_port=5060, registrar=registrar, rng=random.Random(2))
    endpoint = SipEndpoint(ua, reactor)
    reactor.listenUDP(5060, endpoint, interface="127.0.0.1")
    endpoint.listener = Router(endpoint, answer=False)
    factory = SipStreamFactory(endpoint, reactor, "TCP")
    proto, tr = connect(factory)

    def register(branch: str, cseq: int, auth: str = "") -> bytes:
        extra = "Expires: 600" + (f"\r\nAuthorization: {auth}" if auth else "")
        data = request("REGISTER", uri="sip:127.0.0.1", branch=branch, cseq=cseq, call_id="reg-1",
                       extra=extra, via_params="").replace(b"sip:12319@198.51.100.1", b"sip:1001@127.0.0.1")
        return data.replace(b"sip:13800138000@", b"sip:1001@").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")

    proto.dataReceived(register("z9hG4bKr1", 1))
    [challenge] = messages(tr)
    tr.clear()
    auth = build_authorization(parse_challenge(challenge.headers.get("WWW-Authenticate")), username="1001",
                               password="agent-pass-1", method="REGISTER", uri="sip:127.0.0.1", cnonce="c0ffee")
    proto.dataReceived(register("z9hG4bKr2", 2, auth))
    assert [m.status for m in messages(tr)] == [200]
    assert registrar.bindings("sip:1001@127.0.0.1", reactor.seconds())[0].source == (PHONE_IP, 40001)
    proto.connectionLost(None)
    assert registrar.bindings("sip:1001@127.0.0.1", reactor.seconds()) == []
    assert endpoint.listener.events[-1] == ContactsChanged("sip:1001@127.0.0.1", ())


def test_call_to_a_sips_contact_offers_a_sips_contact():
    """An INVITE we send to a phone registered with a sips: contact carries a sips: Contact of ours."""
    _, endpoint, _, factory, _ = make("TLS")
    _, tr = connect(factory)
    endpoint.command("invite", target_uri="sips:1001@192.0.2.10:5063", remote=(PHONE_IP, 40001), from_user="12319",
                     sdp=build_offer(local_host="127.0.0.1", local_port=20000, session_id=1))
    [inv] = messages(tr)
    assert inv.uri == "sips:1001@192.0.2.10:5063" and inv.headers.get("Contact") == "<sips:127.0.0.1:5061>"


def test_metrics_count_open_and_refused_connections_by_transport():
    """/metrics: hotline_sip_connections{transport} counts the open connections and
    hotline_sip_connections_refused_total{transport,reason} those refused at accept."""
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from callcenter.metrics import HotlineMetrics
    from callcenter.sip.defence import Defence, DefencePolicy

    reactor, endpoint, _, factory, _ = make("TCP", max_per_source=2, max_connections=3)
    tls = SipStreamFactory(endpoint, reactor, "TLS")
    endpoint.defence = Defence(DefencePolicy())
    first, _ = connect(factory, 40001)
    connect(factory, 40002)
    assert connect(factory, 40003) == (None, None)  # per source
    connect(factory, 40004, ip="192.0.2.11")
    assert connect(factory, 40005, ip="192.0.2.12") == (None, None)  # in total
    connect(tls, 40006, ip="192.0.2.13")
    # A source banned for digest failures is refused on TLS too.
    for _ in range(DefencePolicy().auth_max_failures):
        endpoint.defence.auth_failed("192.0.2.14", reactor.seconds())
    assert connect(tls, 40007, ip="192.0.2.14") == (None, None)
    first.connectionLost(None)

    text = generate_latest(HotlineMetrics(SimpleNamespace(sip=endpoint), node="t").registry).decode()
    assert 'hotline_sip_connections{transport="tcp"} 2.0' in text
    assert 'hotline_sip_connections{transport="tls"} 1.0' in text
    assert 'hotline_sip_connections_refused_total{reason="per_source",transport="tcp"} 1.0' in text
    assert 'hotline_sip_connections_refused_total{reason="total",transport="tcp"} 1.0' in text
    assert 'hotline_sip_connections_refused_total{reason="defence",transport="tls"} 1.0' in text
    assert 'hotline_sip_connections_refused_total{reason="defence",transport="tcp"} 0.0' in text

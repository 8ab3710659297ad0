"""The Twisted SIP driver with the real user agent and registrar on a fake reactor: datagrams
in and out, timers re-armed on the fake clock, digest REGISTER against the credential cache
(call admission: test_call_admission.py)."""

from __future__ import annotations

import random

import pytest

from callcenter.sip.digest import build_authorization, ha1, parse_challenge
from callcenter.sip.events import CallOffered, ContactsChanged
from callcenter.sip.message import SipRequest, SipResponse, parse_message
from callcenter.sip.registrar import Registrar
from callcenter.sip.ua import UserAgent
from callcenter.sip_store import CredentialCache
from callcenter.twisted_sip import SipEndpoint
from tests.fakes import FakeReactor
from tests.unit.sip.helpers import OFFER, invite, request

PHONE = ("192.0.2.10", 5062)
REALM = "hotline"


class FakeRouter:
    """Records the events it is given; answers offered calls when `answer` is set."""

    def __init__(self, endpoint: SipEndpoint | None = None, answer: bool = False):
        self.events: list[object] = []
        self.endpoint = endpoint
        self.answer = answer

    def sip_event(self, event) -> None:
        self.events.append(event)
        if self.answer and isinstance(event, CallOffered):
            self.endpoint.command("answer", event.call_id, OFFER)


class _Cache(CredentialCache):
    def __init__(self, accounts: dict[str, str]):
        super().__init__(REALM)
        self.replace([
            {"extension": ext, "realm": REALM, "enabled": True,
             "ha1_md5": ha1(ext, REALM, pw, "MD5"), "ha1_sha256": ha1(ext, REALM, pw, "SHA-256")}
            for ext, pw in accounts.items()
        ])


@pytest.fixture
def setup():
    reactor = FakeReactor()
    reactor.advance(1000.0)
    cache = _Cache({"1001": "agent-pass-1"})
    registrar = Registrar(realm=REALM, lookup=cache.lookup, rng=random.Random(1))
    ua = UserAgent(local_host="127.0.0.1", local_port=5060, registrar=registrar, rng=random.Random(2))
    endpoint = SipEndpoint(ua, reactor)
    port = reactor.listenUDP(5060, endpoint, interface="127.0.0.1")
    router = FakeRouter(endpoint)
    endpoint.listener = router
    return reactor, endpoint, port, router, registrar


def _sent(port, since: int = 0) -> list[tuple[SipRequest | SipResponse, tuple[str, int]]]:
    return [(parse_message(data), addr) for _, data, addr in port.written[since:]]


def _register(endpoint, *, branch: str, cseq: int, auth: str | None = None, user: str = "1001") -> None:
    extra = "Expires: 600"
    if auth:
        extra += f"\r\nAuthorization: {auth}"
    data = request("REGISTER", uri="sip:127.0.0.1", branch=branch, cseq=cseq, call_id="reg-1",
                   extra=extra).replace(b"sip:12319@198.51.100.1", f"sip:{user}@127.0.0.1".encode())
    data = data.replace(b"sip:13800138000@", f"sip:{user}@".encode())
    endpoint.datagramReceived(data, PHONE)


def _authorize(challenge_value: str, password: str, cnonce: str = "c0ffee", user: str = "1001") -> str:
    return build_authorization(parse_challenge(challenge_value), username=user, password=password,
                               method="REGISTER", uri="sip:127.0.0.1", cnonce=cnonce)


def test_options_is_answered_to_the_sender(setup):
    """An OPTIONS datagram gets one 200 written on the socket, addressed to where it came from."""
    _, endpoint, port, _, _ = setup
    endpoint.datagramReceived(request("OPTIONS", branch="z9hG4bKopt"), PHONE)
    [(resp, addr)] = _sent(port)
    assert resp.status == 200 and addr == PHONE
    assert "REGISTER" in resp.headers.get_all("Allow")


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_register_with_digest_against_the_cache_binds_the_phone(setup, algorithm):
    """REGISTER → 401 offering SHA-256 and MD5; answered with the account's password → 200 and ContactsChanged."""
    _, endpoint, port, router, registrar = setup
    _register(endpoint, branch="z9hG4bKr1", cseq=1)
    [(challenge, _)] = _sent(port)
    assert challenge.status == 401
    offers = challenge.headers.get_all("WWW-Authenticate")
    assert [parse_challenge(v).algorithm for v in offers] == ["SHA-256", "MD5"]
    chosen = next(v for v in offers if parse_challenge(v).algorithm == algorithm)
    _register(endpoint, branch="z9hG4bKr2", cseq=2, auth=_authorize(chosen, "agent-pass-1"))
    [(ok, addr)] = _sent(port, 1)
    assert ok.status == 200 and addr == PHONE
    assert "expires=600" in ok.headers.get("Contact")
    assert [e for e in router.events if isinstance(e, ContactsChanged)] == [
        ContactsChanged("sip:1001@127.0.0.1", ("sip:1001@192.0.2.10:5062",))]
    [binding] = registrar.bindings("sip:1001@127.0.0.1", now=1001.0)
    assert binding.source == PHONE


def test_register_with_a_wrong_password_or_unknown_account_is_403(setup):
    """A digest made with the wrong password, or for an extension without an account, gets 403."""
    _, endpoint, port, router, _ = setup
    _register(endpoint, branch="z9hG4bKw1", cseq=1)
    [(challenge, _)] = _sent(port)
    value = challenge.headers.get("WWW-Authenticate")
    _register(endpoint, branch="z9hG4bKw2", cseq=2, auth=_authorize(value, "not-the-password"))
    _register(endpoint, branch="z9hG4bKw3", cseq=3, user="1009",
              auth=_authorize(value, "agent-pass-1", user="1009"))
    assert [m.status for m, _ in _sent(port, 1)] == [403, 403]
    assert not [e for e in router.events if isinstance(e, ContactsChanged)]


def test_binding_expiry_fires_on_the_clock(setup):
    """The driver re-arms its timer for the registrar: when the binding expires the contacts are emptied."""
    reactor, endpoint, port, router, registrar = setup
    _register(endpoint, branch="z9hG4bKe1", cseq=1)
    [(challenge, _)] = _sent(port)
    _register(endpoint, branch="z9hG4bKe2", cseq=2,
              auth=_authorize(challenge.headers.get("WWW-Authenticate"), "agent-pass-1"))
    reactor.advance(599)
    assert registrar.bindings("sip:1001@127.0.0.1", reactor.seconds())
    reactor.advance(2)
    assert router.events[-1] == ContactsChanged("sip:1001@127.0.0.1", ())


def test_unacknowledged_200_is_retransmitted_by_timer(setup):
    """An answered INVITE without ACK: the 200 goes out again after T1 and 2·T1 on the fake clock."""
    reactor, endpoint, port, router, _ = setup
    router.answer = True
    endpoint.datagramReceived(invite(), PHONE)
    first = [m.status for m, _ in _sent(port)]
    assert first == [100, 200]
    reactor.advance(0.5)
    reactor.advance(1.0)
    assert [m.status for m, _ in _sent(port, 2)] == [200, 200]


def test_retransmitted_invite_is_absorbed(setup):
    """The same INVITE twice makes one CallOffered; the copy is answered by resending the last response."""
    _, endpoint, port, router, _ = setup
    router.answer = True
    endpoint.datagramReceived(invite(), PHONE)
    endpoint.datagramReceived(invite(), PHONE)
    assert len([e for e in router.events if isinstance(e, CallOffered)]) == 1
    assert [m.status for m, _ in _sent(port)] == [100, 200, 200]


def test_garbage_does_not_stop_the_endpoint(setup):
    """Binary junk and a truncated INVITE raise nothing; OPTIONS afterwards is still answered."""
    _, endpoint, port, _, _ = setup
    endpoint.datagramReceived(bytes(range(256)) * 4, PHONE)
    endpoint.datagramReceived(invite()[:120], PHONE)
    before = len(port.written)
    endpoint.datagramReceived(request("OPTIONS", branch="z9hG4bKafter"), PHONE)
    assert [m.status for m, _ in _sent(port, before)] == [200]
    assert endpoint.errors == 0



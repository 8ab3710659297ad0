"""Call admission through the real UDP driver, user agent and registrar on a fake reactor:
the router's admission hook answers 407/403/404/503 before any port is opened."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from callcenter.bootstrap import admission_policy
from callcenter.calls import CallRouter
from callcenter.config import AdmissionSettings, Settings, SipSettings, TrunkSettings
from callcenter.sip.digest import build_authorization, ha1, parse_challenge
from callcenter.sip.events import CallOffered
from callcenter.sip.message import SipResponse, parse_message
from callcenter.sip.registrar import Registrar
from callcenter.sip.ua import UserAgent
from callcenter.sip_store import CredentialCache
from callcenter.twisted_sip import SipEndpoint
from tests.fakes import FakeReactor
from tests.unit.sip.helpers import invite, request

PHONE = ("192.0.2.10", 5062)
REALM = "hotline"


class _Cache(CredentialCache):
    def __init__(self, accounts: dict[str, str]):
        super().__init__(REALM)
        self.replace([
            {"extension": ext, "realm": REALM, "enabled": True,
             "ha1_md5": ha1(ext, REALM, pw, "MD5"), "ha1_sha256": ha1(ext, REALM, pw, "SHA-256")}
            for ext, pw in accounts.items()
        ])


class GateOnly:
    """The router's admission hook alone: admitted offers are recorded, nothing else runs."""

    def __init__(self, router: CallRouter):
        self.router = router
        self.admitted: list[CallOffered] = []

    def sip_event(self, ev) -> None:
        if isinstance(ev, CallOffered) and self.router._admit(ev):
            self.admitted.append(ev)
            self.router.book.add(ev.call_id, ev.source[0])


def make(trunks=(), admission=AdmissionSettings()):
    reactor = FakeReactor()
    reactor.advance(1000.0)
    cache = _Cache({"1001": "agent-pass-1"})
    registrar = Registrar(realm=REALM, lookup=cache.lookup, rng=random.Random(1), algorithms=("MD5",))
    ua = UserAgent(local_host="127.0.0.1", local_port=5060, registrar=registrar, rng=random.Random(2))
    endpoint = SipEndpoint(ua, reactor)
    port = reactor.listenUDP(5060, endpoint, interface="127.0.0.1")
    settings = Settings(sip=SipSettings(realm=REALM), trunks=tuple(trunks), admission=admission)
    router = CallRouter(sip=endpoint, rtp=None, flows_by_did={"12319": object(), "96310": object()}, prompts=None,
                        services=None, clock=reactor, spawn=lambda c: None, sleep=None, executor=None,
                        storage_dir=Path("."), rtp_host="127.0.0.1", now_dt=None,
                        admission=admission_policy(settings, cache.lookup))
    gate = GateOnly(router)
    endpoint.listener = gate
    return endpoint, port, gate


def finals(port, since=0) -> list[SipResponse]:
    out = []
    for _, data, _ in port.written[since:]:
        m = parse_message(data)
        if isinstance(m, SipResponse) and m.status >= 200:
            out.append(m)
    return out


def call(endpoint, to="12319", n=1, source=PHONE, extra="") -> None:
    data = invite(call_id=f"c{n}@x", branch=f"z9hG4bKc{n}", uri=f"sip:{to}@127.0.0.1", extra=extra)
    data = data.replace(b"<sip:12319@198.51.100.1>", f"<sip:{to}@127.0.0.1>".encode())
    endpoint.datagramReceived(data, source)


def register(endpoint, port, source=PHONE) -> None:
    def reg(branch, cseq, auth=None):
        extra = "Expires: 600" + (f"\r\nAuthorization: {auth}" if auth else "")
        data = request("REGISTER", uri="sip:127.0.0.1", branch=branch, cseq=cseq, call_id="reg-1", extra=extra)
        data = data.replace(b"sip:12319@198.51.100.1", b"sip:1001@127.0.0.1").replace(b"sip:13800138000@", b"sip:1001@")
        endpoint.datagramReceived(data, source)
    before = len(port.written)
    reg("z9hG4bKr1", 1)
    challenge = parse_message(port.written[before][1])
    value = build_authorization(parse_challenge(challenge.headers.get("WWW-Authenticate")), username="1001",
                                password="agent-pass-1", method="REGISTER", uri="sip:127.0.0.1", cnonce="c0ffee")
    reg("z9hG4bKr2", 2, value)
    assert parse_message(port.written[-1][1]).status == 200


def test_default_outsider_reaches_the_dids_only():
    """Without trunk allow lists anyone may call 12319; an extension and a made-up number both get the same 407."""
    endpoint, port, gate = make()
    register(endpoint, port)
    since = len(port.written)
    call(endpoint, "12319", 1)
    call(endpoint, "1001", 2, source=("198.51.100.9", 5060))
    call(endpoint, "1999", 3, source=("198.51.100.9", 5060))
    assert [e.call_id for e in gate.admitted] == ["c1@x"]
    refused = finals(port, since)
    assert [r.status for r in refused] == [407, 407]
    # Identical apart from the nonce: nothing tells 1001 (registered) from 1999 (no such phone).
    shapes = [(r.reason, sorted(n for n, _ in r.headers.items() if n not in ("Call-ID", "CSeq", "Via", "From", "To",
                                                                                "Proxy-Authenticate")))
              for r in refused]
    assert shapes[0] == shapes[1]


def test_phone_answering_the_challenge_reaches_the_extension():
    """The INVITE retried with the account's digest answer is admitted; a wrong password gets 403."""
    endpoint, port, gate = make()
    register(endpoint, port)
    source = ("192.0.2.30", 5070)
    since = len(port.written)
    call(endpoint, "1001", 1, source=source)
    [challenge] = finals(port, since)
    ch = parse_challenge(challenge.headers.get("Proxy-Authenticate"))

    def answer(password, n):
        value = build_authorization(ch, username="1001", password=password, method="INVITE",
                                    uri="sip:1001@127.0.0.1", cnonce="abc", nc=n)
        return f"Proxy-Authorization: {value}"

    since = len(port.written)
    call(endpoint, "1001", 2, source=source, extra=answer("wrong-pass-9", 1))
    call(endpoint, "1001", 3, source=source, extra=answer("agent-pass-1", 2))
    assert [r.status for r in finals(port, since)] == [403]
    assert [e.call_id for e in gate.admitted] == ["c3@x"]


def test_allow_listed_trunk_by_ip_and_port():
    """A trunk pinned to 192.0.2.10:5062 is admitted; the same IP from another port is challenged like anyone."""
    endpoint, port, gate = make(trunks=[TrunkSettings(name="carrier", allow=("192.0.2.10:5062",), dids=("12319",))])
    call(endpoint, "12319", 1)
    call(endpoint, "96310", 2)  # not this trunk's DID
    call(endpoint, "12319", 3, source=("192.0.2.10", 5099))
    assert [e.call_id for e in gate.admitted] == ["c1@x"]
    assert [r.status for r in finals(port)] == [404, 407]


def test_spoofing_a_registered_phone_from_its_address_is_not_enough():
    """With allow lists, an INVITE from the registered phone's own IP:port but without credentials is challenged."""
    endpoint, port, gate = make(trunks=[TrunkSettings(name="carrier", allow=("203.0.113.0/24",))])
    register(endpoint, port)
    since = len(port.written)
    call(endpoint, "12319", 1, extra="")
    assert gate.admitted == []
    assert [r.status for r in finals(port, since)] == [407]


def test_per_source_and_total_limits_answer_503_with_retry_after():
    """The third call from one source gets 503 Retry-After; another source is still admitted until the total is hit."""
    endpoint, port, gate = make(admission=AdmissionSettings(max_calls=3, max_calls_per_source=2, retry_after_s=15))
    attacker = ("127.0.0.2", 5060)
    for n in range(1, 4):
        call(endpoint, "12319", n, source=attacker)
    call(endpoint, "12319", 4, source=("127.0.0.3", 5060))
    call(endpoint, "12319", 5, source=("127.0.0.4", 5060))
    assert [e.call_id for e in gate.admitted] == ["c1@x", "c2@x", "c4@x"]
    refused = finals(port)
    assert [(r.status, r.headers.get("Retry-After")) for r in refused] == [(503, "15"), (503, "15")]
    # A call ending frees its place.
    gate.router.book.remove("c1@x")
    call(endpoint, "12319", 6, source=attacker)
    assert gate.admitted[-1].call_id == "c6@x"


@pytest.mark.parametrize("backlog, status", [(0, None), (25_000, 503)])
def test_a_full_write_backlog_refuses_new_calls(backlog, status):
    """When the database writer is far behind, new calls get 503 rather than rows being lost."""
    endpoint, port, gate = make()
    gate.router.write_backlog = lambda: backlog
    call(endpoint, "12319", 1)
    assert [r.status for r in finals(port)] == ([] if status is None else [status])

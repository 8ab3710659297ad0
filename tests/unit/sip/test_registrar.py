"""Tests for callcenter.sip.registrar and its wiring into the UserAgent."""

import random

import pytest

from callcenter.sip.digest import build_authorization, ha1, parse_challenge
from callcenter.sip.events import ContactsChanged, DigestFailed
from callcenter.sip.message import parse_message
from callcenter.sip.registrar import Registrar

from .helpers import new_ua, sent

PHONE = ("192.0.2.30", 5080)
PASSWORDS = {"1001": "secret"}
AOR = "sip:1001@198.51.100.1"


def lookup(user, algorithm):
    pw = PASSWORDS.get(user)
    return None if pw is None else ha1(user, "12319", pw, algorithm)


def make_registrar(**kw):
    return Registrar(realm="12319", lookup=lookup, rng=random.Random(1), **kw)


def register(*, cseq=1, contact="<sip:1001@192.0.2.30:5080>", expires=None, auth=None,
             call_id="reg-1", user="1001") -> bytes:
    lines = [
        "REGISTER sip:198.51.100.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.30:5080;branch=z9hG4bKr{cseq};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@198.51.100.1>;tag=rt",
        f"To: <sip:{user}@198.51.100.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if auth:
        lines.append(f"Authorization: {auth}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def authorized(reg, now=0.0, *, algorithm="SHA-256", password="secret", cseq=2, nc=1, **kw):
    first = reg.handle_register(parse_message(register(cseq=cseq - 1, **kw)), PHONE, now)
    assert first.status == 401
    challenge = next(parse_challenge(v) for v in first.headers.get_all("WWW-Authenticate")
                     if f"algorithm={algorithm}" in v)
    auth = build_authorization(challenge, username="1001", password=password,
                               method="REGISTER", uri="sip:198.51.100.1", cnonce="c", nc=nc)
    return reg.handle_register(parse_message(register(cseq=cseq, auth=auth, **kw)), PHONE, now), auth


def test_challenge_offers_sha256_then_md5():
    """An unauthenticated REGISTER gets 401 with SHA-256 and MD5 challenges, in that order."""
    resp = make_registrar().handle_register(parse_message(register()), PHONE, 0)
    assert resp.status == 401
    algos = [parse_challenge(v).algorithm for v in resp.headers.get_all("WWW-Authenticate")]
    assert algos == ["SHA-256", "MD5"]


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_register_with_valid_digest_binds_contact(algorithm):
    """A correct digest (either algorithm) stores the contact and reports ContactsChanged."""
    reg = make_registrar()
    resp, _ = authorized(reg, 10.0, algorithm=algorithm, expires=120)
    assert resp.status == 200
    assert resp.headers.get_all("Contact") == ["<sip:1001@192.0.2.30:5080>;expires=120"]
    assert reg.events() == [ContactsChanged(AOR, ("sip:1001@192.0.2.30:5080",))]
    (b,) = reg.bindings(AOR, 10.0)
    assert (b.expires_at, b.source) == (130.0, PHONE)


def test_wrong_password_is_403():
    """A wrong digest response is refused with 403, binds nothing and is reported."""
    reg = make_registrar()
    resp, _ = authorized(reg, password="nope")
    assert resp.status == 403
    assert reg.bindings(AOR, 0) == []
    assert reg.events() == [DigestFailed(PHONE, "1001", "wrong password")]


def test_expired_nonce_is_stale_and_replay_is_refused():
    """A right digest on an old nonce gets 401 stale=true; a reused nc too."""
    reg = make_registrar(nonce_ttl=30)
    resp, auth = authorized(reg, 0.0)
    assert resp.status == 200
    replay = reg.handle_register(parse_message(register(cseq=3, auth=auth)), PHONE, 1.0)
    assert replay.status == 401 and parse_challenge(replay.headers.get("WWW-Authenticate")).stale
    late = reg.handle_register(parse_message(register(cseq=4, auth=auth)), PHONE, 40.0)
    assert late.status == 401
    assert parse_challenge(late.headers.get("WWW-Authenticate")).stale


def test_expires_rules():
    """Too-brief expiry gets 423 + Min-Expires; long ones are capped; param beats header."""
    reg = make_registrar(min_expires=60, max_expires=600)
    resp, _ = authorized(reg, expires=30)
    assert resp.status == 423 and resp.headers.get("Min-Expires") == "60"
    resp, _ = authorized(reg, contact="<sip:1001@192.0.2.30:5080>;expires=9999", expires=30, cseq=4)
    assert resp.status == 200
    assert reg.bindings(AOR, 0)[0].expires_at == 600


def test_several_contacts_and_removal():
    """Several contacts bind together; expires=0 removes one; `*` with Expires 0 removes all."""
    reg = make_registrar()
    resp, _ = authorized(reg, contact="<sip:1001@192.0.2.30:5080>, <sip:1001@192.0.2.31:5080>;q=0.5")
    assert resp.status == 200 and len(resp.headers.get_all("Contact")) == 2
    resp, _ = authorized(reg, contact="<sip:1001@192.0.2.31:5080>;expires=0", cseq=4)
    assert [b.contact for b in reg.bindings(AOR, 0)] == ["sip:1001@192.0.2.30:5080"]
    bad, _ = authorized(reg, contact="*", cseq=6)
    assert bad.status == 400
    resp, _ = authorized(reg, contact="*", expires=0, cseq=8)
    assert resp.status == 200 and reg.bindings(AOR, 0) == []
    assert [e.contacts for e in reg.events()] == [
        ("sip:1001@192.0.2.30:5080", "sip:1001@192.0.2.31:5080"),
        ("sip:1001@192.0.2.30:5080",), ()]


def test_binding_expires_on_timer():
    """When a binding's time is up, handle_timer drops it and reports ContactsChanged."""
    reg = make_registrar()
    authorized(reg, 0.0, expires=120)
    reg.events()
    assert reg.get_timer() == 120.0
    reg.handle_timer(119.0)
    assert reg.events() == []
    reg.handle_timer(120.0)
    assert reg.events() == [ContactsChanged(AOR, ())]
    assert reg.get_timer() is None


def test_unknown_user_is_403():
    """A user the lookup does not know cannot register."""
    reg = make_registrar()
    first = reg.handle_register(parse_message(register(user="9999")), PHONE, 0)
    ch = parse_challenge(first.headers.get("WWW-Authenticate"))
    auth = build_authorization(ch, username="9999", password="x", method="REGISTER",
                               uri="sip:198.51.100.1", cnonce="c")
    resp = reg.handle_register(parse_message(register(user="9999", cseq=2, auth=auth)), PHONE, 0)
    assert resp.status == 403


def test_ua_routes_register_to_registrar():
    """With registrar=..., the UA answers REGISTER through it and relays its events."""
    ua = new_ua(registrar=make_registrar())
    ua.receive_datagram(register(), PHONE, 0.0)
    (resp, addr), = sent(ua)
    assert resp.status == 401 and addr == PHONE
    ch = parse_challenge(resp.headers.get("WWW-Authenticate"))
    auth = build_authorization(ch, username="1001", password="secret", method="REGISTER",
                               uri="sip:198.51.100.1", cnonce="c")
    ua.receive_datagram(register(cseq=2, auth=auth, expires=300), PHONE, 1.0)
    (resp, _), = sent(ua)
    assert resp.status == 200
    assert ua.events() == [ContactsChanged(AOR, ("sip:1001@192.0.2.30:5080",))]
    assert ua.get_timer() is not None
    ua.handle_timer(301.0)
    assert ua.events() == [ContactsChanged(AOR, ())]


def _answer(reg, *, user="1001", password="secret", nonce=None, qop=True, source=PHONE, now=0.0,
            algorithm="MD5", cseq=2):
    """A REGISTER answering a fresh challenge (or carrying `nonce` as given)."""
    first = reg.handle_register(parse_message(register(cseq=cseq - 1, user=user)), source, now)
    challenge = next(parse_challenge(v) for v in first.headers.get_all("WWW-Authenticate")
                     if f"algorithm={algorithm}" in v)
    if nonce is not None:
        challenge = type(challenge)(challenge.realm, nonce, challenge.algorithm,
                                    challenge.qop if qop else (), None, False)
    elif not qop:
        challenge = type(challenge)(challenge.realm, challenge.nonce, challenge.algorithm, (), None, False)
    auth = build_authorization(challenge, username=user, password=password, method="REGISTER",
                               uri="sip:198.51.100.1", cnonce="c0ffee")
    return reg.handle_register(parse_message(register(cseq=cseq, auth=auth, user=user)), source, now)


def _answer_shape(resp):
    """What an outsider sees of a response: status, reason and challenge parameters."""
    challenges = [parse_challenge(v) for v in resp.headers.get_all("WWW-Authenticate")]
    return resp.status, resp.reason, [(c.algorithm, c.qop, c.stale) for c in challenges]


@pytest.mark.parametrize("password", ["secret", "wrong"])
def test_made_up_nonce_gets_the_same_plain_challenge_whatever_the_password(password):
    """No oracle: a nonce we did not issue gets 401 (not stale) before the password is checked."""
    reg = make_registrar(algorithms=("MD5",))
    resp = _answer(reg, password=password, nonce="0.deadbeef.0123456789abcdef0123456789abcdef")
    assert _answer_shape(resp) == (401, "Unauthorized", [("MD5", ("auth",), False)])
    assert [e.reason for e in reg.events()] == ["nonce not ours"]


def test_nonce_is_bound_to_the_source_address():
    """A nonce issued to one address is not ours when another address answers with it."""
    reg = make_registrar(algorithms=("MD5",))
    first = reg.handle_register(parse_message(register()), PHONE, 0.0)
    ch = parse_challenge(first.headers.get("WWW-Authenticate"))
    auth = build_authorization(ch, username="1001", password="secret", method="REGISTER",
                               uri="sip:198.51.100.1", cnonce="c")
    other = ("192.0.2.99", 5060)
    resp = reg.handle_register(parse_message(register(cseq=2, auth=auth)), other, 0.0)
    assert resp.status == 401 and not parse_challenge(resp.headers.get("WWW-Authenticate")).stale
    assert reg.bindings(AOR, 0.0) == []


def test_unknown_and_known_extensions_look_the_same():
    """Unknown and registered extensions: the same 401 challenge, the same 403 for a wrong
    password (status, reason and challenge parameters alike)."""
    reg = make_registrar(algorithms=("MD5",))
    known = reg.handle_register(parse_message(register(user="1001")), PHONE, 0.0)
    unknown = reg.handle_register(parse_message(register(user="9999")), PHONE, 0.0)
    assert _answer_shape(known) == _answer_shape(unknown)
    assert _answer_shape(_answer(reg, user="1001", password="guess")) == \
        _answer_shape(_answer(reg, user="9999", password="guess")) == (403, "Forbidden", [])


def test_digest_without_qop_is_refused_even_with_the_right_password():
    """qop=auth is required: an RFC 2069 answer (no qop) gets 403 whatever the password, binds
    nothing and counts as a failure."""
    reg = make_registrar(algorithms=("MD5",))
    right, wrong = _answer(reg, qop=False), _answer(reg, qop=False, password="wrong", cseq=4)
    assert _answer_shape(right) == _answer_shape(wrong) == (403, "Forbidden (qop=auth required)", [])
    assert reg.bindings(AOR, 0.0) == []
    assert [type(e).__name__ for e in reg.events()] == ["DigestFailed", "DigestFailed"]


def test_digest_without_qop_when_old_phones_are_allowed():
    """require_qop=False (digest_qop_required = false) takes RFC 2069 answers with the right password."""
    reg = make_registrar(algorithms=("MD5",), require_qop=False)
    assert _answer(reg, qop=False, password="wrong").status == 403
    assert _answer(reg, qop=False, cseq=4).status == 200
    assert [b.contact for b in reg.bindings(AOR, 0.0)] == ["sip:1001@192.0.2.30:5080"]


def test_challenges_store_nothing():
    """A flood of unauthenticated REGISTERs stores no nonce (stateless HMAC nonces)."""
    reg = make_registrar()
    for i in range(2000):
        reg.handle_register(parse_message(register(call_id=f"c{i}")), ("192.0.2.50", 5060 + i % 100), i * 0.001)
    assert reg._nonces.used_count() == 0 and reg.events() == []

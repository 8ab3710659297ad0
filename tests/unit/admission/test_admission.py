"""Call admission: the decision table, the INVITE digest check and the call book."""

from __future__ import annotations

import pytest

from callcenter.admission import (
    AuthResult, CallBook, InviteAuth, Limits, Offer, decide, parse_allow, source_allowed,
)
from callcenter.sip.digest import build_authorization, ha1, parse_challenge

LIMITS = Limits(max_calls=4, max_calls_per_source=2, retry_after_s=20)


def offer(source="outsider", target="did", auth="none", open_dids=True, total=0, mine=0, backlog=False) -> Offer:
    return Offer(source, target, auth, open_dids, total, mine, backlog)


@pytest.mark.parametrize("o, action, status", [
    (offer(), "admit", 0),
    (offer(target="extension"), "challenge", 407),
    (offer(target="other"), "challenge", 407),
    (offer(target="did", open_dids=False), "challenge", 407),
    (offer(target="extension", auth="bad"), "reject", 403),
    (offer(target="other", auth="bad"), "reject", 403),
    (offer(target="extension", auth="stale"), "challenge", 407),
    (offer(target="extension", auth="forged"), "challenge", 407),
    (offer(source="phone", target="extension", auth="ok"), "admit", 0),
    (offer(source="phone", target="other", auth="ok"), "reject", 404),
    (offer(source="phone", target="did", auth="ok", open_dids=False), "admit", 0),
    (offer(source="trunk", target="did", open_dids=False), "admit", 0),
    (offer(source="trunk", target="extension"), "admit", 0),
    (offer(source="trunk", target="other"), "reject", 404),
])
def test_decision_table(o, action, status):
    """Each (source, target, credentials) row gives its verdict."""
    v = decide(o, LIMITS)
    assert (v.action, v.status) == (action, status)


def test_outsider_cannot_tell_an_extension_from_a_missing_number():
    """An outsider gets the very same verdict for a registered extension and a number that does not exist."""
    assert decide(offer(target="extension"), LIMITS) == decide(offer(target="other"), LIMITS)
    assert decide(offer(target="extension", auth="bad"), LIMITS) == decide(offer(target="other", auth="bad"), LIMITS)


def test_limits_give_503_with_retry_after():
    """Beyond the per-source or total limit, or with a full write backlog, an admissible call gets 503 Retry-After."""
    per_source = decide(offer(mine=2, total=2), LIMITS)
    assert (per_source.status, per_source.retry_after_s, per_source.why) == (503, 20, "per-source call limit")
    assert decide(offer(mine=0, total=4), LIMITS).status == 503
    assert decide(offer(backlog=True), LIMITS).status == 503
    # A trunk carries many callers from one address: only the total applies to it.
    assert decide(offer(source="trunk", mine=3, total=3), LIMITS).action == "admit"
    assert decide(offer(source="trunk", mine=4, total=4), LIMITS).status == 503
    # An unauthenticated call to an extension is challenged before it counts against anything.
    assert decide(offer(target="extension", mine=9, total=9), LIMITS).status == 407


@pytest.mark.parametrize("text, source, allowed", [
    ("192.0.2.10", ("192.0.2.10", 5099), True),
    ("192.0.2.10:5060", ("192.0.2.10", 5060), True),
    ("192.0.2.10:5060", ("192.0.2.10", 5062), False),
    ("192.0.2.0/24", ("192.0.2.77", 1), True),
    ("192.0.2.0/24", ("198.51.100.1", 5060), False),
    ("[2001:db8::5]:5060", ("2001:db8::5", 5060), True),
    ("2001:db8::/32", ("2001:db8::9", 5070), True),
])
def test_allow_entries_match_ip_and_optional_port(text, source, allowed):
    """A trunk allow entry pins an address or network, and a port when one is given."""
    assert source_allowed((parse_allow(text),), source) is allowed


@pytest.mark.parametrize("bad", ["carrier.example", "192.0.2.10:port", "192.0.2.10:70000", "[2001:db8::5"])
def test_bad_allow_entries_are_refused(bad):
    """A host name, a bad port or a broken IPv6 bracket is not an allow entry."""
    with pytest.raises(ValueError):
        parse_allow(bad)


REALM = "hotline"
ACCOUNTS = {"1001": ha1("1001", REALM, "agent-pass-1")}


def _auth(**kw) -> InviteAuth:
    return InviteAuth(realm=REALM, lookup=lambda user, algo: ACCOUNTS.get(user), **kw)


PHONE_IP = "192.0.2.20"


def _answer(challenge_headers, user="1001", password="agent-pass-1", nc=1) -> str:
    ch = parse_challenge(challenge_headers[0][1])
    return build_authorization(ch, username=user, password=password, method="INVITE",
                               uri="sip:1001@127.0.0.1", cnonce="c0ffee", nc=nc)


def test_right_password_proves_the_account():
    """A phone answering the 407 with its account's password is that account; replaying it is stale."""
    auth = _auth()
    headers = auth.challenge(PHONE_IP, 100.0)
    assert headers[0][0] == "Proxy-Authenticate" and 'qop="auth"' in headers[0][1]
    assert auth.check(_answer(headers), "INVITE", PHONE_IP, 101.0) == AuthResult("ok", "1001")
    assert auth.check(_answer(headers), "INVITE", PHONE_IP, 101.0).kind == "stale"
    assert auth.check(_answer(headers, nc=2), "INVITE", PHONE_IP, 101.0).kind == "ok"


def test_wrong_password_and_unknown_user_look_the_same():
    """Wrong password and unknown user both give `bad`; a nonce given to another address is `forged` whatever the password."""
    auth = _auth()
    headers = auth.challenge(PHONE_IP, 100.0)
    assert auth.check(_answer(headers, password="guess-1234"), "INVITE", PHONE_IP, 101.0).kind == "bad"
    assert auth.check(_answer(headers, user="9999"), "INVITE", PHONE_IP, 101.0).kind == "bad"
    assert auth.check(_answer(headers), "INVITE", "198.51.100.9", 101.0).kind == "forged"
    assert auth.check(_answer(headers, password="guess-1234"), "INVITE", "198.51.100.9", 101.0).kind == "forged"
    forged = _answer(headers).replace(parse_challenge(headers[0][1]).nonce, "f" * 40)
    assert auth.check(forged, "INVITE", PHONE_IP, 101.0).kind == "forged"
    assert auth.check("Digest garbage", "INVITE", PHONE_IP, 101.0).kind == "bad"
    assert auth.check(None, "INVITE", PHONE_IP, 101.0).kind == "none"


def test_old_nonce_is_stale():
    """A nonce past its lifetime is stale (the phone retries without asking its user)."""
    auth = _auth(nonce_ttl=10.0)
    headers = auth.challenge(PHONE_IP, 0.0)
    assert auth.check(_answer(headers), "INVITE", PHONE_IP, 15.0).kind == "stale"


def test_call_book_counts_per_source():
    """The book counts live calls per source IP and forgets a source whose calls all ended."""
    book = CallBook()
    book.add("a", "127.0.0.2")
    book.add("a", "127.0.0.2")
    book.add("b", "127.0.0.2")
    book.add("c", "127.0.0.3")
    assert (len(book), book.from_ip("127.0.0.2"), book.from_ip("127.0.0.3")) == (3, 2, 1)
    book.remove("a")
    book.remove("b")
    book.remove("zzz")
    assert (len(book), book.from_ip("127.0.0.2")) == (1, 0)

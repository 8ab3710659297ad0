"""Tests for callcenter.sip.digest against the RFC 2617 / RFC 7616 worked examples."""

import pytest

from callcenter.sip.digest import (
    DigestError, build_authorization, compute_response, ha1, parse_auth_params,
    parse_challenge,
)


def test_rfc2617_md5_example():
    """The RFC 2617 §3.5 example response is reproduced."""
    key = ha1("Mufasa", "testrealm@host.com", "Circle Of Life", "MD5")
    resp = compute_response(algorithm="MD5", ha1=key, nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                            method="GET", uri="/dir/index.html", qop="auth", nc="00000001",
                            cnonce="0a4f113b")
    assert resp == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize("algorithm, expected", [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_examples(algorithm, expected):
    """The RFC 7616 §3.9.1 MD5 and SHA-256 responses are reproduced."""
    key = ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    resp = compute_response(
        algorithm=algorithm, ha1=key, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        method="GET", uri="/dir/index.html", qop="auth", nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert resp == expected


def test_parse_challenge_and_build_authorization():
    """A SHA-256 challenge is parsed and answered with qop, nc, cnonce and opaque."""
    ch = parse_challenge('Digest realm="12319", nonce="abc", algorithm=SHA-256, '
                         'qop="auth,auth-int", opaque="op", stale=TRUE')
    assert (ch.realm, ch.nonce, ch.algorithm, ch.qop, ch.opaque, ch.stale) == \
        ("12319", "abc", "SHA-256", ("auth", "auth-int"), "op", True)
    value = build_authorization(ch, username="1001", password="pw", method="REGISTER",
                                uri="sip:12319", cnonce="cn", nc=1)
    scheme, p = parse_auth_params(value)
    assert scheme == "Digest"
    assert (p["qop"], p["nc"], p["cnonce"], p["opaque"]) == ("auth", "00000001", "cn", "op")
    assert p["response"] == compute_response(
        algorithm="SHA-256", ha1=ha1("1001", "12319", "pw", "SHA-256"), nonce="abc",
        method="REGISTER", uri="sip:12319", qop="auth", nc="00000001", cnonce="cn")


def test_rfc2069_form_without_qop():
    """Without qop the response is H(HA1:nonce:HA2)."""
    ch = parse_challenge('Digest realm="r", nonce="n"')
    _, p = parse_auth_params(build_authorization(ch, username="u", password="p",
                                                 method="INVITE", uri="sip:x", cnonce="c"))
    assert "qop" not in p
    assert p["response"] == compute_response(algorithm="MD5", ha1=ha1("u", "r", "p"),
                                             nonce="n", method="INVITE", uri="sip:x")


@pytest.mark.parametrize("bad", [
    'Basic realm="x"', 'Digest realm="x"', 'Digest realm="x", nonce="n", algorithm=SHA-512',
    'Digest realm="x, nonce="n"', "Digest", 'Digest realm',
])
def test_bad_challenges_raise(bad):
    """Unusable challenges raise DigestError."""
    with pytest.raises(DigestError):
        parse_challenge(bad)


def test_nonce_issuer_fresh_stale_bad_and_replay():
    """Our nonce is fresh, then stale after ttl; altered ones are bad; nc must grow; the
    remembered nonces are capped."""
    from callcenter.sip.digest import NonceIssuer

    issuer = NonceIssuer(b"k" * 32, ttl=30, max_used=2)
    nonce = issuer.issue("192.0.2.1", 100.0)
    assert issuer.check(nonce, "192.0.2.1", 110.0) == "fresh"
    assert issuer.check(nonce, "192.0.2.1", 131.0) == "stale"
    assert issuer.check(nonce, "192.0.2.2", 110.0) == "bad"
    assert issuer.check(nonce[:-1] + ("0" if nonce[-1] != "0" else "1"), "192.0.2.1", 110.0) == "bad"
    assert issuer.check("garbage", "192.0.2.1", 110.0) == "bad"
    assert NonceIssuer(b"x" * 32, ttl=30).check(nonce, "192.0.2.1", 110.0) == "bad"
    assert issuer.use(nonce, 1) and not issuer.use(nonce, 1) and issuer.use(nonce, 2)
    for i in range(5):
        issuer.use(f"n{i}", 1)
    assert issuer.used_count() == 2


def test_responses_equal_ignores_case_only():
    """The constant-time compare accepts the same hex in either case and nothing else."""
    from callcenter.sip.digest import responses_equal

    assert responses_equal("abcdef01", "ABCDEF01")
    assert not responses_equal("abcdef01", "abcdef02")
    assert not responses_equal("abcdef01", "abcdef0")

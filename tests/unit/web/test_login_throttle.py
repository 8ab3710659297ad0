"""The pure login throttle, the `next` normalisation and the security headers (no I/O)."""

from __future__ import annotations

import pytest

from web.auth import content_security_policy, normalise_next, security_headers, tile_origin
from web.login_throttle import LoginThrottle, ThrottleRules

RULES = ThrottleRules(max_failures_per_user=3, max_failures_per_source=5, max_failures_per_user_all=8,
                      window_s=100, lockout_s=10, max_lockout_s=40, max_keys=50)


def test_user_locked_from_one_source_after_limit_with_retry_after():
    """The third failure for one name from one source locks that (name, source) for lockout_s;
    the lock lapses after it."""
    t = LoginThrottle(RULES)
    assert t.failed("admin", "10.0.0.1", 0).allowed
    assert t.failed("admin", "10.0.0.1", 1).allowed
    v = t.failed("Admin", "10.0.0.1", 2)  # user names compared case-insensitively
    assert not v.allowed and v.key == "pair" and v.retry_after_s == 10
    refused = t.check("admin", "10.0.0.1", 5)
    assert not refused.allowed and refused.retry_after_s == 7 and refused.key == "pair"
    assert t.check("agent1", "10.0.0.1", 5).allowed  # other names are not affected
    assert refused.first and not t.check("admin", "10.0.0.1", 6).first  # reported once per lock
    assert t.check("admin", "10.0.0.1", 12.5).allowed


def test_failures_from_another_source_do_not_lock_the_user_out():
    """G5: wrong passwords for a name from one address (an attacker) do not lock that name for
    its owner at another address; only the much higher limit across all sources does."""
    t = LoginThrottle(RULES)
    for i in range(3):
        t.failed("supervisor1", "10.6.6.6", i)
    assert not t.check("supervisor1", "10.6.6.6", 3).allowed  # the guessing address is locked…
    assert t.check("supervisor1", "10.0.0.52", 3).allowed  # …the owner's is not
    # Many addresses together: the 8th failure for the name across sources locks it everywhere.
    verdicts = [t.failed("supervisor1", f"10.7.0.{i}", 4 + i) for i in range(5)]
    assert all(v.allowed for v in verdicts[:4]) and not verdicts[4].allowed and verdicts[4].key == "user"
    refused = t.check("supervisor1", "10.0.0.52", 10)
    assert not refused.allowed and refused.key == "user"


def test_repeated_lockouts_double_up_to_the_cap():
    """Each lockout within a busy period doubles the next one, never past max_lockout_s."""
    t = LoginThrottle(RULES)
    locks, now = [], 0.0
    for _ in range(5):
        for _ in range(3):
            v = t.failed("admin", "10.0.1.1", now)
            now += 0.1
        locks.append(v.retry_after_s)
        now = t.pairs[("admin", "10.0.1.1")].locked_until + 0.1
    assert locks == [10, 20, 40, 40, 40]


def test_success_clears_the_user_but_not_the_source():
    """A right password resets the name's counters; the guessing address stays counted."""
    t = LoginThrottle(RULES)
    for i in range(2):
        t.failed("admin", "10.0.0.1", i)
    t.succeeded("admin", "10.0.0.1", 3)
    assert t.failed("admin", "10.0.0.1", 4).allowed  # counting starts again for the user
    for i, name in enumerate(("a", "b")):
        t.failed(name, "10.0.0.1", 5 + i)
    # 5 failures from 10.0.0.1 in all: the source is locked whatever name it tries next
    v = t.check("someone", "10.0.0.1", 7)
    assert not v.allowed and v.key == "source"
    assert t.check("someone", "10.0.0.2", 7).allowed


def test_window_lapse_forgets_old_failures():
    """Failures older than the window do not count towards a lock."""
    t = LoginThrottle(RULES)
    t.failed("admin", "s1", 0)
    t.failed("admin", "s1", 1)
    assert t.failed("admin", "s1", 150).allowed  # the window restarted at 150
    assert t.failed("admin", "s1", 151).allowed
    assert not t.failed("admin", "s1", 152).allowed


def test_memory_is_bounded_under_made_up_names():
    """Thousands of invented user names from many sources keep at most max_keys records each."""
    t = LoginThrottle(RULES)
    for i in range(5000):
        t.failed(f"user{i}", f"10.{i // 250}.{i % 250}.1", i * 0.01)
    assert len(t.users) <= RULES.max_keys and len(t.sources) <= RULES.max_keys and len(t.pairs) <= RULES.max_keys


@pytest.mark.parametrize("raw, expected", [
    ("/desk", "/desk"),
    ("/cases?status=accepted&page=2", "/cases?status=accepted&page=2"),
    ("/%09/evil.example", "/cases"),
    ("/\t/evil.example", "/cases"),
    ("/\n/evil.example", "/cases"),
    ("/\\evil.example", "/evil.example"),
    ("/\\/evil.example", "/cases"),
    ("//evil.example", "/cases"),
    ("/%2F/evil.example", "/cases"),
    ("/%5C/evil.example", "/cases"),
    ("https://evil.example/", "/cases"),
    ("javascript:alert(1)", "/cases"),
    ("", "/cases"),
    (None, "/cases"),
    ("/x" * 2000, "/cases"),
])
def test_next_is_normalised_before_the_same_site_check(raw, expected):
    """Control characters and backslashes cannot turn `next` into another site."""
    assert normalise_next(raw) == expected


def test_csp_forbids_inline_script_and_framing_except_wallboard():
    """script-src is 'self' only; only /wallboard may be framed, by our own origin."""
    desk = content_security_policy("/desk")
    assert "script-src 'self';" in desk and "unsafe-inline" not in desk.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in desk
    assert "frame-ancestors 'self'" in content_security_policy("/wallboard")
    headers = security_headers("/cases")
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "same-origin"


def test_map_tiles_origin_is_allowed_as_image_source():
    """The configured tile server's origin (with a {s} subdomain as a wildcard) may serve images."""
    assert tile_origin("http://t0.tianditu.gov.cn/vec_w/wmts?TILEMATRIX={z}&tk={key}") == "http://t0.tianditu.gov.cn"
    assert tile_origin("https://{s}.tile.example.org/{z}/{x}/{y}.png") == "https://*.tile.example.org"
    assert tile_origin("") == ""
    assert "img-src 'self' data: blob: http://t0.tianditu.gov.cn;" in content_security_policy("/map", "http://t0.tianditu.gov.cn")

"""The pike-style defence: per-source rates, digest failures, bans, allow-list, bounded tables."""

from callcenter.sip.defence import Defence, DefencePolicy, SourceBanned, SourceUnbanned, scanner_agent

OPTIONS = (b"OPTIONS sip:12319@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx\r\n"
           b"User-Agent: {ua}\r\nContent-Length: 0\r\n\r\n")


def _dgram(ua: str = "Linphone/5.2") -> bytes:
    return OPTIONS.replace(b"{ua}", ua.encode())


def test_source_over_the_rate_is_banned_and_dropped_until_the_ban_ends():
    """One datagram over flood_max_requests in a window bans the source; its datagrams are dropped
    until ban_s has passed, then one unban event and it is admitted again."""
    d = Defence(DefencePolicy(flood_window_s=1.0, flood_max_requests=5, ban_s=30))
    assert all(d.admit("192.0.2.9", _dgram(), 10.0 + i / 100) for i in range(5))
    assert not d.admit("192.0.2.9", _dgram(), 10.06)
    [ev] = d.events()
    assert ev == SourceBanned("192.0.2.9", "flood", 40.06, 6)
    assert not d.admit("192.0.2.9", _dgram(), 39.0)
    assert d.admit("192.0.2.10", _dgram(), 39.0)  # other sources untouched
    assert d.get_timer() == 40.06
    d.handle_timer(40.1)
    assert d.events() == [SourceUnbanned("192.0.2.9", 1)]
    assert d.admit("192.0.2.9", _dgram(), 40.2)
    assert d.dropped == {"banned": 1, "flood": 1, "scanner": 0}


def test_rate_counts_restart_each_window():
    """A steady sender below the rate is never banned: counters restart with every window."""
    d = Defence(DefencePolicy(flood_window_s=1.0, flood_max_requests=5))
    for i in range(100):
        assert d.admit("192.0.2.9", _dgram(), i * 0.25)  # 4 per window
    assert d.events() == []


def test_digest_failures_ban_after_the_limit_within_the_window():
    """auth_max_failures failed digests within auth_window_s ban; older ones are forgotten."""
    d = Defence(DefencePolicy(auth_max_failures=3, auth_window_s=60, ban_s=100))
    assert not d.auth_failed("192.0.2.5", 0.0)
    assert not d.auth_failed("192.0.2.5", 1.0)
    assert not d.auth_failed("192.0.2.5", 70.0)  # the first two are older than the window
    assert not d.auth_failed("192.0.2.5", 71.0)
    assert d.auth_failed("192.0.2.5", 72.0)
    assert d.events() == [SourceBanned("192.0.2.5", "digest", 172.0, 3)]
    assert not d.admit("192.0.2.5", _dgram(), 100.0)


def test_allow_listed_networks_are_never_counted_nor_banned():
    """Trunks and the LAN (allow CIDRs) may flood and fail digests without a ban."""
    d = Defence(DefencePolicy(flood_window_s=1.0, flood_max_requests=2, auth_max_failures=1,
                              allow=("10.0.0.0/8", "2001:db8::/32")))
    assert all(d.admit("10.1.2.3", _dgram(), 0.0) for _ in range(50))
    assert all(d.admit("2001:db8::7", _dgram(), 0.0) for _ in range(50))
    assert not d.auth_failed("10.1.2.3", 0.0)
    assert d.events() == [] and d.tracked_sources() == 0


def test_scanner_user_agents_are_dropped_and_banned():
    """friendly-scanner, sipvicious, sipcli, VaxSIPUserAgent …: dropped silently and banned."""
    for ua in ("friendly-scanner", "sipvicious 0.3.3", "sipcli/v1.8", "VaxSIPUserAgent/3.1"):
        d = Defence()
        assert not d.admit("192.0.2.66", _dgram(ua), 0.0)
        assert [type(e).__name__ for e in d.events()] == ["SourceBanned"]
        assert d.banned("192.0.2.66", 1.0)
    assert scanner_agent(_dgram("FRIENDLY-SCANNER"))
    assert not scanner_agent(_dgram("Linphone/5.2 (belle-sip/5.2)"))
    assert not scanner_agent(b"OPTIONS sip:x SIP/2.0\r\nSubject: sipvicious\r\n\r\n")


def test_scanner_drop_can_be_turned_off():
    """drop_scanners = false lets a scanner's datagram through (it is parsed as any other)."""
    d = Defence(DefencePolicy(drop_scanners=False))
    assert d.admit("192.0.2.66", _dgram("friendly-scanner"), 0.0)


def test_tables_stay_bounded_under_spoofed_sources():
    """A flood from ever new (spoofed) sources fills no table beyond max_sources."""
    d = Defence(DefencePolicy(flood_window_s=1.0, flood_max_requests=1, max_sources=100, auth_max_failures=2))
    for i in range(5000):
        src = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
        d.admit(src, _dgram(), 0.5)
        d.admit(src, _dgram(), 0.5)  # second one bans (until the ban table is full)
        d.auth_failed(f"172.16.{i // 256 % 256}.{i % 256}", 0.5)
    assert len(d._counts) <= 100 and len(d._bans) <= 100 and len(d._failures) <= 100
    assert d.banned_count() == 100


def test_manual_unban():
    """An operator can lift a ban; unbanning an unbanned source says so."""
    d = Defence(DefencePolicy(auth_max_failures=1))
    d.auth_failed("192.0.2.5", 0.0)
    assert d.unban("192.0.2.5") and not d.unban("192.0.2.5")
    assert d.admit("192.0.2.5", _dgram(), 1.0)


def test_log_tally_logs_the_first_line_per_key_then_one_count_per_period():
    """Bad-input logging: first line per source at once, the rest as one count per period;
    keys beyond max_keys are summed in one line."""
    from callcenter.sip.defence import LogTally

    tally = LogTally(period_s=60, max_keys=2)
    assert tally.note("a", "bad 1", 0.0) == "bad 1"
    assert [tally.note("a", f"bad {i}", 1.0) for i in range(2, 1000)] == [None] * 998
    assert tally.note("b", "other", 2.0) == "other"
    assert tally.note("c", "third", 2.0) is None
    assert tally.flush(59.0) == []
    assert tally.flush(61.0) == ["a: 998 more in the last 61 s (last: bad 999)",
                                 "1 more events from other sources in the last 61 s"]
    assert not tally.pending()
    assert tally.note("a", "again", 62.0) == "again"


def test_allow_network_drops_pinned_ports():
    """Trunk allow entries with a port allow the whole address in the defence."""
    from callcenter.sip.defence import allow_network

    assert [allow_network(e) for e in ("203.0.113.5:5060", "[2001:db8::5]:5060", "10.0.0.0/8",
                                       "2001:db8::/32", "192.0.2.1")] == \
        ["203.0.113.5", "2001:db8::5", "10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]

"""Per-source defence of the SIP port, as Kamailio's pike and htable modules do it.

Owns three decisions about a datagram's source address, all taken before the datagram is
parsed: is the source banned, did it just send more than `flood_max_requests` datagrams in one
`flood_window_s` window (then it is banned), and does it announce itself as a scanner (a
`User-Agent` such as friendly-scanner/sipvicious: dropped silently and banned). Digest
failures reported by the registrar (or the call admission's 407 check) count per source;
`auth_max_failures` within `auth_window_s` ban it. Allow-listed networks (trunks, the LAN)
are never counted nor banned.

Memory is bounded: rate counters exist for the current and the previous window only and
for at most `max_sources` sources (more are admitted uncounted), the ban and digest-failure
tables hold at most `max_sources` entries each (the oldest go first). Pure: time is `now`,
bans and unbans come out as `SourceBanned`/`SourceUnbanned` events for the driver to log,
audit and count.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["DefencePolicy", "Defence", "SourceBanned", "SourceUnbanned", "SCANNER_AGENTS", "LogTally", "allow_network",
           "scanner_agent"]

# Lower-case tokens of User-Agent values sent by SIP scanners and password crackers.
SCANNER_AGENTS = (
    b"friendly-scanner", b"sipvicious", b"sipcli", b"vaxsipuseragent", b"sip-scan",
    b"sundayddr", b"iwar", b"smap", b"sipptk", b"pplsip", b"voip-scanner", b"sip scanner",
)


@dataclass(frozen=True)
class DefencePolicy:
    """Limits of `Defence` (the `[sip]` `flood_*`, `auth_*`, `ban_s`, `allow` keys)."""

    flood_window_s: float = 2.0
    # Datagrams one source may send in one window; one more bans it (pike's density).
    flood_max_requests: int = 400
    auth_max_failures: int = 10
    auth_window_s: float = 600.0
    ban_s: float = 600.0
    allow: tuple[str, ...] = ()
    drop_scanners: bool = True
    max_sources: int = 50_000

    def networks(self) -> tuple:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.allow)


@dataclass(frozen=True)
class SourceBanned:
    source: str
    reason: str  # "flood" | "digest" | "scanner"
    until: float
    count: int  # datagrams in the window, or digest failures


@dataclass(frozen=True)
class SourceUnbanned:
    source: str
    dropped: int  # datagrams dropped while it was banned


@dataclass
class _Ban:
    until: float
    reason: str
    dropped: int = 0


@dataclass
class _Failures:
    first_at: float
    count: int = 0


@dataclass
class Defence:
    policy: DefencePolicy = field(default_factory=DefencePolicy)

    def __post_init__(self) -> None:
        self._allow_nets = self.policy.networks()
        self._allowed: dict[str, bool] = {}  # address → allow-listed (memo, capped)
        self._window = -1
        self._counts: dict[str, int] = {}
        self._bans: dict[str, _Ban] = {}
        self._failures: dict[str, _Failures] = {}
        self._events: list = []
        self.dropped = {"banned": 0, "flood": 0, "scanner": 0}

    # -------------------------------------------------------------- per datagram
    def admit(self, source: str, data: bytes, now: float) -> bool:
        """False when the datagram from `source` must be dropped unparsed."""
        ban = self._bans.get(source)
        if ban is not None:
            if now < ban.until:
                ban.dropped += 1
                self.dropped["banned"] += 1
                return False
            self._unban(source)
        if self._is_allowed(source):
            return True
        window = int(now // self.policy.flood_window_s)
        if window != self._window:
            self._roll(window, now)
        counts = self._counts
        n = counts.get(source)
        if n is None:
            if len(counts) >= self.policy.max_sources:
                n = 0  # table full: admitted uncounted until the next window
            else:
                counts[source] = n = 1
        else:
            n += 1
            counts[source] = n
        if n > self.policy.flood_max_requests:
            self._ban(source, "flood", now, n)
            self.dropped["flood"] += 1
            return False
        if self.policy.drop_scanners and scanner_agent(data):
            self._ban(source, "scanner", now, 1)
            self.dropped["scanner"] += 1
            return False
        return True

    def auth_failed(self, source: str, now: float) -> bool:
        """Count one failed digest answer from `source`; True when that banned it."""
        if self._is_allowed(source) or source in self._bans:
            return False
        f = self._failures.get(source)
        if f is None or now - f.first_at > self.policy.auth_window_s:
            if f is None and len(self._failures) >= self.policy.max_sources:
                self._failures.pop(next(iter(self._failures)))
            f = self._failures[source] = _Failures(now)
        f.count += 1
        if f.count >= self.policy.auth_max_failures:
            del self._failures[source]
            self._ban(source, "digest", now, f.count)
            return True
        return False

    # ------------------------------------------------------------------ queries
    def banned(self, source: str, now: float) -> bool:
        ban = self._bans.get(source)
        return ban is not None and now < ban.until

    def banned_count(self) -> int:
        return len(self._bans)

    def bans(self, now: float) -> list[tuple[str, str, float]]:
        """The bans in force: (source, reason, until), the latest to end first."""
        live = [(s, b.reason, b.until) for s, b in self._bans.items() if now < b.until]
        return sorted(live, key=lambda ban: (-ban[2], ban[0]))

    def tracked_sources(self) -> int:
        """Entries in the rate, failure and ban tables (bounded; see module docstring)."""
        return len(self._counts) + len(self._failures) + len(self._bans)

    def events(self) -> list:
        out, self._events = self._events, []
        return out

    def get_timer(self) -> float | None:
        """When the earliest ban ends (its unban event comes out of `handle_timer`)."""
        return min((b.until for b in self._bans.values()), default=None)

    def handle_timer(self, now: float) -> None:
        for source in [s for s, b in self._bans.items() if b.until <= now]:
            self._unban(source)

    def lift(self, source: str, now: float) -> int | None:
        """Lift a ban in force by hand and say how many datagrams it dropped (None: no ban).
        No `SourceUnbanned` comes out: the operator's action is reported by its caller."""
        ban = self._bans.get(source)
        if ban is None or now >= ban.until:
            return None
        del self._bans[source]
        return ban.dropped

    def unban(self, source: str) -> bool:
        """Lift a ban by hand (an operator's decision); False when there was none."""
        if source not in self._bans:
            return False
        self._unban(source)
        return True

    # ---------------------------------------------------------------- internals
    def _is_allowed(self, source: str) -> bool:
        allowed = self._allowed.get(source)
        if allowed is None:
            if not self._allow_nets:
                return False
            try:
                ip = ipaddress.ip_address(source)
            except ValueError:
                allowed = False
            else:
                allowed = any(ip in net for net in self._allow_nets)
            if len(self._allowed) >= 1024:
                self._allowed.clear()
            self._allowed[source] = allowed
        return allowed

    def _roll(self, window: int, now: float) -> None:
        self._window = window
        self._counts = {}
        horizon = now - self.policy.auth_window_s
        if len(self._failures) > 1024:
            self._failures = {s: f for s, f in self._failures.items() if f.first_at > horizon}

    def _ban(self, source: str, reason: str, now: float, count: int) -> None:
        if len(self._bans) >= self.policy.max_sources:
            oldest = min(self._bans, key=lambda s: self._bans[s].until)
            self._unban(oldest)
        until = now + self.policy.ban_s
        self._bans[source] = _Ban(until, reason)
        self._counts.pop(source, None)
        self._failures.pop(source, None)
        self._events.append(SourceBanned(source, reason, until, count))

    def _unban(self, source: str) -> None:
        ban = self._bans.pop(source)
        self._events.append(SourceUnbanned(source, ban.dropped))


def scanner_agent(data: bytes) -> bool:
    """True when the datagram's User-Agent names a known SIP scanner (read unparsed)."""
    head = data[:4096].lower()
    at = head.find(b"\nuser-agent:")
    if at < 0:
        return False
    end = head.find(b"\n", at + 12)
    value = head[at + 12:end if end >= 0 else None]
    return any(token in value for token in SCANNER_AGENTS)


class LogTally:
    """Log lines about bad input, rate limited and aggregated per key (e.g. per source).

    `note` returns the line to log now for the first event of a key in a period, None for the
    next ones, which are only counted; `flush` (once the period is over) returns one line per
    key with its count. At most `max_keys` keys are kept; events of others are summed in one.
    """

    def __init__(self, period_s: float = 60.0, max_keys: int = 1000):
        self.period_s = period_s
        self.max_keys = max_keys
        self._started: float | None = None
        self._keys: dict[str, list] = {}  # key → [count not yet logged, last text]
        self._overflow = 0

    def note(self, key: str, text: str, now: float) -> str | None:
        if self._started is None:
            self._started = now
        entry = self._keys.get(key)
        if entry is not None:
            entry[0] += 1
            entry[1] = text
            return None
        if len(self._keys) >= self.max_keys:
            self._overflow += 1
            return None
        self._keys[key] = [0, text]
        return text

    def pending(self) -> bool:
        return self._started is not None

    def flush(self, now: float) -> list[str]:
        if self._started is None or now - self._started < self.period_s:
            return []
        span = now - self._started
        lines = [f"{key}: {n} more in the last {span:.0f} s (last: {text})"
                 for key, (n, text) in self._keys.items() if n]
        if self._overflow:
            lines.append(f"{self._overflow} more events from other sources in the last {span:.0f} s")
        self._keys = {}
        self._overflow = 0
        self._started = None
        return lines


def allow_network(entry: str) -> str:
    """The network of an allow entry that may pin a port ("203.0.113.5:5060",
    "[2001:db8::5]:5060", "10.0.0.0/8", "2001:db8::/32"): the defence allows whole addresses."""
    text = entry.strip()
    if text.startswith("["):
        return text[1:text.index("]")]
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text

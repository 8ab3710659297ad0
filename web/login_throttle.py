"""Login throttling, pure: failures counted per (user name, source), per user name and per source.

No I/O and no clock of its own: every call takes `now` (seconds). The state is three plain
dicts of small records, bounded by `max_keys` each (the entries nearest to expiry go first
when full, so a scan of made-up user names cannot grow memory).

Three keys, each with its own limit within `window_s`:

| key                 | limit (default)                 | what it stops                                   |
|---------------------|---------------------------------|-------------------------------------------------|
| pair (user, source) | `max_failures_per_user` (5)     | one address guessing one name                   |
| source              | `max_failures_per_source` (20)  | one address guessing many names                 |
| user (any source)   | `max_failures_per_user_all` (50)| many addresses guessing one name                |

The low per-user limit counts per (user, source): five wrong passwords from another address
do not lock the user out everywhere (a lockout lever); only the much higher per-user limit
across all sources does.

Rules (the table below, applied to each key on its own):

| event                    | counter in window    | result                                        |
|--------------------------|----------------------|-----------------------------------------------|
| check                    | locked until t > now | refused, retry after t − now                  |
| failure                  | reaches the limit    | locked for `lockout_s` (doubled per lockout,  |
|                          |                      | at most `max_lockout_s`), counter reset       |
| failure                  | below the limit      | counted (window restarts when it lapsed)      |
| success (user, source)   | any                  | that pair's and the user's counters cleared   |

The source's counter is not cleared by a success: one address guessing many names is refused
even if it knows one password.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ThrottleRules:
    max_failures_per_user: int = 5  # per (user name, source)
    max_failures_per_source: int = 20
    max_failures_per_user_all: int = 50  # per user name, whatever the source
    window_s: float = 900.0
    lockout_s: float = 60.0
    max_lockout_s: float = 3600.0
    max_keys: int = 10_000


@dataclass
class _Counter:
    failures: int = 0
    window_start: float = 0.0
    locked_until: float = 0.0
    lockouts: int = 0  # consecutive lockouts: each one doubles the next
    refused: bool = False  # a check was refused during the current lock (report it once)

    def expires(self, rules: ThrottleRules) -> float:
        return max(self.locked_until, self.window_start + rules.window_s)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0  # whole seconds, ≥ 1 when refused
    key: str = ""  # "pair" (user from this source), "source" or "user" (any source): which counter refused
    first: bool = False  # the first refusal of this lock: worth one audit entry, the rest are not


@dataclass
class LoginThrottle:
    rules: ThrottleRules = field(default_factory=ThrottleRules)
    users: dict[str, _Counter] = field(default_factory=dict)
    sources: dict[str, _Counter] = field(default_factory=dict)
    pairs: dict[tuple[str, str], _Counter] = field(default_factory=dict)

    def _keys(self, user: str, source: str) -> tuple:
        """(kind, table, key, limit) of the three counters, in the order they are checked."""
        name = _norm(user)
        return (("source", self.sources, source, self.rules.max_failures_per_source),
                ("pair", self.pairs, (name, source), self.rules.max_failures_per_user),
                ("user", self.users, name, self.rules.max_failures_per_user_all))

    def check(self, user: str, source: str, now: float) -> Verdict:
        """May this user name be tried from this source now?"""
        for kind, table, key, _limit in self._keys(user, source):
            c = table.get(key)
            if c is not None and c.locked_until > now:
                first, c.refused = not c.refused, True
                return Verdict(False, max(1, math.ceil(c.locked_until - now)), kind, first)
        return Verdict(True)

    def failed(self, user: str, source: str, now: float) -> Verdict:
        """Count a failed login; the verdict says whether this failure locked a key."""
        verdict = Verdict(True)
        for kind, table, key, limit in self._keys(user, source):
            c = table.get(key)
            if c is None:
                self._make_room(table, now)
                c = table[key] = _Counter(window_start=now)
            elif now - c.window_start > self.rules.window_s and c.locked_until <= now:
                if now - max(c.window_start, c.locked_until) > self.rules.window_s:
                    c.lockouts = 0  # a quiet window forgives earlier lockouts
                c.failures, c.window_start = 0, now
            c.failures += 1
            if c.failures >= limit:
                lock = min(self.rules.max_lockout_s, self.rules.lockout_s * (2 ** c.lockouts))
                c.locked_until = now + lock
                c.lockouts += 1
                c.refused = False
                c.failures, c.window_start = 0, now
                if verdict.allowed:
                    verdict = Verdict(False, max(1, math.ceil(lock)), kind)
        return verdict

    def succeeded(self, user: str, source: str, now: float) -> None:
        """The right password from `source`: that pair and the user's counter start again."""
        self.pairs.pop((_norm(user), source), None)
        self.users.pop(_norm(user), None)

    def _make_room(self, table: dict, now: float) -> None:
        if len(table) < self.rules.max_keys:
            return
        for key in [k for k, c in table.items() if c.expires(self.rules) <= now]:
            del table[key]
        if len(table) >= self.rules.max_keys:
            victims = sorted(table, key=lambda k: table[k].expires(self.rules))
            for key in victims[: max(1, len(table) // 10)]:
                del table[key]


def _norm(user: str) -> str:
    return user.strip().lower()[:64]

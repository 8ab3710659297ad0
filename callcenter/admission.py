"""Call admission (接入控制): who may ring what, and how many calls at once.

Owns the decision taken on every new INVITE before any RTP port is opened:

- which *source* sent it: an allow-listed carrier trunk (by IP or network, optionally a port,
  as configured), a phone that answered our digest challenge (407, the registrar's accounts),
  or an outsider;
- which *target* it names: one of the public DIDs, or anything else (an agent's extension or
  a number that does not exist — an outsider must not learn which is which);
- the concurrent-call limits (total, per source) and the writer's backlog.

The decision is a table (`RULES`) read by a pure `decide()`; the digest check is a small
nonce book with a hard cap (`InviteAuth`). Time is always a parameter; the router (in
`callcenter.calls`) feeds the facts and carries out the verdict.
"""

from __future__ import annotations

import hmac
import ipaddress
import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from callcenter.sip.digest import DigestError, compute_response, format_challenge, parse_auth_params

__all__ = [
    "AllowEntry",
    "parse_allow",
    "source_allowed",
    "AuthResult",
    "InviteAuth",
    "Limits",
    "Offer",
    "Verdict",
    "RULES",
    "decide",
    "CallBook",
]


# ------------------------------------------------------------------ trunk allow lists
@dataclass(frozen=True)
class AllowEntry:
    """One `allow` item: an IP or network, and optionally the one source port it must use."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None


def parse_allow(text: str) -> AllowEntry:
    """`203.0.113.5`, `203.0.113.0/24`, `203.0.113.5:5060`, `[2001:db8::1]:5060`, `2001:db8::/32`."""
    value = text.strip()
    port: int | None = None
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep:
            raise ValueError(f"{text!r}: missing ] after an IPv6 address")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{text!r}: expected [IPv6]:port")
            port = int(rest[1:])
        value = host
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"{text!r}: the port must be a number")
        value, port = host, int(port_text)
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is outside 1..65535")
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or network") from None
    return AllowEntry(network, port)


def source_allowed(entries: tuple[AllowEntry, ...], source: tuple[str, int]) -> bool:
    """Whether a datagram from `source` (ip, port) matches one of the allow entries."""
    try:
        addr = ipaddress.ip_address(source[0])
    except ValueError:
        return False
    return any(addr in e.network and (e.port is None or e.port == source[1]) for e in entries)


# ------------------------------------------------------------------ digest on INVITE
@dataclass(frozen=True)
class AuthResult:
    """What a Proxy-Authorization header proved: `kind` is none, ok, stale or bad."""

    kind: str
    user: str | None = None


HA1Lookup = Callable[[str, str], "str | None"]


@dataclass
class _Nonce:
    issued_at: float
    last_nc: int = 0


class InviteAuth:
    """407 challenges for INVITEs (RFC 3261 §22.3) against the registrar's accounts.

    Nonces are kept in insertion order with a hard cap: a flood of INVITEs cannot grow
    memory, the oldest nonce is forgotten first (its owner gets `stale=true` and retries).
    A wrong password, an unknown user and a made-up nonce all give the same answer (`bad`),
    so neither passwords nor accounts can be probed through this door.
    """

    def __init__(self, *, realm: str, lookup: HA1Lookup, algorithms: tuple[str, ...] = ("MD5",),
                 rng: random.Random | None = None, nonce_ttl: float = 300.0, max_nonces: int = 4096):
        self.realm = realm
        self._lookup = lookup
        self._algorithms = tuple(a.upper() for a in algorithms)
        self._rng = rng if rng is not None else random.SystemRandom()
        self._ttl = nonce_ttl
        self._max = max_nonces
        self._nonces: OrderedDict[str, _Nonce] = OrderedDict()

    def __len__(self) -> int:
        return len(self._nonces)

    def challenge(self, now: float, *, stale: bool = False) -> list[tuple[str, str]]:
        """Proxy-Authenticate headers for a 407 (one per algorithm, one fresh nonce)."""
        self._expire(now)
        nonce = f"{self._rng.getrandbits(128):032x}"
        self._nonces[nonce] = _Nonce(now)
        while len(self._nonces) > self._max:
            self._nonces.popitem(last=False)
        return [("Proxy-Authenticate", format_challenge(realm=self.realm, nonce=nonce, algorithm=a, stale=stale))
                for a in self._algorithms]

    def check(self, header: str | None, method: str, now: float) -> AuthResult:
        if not header:
            return AuthResult("none")
        try:
            scheme, p = parse_auth_params(header)
        except DigestError:
            return AuthResult("bad")
        if scheme.lower() != "digest" or p.get("realm") != self.realm:
            return AuthResult("none")
        algorithm = p.get("algorithm", "MD5").upper()
        if algorithm not in self._algorithms or any(k not in p for k in ("username", "nonce", "uri", "response")):
            return AuthResult("bad")
        info = self._nonces.get(p["nonce"])
        if info is None:
            # Ours expired or never existed: no password check against a nonce we did not issue.
            return AuthResult("stale" if _looks_like_nonce(p["nonce"]) else "bad")
        user = p["username"]
        ha1 = self._lookup(user, algorithm)
        qop = p.get("qop")
        if qop != "auth":
            return AuthResult("bad")
        try:
            expected = compute_response(algorithm=algorithm, ha1=ha1 or "0" * 32, nonce=p["nonce"], method=method,
                                        uri=p["uri"], qop=qop, nc=p.get("nc"), cnonce=p.get("cnonce"))
            nc = int(p.get("nc", ""), 16)
        except (DigestError, ValueError):
            return AuthResult("bad")
        if ha1 is None or not hmac.compare_digest(expected, p["response"].lower()):
            return AuthResult("bad")
        if info.issued_at + self._ttl <= now or nc <= info.last_nc:
            return AuthResult("stale")
        info.last_nc = nc
        return AuthResult("ok", user)

    def _expire(self, now: float) -> None:
        while self._nonces:
            nonce, info = next(iter(self._nonces.items()))
            if info.issued_at + 2 * self._ttl > now:
                break
            del self._nonces[nonce]


def _looks_like_nonce(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


# ------------------------------------------------------------------ the decision
@dataclass(frozen=True)
class Limits:
    """`[admission]` as the decision needs it."""

    max_calls: int = 200
    max_calls_per_source: int = 10
    retry_after_s: int = 30


@dataclass(frozen=True)
class Offer:
    """The facts about one new INVITE.

    source: "trunk" (allow-listed), "phone" (answered our challenge), "outsider".
    target: "did" (a public number this source may reach), "extension" (a registered
    agent's phone), "other" (anything else, unregistered or unknown).
    auth: the AuthResult kind of its Proxy-Authorization (none/ok/stale/bad).
    open_dids: outsiders may call the DIDs (no trunk restricts them).
    """

    source: str
    target: str
    auth: str
    open_dids: bool
    calls_total: int
    calls_from_source: int
    backlog_full: bool = False


@dataclass(frozen=True)
class Verdict:
    action: str  # "admit" | "challenge" | "reject"
    status: int = 0
    retry_after_s: int | None = None
    stale: bool = False
    why: str = ""


ANY = "*"

# (source, target, auth) → (action, status, why). First match wins; `auth` of a trunk is
# not looked at. An outsider gets the same 407 for an extension and for a number that does
# not exist: only a phone that proved an account learns which is which (404).
RULES: tuple[tuple[str, str, str, str, int, str], ...] = (
    ("outsider", ANY, "bad", "reject", 403, "bad credentials"),
    ("outsider", ANY, "stale", "challenge", 407, "stale nonce"),
    ("trunk", "did", ANY, "admit", 0, "trunk"),
    ("trunk", "extension", ANY, "admit", 0, "trunk to extension"),
    ("trunk", "other", ANY, "reject", 404, "trunk: no such number"),
    ("phone", "did", ANY, "admit", 0, "phone"),
    ("phone", "extension", ANY, "admit", 0, "phone to extension"),
    ("phone", "other", ANY, "reject", 404, "phone: no such number"),
    ("outsider", "did", "open", "admit", 0, "public DID"),
    ("outsider", ANY, ANY, "challenge", 407, "authentication required"),
)


def decide(offer: Offer, limits: Limits) -> Verdict:
    """The verdict on one new INVITE (pure; see RULES, then the limits)."""
    auth = offer.auth
    if offer.source == "outsider" and auth in ("none", "ok") and offer.target == "did" and offer.open_dids:
        auth = "open"
    for source, target, want_auth, action, status, why in RULES:
        if source not in (ANY, offer.source) or target not in (ANY, offer.target):
            continue
        if want_auth not in (ANY, auth):
            continue
        if action != "admit":
            return Verdict(action, status, stale=why == "stale nonce", why=why)
        break
    else:  # pragma: no cover - the last rule matches everything
        return Verdict("reject", 403, why="no rule")
    if offer.backlog_full:
        return Verdict("reject", 503, limits.retry_after_s, why="storage backlog")
    if offer.calls_total >= limits.max_calls:
        return Verdict("reject", 503, limits.retry_after_s, why="total call limit")
    if offer.source != "trunk" and offer.calls_from_source >= limits.max_calls_per_source:
        return Verdict("reject", 503, limits.retry_after_s, why="per-source call limit")
    return Verdict("admit", why=why)


class CallBook:
    """Live inbound calls by source IP, for the limits (the router adds and removes)."""

    def __init__(self) -> None:
        self._by_call: dict[str, str] = {}
        self._by_ip: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_call)

    def from_ip(self, ip: str) -> int:
        return self._by_ip.get(ip, 0)

    def add(self, call_id: str, ip: str) -> None:
        if call_id in self._by_call:
            return
        self._by_call[call_id] = ip
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1

    def remove(self, call_id: str) -> None:
        ip = self._by_call.pop(call_id, None)
        if ip is None:
            return
        left = self._by_ip[ip] - 1
        if left:
            self._by_ip[ip] = left
        else:
            del self._by_ip[ip]

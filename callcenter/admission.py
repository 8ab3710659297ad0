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

import ipaddress
from dataclasses import dataclass
from typing import Callable

from callcenter.sip.digest import (
    DigestError, NonceIssuer, compute_response, format_challenge, parse_auth_params, responses_equal,
)

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
    """What a Proxy-Authorization header proved: `kind` is none, ok, stale (our nonce, too
    old or replayed), forged (a nonce we did not give this address) or bad (wrong password)."""

    kind: str
    user: str | None = None


HA1Lookup = Callable[[str, str], "str | None"]


class InviteAuth:
    """407 challenges for INVITEs (RFC 3261 §22.3) against the registrar's accounts.

    Nonces are the registrar's kind (`digest.NonceIssuer`): stateless, bound to the source
    IP, so a flood of INVITEs costs no memory. The nonce is checked before the password: a
    made-up or foreign nonce (`forged`) gets a fresh challenge whatever the password; a wrong
    password and an unknown user (checked against a dummy HA1) both give `bad`, so neither
    passwords nor accounts can be probed through this door. qop=auth is required.
    """

    def __init__(self, *, realm: str, lookup: HA1Lookup, algorithms: tuple[str, ...] = ("MD5",),
                 nonces: NonceIssuer | None = None, nonce_ttl: float = 300.0):
        self.realm = realm
        self._lookup = lookup
        self._algorithms = tuple(a.upper() for a in algorithms)
        self._nonces = nonces if nonces is not None else NonceIssuer(ttl=nonce_ttl)

    def challenge(self, source_ip: str, now: float, *, stale: bool = False) -> list[tuple[str, str]]:
        """Proxy-Authenticate headers for a 407 (one per algorithm, one fresh nonce)."""
        nonce = self._nonces.issue(source_ip, now)
        return [("Proxy-Authenticate", format_challenge(realm=self.realm, nonce=nonce, algorithm=a, stale=stale))
                for a in self._algorithms]

    def check(self, header: str | None, method: str, source_ip: str, now: float) -> AuthResult:
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
        freshness = self._nonces.check(p["nonce"], source_ip, now)
        if freshness == "bad":
            return AuthResult("forged")
        if freshness == "stale":
            return AuthResult("stale")
        nc_text = p.get("nc", "")
        if p.get("qop") != "auth" or not p.get("cnonce") or len(nc_text) != 8:
            return AuthResult("forged")
        try:
            nc = int(nc_text, 16)
        except ValueError:
            return AuthResult("bad")
        user = p["username"]
        ha1 = self._lookup(user, algorithm) or self._nonces.dummy_ha1(user, algorithm)
        try:
            expected = compute_response(algorithm=algorithm, ha1=ha1, nonce=p["nonce"], method=method,
                                        uri=p["uri"], qop="auth", nc=nc_text, cnonce=p["cnonce"])
        except DigestError:
            return AuthResult("bad")
        if not responses_equal(expected, p["response"]) or self._lookup(user, algorithm) is None:
            return AuthResult("bad")
        if not self._nonces.use(p["nonce"], nc):
            return AuthResult("stale")
        return AuthResult("ok", user)


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
    auth: the AuthResult kind of its Proxy-Authorization (none/ok/stale/forged/bad).
    open_dids: outsiders may call the DIDs (no trunk restricts them).
    """

    source: str
    target: str
    auth: str
    open_dids: bool
    calls_total: int
    calls_from_source: int
    backlog_full: bool = False
    draining: bool = False  # this cluster node is being drained: new calls go to the others


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
    ("outsider", ANY, "forged", "challenge", 407, "nonce not ours"),
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
    if offer.draining:
        return Verdict("reject", 503, limits.retry_after_s, why="node draining")
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


# ------------------------------------------------------------------ the policy as configured
@dataclass(frozen=True)
class TrunkSource:
    """A trunk as admission sees it: its allow entries and the DIDs it may deliver ("" = all)."""

    name: str
    entries: tuple[AllowEntry, ...]
    dids: tuple[str, ...] = ()


class AdmissionPolicy:
    """Everything the router asks on a new INVITE: `assess()` gathers the facts into an
    `Offer`, applies `decide()`, and returns the verdict with the headers to send (a 407's
    Proxy-Authenticate, a 503's Retry-After). Pure: the router passes the counts and `now`.

    Outsiders may call the public DIDs unless a trunk restricts them (any trunk with an allow
    list: then the DIDs come through the carrier, and phones must authenticate).
    """

    def __init__(self, *, public_dids: tuple[str, ...], trunks: tuple[TrunkSource, ...] = (),
                 auth: InviteAuth | None = None, limits: Limits = Limits(), ack_timeout_s: float = 6.0,
                 first_rtp_timeout_s: float = 8.0, max_write_backlog: int = 20000):
        self.public_dids = tuple(public_dids)
        self.trunks = tuple(t for t in trunks if t.entries)
        self.auth = auth
        self.limits = limits
        self.ack_timeout_s = ack_timeout_s
        self.first_rtp_timeout_s = first_rtp_timeout_s
        self.max_write_backlog = max_write_backlog
        self.open_dids = not self.trunks
        self.draining = False  # set by the cluster node (callcenter.cluster) while it drains

    def trunk_of(self, source: tuple[str, int]) -> list[TrunkSource]:
        return [t for t in self.trunks if source_allowed(t.entries, source)]

    def assess(self, *, source: tuple[str, int], numbers: tuple[str | None, ...],
               is_extension: Callable[[str], bool], proxy_authorization: str | None,
               calls_total: int, calls_from_source: int, backlog: int, now: float
               ) -> tuple[Verdict, str | None, list[tuple[str, str]], AuthResult]:
        """(verdict, the number it is for, headers to add, what the credentials proved)."""
        wanted = [n for n in numbers if n]
        did = next((n for n in wanted if n in self.public_dids), None)
        extension = next((n for n in wanted if is_extension(n)), None)
        trunks = self.trunk_of(source)
        auth = AuthResult("none")
        if trunks:
            kind = "trunk"
            if did is not None and not any(not t.dids or did in t.dids for t in trunks):
                did = None  # a DID this trunk does not carry is "no such number" for it
        else:
            if self.auth is not None:
                auth = self.auth.check(proxy_authorization, "INVITE", source[0], now)
            kind = "phone" if auth.kind == "ok" else "outsider"
        target = "did" if did is not None else "extension" if extension is not None else "other"
        offer = Offer(kind, target, auth.kind, self.open_dids, calls_total, calls_from_source,
                      backlog >= self.max_write_backlog, self.draining)
        verdict = decide(offer, self.limits)
        headers: list[tuple[str, str]] = []
        if verdict.action == "challenge":
            if self.auth is None:
                verdict = Verdict("reject", 403, why=verdict.why)
            else:
                headers = self.auth.challenge(source[0], now, stale=verdict.stale)
        elif verdict.status == 503 and verdict.retry_after_s:
            headers = [("Retry-After", str(verdict.retry_after_s))]
        return verdict, did or extension, headers, auth

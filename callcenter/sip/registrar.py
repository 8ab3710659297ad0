"""Registrar core (RFC 3261 §10.3) with digest authentication (RFC 8760: SHA-256, MD5).

Owns the bindings of agents' phones (address-of-record → contacts with expiry and the
source address they registered from) and the digest check of REGISTERs: stateless HMAC
nonces bound to the source address (`digest.NonceIssuer`), qop=auth required, a failure
reported as a `DigestFailed` event for the defence to count. Pure: time is `now`,
credentials come from a lookup function `(user, algorithm) -> HA1 hex | None`, so the
password store stays outside. Plug it into `UserAgent(registrar=...)`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from .digest import (
    DigestError, NonceIssuer, compute_response, format_challenge, parse_auth_params,
    responses_equal,
)
from .events import ContactsChanged, DigestFailed
from .message import SipParseError, SipRequest, SipResponse, make_response, parse_name_addr

__all__ = ["Registrar", "Binding", "HA1Lookup"]

HA1Lookup = Callable[[str, str], "str | None"]


@dataclass(frozen=True)
class Binding:
    contact: str  # the contact URI as registered
    expires_at: float
    call_id: str
    cseq: int
    source: tuple[str, int]  # where the REGISTER came from: reach NATed phones there
    q: float = 1.0


class Registrar:
    """Accepts REGISTER requests for one realm; see module docstring."""

    def __init__(self, *, realm: str, lookup: HA1Lookup, rng: random.Random | None = None,
                 algorithms: tuple[str, ...] = ("SHA-256", "MD5"), nonce_ttl: float = 300.0,
                 nonce_key: bytes | None = None, require_qop: bool = True, min_expires: int = 60, max_expires: int = 3600, default_expires: int = 3600):
        self.realm = realm
        self._lookup = lookup
        self._rng = rng if rng is not None else random.Random()
        self._algorithms = tuple(a.upper() for a in algorithms)
        self.min_expires, self.max_expires = min_expires, max_expires
        self.default_expires = default_expires
        self._nonces = NonceIssuer(nonce_key, ttl=nonce_ttl)
        # RFC 2069 answers (no qop, so no nc against replays) only when configured for old phones.
        self.require_qop = require_qop
        self._bindings: dict[str, list[Binding]] = {}
        self._events: list[ContactsChanged | DigestFailed] = []

    # ----------------------------------------------------------------- queries
    def bindings(self, aor: str, now: float) -> list[Binding]:
        """Live bindings of `aor`, best q first."""
        live = [b for b in self._bindings.get(aor, []) if b.expires_at > now]
        return sorted(live, key=lambda b: -b.q)

    def bindings_for_user(self, user: str, now: float) -> list[Binding]:
        """Live bindings of a user (extension) under any host part: one realm, one namespace."""
        prefix = f"sip:{user}@"
        live = [
            b for aor, bs in self._bindings.items() if aor.startswith(prefix) for b in bs if b.expires_at > now
        ]
        return sorted(live, key=lambda b: -b.q)

    def events(self) -> list[ContactsChanged | DigestFailed]:
        out, self._events = self._events, []
        return out

    def get_timer(self) -> float | None:
        times = [b.expires_at for bs in self._bindings.values() for b in bs]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for aor in list(self._bindings):
            before = self._bindings[aor]
            after = [b for b in before if b.expires_at > now]
            if len(after) != len(before):
                self._store(aor, after)

    def drop_source(self, source: tuple[str, int]) -> int:
        """Forget the bindings registered from `source` because its TCP/TLS connection closed:
        nothing reaches them there any more (we do not open connections to phones), as a flow
        failure ends a binding in RFC 5626 §5.3. Returns how many were dropped."""
        dropped = 0
        for aor in [a for a, bs in self._bindings.items() if any(b.source == source for b in bs)]:
            kept = [b for b in self._bindings[aor] if b.source != source]
            dropped += len(self._bindings[aor]) - len(kept)
            self._store(aor, kept)
        return dropped

    # ---------------------------------------------------------------- requests
    def handle_register(self, req: SipRequest, source: tuple[str, int], now: float) -> SipResponse:
        """The final response to a REGISTER; bindings change only after authentication."""
        if req.method != "REGISTER":
            raise ValueError(f"not a REGISTER: {req.method}")
        try:
            to = parse_name_addr(req.headers.get("To") or "")
        except SipParseError as exc:
            return self._reply(req, 400, f"Bad To ({exc})")
        if to.uri.scheme not in ("sip", "sips") or not to.uri.user:
            return self._reply(req, 404, "Not Found")
        user = to.uri.user
        aor = f"sip:{user}@{to.uri.host.lower()}"
        denied = self._authenticate(req, user, source, now)
        if denied is not None:
            return denied
        return self._update(req, aor, source, now)

    def _challenge(self, req: SipRequest, source: tuple[str, int], now: float,
                   stale: bool = False) -> SipResponse:
        nonce = self._nonces.issue(source[0], now)
        headers = [("WWW-Authenticate", format_challenge(realm=self.realm, nonce=nonce,
                                                         algorithm=a, stale=stale))
                   for a in self._algorithms]
        return self._reply(req, 401, None, headers)

    def _failed(self, source: tuple[str, int], user: str, reason: str) -> None:
        self._events.append(DigestFailed(source, user, reason))

    def _authenticate(self, req: SipRequest, user: str, source: tuple[str, int],
                      now: float) -> SipResponse | None:
        """None when the request carries a right digest answer, else the response to send.

        The order matters: the nonce is checked before the password, so a made-up or
        foreign nonce gets a plain challenge whatever the password (no oracle); an unknown
        user is checked against a dummy HA1 and refused exactly like a wrong password.
        """
        value = req.headers.get("Authorization")
        if not value:
            return self._challenge(req, source, now)
        try:
            scheme, p = parse_auth_params(value)
        except DigestError:
            self._failed(source, user, "unreadable Authorization")
            return self._reply(req, 400, "Bad Authorization")
        if scheme.lower() != "digest" or p.get("realm") != self.realm:
            return self._challenge(req, source, now)
        algorithm = p.get("algorithm", "MD5").upper()
        if algorithm not in self._algorithms:
            return self._challenge(req, source, now)
        for key in ("username", "nonce", "uri", "response"):
            if key not in p:
                self._failed(source, user, f"no {key}")
                return self._reply(req, 400, f"Authorization without {key}")
        freshness = self._nonces.check(p["nonce"], source[0], now)
        if freshness == "bad":
            self._failed(source, user, "nonce not ours")
            return self._challenge(req, source, now)
        if freshness == "stale":
            # Ours but old: the phone retries with a new nonce without asking its user.
            # The password is not looked at, so this answer says nothing about it.
            return self._challenge(req, source, now, stale=True)
        nc_text = p.get("nc", "")
        qop = p.get("qop")
        if qop is None and not self.require_qop:
            nc_text = ""
        elif qop != "auth" or not p.get("cnonce") or len(nc_text) != 8:
            # 403, not a new challenge: a phone that cannot do qop=auth would only loop.
            self._failed(source, user, "qop=auth required")
            return self._reply(req, 403, "Forbidden (qop=auth required)")
        try:
            nc = int(nc_text, 16) if nc_text else 0
        except ValueError:
            self._failed(source, user, "bad nc")
            return self._reply(req, 400, "Bad Authorization")
        ha1 = self._lookup(user, algorithm)
        if ha1 is None:
            ha1 = self._nonces.dummy_ha1(user, algorithm)
        expected = compute_response(algorithm=algorithm, ha1=ha1, nonce=p["nonce"],
                                    method="REGISTER", uri=p["uri"], qop="auth" if nc_text else None,
                                    nc=nc_text or None, cnonce=p.get("cnonce"))
        if not responses_equal(expected, p["response"]) or p["username"] != user:
            self._failed(source, user, "wrong password")
            return self._reply(req, 403, "Forbidden")
        if nc_text and not self._nonces.use(p["nonce"], nc):
            return self._challenge(req, source, now, stale=True)
        return None

    def _update(self, req: SipRequest, aor: str, source: tuple[str, int],
                now: float) -> SipResponse:
        contacts = req.headers.get_all("Contact")
        expires_header = req.headers.get("Expires")
        if expires_header is not None and not expires_header.strip().isdigit():
            return self._reply(req, 400, f"Bad Expires {expires_header!r}")
        call_id = req.call_id
        cseq = req.cseq[0]
        current = [b for b in self._bindings.get(aor, []) if b.expires_at > now]
        if contacts == ["*"]:
            if expires_header is None or int(expires_header) != 0:
                return self._reply(req, 400, "Contact * needs Expires: 0")
            self._store(aor, [])
            return self._ok(req, aor, now)
        if "*" in contacts:
            return self._reply(req, 400, "Contact * must be alone")
        updated = list(current)
        for value in contacts:
            try:
                na = parse_name_addr(value)
            except SipParseError as exc:
                return self._reply(req, 400, f"Bad Contact ({exc})")
            raw = na.params.get("expires")
            if raw is not None and not raw.isdigit():
                return self._reply(req, 400, f"Bad expires parameter {raw!r}")
            if raw is not None:
                expires = int(raw)
            elif expires_header is not None:
                expires = int(expires_header)
            else:
                expires = self.default_expires
            if 0 < expires < self.min_expires:
                return self._reply(req, 423, None, [("Min-Expires", str(self.min_expires))])
            expires = min(expires, self.max_expires)
            uri = str(na.uri)
            try:
                q = float(na.params.get("q") or 1.0)
            except ValueError:
                return self._reply(req, 400, f"Bad q {na.params.get('q')!r}")
            old = next((b for b in updated if b.contact == uri), None)
            if old is not None:
                if old.call_id == call_id and cseq <= old.cseq:
                    return self._reply(req, 500, "Out of order REGISTER")
                updated.remove(old)
            if expires > 0:
                updated.append(Binding(uri, now + expires, call_id, cseq, source, q))
        self._store(aor, updated)
        return self._ok(req, aor, now)

    def _store(self, aor: str, bindings: list[Binding]) -> None:
        before = tuple(sorted(b.contact for b in self._bindings.get(aor, [])))
        if bindings:
            self._bindings[aor] = bindings
        else:
            self._bindings.pop(aor, None)
        after = tuple(sorted(b.contact for b in bindings))
        if before != after:
            self._events.append(ContactsChanged(aor, after))

    def _ok(self, req: SipRequest, aor: str, now: float) -> SipResponse:
        headers = [("Contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}")
                   for b in self.bindings(aor, now)]
        return self._reply(req, 200, None, headers)

    def _reply(self, req: SipRequest, status: int, reason: str | None,
               headers=()) -> SipResponse:
        return make_response(req, status, reason, headers=headers,
                             to_tag=f"{self._rng.getrandbits(64):016x}")

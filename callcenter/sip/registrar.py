"""Registrar core (RFC 3261 §10.3) with digest authentication (RFC 8760: SHA-256, MD5).

Owns the bindings of agents' phones (address-of-record → contacts with expiry and the
source address they registered from) and the nonces we issued. Pure: time is `now`,
credentials come from a lookup function `(user, algorithm) -> HA1 hex | None`, so the
password store stays outside. Plug it into `UserAgent(registrar=...)`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from .digest import DigestError, compute_response, format_challenge, parse_auth_params
from .events import ContactsChanged
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


@dataclass
class _Nonce:
    issued_at: float
    last_nc: int = 0


class Registrar:
    """Accepts REGISTER requests for one realm; see module docstring."""

    def __init__(self, *, realm: str, lookup: HA1Lookup, rng: random.Random | None = None,
                 algorithms: tuple[str, ...] = ("SHA-256", "MD5"), nonce_ttl: float = 300.0,
                 min_expires: int = 60, max_expires: int = 3600, default_expires: int = 3600):
        self.realm = realm
        self._lookup = lookup
        self._rng = rng if rng is not None else random.Random()
        self._algorithms = tuple(a.upper() for a in algorithms)
        self._nonce_ttl = nonce_ttl
        self.min_expires, self.max_expires = min_expires, max_expires
        self.default_expires = default_expires
        self._nonces: dict[str, _Nonce] = {}
        self._bindings: dict[str, list[Binding]] = {}
        self._events: list[ContactsChanged] = []

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

    def events(self) -> list[ContactsChanged]:
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
        for nonce, info in list(self._nonces.items()):
            if info.issued_at + 2 * self._nonce_ttl <= now:
                del self._nonces[nonce]

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
        denied = self._authenticate(req, user, now)
        if denied is not None:
            return denied
        return self._update(req, aor, source, now)

    def _challenge(self, req: SipRequest, now: float, stale: bool = False) -> SipResponse:
        nonce = f"{self._rng.getrandbits(128):032x}"
        self._nonces[nonce] = _Nonce(now)
        headers = [("WWW-Authenticate", format_challenge(realm=self.realm, nonce=nonce,
                                                         algorithm=a, stale=stale))
                   for a in self._algorithms]
        return self._reply(req, 401, None, headers)

    def _authenticate(self, req: SipRequest, user: str, now: float) -> SipResponse | None:
        value = req.headers.get("Authorization")
        if not value:
            return self._challenge(req, now)
        try:
            scheme, p = parse_auth_params(value)
        except DigestError as exc:
            return self._reply(req, 400, f"Bad Authorization ({exc})")
        if scheme.lower() != "digest" or p.get("realm") != self.realm:
            return self._challenge(req, now)
        algorithm = p.get("algorithm", "MD5").upper()
        if algorithm not in self._algorithms:
            return self._challenge(req, now)
        for key in ("username", "nonce", "uri", "response"):
            if key not in p:
                return self._reply(req, 400, f"Authorization without {key}")
        if p["username"] != user:
            return self._reply(req, 403, "Forbidden (user mismatch)")
        ha1 = self._lookup(user, algorithm)
        if ha1 is None:
            return self._reply(req, 403, "Forbidden")
        qop = p.get("qop")
        try:
            expected = compute_response(algorithm=algorithm, ha1=ha1, nonce=p["nonce"],
                                        method="REGISTER", uri=p["uri"], qop=qop,
                                        nc=p.get("nc"), cnonce=p.get("cnonce"))
        except DigestError as exc:
            return self._reply(req, 400, f"Bad Authorization ({exc})")
        if expected != p["response"].lower():
            return self._reply(req, 403, "Forbidden")
        info = self._nonces.get(p["nonce"])
        if info is None or info.issued_at + self._nonce_ttl <= now:
            # Right password, old nonce: let the phone retry without asking the user.
            return self._challenge(req, now, stale=True)
        if qop:
            nc_text = p.get("nc", "")
            try:
                nc = int(nc_text, 16)
            except ValueError:
                return self._reply(req, 400, f"Bad nc {nc_text!r}")
            if nc <= info.last_nc:
                return self._challenge(req, now, stale=True)
            info.last_nc = nc
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

"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760).

Owns the parsing of WWW-/Proxy-Authenticate and Authorization values and the digest
computations for MD5 and SHA-256 with qop=auth (and the RFC 2069 form without qop,
which old phones still send). Pure functions: nonces and cnonces are passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

__all__ = [
    "DigestError",
    "Challenge",
    "parse_auth_params",
    "parse_challenge",
    "hash_hex",
    "ha1",
    "compute_response",
    "build_authorization",
    "format_challenge",
    "ALGORITHMS",
    "NonceIssuer",
    "responses_equal",
]

ALGORITHMS = ("MD5", "SHA-256")


class DigestError(ValueError):
    """A challenge or credentials header we cannot use."""


def hash_hex(algorithm: str, text: str) -> str:
    algo = algorithm.upper()
    if algo == "MD5":
        return hashlib.md5(text.encode("utf-8")).hexdigest()
    if algo == "SHA-256":
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    raise DigestError(f"unsupported digest algorithm {algorithm!r}")


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """`Digest realm="x", nonce="y"` → ("Digest", {"realm": "x", "nonce": "y"})."""
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if not scheme or not rest.strip():
        raise DigestError(f"bad authentication header {value!r}")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise DigestError(f"parameter without '=' in {value!r}")
        key = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            buf = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(rest[i])
                i += 1
            if i >= n:
                raise DigestError(f"unterminated quoted value in {value!r}")
            i += 1
            val = "".join(buf)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            val = rest[i:end].strip()
            i = end
        if not key:
            raise DigestError(f"empty parameter name in {value!r}")
        params[key] = val
    return scheme, params


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    scheme, p = parse_auth_params(value)
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported authentication scheme {scheme!r}")
    if "realm" not in p or "nonce" not in p:
        raise DigestError("challenge without realm or nonce")
    algorithm = p.get("algorithm", "MD5").upper()
    if algorithm not in ALGORITHMS:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}")
    qop = tuple(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
    return Challenge(p["realm"], p["nonce"], algorithm, qop, p.get("opaque"),
                     p.get("stale", "").lower() == "true")


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    return hash_hex(algorithm, f"{username}:{realm}:{password}")


def compute_response(*, algorithm: str, ha1: str, nonce: str, method: str, uri: str,
                     qop: str | None = None, nc: str | None = None,
                     cnonce: str | None = None) -> str:
    ha2 = hash_hex(algorithm, f"{method}:{uri}")
    if qop:
        if qop != "auth":
            raise DigestError(f"unsupported qop {qop!r}")
        if not nc or not cnonce:
            raise DigestError("qop=auth needs nc and cnonce")
        return hash_hex(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return hash_hex(algorithm, f"{ha1}:{nonce}:{ha2}")


def build_authorization(challenge: Challenge, *, username: str, password: str, method: str,
                        uri: str, cnonce: str, nc: int = 1) -> str:
    """The Authorization (or Proxy-Authorization) value answering `challenge`."""
    key = ha1(username, challenge.realm, password, challenge.algorithm)
    qop = "auth" if "auth" in challenge.qop else None
    if challenge.qop and qop is None:
        raise DigestError(f"challenge offers only qop {challenge.qop}")
    nc_text = f"{nc:08x}"
    resp = compute_response(algorithm=challenge.algorithm, ha1=key, nonce=challenge.nonce,
                            method=method, uri=uri, qop=qop, nc=nc_text, cnonce=cnonce)
    parts = [f'username="{username}"', f'realm="{challenge.realm}"',
             f'nonce="{challenge.nonce}"', f'uri="{uri}"', f'response="{resp}"',
             f"algorithm={challenge.algorithm}"]
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f'cnonce="{cnonce}"']
    if challenge.opaque is not None:
        parts.append(f'opaque="{challenge.opaque}"')
    return "Digest " + ", ".join(parts)


def format_challenge(*, realm: str, nonce: str, algorithm: str = "MD5",
                     opaque: str | None = None, stale: bool = False) -> str:
    parts = [f'realm="{realm}"', f'nonce="{nonce}"', f"algorithm={algorithm}", 'qop="auth"']
    if opaque is not None:
        parts.append(f'opaque="{opaque}"')
    if stale:
        parts.append("stale=true")
    return "Digest " + ", ".join(parts)


def responses_equal(expected: str, given: str) -> bool:
    """Constant-time comparison of two digest responses (hex, case-insensitive)."""
    return hmac.compare_digest(expected.lower().encode("ascii", "replace"),
                               given.strip().lower().encode("ascii", "replace"))


class NonceIssuer:
    """Stateless nonces: `<issued ms>.<salt>.<HMAC-SHA256(key, issued, salt, source IP)>` (hex).

    Nothing is stored per challenge, so a flood of unauthenticated requests costs no memory;
    a nonce made up, altered or handed out to another address fails `check` before any
    password is looked at. Only nonces that carried a right password are remembered (their
    last nc, against replays), at most `max_used` of them, the oldest forgotten first.
    """

    def __init__(self, key: bytes | None = None, *, ttl: float = 300.0, max_used: int = 10_000):
        self._key = key if key is not None else secrets.token_bytes(32)
        self.ttl = ttl
        self.max_used = max_used
        self._used: OrderedDict[str, int] = OrderedDict()

    def _mac(self, stamp: str, source: str) -> str:
        return hmac.new(self._key, f"{stamp}:{source}".encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, source: str, now: float) -> str:
        stamp = f"{max(0, int(now * 1000)):x}.{secrets.token_hex(4)}"
        return f"{stamp}.{self._mac(stamp, source)}"

    def check(self, nonce: str, source: str, now: float) -> str:
        """"fresh", "stale" (ours, but older than `ttl`) or "bad" (not ours)."""
        stamp, dot, mac = nonce.rpartition(".")
        millis, _, salt = stamp.partition(".")
        if not dot or not 0 < len(millis) <= 16 or len(salt) != 8 or len(mac) != 32:
            return "bad"
        try:
            issued = int(millis, 16) / 1000
        except ValueError:
            return "bad"
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(stamp, source).encode()):
            return "bad"
        if issued > now + 1 or now - issued >= self.ttl:
            return "stale"
        return "fresh"

    def use(self, nonce: str, nc: int) -> bool:
        """Record nonce-count `nc` of an authenticated answer; False when it is not above the
        last one seen (a replay)."""
        last = self._used.get(nonce)
        if last is not None and nc <= last:
            return False
        self._used[nonce] = nc
        self._used.move_to_end(nonce)
        while len(self._used) > self.max_used:
            self._used.popitem(last=False)
        return True

    def used_count(self) -> int:
        return len(self._used)

    def dummy_ha1(self, user: str, algorithm: str) -> str:
        """A stable HA1 for a user that does not exist: the check costs the same and fails."""
        return hash_hex(algorithm, self._mac("unknown", f"{user}:{algorithm}"))

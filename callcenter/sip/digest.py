"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760).

Owns the parsing of WWW-/Proxy-Authenticate and Authorization values and the digest
computations for MD5 and SHA-256 with qop=auth (and the RFC 2069 form without qop,
which old phones still send). Pure functions: nonces and cnonces are passed in.
"""

from __future__ import annotations

import hashlib
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

"""Web authentication: signed session cookies for people, bearer tokens for the API, CSRF tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from pathlib import Path

SESSION_COOKIE = "hotline_session"
SESSION_TTL_S = 12 * 3600


def load_or_create_secret(path: Path) -> bytes:
    """A per-installation key, created on first start and kept beside the database."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    path.write_bytes(key)
    path.chmod(0o600)
    return key


def _sign(secret: bytes, payload: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(secret, payload, hashlib.sha256).digest()).decode().rstrip("=")


def make_session(secret: bytes, username: str, now: float) -> str:
    payload = json.dumps(
        {"u": username, "exp": int(now + SESSION_TTL_S), "csrf": secrets.token_urlsafe(16)}, separators=(",", ":")
    ).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{body}.{_sign(secret, payload)}"


def read_session(secret: bytes, cookie: str | None, now: float) -> dict | None:
    if not cookie or "." not in cookie:
        return None
    body, sig = cookie.rsplit(".", 1)
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, TypeError):
        return None
    if not hmac.compare_digest(sig, _sign(secret, payload)):
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("exp", 0) < now:
        return None
    return data

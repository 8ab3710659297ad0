"""Web authentication: session cookies, login settings, the `next` target, client addresses, headers.

Sessions live in the database (`case_core.adapters.auth_store`): the `hotline_session` cookie
holds only an opaque random id. Bearer tokens carry a scope (`read`, `write`, `admin`).
Failed logins are throttled per (user name, source), per source and per user name across sources
(`web.login_throttle`).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from web.login_throttle import ThrottleRules

SESSION_COOKIE = "hotline_session"

# Department staff (处置部门) bound to no department see no case (fail closed, `web.photos.
# visible_where`); the pages and the API say why instead of showing empty lists.
NO_DEPARTMENT_MESSAGE = ("账号未绑定部门：处置部门人员须绑定所属部门后才能查看和处理案卷。"
                         "请联系管理员执行 hotline user set 用户名 --department 部门代码。")


def unbound_department(user) -> bool:
    """A 处置部门 user with no department (sees nothing: `NO_DEPARTMENT_MESSAGE`)."""
    return getattr(user, "role", None) == "department" and not getattr(user, "department", None)
SESSION_TTL_S = 12 * 3600  # the default absolute lifetime of a session


@dataclass(frozen=True)
class AuthSettings:
    """The `[web]` keys of logins, sessions and tokens (see callcenter.config.WebSettings)."""

    session_idle_s: float = 2 * 3600
    session_max_s: float = SESSION_TTL_S
    login_max_failures_per_user: int = 5  # per (user, source): a lock another address cannot set off
    login_max_failures_per_source: int = 20
    login_max_failures_per_user_all: int = 50  # per user across every source
    login_window_s: float = 900.0
    login_lockout_s: float = 60.0
    token_days: int = 90
    # Behind a reverse proxy: trust X-Forwarded-Proto (https → Secure cookies) and the last
    # X-Forwarded-For address (the client, for throttling and the audit log).
    trust_proxy: bool = False
    # Always mark cookies Secure (TLS ended somewhere that does not say so).
    secure_cookies: bool = False

    @classmethod
    def from_web(cls, web_settings) -> "AuthSettings":
        if web_settings is None:
            return cls()
        names = cls.__dataclass_fields__
        return cls(**{n: getattr(web_settings, n) for n in names if hasattr(web_settings, n)})

    def throttle_rules(self) -> ThrottleRules:
        return ThrottleRules(max_failures_per_user=self.login_max_failures_per_user,
                             max_failures_per_source=self.login_max_failures_per_source,
                             max_failures_per_user_all=self.login_max_failures_per_user_all,
                             window_s=self.login_window_s, lockout_s=self.login_lockout_s,
                             max_lockout_s=max(self.login_lockout_s, 3600.0))


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f\s\\]")


def normalise_next(raw: object, default: str = "/cases") -> str:
    """A same-site path to go to after login, or `default`.

    Browsers drop tabs and newlines from URLs and read `\\` as `/`, so `/%09/evil.example`
    or `/\\evil.example` would become `//evil.example` — another site. Control characters,
    whitespace and backslashes are removed (also once percent-decoded) before checking that
    what is left is a path on this site.
    """
    if not isinstance(raw, str) or not raw:
        return default
    text = raw.strip()
    if len(text) > 2000:
        return default
    for candidate in (text, unquote(text)):
        cleaned = _CONTROL.sub("", candidate)
        if not cleaned.startswith("/") or cleaned.startswith("//"):
            return default
        parts = urlsplit(cleaned)
        if parts.scheme or parts.netloc:
            return default
    return _CONTROL.sub("", text)


def client_address(request, trust_proxy: bool = False) -> str:
    """The client's address: the peer, or with `trust_proxy` the last X-Forwarded-For hop."""
    if trust_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            pass
    return request.remote or ""


def is_https(request, trust_proxy: bool = False) -> bool:
    if request.secure:
        return True
    return trust_proxy and request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https"


def set_session_cookie(response, request, session_id: str, settings: AuthSettings) -> None:
    response.set_cookie(
        SESSION_COOKIE, session_id, httponly=True, samesite="Strict", path="/",
        max_age=int(settings.session_max_s),
        secure=settings.secure_cookies or is_https(request, settings.trust_proxy),
    )


# -- security headers ----------------------------------------------------------------------
def content_security_policy(path: str, tile_origin: str = "") -> str:
    """No inline script anywhere; inline style attributes allowed (the pages use a few).

    Only the wallboard may be framed, and only by our own pages (a TV dashboard page on the
    same site); nothing may frame the rest.
    """
    img = "'self' data: blob:" + (f" {tile_origin}" if tile_origin else "")
    frame = "'self'" if path.startswith("/wallboard") else "'none'"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src {img}; media-src 'self' blob:; connect-src 'self'; worker-src 'self'; "
        f"object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors {frame}"
    )


def tile_origin(tile_url: str) -> str:
    """scheme://host[:port] of a tile URL template ("" when none or unreadable)."""
    match = re.match(r"(https?)://([^/?#]+)", tile_url or "")
    if match is None:
        return ""
    host = match.group(2)
    if "{" in host:  # {s}.tile.example.org: any subdomain of what follows
        rest = host.split("}", 1)[-1].lstrip(".")
        host = f"*.{rest}" if rest and "{" not in rest else ""
    return f"{match.group(1)}://{host}" if host else ""


def security_headers(path: str, tile_origin_: str = "") -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(path, tile_origin_),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "SAMEORIGIN" if path.startswith("/wallboard") else "DENY",
    }

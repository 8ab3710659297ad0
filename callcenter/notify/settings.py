"""The `[sms]` table of the hotline config file: gateway, sending rules, templates.

Read on its own from the same TOML file as `callcenter.config` (to be merged into it);
every key has a default, unknown keys and bad values are errors that name the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from callcenter.config_base import ConfigError, coerce_value

__all__ = ["NotifySettings", "DRIVERS", "from_mapping", "load_notify_settings", "parse_hhmm"]

DRIVERS = ("log", "kannel", "smpp")


@dataclass(frozen=True)
class NotifySettings:
    enabled: bool = True
    # log: write messages to the server log only (embedded default); kannel: HTTP sendsms;
    # smpp: SMPP 3.4 transceiver (smpplib) with delivery receipts.
    driver: str = "log"
    # Sender number / source address shown on the phone.
    sender: str = "12319"
    # Registered SMS signature (短信签名), required by Chinese carriers.
    signature: str = "【12319城建服务热线】"
    # The number citizens call to ask about their case (used in the texts).
    hotline: str = "12319"
    # A folder of <template>.j2 files that replace the shipped ones (relative to the config file).
    templates_dir: str = ""
    # No SMS between these local times; messages wait until quiet_end.
    quiet_start: str = "21:00"
    quiet_end: str = "08:00"
    max_attempts: int = 5
    backoff_base_s: float = 30.0
    backoff_max_s: float = 3600.0
    # At most rate_limit_count messages to one number per rate_limit_window_s.
    rate_limit_count: int = 5
    rate_limit_window_s: float = 3600.0
    # A longer text is refused when it is queued (carriers cap concatenated SMS).
    max_parts: int = 6
    poll_s: float = 2.0
    batch: int = 20
    # A message claimed ("sending") by a node that died is retried after this long.
    lease_s: float = 120.0
    # Kannel smsbox sendsms interface.
    kannel_url: str = "http://127.0.0.1:13013/cgi-bin/sendsms"
    kannel_username: str = ""
    kannel_password: str = ""
    kannel_smsc: str = ""
    timeout_s: float = 15.0
    # Our web app as the gateway reaches it; delivery reports go to <dlr_base_url>/sms/dlr.
    dlr_base_url: str = "http://127.0.0.1:8080"
    # SMPP (smpplib) gateway; the password is at most 8 characters (SMPP 3.4).
    smpp_host: str = "127.0.0.1"
    smpp_port: int = 2775
    smpp_system_id: str = ""
    smpp_password: str = ""
    # Shared secret Kannel puts in the replies URL (/sms/mo?…&token=); empty disables replies.
    inbound_token: str = ""
    base_dir: str = "."

    @property
    def quiet_hours(self) -> tuple[time, time]:
        return parse_hhmm(self.quiet_start), parse_hhmm(self.quiet_end)

    def templates_path(self) -> Path | None:
        if not self.templates_dir:
            return None
        p = Path(self.templates_dir)
        return p if p.is_absolute() else Path(self.base_dir) / p


def parse_hhmm(value: str) -> time:
    hh, mm = value.split(":")
    h, m = int(hh), int(mm)
    return time(0, m) if h == 24 else time(h, m)


def validate(s: NotifySettings) -> NotifySettings:
    if s.driver not in DRIVERS:
        raise ConfigError(f"sms.driver: {s.driver!r} is not one of {', '.join(DRIVERS)}")
    for key in ("quiet_start", "quiet_end"):
        value = getattr(s, key)
        try:
            hh, mm = value.split(":")
            if not (0 <= int(hh) <= 24 and 0 <= int(mm) <= 59):
                raise ValueError
        except ValueError:
            raise ConfigError(f"sms.{key}: expected a time as HH:MM, got {value!r}") from None
    positive = ("max_attempts", "backoff_base_s", "backoff_max_s", "rate_limit_count",
                "rate_limit_window_s", "max_parts", "poll_s", "batch", "lease_s", "timeout_s")
    for key in positive:
        if getattr(s, key) <= 0:
            raise ConfigError(f"sms.{key}: must be positive, got {getattr(s, key)}")
    if s.backoff_max_s < s.backoff_base_s:
        raise ConfigError(f"sms.backoff_max_s: {s.backoff_max_s} is less than sms.backoff_base_s {s.backoff_base_s}")
    if s.lease_s <= s.timeout_s:
        raise ConfigError(f"sms.lease_s: must be longer than sms.timeout_s ({s.timeout_s}) or a slow send is retried")
    for key in ("kannel_url", "dlr_base_url"):
        parts = urlsplit(getattr(s, key))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"sms.{key}: {getattr(s, key)!r} is not an http(s) URL")
    if not 1 <= s.smpp_port <= 65535:
        raise ConfigError(f"sms.smpp_port: port {s.smpp_port} is outside 1..65535")
    if not s.sender or not all(c.isalnum() for c in s.sender):
        raise ConfigError(f"sms.sender: {s.sender!r} must be a number or short alphanumeric name")
    if s.driver == "smpp" and not s.smpp_system_id:
        raise ConfigError("sms.smpp_system_id: the smpp driver needs a system id (account)")
    if len(s.smpp_system_id) > 15:
        raise ConfigError(f"sms.smpp_system_id: {s.smpp_system_id!r} is longer than SMPP's 15 characters")
    if len(s.smpp_password) > 8:
        raise ConfigError("sms.smpp_password: longer than SMPP's 8 characters")
    return s


def from_mapping(table: Any, *, base_dir: str = ".") -> NotifySettings:
    """Settings from the parsed `[sms]` table (None: all defaults)."""
    if table is None:
        return validate(NotifySettings(base_dir=base_dir))
    if not isinstance(table, dict):
        raise ConfigError("sms: expected a table [sms]")
    defaults = NotifySettings()
    known = {f.name for f in fields(NotifySettings)} - {"base_dir"}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in known:
            raise ConfigError(f"sms.{key}: unknown key (known: {', '.join(sorted(known))})")
        values[key] = coerce_value(f"sms.{key}", raw, getattr(defaults, key))
    return validate(replace(defaults, base_dir=base_dir, **values))


def load_notify_settings(path: str | Path | None) -> NotifySettings:
    """The `[sms]` settings of a hotline config file (None: all defaults, relative to cwd)."""
    if path is None:
        return from_mapping(None)
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    try:
        return from_mapping(data.get("sms"), base_dir=str(p.resolve().parent))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None

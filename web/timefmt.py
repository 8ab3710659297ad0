"""One time convention for everything the web side hands out.

Times are stored as naive local times of the call center (`[ivr] timezone`, Asia/Shanghai
by default). Every JSON API and CSV export writes them as ISO 8601 with that zone's offset
(`2026-11-23T10:00:00+08:00`); pages show `YYYY-MM-DD HH:MM` (the jinja filter `dt`).
`configure` sets the zone once at start-up (`hotline serve` passes `[ivr] timezone`).
"""

from __future__ import annotations

import json
from datetime import date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["configure", "local_zone", "iso", "page", "json_default", "dumps", "with_offsets"]

_zone: tzinfo = ZoneInfo("Asia/Shanghai")


def configure(zone: str | tzinfo) -> None:
    """The local zone naive stored times are in (`[ivr] timezone`)."""
    global _zone
    _zone = ZoneInfo(zone) if isinstance(zone, str) else zone


def local_zone() -> tzinfo:
    return _zone


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=_zone) if value.tzinfo is None else value.astimezone(_zone)


def iso(value: Any) -> Any:
    """A datetime (naive = local) as ISO 8601 with offset, to the second; an ISO string of a
    naive time likewise; anything else unchanged."""
    if isinstance(value, str) and len(value) >= 16 and value[4] == "-" and value[10] in "T ":
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return _aware(value).isoformat(timespec="seconds")
    return value


def page(value: Any) -> str:
    """`YYYY-MM-DD HH:MM` in local time for pages ('' for None)."""
    if isinstance(value, str) and value:
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return _aware(value).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return ""


def json_default(value: Any) -> Any:
    """`json.dumps(default=…)`: datetimes with offset, dates as YYYY-MM-DD, sets as lists."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=json_default)


def with_offsets(obj: Any, keys_ending: tuple[str, ...] = ("_at", "_datetime", "deadline", "at")) -> Any:
    """`obj` with every naive ISO time string under a time-like key given the local offset
    (for dicts built elsewhere with `isoformat()`)."""
    if isinstance(obj, dict):
        return {k: (iso(v) if isinstance(v, str) and k.endswith(keys_ending) else with_offsets(v, keys_ending))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [with_offsets(v, keys_ending) for v in obj]
    return obj

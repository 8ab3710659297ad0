"""What every settings section shares: `ConfigError` and the type check of one TOML value.

Below `callcenter.config` (which assembles all sections) so a feature's own section
(`callcenter.notify.settings` for `[sms]`) is read without importing the whole schema:
the dependency points one way, config → feature settings → this module.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "coerce_value"]


class ConfigError(ValueError):
    """A configuration file is unreadable or a key has a bad value."""


def coerce_value(key: str, value: Any, default: Any) -> Any:
    """A TOML value checked against the type of its default (shared by every settings section)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(str(v) for v in value)
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value

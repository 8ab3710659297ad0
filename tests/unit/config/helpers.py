"""Shared by the config tests: load a bad file and get the error it raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter import config


def load_error(tmp_path: Path, text: str) -> tuple[Path, str]:
    """Write `text` as a config file and load it; it must raise ConfigError. Returns (file, message)."""
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(config.ConfigError) as info:
        config.load(p)
    return p, str(info.value)

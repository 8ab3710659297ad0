"""The config sections of web features: `[wallboard]` colours and `[open311]` exposure.

The schemas live with the pages that read them (`web.wallboard`, `web.open311`);
`callcenter.config` assembles them into the one hotline config file and validates them,
so the web imports no configuration module of the call center.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Open311Settings", "WallboardSettings"]


@dataclass(frozen=True)
class WallboardSettings:
    # Colour thresholds of the wall display: a figure at or beyond "red" is red, at or
    # beyond "amber" amber, else green.
    waiting_amber: int = 3
    waiting_red: int = 6
    longest_wait_amber_s: float = 30.0
    longest_wait_red_s: float = 60.0
    # Share answered within 15 s (0..1): below amber is amber, below red is red.
    service_level_amber: float = 0.8
    service_level_red: float = 0.6
    # Share of offered calls abandoned (0..1).
    abandon_rate_amber: float = 0.05
    abandon_rate_red: float = 0.1
    # An agent in one state (on a call, paused, wrap-up) this long is shown amber / red.
    agent_state_amber_s: float = 300.0
    agent_state_red_s: float = 600.0


@dataclass(frozen=True)
class Open311Settings:
    # GET /open311/v2/requests without an api_key (anyone on the web port); false = key required.
    public_read: bool = True
    # What anonymous readers see besides status, category, dates, position and grid cell:
    # the reporter's own words and the address may name or locate them, so both are off by
    # default. The reporter's phone, name and e-mail are never shown.
    public_description: bool = False
    # Without public_address, anonymous readers' lat/long are rounded to 3 decimals (~100 m).
    public_address: bool = False
    # media_url (a photo may show the reporter or their home) for anonymous readers.
    public_media: bool = False

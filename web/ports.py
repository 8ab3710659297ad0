"""What the web needs from the call center, as interfaces: the web imports these, never
`callcenter`.

The composition root (`callcenter.bootstrap`) builds the implementations and hands them
to the app through its typed app keys (`web.metrics.METRICS`, …) or the `WebContext`;
tests hand in the same implementations or small fakes. The dependency points one way:
callcenter → web → case_core.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["MetricsExposition"]


@runtime_checkable
class MetricsExposition(Protocol):
    """The Prometheus text of this hotline (`callcenter.metrics.HotlineMetrics`)."""

    content_type: str  # the exposition format's Content-Type

    async def exposition(self) -> bytes:
        """The current metrics, rendered for a scrape."""
        ...

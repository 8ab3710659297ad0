"""The cyclic garbage collector runs when the media tick says so, not mid-tick.

Python collects when an allocation pushes a counter over its threshold, i.e. wherever the
program happens to be: during calls that is almost always inside the 20 ms tick, between
two legs' sends. One collection of the young generation with ~50,000 objects took 17–28 ms
in the load benchmark, a full one 10–14 ms; each such pause late-sends every remaining frame
of that tick and then bursts the catch-up frames, so a handful of them per minute decide
the p99 jitter.

`GcPacer` turns automatic collection off and runs the same generational schedule itself
right after a tick has sent its frames (``after_tick``), where the next deadline is a whole
frame away, and once a second from a timer when no calls are up. Decisions are a pure
function of the collector's counters (`decide`); the adapter only reads them and collects.
Young collections run at a lower threshold than Python's (smaller, more frequent pauses);
a full collection waits for its turn as in CPython and at most ``full_min_interval_s``.

When the calls are over (the media tick has stopped since the last quiet-timer second) it
collects fully once and asks glibc to give freed heap back to the system (`malloc_trim`):
the frames, packets and recording chunks of a thousand calls are freed in pieces scattered
over the heap, and without the trim the process would keep its peak RSS after a surge.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

__all__ = ["GcPolicy", "decide", "GcPacer"]


@dataclass(frozen=True)
class GcPolicy:
    young: int = 10_000         # net new container objects before a young collection
    middle_every: int = 10      # young collections per middle (generation 1) collection
    full_every: int = 10        # middle collections per full collection …
    full_min_interval_s: float = 30.0  # … and not more often than this


def decide(counts: tuple[int, int, int], policy: GcPolicy, now: float, last_full: float) -> int | None:
    """Which generation to collect now (0, 1, 2) or None, from ``gc.get_count()``."""
    c0, c1, c2 = counts
    if c0 < policy.young:
        return None
    if c1 + 1 >= policy.middle_every:
        if c2 + 1 >= policy.full_every and now - last_full >= policy.full_min_interval_s:
            return 2
        return 1
    return 0


class GcPacer:
    """Adapter: ``install()`` disables automatic collection; call ``after_tick(now)`` right
    after a media tick's sends; ``start(clock)`` adds the once-a-second check for quiet times.
    ``uninstall()`` gives collection back to Python."""

    def __init__(self, policy: GcPolicy = GcPolicy(), *, slow_ms: float = 15.0,
                 trim: Callable[[], object] | None = None) -> None:
        self.policy = policy
        self.slow_ms = slow_ms
        # Gives freed heap back to the system once calls are over (glibc; None elsewhere).
        self._trim = trim if trim is not None else _malloc_trim()
        self._media_ticked = False  # a media tick ran since the last quiet-timer second
        self._busy_since_trim = False
        self.trims = 0
        self.last_full = float("-inf")
        self.collections = [0, 0, 0]
        self.max_pause_ms = [0.0, 0.0, 0.0]
        self._timer = None
        self._clock = None
        self._installed = False

    def install(self) -> "GcPacer":
        gc.disable()
        self._installed = True
        return self

    def uninstall(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._installed:
            gc.enable()
            self._installed = False

    def start(self, clock) -> "GcPacer":
        self._clock = clock
        self._timer = clock.callLater(1.0, self._tick_quiet)
        return self

    def _tick_quiet(self) -> None:
        now = self._clock.seconds()
        if self._media_ticked:
            self._media_ticked = False
            self._busy_since_trim = True
        elif self._busy_since_trim:
            self._busy_since_trim = False
            self._after_calls(now)
        self._collect_if_due(now)
        self._timer = self._clock.callLater(1.0, self._tick_quiet)

    def _after_calls(self, now: float) -> None:
        """The media tick stopped: one full collection, then the freed heap goes back."""
        if self._installed:
            gc.collect()
            self.last_full = now
        if self._trim is not None:
            try:
                self._trim()
                self.trims += 1
            except Exception:
                log.exception("malloc_trim failed")

    def after_tick(self, now: float) -> None:
        """Right after a media tick's sends; ``now``: the clock's seconds."""
        self._media_ticked = True
        self._collect_if_due(now)

    def _collect_if_due(self, now: float) -> None:
        if not self._installed:
            return
        generation = decide(gc.get_count(), self.policy, now, self.last_full)
        if generation is None:
            return
        started = time.perf_counter()
        try:
            gc.collect(generation)
        except Exception:  # a finalizer that raises must not stop the media tick
            log.exception("garbage collection (generation %d) failed", generation)
        pause_ms = (time.perf_counter() - started) * 1000
        self.collections[generation] += 1
        self.max_pause_ms[generation] = max(self.max_pause_ms[generation], pause_ms)
        if generation == 2:
            self.last_full = now
        if pause_ms > self.slow_ms:
            log.info("garbage collection of generation %d took %.1f ms", generation, pause_ms)

    def stats(self) -> dict:
        return {"collections": list(self.collections),
                "max_pause_ms": [round(x, 1) for x in self.max_pause_ms], "trims": self.trims}


def _malloc_trim() -> Callable[[], object] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)

"""Batch recognition yields to the media tick while the hotline is busy with calls.

Why: on a machine where recognition and the media tick share a last-level cache and memory
bandwidth (every core of a small VM does), a Whisper worker running flat out slows the
tick's work even on another core, and the tail of the RTP timing grows once the tick has
little slack. A plain memory-copy loop on the other core at idle priority did the same
(`bench/README.md`), so no placement fixes it; only not running at the same time does.

So the media engine measures the share of wall time it spends in its send ticks and read
passes (``busy_share``), and batch recognition pauses (its workers are frozen, a running
job simply takes longer) while that share is above ``pause_above``, and resumes once it is
below ``resume_below``. Recordings and messages queue meanwhile (messages first) and are
transcribed when the calls thin out. Live (vosk) transcripts are not paused.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["YieldPolicy", "busy_share", "RESUME_FRACTION"]

# Resume below this fraction of the pause threshold (hysteresis: no flapping at the edge).
RESUME_FRACTION = 0.7


@dataclass(frozen=True)
class YieldPolicy:
    pause_above: float
    resume_below: float

    @classmethod
    def from_threshold(cls, pause_above: float) -> "YieldPolicy":
        return cls(pause_above, pause_above * RESUME_FRACTION)

    def __post_init__(self) -> None:
        if not 0.0 < self.resume_below < self.pause_above <= 1.0:
            raise ValueError(f"need 0 < resume_below < pause_above <= 1, got "
                             f"{self.resume_below} and {self.pause_above}")

    def next_paused(self, paused: bool, share: float) -> bool:
        """Whether recognition should be paused for the coming period."""
        if paused:
            return share >= self.resume_below
        return share > self.pause_above


def busy_share(busy_before_s: float, busy_now_s: float, t_before: float, t_now: float) -> float:
    """Share of the wall time between two readings spent busy (0 when no time passed)."""
    elapsed = t_now - t_before
    if elapsed <= 0:
        return 0.0
    return min(1.0, max(0.0, (busy_now_s - busy_before_s) / elapsed))

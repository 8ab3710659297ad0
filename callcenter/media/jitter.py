"""A small reorder buffer for received RTP audio, keyed by sequence number.

Owns the rule for turning packets that arrive out of order, twice or too late
into an in-order stream: hold at most ``depth`` packets while waiting for a
missing one, then give up on it (counted lost); drop duplicates and packets
older than what was already released. Time-free: the session drains it when
the stream stalls.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["JitterBuffer"]

T = TypeVar("T")
# A forward jump this large is a sender restart, not loss (RFC 3550 A.1 uses 3000).
_MAX_DROPOUT = 3000


class JitterBuffer(Generic[T]):
    """Reorders items by 16-bit RTP sequence number with a bounded hold."""

    def __init__(self, depth: int = 3) -> None:
        if depth < 1:
            raise ValueError(f"jitter buffer depth must be at least 1, got {depth}")
        self.depth = depth
        self._next: int | None = None
        self._held: dict[int, T] = {}
        self.lost = 0
        self.late = 0
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._held)

    def push(self, sequence: int, item: T) -> list[T]:
        """Add one packet; return the items now releasable, in sequence order."""
        if self._next is None:
            self._next = sequence
        ahead = (sequence - self._next) & 0xFFFF
        if ahead >= 0x8000:
            self.late += 1
            return []
        if ahead > _MAX_DROPOUT:
            out = self.drain()
            self._next = sequence
            self._held[sequence] = item
            return out + self._release()
        if sequence in self._held:
            self.duplicates += 1
            return []
        self._held[sequence] = item
        out = self._release()
        while len(self._held) > self.depth:
            self._skip_gap()
            out.extend(self._release())
        return out

    def drain(self) -> list[T]:
        """Release everything held, in order, counting the gaps as lost."""
        out: list[T] = []
        while self._held:
            self._skip_gap()
            out.extend(self._release())
        return out

    def _release(self) -> list[T]:
        out: list[T] = []
        held = self._held
        nxt = self._next
        while nxt in held:
            out.append(held.pop(nxt))
            nxt = (nxt + 1) & 0xFFFF
        self._next = nxt
        return out

    def _skip_gap(self) -> None:
        nxt = self._next
        first = min(self._held, key=lambda s: (s - nxt) & 0xFFFF)
        self.lost += (first - nxt) & 0xFFFF
        self._next = first

"""Stereo call recording: caller on the left channel, agent on the right.

Owns the pairing of the two legs' audio into interleaved stereo frames, one
per 20 ms tick. Each side arrives in bursts and in packet-sized pieces
(network jitter, 20 or 30 ms packets), so each side is a small byte queue;
a side with no full frame this tick contributes silence, and a side that
runs ahead is trimmed so the two channels never drift apart by more than a
bounded delay. Writing to disk is ``wav.WavWriter``'s job.

Interleaving one 20 ms frame costs more than everything else the mixer does per tick, so
a recorder that writes in chunks pairs frames with ``advance`` each tick and interleaves
them all at once with ``take`` when it writes (about once a second); ``tick`` still gives
one interleaved frame at a time. Both give the same bytes.

Almost every tick each side gets exactly one whole frame and gives it up the same tick, so a
side keeps such a frame as it came (the packet's own bytes object) instead of copying it
into its queue and out again; anything else goes through the queue, the held frame first.
"""

from __future__ import annotations

import numpy as np

__all__ = ["StereoMixer"]


class StereoMixer:
    """Pairs caller (left) and agent (right) mono frames into stereo frames."""

    def __init__(self, frame_samples: int = 160, max_backlog_frames: int = 10) -> None:
        self._frame = 2 * frame_samples
        self._max = self._frame * max_backlog_frames
        self._left = bytearray()
        self._right = bytearray()
        # One whole frame per side, kept as it came while the side's queue is empty.
        self._left_one: bytes | None = None
        self._right_one: bytes | None = None
        self._silence = bytes(self._frame)
        self.dropped_bytes = 0
        # Frames paired by `advance` and not yet interleaved by `take`.
        self._held_left: list[bytes] = []
        self._held_right: list[bytes] = []

    def add_caller(self, pcm: bytes) -> None:
        """Queue caller audio (16-bit LE mono, 8 kHz)."""
        if self._left_one is None and not self._left and len(pcm) == self._frame and type(pcm) is bytes:
            self._left_one = pcm
            return
        if self._left_one is not None:
            one, self._left_one = self._left_one, None
            self._add(self._left, one)
        self._add(self._left, pcm)

    def add_agent(self, pcm: bytes) -> None:
        """Queue agent audio (16-bit LE mono, 8 kHz)."""
        if self._right_one is None and not self._right and len(pcm) == self._frame and type(pcm) is bytes:
            self._right_one = pcm
            return
        if self._right_one is not None:
            one, self._right_one = self._right_one, None
            self._add(self._right, one)
        self._add(self._right, pcm)

    def _spill(self) -> None:
        """Put the frames kept as they came back into the queues (before reading the queues)."""
        if self._left_one is not None:
            self._left[:0] = self._left_one
            self._left_one = None
        if self._right_one is not None:
            self._right[:0] = self._right_one
            self._right_one = None

    def _add(self, side: bytearray, pcm: bytes) -> None:
        n = len(pcm)
        if n & 1:
            raise ValueError(f"PCM must be whole 16-bit samples, got {n} bytes")
        side += pcm
        excess = len(side) - self._max
        if excess > 0:
            del side[:excess]
            self.dropped_bytes += excess

    def _take(self, side: bytearray) -> bytes:
        frame = self._frame
        if len(side) == frame:  # the usual case: one packet arrived per tick
            out = bytes(side)
            side.clear()
            return out
        if len(side) > frame:
            out = bytes(side[:frame])
            del side[:frame]
            return out
        return self._silence

    def _take_left(self) -> bytes:
        one = self._left_one
        if one is not None:
            self._left_one = None
            return one
        return self._take(self._left)

    def _take_right(self) -> bytes:
        one = self._right_one
        if one is not None:
            self._right_one = None
            return one
        return self._take(self._right)

    def tick(self) -> bytes:
        """One interleaved stereo frame (640 bytes for 20 ms), silence for a missing side.

        Frames held by ``advance`` and not yet taken come first.
        """
        frame = self._interleave(self._take_left(), self._take_right())
        if self._held_left:
            return self.take() + frame
        return frame

    def advance(self) -> tuple[bytes, bytes]:
        """Pair this tick's frames like ``tick`` but hold them for ``take``: (caller, agent)."""
        left = self._take_left()
        right = self._take_right()
        self._held_left.append(left)
        self._held_right.append(right)
        return left, right

    def take(self) -> bytes:
        """Interleaved stereo of every frame held since the last take, in one pass."""
        if not self._held_left:
            return b""
        left = np.frombuffer(b"".join(self._held_left), dtype="<i2")
        right = np.frombuffer(b"".join(self._held_right), dtype="<i2")
        self._held_left.clear()
        self._held_right.clear()
        out = np.empty(2 * len(left), dtype="<i2")
        out[0::2] = left
        out[1::2] = right
        return out.tobytes()

    def drain(self) -> bytes:
        """Everything still held or queued at the end of a call, padded to whole frames."""
        out = [self.take()]
        self._spill()
        while self._left or self._right:
            for side in (self._left, self._right):
                if side and len(side) < self._frame:
                    side += bytes(self._frame - len(side))
            out.append(self.tick())
        return b"".join(out)

    @staticmethod
    def _interleave(left: bytes, right: bytes) -> bytes:
        # Byte-wise strided copies (16-bit LE samples: low byte, high byte), all in C;
        # cheaper than numpy's per-call overhead on a 160-sample frame.
        out = bytearray(2 * len(left))
        out[0::4] = left[0::2]
        out[1::4] = left[1::2]
        out[2::4] = right[0::2]
        out[3::4] = right[1::2]
        return bytes(out)

"""Stereo call recording: caller on the left channel, agent on the right.

Owns the pairing of the two legs' audio into interleaved stereo frames, one
per 20 ms tick. Each side arrives in bursts and in packet-sized pieces
(network jitter, 20 or 30 ms packets), so each side is a small byte queue;
a side with no full frame this tick contributes silence, and a side that
runs ahead is trimmed so the two channels never drift apart by more than a
bounded delay. Writing to disk is ``wav.WavWriter``'s job.
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
        self.dropped_bytes = 0

    def add_caller(self, pcm: bytes) -> None:
        """Queue caller audio (16-bit LE mono, 8 kHz)."""
        self._add(self._left, pcm)

    def add_agent(self, pcm: bytes) -> None:
        """Queue agent audio (16-bit LE mono, 8 kHz)."""
        self._add(self._right, pcm)

    def _add(self, side: bytearray, pcm: bytes) -> None:
        if len(pcm) & 1:
            raise ValueError(f"PCM must be whole 16-bit samples, got {len(pcm)} bytes")
        side += pcm
        if len(side) > self._max:
            excess = len(side) - self._max
            del side[:excess]
            self.dropped_bytes += excess

    def _take(self, side: bytearray) -> bytes:
        if len(side) >= self._frame:
            out = bytes(side[: self._frame])
            del side[: self._frame]
            return out
        return bytes(self._frame)

    def tick(self) -> bytes:
        """One interleaved stereo frame (640 bytes for 20 ms), silence for a missing side."""
        return self._interleave(self._take(self._left), self._take(self._right))

    def drain(self) -> bytes:
        """Everything still queued at the end of a call, padded to whole frames."""
        out = []
        while self._left or self._right:
            for side in (self._left, self._right):
                if side and len(side) < self._frame:
                    side += bytes(self._frame - len(side))
            out.append(self.tick())
        return b"".join(out)

    @staticmethod
    def _interleave(left: bytes, right: bytes) -> bytes:
        stereo = np.empty((len(left) // 2, 2), dtype="<i2")
        stereo[:, 0] = np.frombuffer(left, "<i2")
        stereo[:, 1] = np.frombuffer(right, "<i2")
        return stereo.tobytes()

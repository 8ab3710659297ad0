"""Prompt audio shared by every session: one copy of each distinct clip and of its encodings.

Owns the interning of played PCM. A thousand calls hearing the same welcome prompt would
otherwise each hold their own copy of its linear PCM and of its G.711 encoding (about
0.36 MB for the 12319 welcome + menu): callers build each play's PCM afresh (a join of
cached prompts), so identity cannot be relied on. ``ClipStore.intern`` finds an equal clip
by content (length and a few sampled bytes pick the candidates, one ``memcmp`` confirms)
and hands back the shared one; the caller's fresh copy is then freed.

The store is bounded by bytes and forgets the least recently used clips first; a clip that
a session still plays stays alive through that session's reference. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from callcenter.media import g711

__all__ = ["Clip", "ClipStore", "shared"]

FRAME_BYTES = 320  # 20 ms of 8 kHz 16-bit mono
_PROBE = 16


class Clip:
    """Linear PCM padded to whole 20 ms frames, and its encodings made once per codec."""

    __slots__ = ("pcm", "size", "_encoded")

    def __init__(self, pcm: bytes) -> None:
        if len(pcm) & 1:
            raise ValueError(f"PCM must be whole 16-bit samples, got {len(pcm)} bytes")
        self.size = len(pcm)  # before padding: what callers compare against
        tail = len(pcm) % FRAME_BYTES
        self.pcm = bytes(pcm) + bytes(FRAME_BYTES - tail) if tail else bytes(pcm)
        self._encoded: dict[str, bytes] = {}

    def encoded(self, codec: str) -> bytes:
        """The clip in ``codec`` (PCMU/PCMA), encoded on first use and kept."""
        out = self._encoded.get(codec)
        if out is None:
            out = g711.encoder(codec)(self.pcm)
            self._encoded[codec] = out
        return out

    def same_audio(self, pcm: bytes) -> bool:
        return self.size == len(pcm) and self.pcm.startswith(pcm)


def _key(pcm: bytes) -> tuple:
    n = len(pcm)
    mid = n // 2
    return (n, pcm[:_PROBE], pcm[mid : mid + _PROBE], pcm[-_PROBE:])


class ClipStore:
    """Content-addressed clips, least recently used dropped beyond ``max_bytes``."""

    def __init__(self, max_bytes: int = 64 << 20, min_bytes: int = 8 * FRAME_BYTES) -> None:
        self.max_bytes = max_bytes
        # Shorter audio (a beep, a DTMF tone) is not worth a lookup; it gets its own clip.
        self.min_bytes = min_bytes
        self._clips: OrderedDict[tuple, list[Clip]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self._clips.values())

    @property
    def nbytes(self) -> int:
        """Bytes of the PCM held by the store (encodings come on top, half as much per law)."""
        return self._bytes

    def intern(self, pcm: bytes) -> Clip:
        """The shared clip with exactly this audio, made if new."""
        if not isinstance(pcm, bytes):  # bytearray, memoryview: keyed and kept as bytes
            pcm = bytes(pcm)
        if len(pcm) < self.min_bytes:
            return Clip(pcm)
        key = _key(pcm)
        bucket = self._clips.get(key)
        if bucket is not None:
            for clip in bucket:
                if clip.same_audio(pcm):
                    self._clips.move_to_end(key)
                    self.hits += 1
                    return clip
        clip = Clip(pcm)
        self.misses += 1
        if bucket is None:
            self._clips[key] = [clip]
        else:
            bucket.append(clip)
            self._clips.move_to_end(key)
        self._bytes += len(clip.pcm)
        self._evict()
        return clip

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and len(self._clips) > 1:
            _, bucket = self._clips.popitem(last=False)
            self._bytes -= sum(len(c.pcm) for c in bucket)


# The process-wide store every MediaSession uses unless given another.
shared = ClipStore()

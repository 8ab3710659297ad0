"""Events a media session reports to its call controller.

Owns the vocabulary only: frozen, past-tense values with no behaviour. The
session (``session.py``) emits them from ``receive`` and ``tick``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = [
    "AudioReceived",
    "AudioSent",
    "DtmfReceived",
    "MediaEvent",
    "PlaybackFinished",
    "PlaybackStopped",
    "RemoteLatched",
]


@dataclass(frozen=True, slots=True)
class AudioReceived:
    """Decoded linear PCM (16-bit LE, 8 kHz) of one received RTP packet."""

    pcm: bytes
    sequence: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class AudioSent:
    """The linear PCM sent in one tick (silence while DTMF events are sent)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A key press, from RFC 4733 telephone-events or in-band tone detection."""

    digit: str
    source: str = "rfc4733"


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """The last frame of a queued play has been sent."""

    play_id: str


@dataclass(frozen=True, slots=True)
class PlaybackStopped:
    """A queued play was dropped by ``stop_playback`` before it finished."""

    play_id: str


@dataclass(frozen=True, slots=True)
class RemoteLatched:
    """Symmetric RTP: sending now goes to where the peer's media comes from."""

    addr: tuple[str, int]


MediaEvent = Union[AudioReceived, AudioSent, DtmfReceived, PlaybackFinished, PlaybackStopped, RemoteLatched]

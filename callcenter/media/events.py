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


# The two events made for every packet of every call (50 sent and 50 received a second
# per call). A frozen dataclass's __init__ sets each field through object.__setattr__, which
# costs 3-4x building the same object directly with its slots' setters; these give the same
# frozen, equal-comparing values at the lower cost (a unit test checks they are equal).
_new = object.__new__
_set_sent_pcm = AudioSent.pcm.__set__  # type: ignore[attr-defined]
_set_received_pcm = AudioReceived.pcm.__set__  # type: ignore[attr-defined]
_set_received_sequence = AudioReceived.sequence.__set__  # type: ignore[attr-defined]
_set_received_timestamp = AudioReceived.timestamp.__set__  # type: ignore[attr-defined]


def audio_sent(pcm: bytes) -> AudioSent:
    """``AudioSent(pcm)``, built for the per-packet path."""
    event = _new(AudioSent)
    _set_sent_pcm(event, pcm)
    return event


def audio_received(pcm: bytes, sequence: int, timestamp: int) -> AudioReceived:
    """``AudioReceived(pcm, sequence, timestamp)``, built for the per-packet path."""
    event = _new(AudioReceived)
    _set_received_pcm(event, pcm)
    _set_received_sequence(event, sequence)
    _set_received_timestamp(event, timestamp)
    return event

"""The speech-to-text port: the values every backend returns and the two shapes of backend.

A batch ``Recognizer`` turns an audio file into a ``Transcript`` of timed ``Segment``s, one
speaker channel each (0 = caller, 1 = agent in our stereo recordings). A
``StreamingRecognizer`` is fed 16-bit PCM chunks during a call and answers with
``PartialTranscript`` / ``FinalTranscript`` events for the agent desk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

__all__ = [
    "CALLER", "AGENT", "Segment", "Transcript", "PartialTranscript", "FinalTranscript",
    "SttEvent", "Recognizer", "StreamingRecognizer", "SttError",
]

# Channel numbers of the stereo recorder: caller left, agent right.
CALLER = 0
AGENT = 1


class SttError(Exception):
    """Recognition could not run: unreadable audio, missing or corrupt model."""


@dataclass(frozen=True)
class Segment:
    """One stretch of recognised speech on one channel, times in seconds from file start."""

    start_s: float
    end_s: float
    text: str
    channel: int = CALLER


@dataclass(frozen=True)
class Transcript:
    """A whole file's result. ``rtf`` is processing time ÷ audio duration (lower is faster)."""

    text: str
    segments: tuple[Segment, ...]
    engine: str
    language: str
    duration_s: float
    rtf: float

    def to_dict(self) -> dict:
        data = asdict(self)
        data["segments"] = [asdict(s) for s in self.segments]
        return data

    @classmethod
    def from_segments(cls, segments: Sequence[Segment], *, engine: str, language: str,
                      duration_s: float, elapsed_s: float) -> "Transcript":
        ordered = tuple(sorted(segments, key=lambda s: (s.start_s, s.channel)))
        return cls(
            text=" ".join(s.text for s in ordered if s.text),
            segments=ordered,
            engine=engine,
            language=language,
            duration_s=round(duration_s, 3),
            rtf=round(elapsed_s / duration_s, 4) if duration_s > 0 else 0.0,
        )


@dataclass(frozen=True)
class PartialTranscript:
    """The recogniser's current guess for the utterance in progress; replaced by the next."""

    text: str


@dataclass(frozen=True)
class FinalTranscript:
    """A finished utterance with its times in seconds since the stream started."""

    text: str
    start_s: float
    end_s: float


SttEvent = PartialTranscript | FinalTranscript


@runtime_checkable
class Recognizer(Protocol):
    """Batch recognition of an audio file (WAV, mono or stereo)."""

    engine: str

    def transcribe(self, path: str | Path) -> Transcript: ...


@runtime_checkable
class StreamingRecognizer(Protocol):
    """Live recognition of one channel: feed PCM, collect events; ``finish`` flushes."""

    def feed(self, pcm: bytes) -> list[SttEvent]: ...

    def finish(self) -> list[SttEvent]: ...

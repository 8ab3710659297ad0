"""The faster-whisper backend: accurate batch transcripts of recordings and messages.

Loads the Whisper base model (CTranslate2, int8) offline from the directory that
``models.whisper_base_dir`` assembles from the PyPI packages, unless an operator put a
larger CTranslate2 Whisper in the models directory as ``whisper-<size>/``
(``models.find_whisper_model``: the largest wins), which is then used as it is. Decoding is deliberately
steady: temperature 0 with no fallback, no conditioning on earlier text (a loop cannot
feed itself), no initial prompt (Whisper sometimes echoes it back), a cap on new tokens
per 30-s window, and runaway repetitions collapsed. A stereo recording is transcribed
per channel (0 = caller, 1 = agent); there the bundled Silero VAD skips each channel's
silence (the other party talking), which keeps segment times right. Mono files skip the
VAD by default: on short messages it clipped first syllables and did not lower CER. Whisper sometimes answers Mandarin in traditional characters; zh output
is mapped to simplified, which search and extraction expect, and given Chinese
punctuation (Whisper base mostly writes pauses as spaces; an initial prompt asking for
punctuation cost accuracy, see bench/README.md).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np

from callcenter.stt.models import default_models_dir, find_whisper_model, whisper_base_dir
from callcenter.stt.port import Segment, SttError, Transcript
from callcenter.stt.quality import to_simplified

__all__ = ["WhisperRecognizer", "load_recognizer", "collapse_repeats", "resample", "punctuate_zh"]

_WHISPER_RATE = 16000
# Mandarin read speech runs at ~4–6 characters/s, i.e. under ~200 tokens in a 30-s window;
# 224 leaves room and still stops a loop long before Whisper's 448-token limit.
DEFAULT_MAX_NEW_TOKENS = 224
_REPEAT = re.compile(r"(.{1,12}?)\1{3,}")


def collapse_repeats(text: str) -> str:
    """Cut a unit repeated four or more times in a row down to one (Whisper's loops)."""
    return _REPEAT.sub(r"\1", text)


_ASCII_PUNCT = str.maketrans({",": "，", "?": "？", "!": "！", ";": "；", ":": "："})
_CJK = r"\u4e00-\u9fff"
_GAP = re.compile(rf"(?<=[{_CJK}0-9])\s+(?=[{_CJK}0-9])")


def punctuate_zh(text: str) -> str:
    """Chinese punctuation for a Whisper segment: full-width marks, the pauses Whisper
    writes as spaces between hanzi become ，, and a segment ends with 。 unless it
    already ends with a mark. Words stay as said (no number rewriting)."""
    text = _GAP.sub("，", text.strip().translate(_ASCII_PUNCT))
    if text and re.match(rf"[{_CJK}\w]", text[-1]):
        text += "。"
    return text


def resample(x: np.ndarray, rate: int, target: int = _WHISPER_RATE) -> np.ndarray:
    """Band-limited resampling by FFT (whole-signal; fine for call-length audio)."""
    if rate == target or len(x) == 0:
        return x.astype(np.float32)
    n_out = max(1, int(round(len(x) * target / rate)))
    spectrum = np.fft.rfft(x.astype(np.float64))
    bins = n_out // 2 + 1
    if bins <= len(spectrum):
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - len(spectrum), spectrum.dtype)])
    return (np.fft.irfft(spectrum, n_out) * (n_out / len(x))).astype(np.float32)


class WhisperRecognizer:
    """Batch recogniser over faster-whisper; one instance per process (the model is ~75 MB)."""

    engine = "whisper"

    def __init__(self, model_dir: str | os.PathLike | None = None, *,
                 cache_dir: str | os.PathLike | None = None, language: str = "zh",
                 beam_size: int = 5, cpu_threads: int = 1,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, vad_filter: bool | None = None,
                 initial_prompt: str | None = None, hotwords: str | None = None,
                 temperature: float | tuple[float, ...] = 0.0) -> None:
        from faster_whisper import WhisperModel

        if model_dir:
            self.model_dir = Path(model_dir)
        else:
            # A larger model dropped beside the base model's cache wins (find_whisper_model).
            models_dir = Path(cache_dir).parent if cache_dir is not None else default_models_dir()
            self.model_dir = find_whisper_model(models_dir) or whisper_base_dir(cache_dir)
        self.language = language
        self.beam_size = beam_size
        self.max_new_tokens = max_new_tokens
        self.vad_filter = vad_filter
        # Decoding knobs measured by bench/stt_bench.py; the defaults are what won there.
        self.initial_prompt = initial_prompt
        self.hotwords = hotwords
        self.temperature = temperature
        try:
            self._model = WhisperModel(str(self.model_dir), device="cpu", compute_type="int8",
                                       cpu_threads=cpu_threads, num_workers=1,
                                       local_files_only=True)
        except Exception as exc:  # ctranslate2 raises RuntimeError/ValueError on bad files
            raise SttError(f"cannot load Whisper model from {self.model_dir}: {exc}") from exc

    def transcribe(self, path: str | os.PathLike) -> Transcript:
        from callcenter.media.wav import WavFormatError, read_wav

        started = time.perf_counter()
        try:
            channels, rate, pcm = read_wav(path)
        except (OSError, WavFormatError) as exc:
            raise SttError(f"cannot read audio {path}: {exc}") from exc
        frames = np.frombuffer(pcm, "<i2").reshape(-1, channels).astype(np.float32) / 32768.0
        segments: list[Segment] = []
        for channel in range(channels):
            audio = resample(frames[:, channel], rate)
            vad = self.vad_filter if self.vad_filter is not None else channels > 1
            segments += self.transcribe_array(audio, channel=channel, vad_filter=vad)
        return Transcript.from_segments(
            segments, engine=self.engine, language=self.language,
            duration_s=len(frames) / rate, elapsed_s=time.perf_counter() - started)

    def transcribe_array(self, audio: np.ndarray, *, channel: int = 0,
                         vad_filter: bool = False) -> list[Segment]:
        """Segments of one channel of 16 kHz float32 audio."""
        if len(audio) < _WHISPER_RATE // 10 or not np.any(audio):
            return []
        pieces, _info = self._model.transcribe(
            audio, language=self.language, task="transcribe", beam_size=self.beam_size,
            temperature=self.temperature, condition_on_previous_text=False,
            initial_prompt=self.initial_prompt, hotwords=self.hotwords,
            max_new_tokens=self.max_new_tokens, vad_filter=vad_filter,
            without_timestamps=False)
        out = []
        for piece in pieces:
            text = collapse_repeats(piece.text.strip())
            if self.language == "zh":
                text = punctuate_zh(to_simplified(text))
            if text:
                out.append(Segment(round(piece.start, 3), round(piece.end, 3), text, channel))
        return out


def load_recognizer(model_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                    language: str = "zh") -> WhisperRecognizer:
    """Factory for the worker pool (a top-level function, so it pickles)."""
    return WhisperRecognizer(model_dir, cache_dir=cache_dir, language=language)

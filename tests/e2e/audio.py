"""Audio comparison for end-to-end tests: does a recording contain what a peer sent?"""

from __future__ import annotations

import io
import wave

import numpy as np


def wav_pcm(data: bytes) -> tuple[np.ndarray, int, int]:
    """Samples (int16, interleaved), channels and rate of a WAV file's bytes."""
    with wave.open(io.BytesIO(data)) as w:
        frames = w.readframes(w.getnframes())
        return np.frombuffer(frames, dtype="<i2"), w.getnchannels(), w.getframerate()


def best_correlation(recorded: np.ndarray, sent: np.ndarray) -> float:
    """Peak normalised cross-correlation of `sent` slid along `recorded` (1.0 = identical)."""
    a = recorded.astype(np.float64)
    b = sent.astype(np.float64)
    if len(a) < len(b):
        a, b = b, a
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)[: len(a) - len(b) + 1]
    # Energy of each window of `a` the length of `b`, for normalisation.
    csum = np.concatenate([[0.0], np.cumsum(a * a)])
    window = csum[len(b):] - csum[: len(a) - len(b) + 1]
    denom = np.sqrt(np.maximum(window, 1e-9) * float(np.sum(b * b)))
    return float(np.max(corr / denom))

"""Measuring recognition: character error rate and the telephone-channel simulation used
by the benchmark and the integration tests.

CER follows ``shared/speech/README.md``: spaces and punctuation removed and traditional
characters mapped to simplified (OpenCC t2s when installed) before the edit distance.
The telephone channel is 8 kHz, a 300–3400 Hz band-pass, and a G.711 A-law round trip.
"""

from __future__ import annotations

import unicodedata

import numpy as np

__all__ = ["to_simplified", "normalize_for_cer", "cer", "edit_distance", "telephone_channel"]

_t2s = None


def to_simplified(text: str) -> str:
    """Traditional → simplified characters (OpenCC t2s); unchanged without OpenCC."""
    global _t2s
    if _t2s is None:
        try:
            import opencc

            _t2s = opencc.OpenCC("t2s").convert
        except ImportError:  # a measurement without it counts traditional forms as errors
            _t2s = str
    return _t2s(text)


def normalize_for_cer(text: str) -> str:
    text = to_simplified(unicodedata.normalize("NFKC", text))
    return "".join(c for c in text if not c.isspace()
                   and not unicodedata.category(c).startswith(("P", "S")))


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Edit distance over reference length, both normalised."""
    ref, hyp = normalize_for_cer(reference), normalize_for_cer(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def telephone_channel(pcm: bytes, channels: int, rate: int) -> bytes:
    """Mono 8 kHz 16-bit PCM as a caller's voice reaches us over a G.711 A-law trunk."""
    from callcenter.media import g711
    from callcenter.media.wav import to_8k_mono

    x = np.frombuffer(to_8k_mono(pcm, channels, rate), "<i2").astype(np.float64)
    if len(x):
        spectrum = np.fft.rfft(x)
        freqs = np.fft.rfftfreq(len(x), 1 / 8000)
        spectrum[(freqs < 300) | (freqs > 3400)] = 0
        x = np.fft.irfft(spectrum, len(x))
    pcm8 = np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()
    return g711.alaw_decode(g711.alaw_encode(pcm8))

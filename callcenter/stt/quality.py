"""Measuring recognition: character error rate and the telephone-channel simulation used
by the benchmark and the integration tests.

CER follows ``shared/speech/README.md``: spaces and punctuation removed and traditional
characters mapped to simplified (OpenCC t2s when installed) before the edit distance.
The telephone channel is 8 kHz, a 300–3400 Hz band-pass, and a G.711 A-law round trip.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

__all__ = ["to_simplified", "normalize_for_cer", "spoken_numbers_to_digits", "cer", "edit_distance",
           "telephone_channel"]

_t2s = None


def to_simplified(text: str) -> str:
    """Traditional → simplified characters (OpenCC tw2s); unchanged without OpenCC.

    tw2s, not t2s: Whisper's traditional output is Taiwan usage, where the aspect particle
    is 著 (意味著, 看著); t2s keeps 著 (a simplified character too, as in 著名), tw2s
    gives 着 and still leaves 著名 and 显著 alone."""
    global _t2s
    if _t2s is None:
        try:
            import opencc

            _t2s = opencc.OpenCC("tw2s").convert
        except ImportError:  # a measurement without it counts traditional forms as errors
            _t2s = str
    return _t2s(text)


def normalize_for_cer(text: str) -> str:
    text = to_simplified(unicodedata.normalize("NFKC", text))
    return "".join(c for c in text if not c.isspace()
                   and not unicodedata.category(c).startswith(("P", "S")))


_HANZI_DIGIT = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"幺": 1, "两": 2, "〇": 0}
_HANZI_UNIT = {"十": 10, "百": 100, "千": 1000, "万": 10_000}
_NUMERAL_RUN = re.compile("[零〇一二三四五六七八九幺两十百千万]+")


def _hanzi_number(run: str) -> str:
    if not any(c in _HANZI_UNIT for c in run):
        return "".join(str(_HANZI_DIGIT[c]) for c in run)  # read digit by digit: 幺二三幺九
    total = section = digit = 0
    for c in run:
        if c in _HANZI_DIGIT:
            digit = _HANZI_DIGIT[c]
        elif c == "万":
            total += (section + digit) * 10_000
            section = digit = 0
        else:
            section += (digit or 1) * _HANZI_UNIT[c]
            digit = 0
    return str(total + section + digit)


def spoken_numbers_to_digits(text: str) -> str:
    """Numbers in hanzi → Arabic digits (十五 → 15, 幺二三幺九 → 12319, 两 → 2), so a CER
    does not count "15分钟" against "十五分钟". For measuring only: transcripts keep the
    caller's own form."""
    return _NUMERAL_RUN.sub(lambda m: _hanzi_number(m.group()), text)


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(reference: str, hypothesis: str, *, numbers: bool = False) -> float:
    """Edit distance over reference length, both normalised (and with `numbers`, spoken
    numbers written as digits on both sides)."""
    ref, hyp = normalize_for_cer(reference), normalize_for_cer(hypothesis)
    if numbers:
        ref, hyp = spoken_numbers_to_digits(ref), spoken_numbers_to_digits(hyp)
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

"""Prompt levelling: silence trimmed, short fades, loudness normalised (ITU-R BS.1770).

Every spoken prompt leaves the build at the same integrated loudness (−16 LUFS by default,
peaks held under −1 dBFS by a soft limiter),
so units concatenated at play time (digits of a case number, numbers and their units)
keep one level, and starts/ends fade over a few milliseconds so no join clicks. Pure
numpy over int16 samples; K-weighting is applied in the frequency domain with the
BS.1770 filter pair's response computed for the sample rate at hand (8 kHz here).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TARGET_LUFS", "loudness_lufs", "trim_silence", "fade", "level", "finish_prompt"]

TARGET_LUFS = -16.0
_PEAK_CEILING_DBFS = -1.0
_ABSOLUTE_GATE = -70.0
_RELATIVE_GATE = -10.0


def _biquad_response(b, a, w: np.ndarray) -> np.ndarray:
    z = np.exp(-1j * w)
    return (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)


def _k_weighting(rate: int, n_fft: int) -> np.ndarray:
    """Complex response of the BS.1770 pre-filter (high shelf + RLB high-pass) per rfft bin."""
    w = 2 * np.pi * np.fft.rfftfreq(n_fft, 1 / rate) / rate
    # High shelf: +4 dB above ~1.5 kHz (RBJ cookbook form, as pyloudnorm derives it).
    gain_db, fc, q = 4.0, 1500.0, 1 / np.sqrt(2)
    big_a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * fc / rate
    alpha = np.sin(w0) / (2 * q)
    cw, sa = np.cos(w0), 2 * np.sqrt(big_a) * alpha
    shelf_b = (big_a * ((big_a + 1) + (big_a - 1) * cw + sa),
               -2 * big_a * ((big_a - 1) + (big_a + 1) * cw),
               big_a * ((big_a + 1) + (big_a - 1) * cw - sa))
    shelf_a = ((big_a + 1) - (big_a - 1) * cw + sa,
               2 * ((big_a - 1) - (big_a + 1) * cw),
               (big_a + 1) - (big_a - 1) * cw - sa)
    # RLB high-pass at 38 Hz.
    fc, q = 38.0, 0.5
    w0 = 2 * np.pi * fc / rate
    alpha = np.sin(w0) / (2 * q)
    cw = np.cos(w0)
    hp_b = ((1 + cw) / 2, -(1 + cw), (1 + cw) / 2)
    hp_a = (1 + alpha, -2 * cw, 1 - alpha)
    return _biquad_response(shelf_b, shelf_a, w) * _biquad_response(hp_b, hp_a, w)


def loudness_lufs(x: np.ndarray, rate: int) -> float:
    """Integrated loudness of mono float samples (full scale ±1); −inf for silence.

    Gated 400 ms blocks with 75 % overlap; a signal shorter than one block is one block.
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0 or not np.any(x):
        return float("-inf")
    n_fft = 1 << int(np.ceil(np.log2(len(x) + rate // 10)))  # padding keeps wrap-around off
    y = np.fft.irfft(np.fft.rfft(x, n_fft) * _k_weighting(rate, n_fft), n_fft)[:len(x)]
    block = int(0.4 * rate)
    if len(y) <= block:
        powers = np.array([np.mean(y * y)])
    else:
        hop = block // 4
        starts = range(0, len(y) - block + 1, hop)
        powers = np.array([np.mean(y[s:s + block] ** 2) for s in starts])
    with np.errstate(divide="ignore"):
        blocks = -0.691 + 10 * np.log10(powers)
    kept = powers[blocks > _ABSOLUTE_GATE]
    if len(kept) == 0:
        return float("-inf")
    relative = -0.691 + 10 * np.log10(np.mean(kept)) + _RELATIVE_GATE
    kept = powers[(blocks > _ABSOLUTE_GATE) & (blocks > relative)]
    return float(-0.691 + 10 * np.log10(np.mean(kept)))


def trim_silence(x: np.ndarray, rate: int, *, below_peak_db: float = 45.0,
                 margin_s: float = 0.06) -> np.ndarray:
    """Cut leading and trailing stretches quieter than the loudest 10 ms frame − below_peak_db,
    keeping margin_s on each side (soft onsets such as the n of 您 stay whole)."""
    frame = max(1, rate // 100)
    n = len(x) // frame
    if n == 0:
        return x
    rms = np.sqrt(np.mean(x[:n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1))
    if rms.max() == 0:
        return x[:0]
    loud = np.nonzero(rms >= rms.max() * 10 ** (-below_peak_db / 20))[0]
    margin = int(margin_s * rate)
    start = max(0, loud[0] * frame - margin)
    end = min(len(x), (loud[-1] + 1) * frame + margin)
    return x[start:end]


def fade(x: np.ndarray, rate: int, seconds: float = 0.008) -> np.ndarray:
    """Raised-cosine fade in and out, so a cut or a join starts and ends at zero."""
    n = min(len(x) // 2, int(seconds * rate))
    if n == 0:
        return x
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))
    y = np.asarray(x, dtype=np.float64).copy()
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def _soft_limit(x: np.ndarray, ceiling: float, knee: float) -> np.ndarray:
    """Samples above `knee` bend smoothly towards `ceiling` (tanh), which none exceeds."""
    over = np.abs(x) > knee
    if not np.any(over):
        return x
    y = x.copy()
    room = ceiling - knee
    y[over] = np.sign(x[over]) * (knee + room * np.tanh((np.abs(x[over]) - knee) / room))
    return y


def level(x: np.ndarray, rate: int, target_lufs: float = TARGET_LUFS) -> np.ndarray:
    """Scale to target_lufs; peaks that would pass −1 dBFS go through a soft limiter
    (synthetic speech has sharp plosives), re-measured until the loudness is reached."""
    x = np.asarray(x, dtype=np.float64)
    ceiling = 10 ** (_PEAK_CEILING_DBFS / 20)
    y = x
    for _ in range(4):
        current = loudness_lufs(y, rate)
        if not np.isfinite(current):
            return y
        if abs(current - target_lufs) < 0.05:
            break
        x = x * 10 ** ((target_lufs - current) / 20)
        y = _soft_limit(x, ceiling, knee=ceiling / 2)
    return y


def finish_prompt(samples: np.ndarray, rate: int, *, target_lufs: float = TARGET_LUFS,
                  trim: bool = True) -> np.ndarray:
    """int16 samples → trimmed, faded, levelled int16 samples."""
    x = np.asarray(samples, dtype=np.float64) / 32768.0
    if trim:
        x = trim_silence(x, rate)
    x = level(fade(x, rate), rate, target_lufs)
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")

"""Prompt levelling: BS.1770 loudness, silence trimming, fades, the −16 LUFS target."""

from __future__ import annotations

import numpy as np
import pytest

from ivr_flows.prompt_audio import fade, finish_prompt, level, loudness_lufs, trim_silence

RATE = 8000


def sine(amplitude: float, seconds: float = 2.0, hz: float = 997.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(int(RATE * seconds)) / RATE)


def speechlike(seconds: float = 2.0, seed: int = 1) -> np.ndarray:
    """Noise shaped like syllables: 4 Hz bursts of band-limited noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(RATE * seconds)) / RATE
    noise = np.convolve(rng.standard_normal(len(t)), np.ones(4) / 4, mode="same")
    return 0.05 * noise * np.clip(np.sin(2 * np.pi * 4 * t), 0, None)


@pytest.mark.parametrize("amplitude, lufs", [(1.0, -3.0), (0.1, -23.0)])
def test_loudness_of_a_997_hz_sine_matches_bs1770(amplitude, lufs):
    """A full-scale 997 Hz sine reads −3.0 LUFS (BS.1770's reference), −20 dB lower reads −23."""
    assert loudness_lufs(sine(amplitude), RATE) == pytest.approx(lufs, abs=0.3)


def test_silence_has_no_loudness():
    """Digital silence is −inf, not a number that would make the gain explode."""
    assert loudness_lufs(np.zeros(RATE), RATE) == float("-inf")
    assert np.array_equal(level(np.zeros(RATE), RATE), np.zeros(RATE))


def test_level_reaches_minus_16_lufs_for_quiet_and_loud_inputs():
    """Quiet and loud speech-like signals both come out at −16 LUFS."""
    for gain in (0.05, 1.0, 6.0):
        out = level(speechlike() * gain, RATE)
        assert loudness_lufs(out, RATE) == pytest.approx(-16.0, abs=0.2)


def test_level_never_clips():
    """A signal with sharp peaks reaches the target with its peaks held under −1 dBFS."""
    x = speechlike()
    x[::2000] = 0.2  # plosive-like spikes: plain gain to −16 LUFS would clip them
    assert np.max(np.abs(x)) * 10 ** ((-16 - loudness_lufs(x, RATE)) / 20) > 1
    out = level(x, RATE)
    assert np.max(np.abs(out)) <= 10 ** (-1 / 20)
    assert loudness_lufs(out, RATE) == pytest.approx(-16.0, abs=0.2)


def test_trim_keeps_the_speech_and_a_short_margin():
    """Half a second of silence each side is cut to the 60 ms margin."""
    voice = 0.05 * np.random.default_rng(2).standard_normal(RATE)
    x = np.concatenate([np.zeros(RATE // 2), voice, np.zeros(RATE // 2)])
    out = trim_silence(x, RATE)
    assert len(voice) <= len(out) <= len(voice) + int(0.15 * RATE)
    assert np.max(np.abs(out)) == np.max(np.abs(voice))


def test_fades_start_and_end_at_zero():
    """Both ends ramp to zero, so concatenated units do not click at the joins."""
    out = fade(np.ones(RATE), RATE)
    assert out[0] == 0 and out[-1] == 0 and out[RATE // 2] == 1


def test_finish_prompt_gives_levelled_int16_without_edge_steps():
    """int16 in, int16 out: trimmed, edges at zero, at the target loudness."""
    samples = (np.concatenate([np.zeros(4000), speechlike(), np.zeros(4000)]) * 32767).astype("<i2")
    out = finish_prompt(samples, RATE)
    assert out.dtype == np.dtype("<i2") and len(out) < len(samples)
    assert abs(int(out[0])) <= 1 and abs(int(out[-1])) <= 1
    assert loudness_lufs(out / 32768.0, RATE) == pytest.approx(-16.0, abs=0.3)

"""WAV writing (always-valid on disk), reading of common formats, and 8 kHz conversion."""

import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from callcenter.media.wav import WavFormatError, WavWriter, read_wav, to_8k_mono, wav_seconds

SOX = shutil.which("sox")


def test_file_is_valid_after_each_flush(tmp_path):
    """After every flush the stdlib wave reader sees exactly the flushed frames; unflushed data is not on disk."""
    path = tmp_path / "rec.wav"
    w = WavWriter(path, channels=2)
    with wave.open(str(path)) as r:
        assert r.getnframes() == 0 and r.getnchannels() == 2
    w.write(b"\x01\x00\x02\x00" * 160)
    w.flush()
    w.write(b"\x03\x00\x04\x00" * 160)
    with wave.open(str(path)) as r:
        assert r.getnframes() == 160
    w.flush()
    with wave.open(str(path)) as r:
        assert (r.getnframes(), r.getframerate(), r.getsampwidth()) == (320, 8000, 2)
        assert r.readframes(320) == b"\x01\x00\x02\x00" * 160 + b"\x03\x00\x04\x00" * 160
    assert w.close() == pytest.approx(0.04)


def test_duration_and_close_twice(tmp_path):
    """duration_s counts buffered audio; close flushes it and can be called again."""
    w = WavWriter(tmp_path / "a.wav")
    w.write(bytes(16000))
    assert w.duration_s == pytest.approx(1.0)
    assert w.close() == pytest.approx(1.0)
    assert w.close() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        w.write(b"\x00\x00")


def test_wav_seconds_reads_the_length_or_zero(tmp_path):
    """wav_seconds: a written file's length; 0.0 for a missing file and for one that is not WAV."""
    with WavWriter(tmp_path / "a.wav", channels=2) as w:
        w.write(bytes(4 * 8000 * 3 // 2))
    assert wav_seconds(tmp_path / "a.wav") == pytest.approx(1.5)
    assert wav_seconds(tmp_path / "missing.wav") == 0.0
    (tmp_path / "junk.wav").write_bytes(b"not a wave file")
    assert wav_seconds(tmp_path / "junk.wav") == 0.0


def test_partial_frame_rejected(tmp_path):
    """Writing half a stereo frame raises instead of shifting the channels."""
    with WavWriter(tmp_path / "s.wav", channels=2) as w:
        with pytest.raises(ValueError):
            w.write(b"\x00\x00")


def _write_raw_wav(path: Path, tag: int, channels: int, rate: int, bits: int, data: bytes, extensible=False):
    block = channels * bits // 8
    if extensible:
        fmt = struct.pack("<HHIIHHHHI16s", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0,
                          struct.pack("<H", tag) + bytes(14))
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd chunk with pad byte
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize(
    "tag, bits, data, extensible",
    [
        (1, 16, np.array([0, 1000, -1000], "<i2").tobytes(), False),
        (1, 8, bytes([128, 128 + 4, 128 - 4]), False),
        (1, 24, b"\x00\x00\x00\x00\xe8\x03\x00\x18\xfc", True),
        (3, 32, np.array([0.0, 1000 / 32767, -1000 / 32767], "<f4").tobytes(), False),
    ],
)
def test_read_common_formats(tmp_path, tag, bits, data, extensible):
    """16/8/24-bit PCM (also extensible) and float WAVs read as the same 16-bit samples."""
    path = tmp_path / "x.wav"
    _write_raw_wav(path, tag, 1, 8000, bits, data, extensible)
    ch, rate, pcm = read_wav(path)
    assert (ch, rate) == (1, 8000)
    expected = [0, 1024, -1024] if bits == 8 else [0, 1000, -1000]
    assert np.frombuffer(pcm, "<i2").tolist() == expected


def test_read_alaw_wav(tmp_path):
    """A-law WAV prompts are decoded to linear PCM."""
    path = tmp_path / "a.wav"
    _write_raw_wav(path, 6, 1, 8000, 8, b"\xd5\x55")
    assert np.frombuffer(read_wav(path)[2], "<i2").tolist() == [8, -8]


def test_truncated_recording_reads_whole_frames(tmp_path):
    """A data chunk claiming more bytes than the file has is read to the last whole frame."""
    path = tmp_path / "t.wav"
    _write_raw_wav(path, 1, 2, 8000, 16, bytes(range(20)))
    path.write_bytes(path.read_bytes()[:-3])
    assert read_wav(path)[2] == bytes(range(16))


def test_not_a_wav_raises(tmp_path):
    """Random bytes and a WAV without data chunk raise WavFormatError."""
    p = tmp_path / "bad.wav"
    p.write_bytes(b"hello world, not a wav")
    with pytest.raises(WavFormatError):
        read_wav(p)
    p.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(WavFormatError):
        read_wav(p)


def _tone(freq, rate, seconds=0.5, amp=10000.0):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def _rms(pcm):
    x = np.frombuffer(pcm, "<i2").astype(float)[200:-200]
    return np.sqrt(np.mean(x**2))


@pytest.mark.parametrize("rate", [16000, 44100, 48000, 11025])
def test_resample_keeps_passband_and_kills_alias(rate):
    """A 1 kHz tone keeps its level; a 5 kHz tone (would alias to 3 kHz) is suppressed by >40 dB."""
    kept = to_8k_mono(_tone(1000, rate), 1, rate)
    assert len(kept) // 2 == int(rate * 0.5) * 8000 // rate
    assert _rms(kept) == pytest.approx(10000 / np.sqrt(2), rel=0.03)
    if rate > 10000:
        assert _rms(to_8k_mono(_tone(5000, rate), 1, rate)) < 10000 / np.sqrt(2) / 100


def test_stereo_downmix_to_mono():
    """Stereo is averaged to mono at 8 kHz without resampling."""
    stereo = np.array([[100, 300], [-200, 200]], "<i2").tobytes()
    assert np.frombuffer(to_8k_mono(stereo, 2, 8000), "<i2").tolist() == [200, 0]


def test_resample_phase_agrees_with_sox(tmp_path):
    """A 44.1 kHz speech-band signal resampled here is close to sox's result (same timing, no offset)."""
    if SOX is None:
        pytest.skip("sox not installed")
    rng = np.random.default_rng(3)
    sig = np.convolve(rng.normal(0, 4000, 44100), np.hanning(40) / 20, mode="same").astype("<i2").tobytes()
    ref = subprocess.run([SOX, "-t", "raw", "-e", "signed", "-b", "16", "-L", "-r", "44100", "-c", "1", "-",
                          "-t", "raw", "-r", "8000", "-"], input=sig, capture_output=True, check=True).stdout
    mine = np.frombuffer(to_8k_mono(sig, 1, 44100), "<i2").astype(float)
    theirs = np.frombuffer(ref, "<i2").astype(float)
    n = min(len(mine), len(theirs))
    err = mine[100 : n - 100] - theirs[100 : n - 100]
    snr = 10 * np.log10(np.mean(theirs[100 : n - 100] ** 2) / np.mean(err**2))
    assert snr > 25

"""Audio comparison for end-to-end tests: does a recording contain what a peer sent?"""

from __future__ import annotations

import io
import wave

from pathlib import Path

import numpy as np

from tests.e2e.peers.pcap import build_rtp_pcap


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


def decode_ulaw(data: bytes) -> np.ndarray:
    from callcenter.media.g711 import ulaw_decode

    return np.frombuffer(ulaw_decode(data), dtype="<i2")


def report_pcap(tmp: Path, prompts: Path, speech: bytes, *, press_hash: bool = True, tail_s: float = 1.0) -> Path:
    """Caller audio for "report a problem": digit 1 at 0.5 s (barge-in), speech once the
    intro and beep are over, then # (or nothing, for a caller who just hangs up)."""
    intro = len((prompts / "report_intro.wav").read_bytes()) / 16000 + 0.3  # 8 kHz 16-bit + beep
    speech_at = 0.5 + 0.2 + intro + 1.0
    pcm = bytes(int(speech_at * 8000) * 2) + speech + bytes(int(tail_s * 8000) * 2)
    dtmf = [(0.5, "1")] + ([(len(pcm) / 16000 + 0.2, "#")] if press_hash else [])
    path = tmp / "report.pcap"
    build_rtp_pcap(path, pcm_8k_mono=pcm, codec="PCMU", payload_type=0, dtmf=dtmf)
    return path


def heard_correlation(wav_path: Path, speech: bytes, *,
                      windows: tuple[tuple[float, float], ...] = ((0.8, 2.3), (1.7, 3.2), (2.6, 4.1))) -> float:
    """How well a phone's recording of what it heard (any channels/rate) contains `speech`
    (8 kHz PCM) as it sounds after µ-law: the best of a few 1.5 s slices of it, so that a
    bridge made late on a loaded machine (the first words gone before the agent's leg was
    up) still counts what was heard, while silence or other audio stays far below 0.5."""
    from tests.e2e.peers.pcap import encode_g711

    samples, channels, rate = wav_pcm(Path(wav_path).read_bytes())
    mono = samples[0::channels] if channels > 1 else samples
    if rate != 8000:
        mono = mono[:: rate // 8000]
    sent = decode_ulaw(encode_g711(speech, "PCMU"))
    return max(best_correlation(mono, sent[int(8000 * a): int(8000 * b)]) for a, b in windows
               if int(8000 * b) <= len(sent))

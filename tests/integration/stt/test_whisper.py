"""The faster-whisper backend with the Whisper base model from the PyPI packages."""

from __future__ import annotations

import pytest

from callcenter.stt import models
from callcenter.stt.models import ModelNotFound, whisper_base_dir
from callcenter.stt.quality import cer
from callcenter.stt.whisper_stt import collapse_repeats

from .conftest import AGENT_CLIP, MESSAGE_CLIP, reference

pytestmark = pytest.mark.slow


def test_joined_model_is_verified_and_reused(whisper_cache):
    """The joined model.bin carries a stamp with the expected SHA-256 prefix; a second call reuses it."""
    stamp = (whisper_cache / "model.bin.sha256").read_text()
    assert stamp.startswith(models.WHISPER_BASE_SHA256_PREFIX)
    mtime = (whisper_cache / "model.bin").stat().st_mtime_ns
    assert whisper_base_dir(whisper_cache) == whisper_cache
    assert (whisper_cache / "model.bin").stat().st_mtime_ns == mtime
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in whisper_cache.iterdir()}


def test_wrong_checksum_is_refused(tmp_path, monkeypatch):
    """A joined file whose hash does not match is not kept and the error says to reinstall."""
    monkeypatch.setattr(models, "WHISPER_BASE_SHA256_PREFIX", "ffffffff")
    with pytest.raises(ModelNotFound, match="reinstall"):
        whisper_base_dir(tmp_path)
    assert not (tmp_path / "model.bin").exists()


def test_telephone_message_is_transcribed_in_mandarin(whisper, phone_message):
    """A real Mandarin message over the telephone channel comes back with CER below 0.5."""
    transcript = whisper.transcribe(phone_message)
    assert transcript.engine == "whisper" and transcript.language == "zh"
    assert cer(reference(MESSAGE_CLIP), transcript.text) < 0.5
    seg = transcript.segments[0]
    assert seg.channel == 0 and 0 <= seg.start_s < seg.end_s <= transcript.duration_s + 0.5


def test_stereo_recording_keeps_speakers_apart(whisper, stereo_call):
    """Each channel of a bridged call is transcribed on its own, with its own times."""
    transcript = whisper.transcribe(stereo_call)
    caller = "".join(s.text for s in transcript.segments if s.channel == 0)
    agent = "".join(s.text for s in transcript.segments if s.channel == 1)
    assert cer(reference(MESSAGE_CLIP), caller) < 0.5
    # Channel separation, not accuracy: the agent's text is closer to the agent's script.
    assert cer(reference(AGENT_CLIP), agent) < cer(reference(MESSAGE_CLIP), agent)
    assert min(s.start_s for s in transcript.segments if s.channel == 1) > 3.5
    assert max(s.end_s for s in transcript.segments if s.channel == 0) < 5.0


def test_output_is_simplified_chinese(whisper, stereo_call):
    """Traditional characters Whisper sometimes emits are mapped to simplified."""
    from callcenter.stt.quality import to_simplified

    text = whisper.transcribe(stereo_call).text
    assert text == to_simplified(text)


def test_silence_gives_no_segments(whisper, tmp_path):
    """Pure silence yields an empty transcript instead of an invented sentence."""
    from .conftest import write_wav

    transcript = whisper.transcribe(write_wav(tmp_path / "silence.wav", bytes(16000)))
    assert transcript.segments == () and transcript.text == ""


def test_runaway_repetition_is_collapsed():
    """A looped phrase (Whisper's failure mode) is cut to one occurrence."""
    assert collapse_repeats("井盖坏了请尽快处理请尽快处理请尽快处理请尽快处理") == "井盖坏了请尽快处理"
    assert collapse_repeats("请问请问请问请问请问") == "请问"

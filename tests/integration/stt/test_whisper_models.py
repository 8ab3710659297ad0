"""A larger Whisper dropped into the models directory is used without code changes, and
transcripts are always simplified Chinese."""

from __future__ import annotations

import pytest

from callcenter.stt.models import find_whisper_model
from callcenter.stt.quality import to_simplified
from callcenter.stt.whisper_stt import WhisperRecognizer

from .conftest import MESSAGE_CLIP, reference

pytestmark = pytest.mark.slow


def fake_model(folder, size: int, *, tokenizer: bool = True):
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(bytes(size))
    (folder / "config.json").write_text("{}")
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    return folder


def test_largest_complete_dropped_model_is_found(tmp_path):
    """whisper-medium beats whisper-small; an incomplete folder and the base cache are ignored."""
    assert find_whisper_model(tmp_path) is None
    assert find_whisper_model(tmp_path / "missing") is None
    fake_model(tmp_path / "whisper-base", 900)
    fake_model(tmp_path / "whisper-large-v3", 800, tokenizer=False)
    small = fake_model(tmp_path / "whisper-small", 200)
    assert find_whisper_model(tmp_path) == small
    medium = fake_model(tmp_path / "whisper-medium", 500)
    assert find_whisper_model(tmp_path) == medium


def test_dropped_model_is_loaded_instead_of_base(tmp_path, whisper_cache, phone_message):
    """A model folder put beside the base cache (here a copy of base) is what transcribes."""
    dropped = tmp_path / "whisper-small"
    dropped.mkdir()
    for f in whisper_cache.iterdir():
        if f.name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
            (dropped / f.name).symlink_to(f)
    recognizer = WhisperRecognizer(cache_dir=tmp_path / "whisper-base", cpu_threads=2)
    assert recognizer.model_dir == dropped
    assert not (tmp_path / "whisper-base").exists()  # the base model was never joined here
    text = recognizer.transcribe(phone_message).text
    from callcenter.stt.quality import cer

    assert cer(reference(MESSAGE_CLIP), text) < 0.5


def test_traditional_characters_become_simplified():
    """意味著 (traditional, as Whisper sometimes writes it) is shown as 意味着."""
    assert to_simplified("意味著這個問題") == "意味着这个问题"
    assert to_simplified("跟著他走") == "跟着他走"
    assert to_simplified("著名的著作很顯著") == "著名的著作很显著"  # where 著 is simplified too


def test_segments_get_chinese_punctuation():
    """Pauses written as spaces become ，, ASCII marks become full-width, a segment ends with 。."""
    from callcenter.stt.whisper_stt import punctuate_zh

    assert punctuate_zh("您好 欢迎致电12319 本次通话将被录音") == "您好，欢迎致电12319，本次通话将被录音。"
    assert punctuate_zh("请按一,结束请按2?") == "请按一，结束请按2？"
    assert punctuate_zh("") == ""


def test_transcript_is_punctuated(whisper, phone_message):
    """A real message's transcript carries Chinese punctuation, numbers left as spoken."""
    text = whisper.transcribe(phone_message).text
    assert text.endswith("。") and not any(c in text for c in ",?!")

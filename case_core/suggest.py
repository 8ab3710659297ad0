"""Case suggestions for the agent's screen pop: what a transcript or typed text says about
category, place, phone numbers and urgency (`case_core.domain.extraction`), with the
reference data — national categories plus the demo district's local codes, and the
gazetteer and areas imported into the database (the demo district's files when none are) —
loaded once per process and reused; imported places are re-read at most once a minute.

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
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from case_core.domain.categories import DEFAULT_CATEGORIES_PATH, load_category_directory
from case_core.domain.extraction import Extractor
from case_core.domain.reference import Area, Gazetteer, Place, load_areas, load_gazetteer

__all__ = ["suggest_for_text", "load_extractor", "SuggestionDataError", "DEMO_DATA"]

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
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


# Places and areas imported into the database (`hotline import gazetteer|areas`, the demo
# city), re-read at most once a minute: digest → (places, areas). Without imported data the
# demo district's files are used, as before.
REFERENCE_TTL_S = 60.0
_reference_cache: dict[str, tuple[float, str]] = {}
_reference_data: dict[str, tuple[tuple[Place, ...], tuple[Area, ...]]] = {}
_engines: dict[str, Any] = {}


def _database_reference(settings) -> str:
    """The digest of the database's gazetteer and areas ("" when there are none or the
    database cannot be read); their rows are kept in `_reference_data` under it."""
    url_of = getattr(settings, "database_url", None)
    if url_of is None:
        return ""
    url = url_of()
    if url.startswith("sqlite:///") and ":memory:" not in url and not Path(url[len("sqlite:///"):]).is_file():
        return ""  # no database yet (`hotline extract` before set-up): do not create one
    now = time.monotonic()
    hit = _reference_cache.get(url)
    if hit is not None and hit[0] > now:
        return hit[1]
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from case_core.adapters import orm
    from case_core.adapters.sqlalchemy_repo import make_sync_engine

    try:
        engine = _engines.get(url) or _engines.setdefault(url, make_sync_engine(url))
        with engine.connect() as conn:
            place_rows = conn.execute(select(orm.ref_places.c.name, orm.ref_places.c.kind, orm.ref_places.c.grid_id,
                                             orm.ref_places.c.aliases).order_by(orm.ref_places.c.name)).all()
            area_rows = conn.execute(select(orm.ref_areas.c.level, orm.ref_areas.c.code, orm.ref_areas.c.name,
                                            orm.ref_areas.c.parent_code).order_by(orm.ref_areas.c.code)).all()
    except SQLAlchemyError as exc:
        log.info("gazetteer not readable from the database (%s); suggesting places from the demo files", exc)
        _reference_cache[url] = (now + REFERENCE_TTL_S, "")
        return ""
    if not place_rows:
        digest = ""
    else:
        places = tuple(Place(name, kind, grid_id, tuple(a.strip() for a in (aliases or "").split("|") if a.strip()))
                       for name, kind, grid_id, aliases in place_rows)
        areas = tuple(Area(level, code, name, parent) for level, code, name, parent in area_rows)
        digest = hashlib.sha256(repr((place_rows, area_rows)).encode()).hexdigest()[:16]
        _reference_data[digest] = (places, areas)
    _reference_cache[url] = (now + REFERENCE_TTL_S, digest)
    return digest


@functools.lru_cache(maxsize=4)
def _extractor(categories_csv: Path, model_dir: Path | None = None, model_mtime: int = 0,
               reference: str = "") -> Extractor:
    if not categories_csv.is_file():
        raise SuggestionDataError(f"category table {categories_csv} is missing")
    directory, errors = load_category_directory(categories_csv, [DEMO_DATA / "local_categories.csv"])
    if errors:
        raise SuggestionDataError("; ".join(str(e) for e in errors[:3]))
    if reference and reference in _reference_data:
        places, areas = _reference_data[reference]
    else:
        places, _ = load_gazetteer(DEMO_DATA / "gazetteer.csv")
        areas, _ = load_areas(DEMO_DATA / "areas.csv")
    model = _model(model_dir) if model_dir is not None else None
    return Extractor(directory, Gazetteer(places), list(areas), model=model)


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
        return _extractor(_categories_path(settings), directory, mtime, _database_reference(settings))


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

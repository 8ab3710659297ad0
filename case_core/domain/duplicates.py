"""Duplicate suggestion (相似案卷): which earlier cases probably report the same problem.

Owns the scoring rule only — same category, same or nearby grid cell, reported within a
time window, similar text — as pure functions over plain records (``CaseState`` or
anything with the same attributes). The agent decides; merging is the ``merge`` action.
"""
from __future__ import annotations

import math
import operator
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterable, Mapping, Protocol

from case_core.domain.reference import GridCell

__all__ = [
    "DuplicateSuggestion", "text_similarity", "suggest_duplicates", "same_community",
    "nearby_by_distance", "INACTIVE_STATUSES",
]

# A duplicate must point at a case that will still be handled.
INACTIVE_STATUSES = frozenset({"void", "merged", "declined", "direct_answered"})

Nearby = Callable[[str, str], bool]


class _CaseLike(Protocol):
    number: str
    category: str | None
    grid_cell: str | None
    description: str
    address: str
    created_at: datetime
    status: str


@dataclass(frozen=True)
class DuplicateSuggestion:
    """A candidate duplicate with its score (0–1) and the reasons shown to the agent."""

    number: str
    score: float
    text_similarity: float
    location: str  # "same_cell" | "nearby" | "address"
    reasons: tuple[str, ...]


_DROP = re.compile(r"[\s\W_]+", re.UNICODE)


def _normalise(text: str) -> str:
    # Full-width digits/letters and punctuation vary between agents typing the same thing.
    return _DROP.sub("", unicodedata.normalize("NFKC", text or "").lower())


def _bigrams(text: str) -> list[str]:
    t = _normalise(text)
    if len(t) < 2:
        return [t] if t else []
    return list(map(operator.add, t, t[1:]))  # t[i] + t[i+1], iterated in C


def _bag(text: str) -> tuple[Counter, int]:
    """The text's bigrams as a multiset, and how many there are."""
    grams = _bigrams(text)
    return Counter(grams), len(grams)


def _dice(a: tuple[Counter, int], b: tuple[Counter, int]) -> float:
    (ca, na), (cb, nb) = a, b
    if not na or not nb:
        return 0.0
    if len(ca) > len(cb):
        ca, cb = cb, ca
    common = sum(min(n, cb[g]) for g, n in ca.items() if g in cb)
    return 2 * common / (na + nb)


def text_similarity(a: str, b: str) -> float:
    """Dice coefficient over character bigrams (works for Chinese without segmentation)."""
    return _dice(_bag(a), _bag(b))


def same_community(a: str, b: str) -> bool:
    """Default 'nearby': both cells lie in the same community (same 12-digit prefix)."""
    return len(a) == len(b) == 15 and a[:12] == b[:12]


def nearby_by_distance(cells: Iterable[GridCell], radius_m: float = 300.0) -> Nearby:
    """'Nearby' as centre distance within ``radius_m``; cells without coordinates fall
    back to the same-community rule."""
    centres: Mapping[str, tuple[float, float]] = {
        c.grid_id: (c.x, c.y) for c in cells if c.x is not None and c.y is not None}

    def nearby(a: str, b: str) -> bool:
        if a in centres and b in centres:
            (ax, ay), (bx, by) = centres[a], centres[b]
            return math.hypot(ax - bx, ay - by) <= radius_m
        return same_community(a, b)

    return nearby


# Descriptions are compared on their first characters only: a report's gist comes first, and
# the check (run at every save, against every active case of the category) must not grow
# with the length of what callers said.
COMPARED_CHARS = 1000


def suggest_duplicates(probe: _CaseLike, candidates: Iterable[_CaseLike], *,
                       window: timedelta = timedelta(days=7), nearby: Nearby = same_community,
                       min_score: float = 0.45, limit: int = 5) -> list[DuplicateSuggestion]:
    """Earlier or concurrent cases that may report the same problem as ``probe``, best first.

    A candidate must be active, share the probe's category (when both have one), be
    reported within ``window`` of the probe, and be in the same or a nearby grid cell —
    or, when a grid cell is unknown, have a similar address. The score weighs place
    (0.4), description (0.4) and address (0.2).
    """
    out: list[DuplicateSuggestion] = []
    probe_bag = _bag(probe.description[:COMPARED_CHARS])  # once, not once per candidate
    for cand in candidates:
        if cand.number == probe.number or cand.status in INACTIVE_STATUSES:
            continue
        if probe.category and cand.category and probe.category != cand.category:
            continue
        if abs(cand.created_at - probe.created_at) > window:
            continue
        address_sim = text_similarity(probe.address, cand.address)
        if probe.grid_cell and cand.grid_cell:
            if probe.grid_cell == cand.grid_cell:
                location, place_score, place_reason = "same_cell", 1.0, "同一网格"
            elif nearby(probe.grid_cell, cand.grid_cell):
                location, place_score, place_reason = "nearby", 0.6, "相邻网格"
            else:
                continue
        else:
            location, place_score = "address", address_sim
            place_reason = f"地址相似 {address_sim:.0%}"
        desc_sim = _dice(probe_bag, _bag(cand.description[:COMPARED_CHARS]))
        score = round(0.4 * place_score + 0.4 * desc_sim + 0.2 * address_sim, 4)
        if score < min_score:
            continue
        reasons = [place_reason, f"描述相似 {desc_sim:.0%}"]
        if probe.category and probe.category == cand.category:
            reasons.insert(0, "同一类别")
        out.append(DuplicateSuggestion(cand.number, score, round(desc_sim, 4), location,
                                       tuple(reasons)))
    out.sort(key=lambda s: (-s.score, s.number))
    return out[:limit]

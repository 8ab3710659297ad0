"""Ranked search over the category directory for the pickers: Chinese, pinyin or code.

An agent types 井盖, ``jinggai``, the initials ``jg`` or the start of a code (``01002``);
matches come back best first: exact name, name starting with the text, name containing
it, then pinyin (whole syllables, then initials), then the class name, then the code.
Shorter names rank first within a tier (``雨水井盖`` before ``信号灯电源井盖``), then
directory order. The pinyin of each name is worked out once, when the index is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from case_core.domain.categories import KIND_LABELS, Category

__all__ = ["CategoryIndex", "CategoryMatch", "default_pinyin"]

_NOT_LETTERS = re.compile(r"[^a-z]")


def default_pinyin(text: str) -> list[str]:
    """Toneless syllables of ``text`` (pypinyin); characters without pinyin are dropped."""
    from pypinyin import Style, lazy_pinyin

    return [s for s in lazy_pinyin(text, style=Style.NORMAL, errors="ignore") if s.isalpha()]


@dataclass(frozen=True)
class CategoryMatch:
    """One hit: the category and why it matched (``name``, ``pinyin``, ``class``, ``code``)."""

    category: Category
    matched: str

    def to_dict(self) -> dict:
        c = self.category
        return {"key": c.key, "kind": c.kind, "kind_label": KIND_LABELS[c.kind], "code": c.code,
                "name": c.name, "class_code": c.class_code, "class_name": c.class_name,
                "label_zh": c.label_zh, "matched": self.matched}


@dataclass(frozen=True)
class _Entry:
    order: int
    category: Category
    full: str  # "yushuijinggai"
    initials: str  # "ysjg"


class CategoryIndex:
    """Categories with their pinyin, searchable by ``search(text)``."""

    def __init__(self, categories: Iterable[Category],
                 pinyin: Callable[[str], list[str]] = default_pinyin) -> None:
        entries = []
        for i, c in enumerate(categories):
            syllables = pinyin(c.name)
            entries.append(_Entry(i, c, "".join(syllables), "".join(s[0] for s in syllables)))
        self._entries = tuple(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def spellings(self) -> dict[str, tuple[str, str]]:
        """Each category key → (whole pinyin, initials), e.g. ``("yushuijinggai", "ysjg")``:
        what a phone needs to search the list itself when it has no signal."""
        return {e.category.key: (e.full, e.initials) for e in self._entries}

    def search(self, text: str, *, kind: str | None = None, limit: int = 30) -> list[CategoryMatch]:
        """Best matches for ``text``, at most ``limit``; an empty text matches nothing."""
        query = (text or "").strip()
        if not query:
            return []
        letters = _NOT_LETTERS.sub("", query.lower()) if query.isascii() else ""
        ranked: list[tuple[tuple[int, int, int], CategoryMatch]] = []
        for e in self._entries:
            c = e.category
            if kind is not None and c.kind != kind:
                continue
            tier, how = _tier(query, letters, e)
            if tier is not None:
                ranked.append(((tier, len(c.name), e.order), CategoryMatch(c, how)))
        ranked.sort(key=lambda r: r[0])
        return [m for _, m in ranked[:max(0, limit)]]


def _tier(query: str, letters: str, e: _Entry) -> tuple[int | None, str]:
    name = e.category.name
    if name == query:
        return 0, "name"
    if name.startswith(query):
        return 1, "name"
    if query in name:
        return 2, "name"
    if letters and len(letters) >= 2:
        if e.full.startswith(letters):
            return 3, "pinyin"
        if letters in e.full:
            return 4, "pinyin"
        if e.initials.startswith(letters):
            return 5, "pinyin"
        if letters in e.initials:
            return 6, "pinyin"
    if query in e.category.class_name:
        return 7, "class"
    if query.isdigit() and e.category.code.startswith(query):
        return 8, "code"
    return None, ""

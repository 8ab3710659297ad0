"""Case categories (案件分类): the GB/T 47678.5 directory plus a city's local subclasses.

Owns the ``Category`` record, its CSV loader (``kind,code,class_code,class_name,name``)
and the in-memory directory keyed on ``(kind, code)`` — codes repeat across kinds
(01001 is both a component and a matter), so a code alone never identifies a category.
The case stores a category as the text key ``kind:code`` (``category_key``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from case_core.domain.reference import RowError, read_csv

__all__ = [
    "Category", "CategoryDirectory", "KIND_LABELS", "DEFAULT_CATEGORIES_PATH",
    "load_categories", "load_category_directory", "category_key", "parse_category_key",
    "InvalidCategoryKey",
]

KIND_LABELS = {"component": "部件", "matter": "事项"}

# The shared national table; a deployment points its config at its own copy.
# The national directory ships beside the repository (../shared/data), not inside it.
DEFAULT_CATEGORIES_PATH = Path(__file__).resolve().parents[3] / "shared" / "data" / "gb47678_5_codes.csv"

_CODE = re.compile(r"^\d{5}$")


@dataclass(frozen=True)
class Category:
    """One subclass (小类) of a component or matter, with its class (大类)."""

    kind: str
    code: str
    class_code: str
    class_name: str
    name: str

    @property
    def key(self) -> str:
        return category_key(self.kind, self.code)

    @property
    def label_zh(self) -> str:
        return f"{KIND_LABELS[self.kind]} {self.code} {self.class_name}/{self.name}"


class InvalidCategoryKey(ValueError):
    """A category key that is not ``component:NNNNN`` or ``matter:NNNNN``."""


def category_key(kind: str, code: str) -> str:
    """The text key stored on a case, e.g. ``matter:06001``."""
    return f"{kind}:{code}"


def parse_category_key(key: str) -> tuple[str, str]:
    """Split ``kind:code``; raise InvalidCategoryKey if malformed."""
    kind, sep, code = (key or "").partition(":")
    if not sep or kind not in KIND_LABELS or not _CODE.match(code):
        raise InvalidCategoryKey(f"category key {key!r} must look like matter:06001")
    return kind, code


def load_categories(path: str | Path, *, existing: "CategoryDirectory | None" = None
                    ) -> tuple[list[Category], list[RowError]]:
    """Load one category CSV. With ``existing`` (the national directory), rows are local
    additions: they may not redefine an existing code, and a class name may be left
    empty when the class already exists."""
    rows, errors = read_csv(path, {"kind", "code", "class_code", "class_name", "name"})
    source = str(path)
    out: list[Category] = []
    seen: set[tuple[str, str]] = set()
    class_names = dict(existing.class_names) if existing is not None else {}
    for line, row in rows:
        kind, code, cls, cls_name, name = (row["kind"], row["code"], row["class_code"],
                                            row["class_name"], row["name"])

        def err(reason: str) -> None:
            errors.append(RowError(line, reason, source))

        if kind not in KIND_LABELS:
            err(f"kind {kind!r} must be component or matter")
        elif not _CODE.match(code):
            err(f"code {code!r} must be 5 digits")
        elif cls != code[:2]:
            err(f"class_code {cls!r} must be the first two digits of {code}")
        elif not name:
            err("name is empty")
        elif (kind, code) in seen or (existing is not None and existing.get(kind, code)):
            err(f"{kind} {code} is already defined")
        elif not cls_name and (kind, cls) not in class_names:
            err(f"class {kind} {cls} is new, so class_name is required")
        elif cls_name and class_names.get((kind, cls), cls_name) != cls_name:
            err(f"class {kind} {cls} is named {class_names[kind, cls]!r}, not {cls_name!r}")
        else:
            cls_name = cls_name or class_names[kind, cls]
            class_names[kind, cls] = cls_name
            seen.add((kind, code))
            out.append(Category(kind, code, cls, cls_name, name))
    return out, errors


class CategoryDirectory:
    """Categories by ``(kind, code)``, in file order."""

    def __init__(self, categories: Iterable[Category]) -> None:
        self._by_key: dict[tuple[str, str], Category] = {}
        for c in categories:
            if (c.kind, c.code) in self._by_key:
                raise ValueError(f"duplicate category {c.kind} {c.code}")
            self._by_key[c.kind, c.code] = c

    def __iter__(self) -> Iterator[Category]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, kind: str, code: str) -> Category | None:
        return self._by_key.get((kind, code))

    def by_key(self, key: str) -> Category | None:
        """Look up ``kind:code``; None if unknown (raise InvalidCategoryKey if malformed)."""
        return self.get(*parse_category_key(key))

    @property
    def class_names(self) -> dict[tuple[str, str], str]:
        return {(c.kind, c.class_code): c.class_name for c in self}

    def keys(self) -> set[tuple[str, str]]:
        return set(self._by_key)

    def search(self, text: str, kind: str | None = None) -> list[Category]:
        """Categories whose name, class name or code contains ``text`` (for the intake form)."""
        text = text.strip()
        return [c for c in self if (kind is None or c.kind == kind)
                and (text in c.name or text in c.class_name or c.code.startswith(text))]


def load_category_directory(national: str | Path = DEFAULT_CATEGORIES_PATH,
                            local: Iterable[str | Path] = ()
                            ) -> tuple[CategoryDirectory, list[RowError]]:
    """The national table plus each local file in turn; errors from all files together."""
    rows, errors = load_categories(national)
    directory = CategoryDirectory(rows)
    for path in local:
        more, errs = load_categories(path, existing=directory)
        errors.extend(errs)
        directory = CategoryDirectory([*directory, *more])
    return directory, errors

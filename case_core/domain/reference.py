"""Reference data from CSV files: areas, grid cells, gazetteer, departments, routing rules.

Owns the plain records for places (district → street → community → 15-character grid
cell), the gazetteer (road/landmark → grid cell), departments, and the routing rules
(指挥手册: category + area + case type → department and per-step time limits), plus
their CSV loaders. Loaders never raise on a bad row: they return the good rows and a
``RowError(line, reason)`` for each bad one, so an import screen can show them all.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping, Protocol

from case_core.domain.csv_text import checked_lines

__all__ = [
    "RowError", "Area", "GridCell", "Place", "Department", "TimeLimit", "RoutingRule",
    "Route", "Gazetteer", "RoutingTable", "AREA_LEVELS", "ROUTING_STEPS",
    "load_areas", "load_grid_cells", "load_gazetteer", "load_departments",
    "load_routing_rules", "parse_time_limit", "area_codes_of", "read_csv",
]


@dataclass(frozen=True)
class RowError:
    """One rejected CSV row: the 1-based line number in the file and why."""

    line: int
    reason: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.source}:" if self.source else "line "
        return f"{where}{self.line}: {self.reason}"


# Code lengths follow the grid-ID layout: 6 district + 3 street + 3 community + 3 grid.
AREA_LEVELS = {"district": 6, "street": 9, "community": 12}
_PARENT_LEVEL = {"street": "district", "community": "street"}
_GRID_ID = re.compile(r"^[0-9A-Za-z]{15}$")
_DIGITS = re.compile(r"^\d+$")
_DEPT_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")

# Steps that can carry a time limit in a routing rule (same names as the workflow).
ROUTING_STEPS = ("verify", "register", "dispatch", "handle", "check", "close", "case")


@dataclass(frozen=True)
class Area:
    """A district (区), street (街道) or community (社区) with its numeric code."""

    level: str
    code: str
    name: str
    parent_code: str | None = None


@dataclass(frozen=True)
class GridCell:
    """A unit grid cell (单元网格); ``x``/``y`` are optional centre coordinates in metres."""

    grid_id: str
    name: str = ""
    inspector: str = ""
    x: float | None = None
    y: float | None = None

    @property
    def district_code(self) -> str:
        return self.grid_id[:6]

    @property
    def street_code(self) -> str:
        return self.grid_id[:9]

    @property
    def community_code(self) -> str:
        return self.grid_id[:12]


def area_codes_of(grid_id: str) -> dict[str, str]:
    """District, street and community codes embedded in a 15-character grid ID."""
    return {level: grid_id[:n] for level, n in AREA_LEVELS.items()}


@dataclass(frozen=True)
class Place:
    """A gazetteer entry (地名): a road, landmark, building … located in a grid cell."""

    name: str
    kind: str
    grid_id: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Department:
    """A responsible unit (专业部门/责任单位) that cases are dispatched to."""

    code: str
    name: str
    parent_code: str | None = None
    phone: str = ""


@dataclass(frozen=True)
class TimeLimit:
    """An allowed duration in working hours (``h``) or working days (``d``)."""

    amount: float
    unit: str

    def __str__(self) -> str:
        amount = int(self.amount) if self.amount == int(self.amount) else self.amount
        return f"{amount}{self.unit}"

    @property
    def label_zh(self) -> str:
        return f"{self} ".replace("h ", "工作时").replace("d ", "工作日")

    def deadline(self, calendar: "_Calendar", start: datetime) -> datetime:
        """The due moment when the step starts at ``start``."""
        if self.unit == "d":
            return calendar.add_working_days(start, self.amount)
        return calendar.add_working_hours(start, self.amount)


class _Calendar(Protocol):
    def add_working_hours(self, start: datetime, hours: float) -> datetime: ...
    def add_working_days(self, start: datetime, days: float) -> datetime: ...


_LIMIT = re.compile(r"^(\d+(?:\.\d+)?)\s*([hd]|min)$")


def parse_time_limit(text: str) -> TimeLimit:
    """Parse ``2h``, ``0.5h``, ``30min`` or ``3d``; raise ValueError otherwise."""
    m = _LIMIT.match(text.strip().lower())
    if not m:
        raise ValueError(f"time limit {text!r} must look like 2h, 30min or 3d")
    amount, unit = float(m[1]), m[2]
    if unit == "min":
        amount, unit = amount / 60, "h"
    if amount <= 0:
        raise ValueError(f"time limit {text!r} must be positive")
    return TimeLimit(amount, unit)


@dataclass(frozen=True)
class RoutingRule:
    """One row of the routing table; empty selectors match anything.

    ``category_code`` is a 5-digit subclass, a 2-digit class, or empty; ``area_code`` is
    a district/street/community code or a grid ID (matched as a prefix of the grid ID).
    """

    line: int
    category_kind: str
    category_code: str
    area_code: str
    case_type: str
    department: str | None
    limits: Mapping[str, TimeLimit] = field(default_factory=dict)

    def matches(self, kind: str | None, code: str | None, grid_id: str | None,
                case_type: str | None) -> bool:
        if self.category_kind and self.category_kind != kind:
            return False
        if self.category_code and not (code or "").startswith(self.category_code):
            return False
        if self.area_code and not (grid_id or "").startswith(self.area_code):
            return False
        if self.case_type and self.case_type != case_type:
            return False
        return True

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        # Case type first: urgent/complex cases run on their own clock, so a generic
        # "urgent: 4h" rule beats a category rule written for normal cases. Then
        # category, then area; later lines win exact ties so a city can append overrides.
        return (1 if self.case_type else 0,
                len(self.category_code) + (1 if self.category_kind else 0),
                len(self.area_code), self.line)


@dataclass(frozen=True)
class Route:
    """The routing decision for one case: department and time limit per step."""

    department: str | None
    department_rule_line: int | None
    limits: Mapping[str, TimeLimit]

    def deadline(self, step: str, calendar: _Calendar, start: datetime) -> datetime | None:
        """Due moment for ``step`` started at ``start``; None when no rule limits it.

        The service passes this as the ``<step>_deadline`` field of the command that
        starts the step (e.g. ``handle_deadline`` on dispatch)."""
        limit = self.limits.get(step)
        return limit.deadline(calendar, start) if limit is not None else None


class RoutingTable:
    """Most-specific-rule-wins look-up over routing rules, separately per column.

    A broad rule can set the standard limits for every category while specific rules
    only name the department (or only override the handling time).
    """

    def __init__(self, rules: Iterable[RoutingRule]) -> None:
        self.rules = tuple(sorted(rules, key=lambda r: r.specificity, reverse=True))

    def route(self, kind: str | None, code: str | None, grid_id: str | None,
              case_type: str | None = "normal") -> Route:
        matching = [r for r in self.rules if r.matches(kind, code, grid_id, case_type)]
        dept_rule = next((r for r in matching if r.department), None)
        limits: dict[str, TimeLimit] = {}
        for step in ROUTING_STEPS:
            rule = next((r for r in matching if step in r.limits), None)
            if rule is not None:
                limits[step] = rule.limits[step]
        return Route(dept_rule.department if dept_rule else None,
                     dept_rule.line if dept_rule else None, limits)


class Gazetteer:
    """Finds places named in a free-text address; longest name first, so that
    ``人民路小学`` wins over ``人民路``."""

    def __init__(self, places: Iterable[Place]) -> None:
        self.places = tuple(places)
        names = [(n, p) for p in self.places for n in (p.name, *p.aliases) if n]
        self._names = sorted(names, key=lambda np: len(np[0]), reverse=True)

    def lookup(self, text: str) -> list[Place]:
        """Places whose name or alias appears in ``text``, most specific first."""
        found: list[Place] = []
        masked = text or ""
        for name, place in self._names:
            if name in masked:
                if place not in found:
                    found.append(place)
                # Mask the hit so a shorter name inside it does not match again.
                masked = masked.replace(name, "\0" * len(name))
        return found

    def grid_cell_for(self, text: str) -> str | None:
        """The grid cell of the most specific place in ``text``, if any."""
        hits = self.lookup(text)
        return hits[0].grid_id if hits else None


# ------------------------------------------------------------------------- loaders
def read_csv(path: str | Path, required: set[str]
          ) -> tuple[list[tuple[int, dict[str, str]]], list[RowError]]:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [RowError(0, f"cannot read file: {exc}", source)]
    lines, quoting = checked_lines(text)
    errors = [RowError(line, reason, source) for line, reason in quoting]
    if any(line == 1 for line, _ in quoting):
        return [], errors
    reader = csv.DictReader(lines)
    columns = {c.strip() for c in reader.fieldnames or ()}
    missing = required - columns
    if missing:
        return [], [RowError(1, f"missing columns: {', '.join(sorted(missing))}", source)]
    rows = []
    for row in reader:
        line = reader.line_num  # the physical line: blanked lines keep the numbering
        if None in row:
            errors.append(RowError(line, "more values than columns", source))
            continue
        clean = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(clean.values()):
            continue
        rows.append((line, clean))
    return rows, errors


def load_areas(path: str | Path) -> tuple[list[Area], list[RowError]]:
    """Columns ``level,code,name,parent``; parents must appear in the same file."""
    rows, errors = read_csv(path, {"level", "code", "name"})
    source = str(path)
    areas: dict[str, Area] = {}
    for line, row in rows:
        level, code, name = row["level"], row["code"], row["name"]
        parent = row.get("parent") or None

        def err(reason: str) -> None:
            errors.append(RowError(line, reason, source))

        if level not in AREA_LEVELS:
            err(f"level {level!r} must be one of {', '.join(AREA_LEVELS)}")
            continue
        if not _DIGITS.match(code) or len(code) != AREA_LEVELS[level]:
            err(f"{level} code {code!r} must be {AREA_LEVELS[level]} digits")
            continue
        if not name:
            err("name is empty")
            continue
        if code in areas:
            err(f"code {code} listed twice")
            continue
        if level == "district":
            if parent:
                err("a district has no parent")
                continue
            areas[code] = Area(level, code, name, None)
            continue
        # The parent is implied by the code; an explicit one must agree with it.
        prefix = code[:AREA_LEVELS[_PARENT_LEVEL[level]]]
        if parent and parent != prefix:
            err(f"parent {parent!r} must be the code's prefix {prefix}")
        elif prefix not in areas:
            err(f"parent {prefix} is not listed above this row")
        else:
            areas[code] = Area(level, code, name, prefix)
    return list(areas.values()), errors


def _float_or_none(text: str) -> float:
    return float(text) if text else None  # type: ignore[return-value]


def load_grid_cells(path: str | Path, communities: Iterable[str] | None = None
                    ) -> tuple[list[GridCell], list[RowError]]:
    """Columns ``grid_id,name,inspector,x,y``; with ``communities`` given, each cell's
    12-digit prefix must be one of them."""
    rows, errors = read_csv(path, {"grid_id"})
    source = str(path)
    known = set(communities) if communities is not None else None
    cells: dict[str, GridCell] = {}
    for line, row in rows:
        gid = row["grid_id"]
        if not _GRID_ID.match(gid):
            errors.append(RowError(line, f"grid ID {gid!r} must be 15 letters/digits", source))
            continue
        if gid in cells:
            errors.append(RowError(line, f"grid ID {gid} listed twice", source))
            continue
        if known is not None and gid[:12] not in known:
            errors.append(RowError(line, f"community {gid[:12]} of grid {gid} is unknown", source))
            continue
        try:
            x, y = _float_or_none(row.get("x", "")), _float_or_none(row.get("y", ""))
        except ValueError:
            errors.append(RowError(line, "x/y must be numbers (metres)", source))
            continue
        cells[gid] = GridCell(gid, row.get("name", ""), row.get("inspector", ""), x, y)
    return list(cells.values()), errors


def load_gazetteer(path: str | Path, grid_ids: Iterable[str] | None = None
                   ) -> tuple[list[Place], list[RowError]]:
    """Columns ``name,kind,grid_id,aliases`` (aliases separated by ``|``)."""
    rows, errors = read_csv(path, {"name", "kind", "grid_id"})
    source = str(path)
    known = set(grid_ids) if grid_ids is not None else None
    places: list[Place] = []
    seen: set[str] = set()
    for line, row in rows:
        name, kind, gid = row["name"], row["kind"], row["grid_id"]
        aliases = tuple(a.strip() for a in row.get("aliases", "").split("|") if a.strip())
        if not name or not kind:
            errors.append(RowError(line, "name and kind are required", source))
        elif not _GRID_ID.match(gid):
            errors.append(RowError(line, f"grid ID {gid!r} must be 15 letters/digits", source))
        elif known is not None and gid not in known:
            errors.append(RowError(line, f"grid cell {gid} is unknown", source))
        elif name in seen:
            errors.append(RowError(line, f"place {name!r} listed twice", source))
        else:
            seen.add(name)
            places.append(Place(name, kind, gid, aliases))
    return places, errors


def load_departments(path: str | Path) -> tuple[list[Department], list[RowError]]:
    """Columns ``code,name,parent,phone``; parents must appear above their children."""
    rows, errors = read_csv(path, {"code", "name"})
    source = str(path)
    depts: dict[str, Department] = {}
    for line, row in rows:
        code, name, parent = row["code"], row["name"], row.get("parent") or None
        if not _DEPT_CODE.match(code):
            errors.append(RowError(line, f"department code {code!r} must be letters, digits, _.-", source))
        elif not name:
            errors.append(RowError(line, "name is empty", source))
        elif code in depts:
            errors.append(RowError(line, f"department {code} listed twice", source))
        elif parent is not None and parent not in depts:
            errors.append(RowError(line, f"parent {parent} is not listed above this row", source))
        else:
            depts[code] = Department(code, name, parent, row.get("phone", ""))
    return list(depts.values()), errors


_CASE_TYPES = ("normal", "complex", "urgent")
_CATEGORY_KINDS = ("component", "matter")


def load_routing_rules(path: str | Path, *, departments: Iterable[str] | None = None,
                       categories: Iterable[tuple[str, str]] | None = None,
                       ) -> tuple[list[RoutingRule], list[RowError]]:
    """Columns ``kind,code,area,case_type,department`` plus one optional column per step
    (``verify,register,dispatch,handle,check,close,case``) holding a limit like ``2h``/``3d``.
    """
    rows, errors = read_csv(path, {"kind", "code", "area", "case_type", "department"})
    source = str(path)
    known_depts = set(departments) if departments is not None else None
    known_cats = set(categories) if categories is not None else None
    known_classes = {(k, c[:2]) for k, c in known_cats} if known_cats is not None else None
    rules: list[RoutingRule] = []
    for line, row in rows:
        kind, code, area, ctype = row["kind"], row["code"], row["area"], row["case_type"]
        dept = row["department"] or None
        kind = "" if kind == "*" else kind
        code = "" if code == "*" else code

        def err(reason: str) -> None:
            errors.append(RowError(line, reason, source))

        if kind and kind not in _CATEGORY_KINDS:
            err(f"kind {kind!r} must be component, matter or empty")
            continue
        if code and (not _DIGITS.match(code) or len(code) not in (2, 5)):
            err(f"code {code!r} must be a 2-digit class or 5-digit subclass")
            continue
        if code and not kind:
            err("a category code needs its kind (codes repeat across kinds)")
            continue
        if known_cats is not None and code and (
                (kind, code) not in known_cats if len(code) == 5 else (kind, code) not in known_classes):
            err(f"category {kind}:{code} is not in the category directory")
            continue
        if area and (not _GRID_ID.match(area) if len(area) == 15 else
                     not (_DIGITS.match(area) and len(area) in AREA_LEVELS.values())):
            err(f"area {area!r} must be a 6/9/12-digit area code or a 15-character grid ID")
            continue
        if ctype and ctype not in _CASE_TYPES:
            err(f"case_type {ctype!r} must be normal, complex, urgent or empty")
            continue
        if dept and known_depts is not None and dept not in known_depts:
            err(f"department {dept!r} is unknown")
            continue
        limits: dict[str, TimeLimit] = {}
        bad = False
        for step in ROUTING_STEPS:
            text = row.get(step, "")
            if text:
                try:
                    limits[step] = parse_time_limit(text)
                except ValueError as exc:
                    err(f"{step}: {exc}")
                    bad = True
                    break
        if bad:
            continue
        if not dept and not limits:
            err("rule sets neither a department nor a time limit")
            continue
        rules.append(RoutingRule(line, kind, code, area, ctype, dept, limits))
    return rules, errors

"""Evaluation counts (综合评价): `case_core.ports.EvaluationCounts` over case_facts and its daily rollup.

A mixin of `case_core.adapters.sqlalchemy_repo.SqlRepository`, which brings `self.engine`."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, literal, not_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from case_core.adapters import orm
from case_core.domain.evaluation import Fact
from case_core.domain.reference import AREA_LEVELS



def _fact_group_key(group_by: str | None, area_level: str):
    f = orm.case_facts.c
    if group_by is None:
        return literal("all")
    if group_by == "department":
        return f.department
    if group_by == "role":
        return f.role
    if group_by == "person":
        return func.nullif(f.person, "")
    return f.grid_cell if area_level == "grid" else func.substr(f.grid_cell, 1, AREA_LEVELS[area_level])


def _bucket(counts: dict[tuple, int], k, kind, still_open, on_time, ok, n: int) -> None:
    key = (k, kind, bool(still_open), None if on_time is None else bool(on_time), None if ok is None else bool(ok))
    counts[key] = counts.get(key, 0) + n


async def _count_facts(conn: AsyncConnection, counts: dict[tuple, int], lo: datetime, hi: datetime,
                       end: datetime, group_by: str | None, area_level: str) -> None:
    """Facts with ``lo <= at < hi``, ``ok`` as it stood at ``end``, counted into ``counts``."""
    f = orm.case_facts.c
    key = _fact_group_key(group_by, area_level)
    ok_at_end = case(
        (f.ok.is_(None), None),
        (or_(f.flipped_at.is_(None), f.flipped_at < end), f.ok),
        else_=not_(f.ok),
    )
    query = (
        select(key.label("k"), f.kind, f.still_open, f.on_time, ok_at_end.label("ok"), func.count().label("n"))
        .where(f.at >= lo, f.at < hi)
        .group_by(key, f.kind, f.still_open, f.on_time, ok_at_end)
    )
    blank_is_none = group_by != "role"   # as in the rollup, whose key '' stands for NULL
    for r in (await conn.execute(query)).all():
        _bucket(counts, (r.k or None) if blank_is_none else r.k, r.kind, r.still_open, r.on_time, r.ok, r.n)


async def _count_rollup(conn: AsyncConnection, counts: dict[tuple, int], first: date, last: date,
                        group_by: str | None, area_level: str) -> None:
    """Whole days ``first <= day < last`` from the rollup, ``ok`` as it stood at midnight of ``last``."""
    r = orm.case_fact_rollup.c
    if group_by is None:
        key = literal("all")
    elif group_by == "area" and AREA_LEVELS[area_level] < _COMMUNITY_LEN:
        key = func.substr(r.key, 1, AREA_LEVELS[area_level])
    else:
        key = r.key
    ok_at_end = case((r.ok < 0, -1), (r.flip_day < last, r.ok), else_=1 - r.ok)
    query = (
        select(key.label("k"), r.kind, r.still_open, r.on_time, ok_at_end.label("ok"), func.sum(r.n).label("n"))
        .where(r.dim == _ROLLUP_DIM[group_by], r.day >= first, r.day < last)
        .group_by(key, r.kind, r.still_open, r.on_time, ok_at_end)
    )
    blank_is_none = group_by != "role"   # '' stands for NULL in the rollup's key
    for row in (await conn.execute(query)).all():
        k = (row.k or None) if blank_is_none else row.k
        _bucket(counts, k, row.kind, row.still_open, _uncode(row.on_time), _uncode(row.ok), row.n)


_ROLLUP_DIM = {None: "department", "department": "department", "role": "role", "person": "person",
               "area": "community"}


async def _fix_last_day_flips(conn: AsyncConnection, counts: dict[tuple, int], first: datetime, last: datetime,
                              end: datetime, group_by: str | None, area_level: str) -> None:
    """The rollup only knows the day a judgement flipped: facts of the whole days whose
    judgement flipped on ``end``'s own day but before ``end`` had taken their final value."""
    f = orm.case_facts.c
    key = _fact_group_key(group_by, area_level)
    query = (
        select(key.label("k"), f.kind, f.still_open, f.on_time, f.ok, func.count().label("n"))
        .where(f.flipped_at >= last, f.flipped_at < end, f.at >= first, f.at < last, f.ok.is_not(None))
        .group_by(key, f.kind, f.still_open, f.on_time, f.ok)
    )
    for r in (await conn.execute(query)).all():
        k = (r.k or None) if group_by != "role" else r.k
        _bucket(counts, k, r.kind, r.still_open, r.on_time, not r.ok, -r.n)
        _bucket(counts, k, r.kind, r.still_open, r.on_time, r.ok, r.n)


def _day(value: datetime | str) -> date:
    return value.date() if isinstance(value, datetime) else date.fromisoformat(value[:10])


# -- the evaluation rollup (case_fact_rollup, migration 0008) -----------------------------
_FACT_COLUMNS = ("kind", "at", "role", "person", "department", "grid_cell", "on_time", "ok", "flipped_at",
                 "still_open")
_FACT_COLUMNS_SQL = ", ".join(_FACT_COLUMNS)
_ROLLUP_COLUMNS = ("dim", "day", "key", "kind", "on_time", "ok", "still_open", "flip_day")
_COMMUNITY_LEN = AREA_LEVELS["community"]
assert _COMMUNITY_LEN == max(AREA_LEVELS.values()), "the area rollup keeps the finest level below grid"


def _code(value: bool | None) -> int:
    return -1 if value is None else 1 if value else 0


def _uncode(value: int) -> bool | None:
    return None if value is None or value < 0 else bool(value)


def _add_rollup_delta(delta: dict[tuple, int], facts, sign: int) -> None:
    """Count each fact row (a mapping of case_facts columns) into the rollup keys it belongs to."""
    for f in facts:
        flipped = f["flipped_at"]
        tail = (f["kind"], _code(f["on_time"]), _code(f["ok"]), bool(f["still_open"]),
                orm.ROLLUP_NO_FLIP if flipped is None else _day(flipped))
        day = _day(f["at"])
        for key in (("department", day, f["department"] or "", *tail),
                    ("role", day, f["role"] or "", *tail),
                    ("person", day, f["person"] or "", *tail),
                    ("community", day, (f["grid_cell"] or "")[:_COMMUNITY_LEN], *tail)):
            delta[key] = delta.get(key, 0) + sign


def _rollup_params(removed, added) -> list[dict[str, Any]]:
    delta: dict[tuple, int] = {}
    _add_rollup_delta(delta, removed, -1)
    _add_rollup_delta(delta, added, 1)
    return _delta_params(delta)


def _delta_params(delta: dict[tuple, int]) -> list[dict[str, Any]]:
    # Sorted: concurrent writers lock shared rollup rows in one order (no deadlocks).
    return [{**dict(zip(_ROLLUP_COLUMNS, k)), "n": n} for k, n in sorted(delta.items()) if n]


def _make_rollup_upsert(ins):
    return ins.on_conflict_do_update(index_elements=list(_ROLLUP_COLUMNS),
                                     set_={"n": orm.case_fact_rollup.c.n + ins.excluded.n})


_ROLLUP_UPSERT = {"postgresql": _make_rollup_upsert(postgresql.insert(orm.case_fact_rollup)),
                  "sqlite": _make_rollup_upsert(sqlite.insert(orm.case_fact_rollup))}


def _rollup_upsert(dialect: str):
    return _ROLLUP_UPSERT[dialect]


_ROLLUP_SQL_HEAD = ('INSERT INTO case_fact_rollup (dim, day, "key", kind, on_time, ok, still_open, flip_day, n) '
                    "VALUES ")
_ROLLUP_SQL_TAIL = (' ON CONFLICT (dim, day, "key", kind, on_time, ok, still_open, flip_day) '
                    "DO UPDATE SET n = case_fact_rollup.n + excluded.n")


def _apply_rollup(conn: Connection, delta: dict[tuple, int]) -> None:
    """Add ``delta`` to the rollup in one multi-row upsert (on the hot path of every transition:
    plain DBAPI parameters, no per-row SQLAlchemy parameter processing)."""
    items = [(k, n) for k, n in sorted(delta.items()) if n]  # sorted: one lock order for all writers
    if not items:
        return
    sqlite_style = conn.dialect.paramstyle == "qmark"
    mark = "?" if sqlite_style else "%s"
    row = "(" + ",".join([mark] * 9) + ")"
    params: list[Any] = []
    for (dim, day, key, kind, on_time, ok, still_open, flip_day), n in items:
        if sqlite_style:  # as SQLAlchemy stores them on SQLite: ISO dates, 0/1 booleans
            params += (dim, day.isoformat(), key, kind, on_time, ok, int(still_open), flip_day.isoformat(), n)
        else:
            params += (dim, day, key, kind, on_time, ok, still_open, flip_day, n)
    conn.exec_driver_sql(_ROLLUP_SQL_HEAD + ",".join([row] * len(items)) + _ROLLUP_SQL_TAIL, tuple(params))


def rebuild_rollup_sql(dialect: str) -> list[str]:
    """Statements that recompute ``case_fact_rollup`` from ``case_facts`` (as migration 0008 does)."""
    if dialect == "postgresql":
        day, flip = "CAST(at AS DATE)", "coalesce(CAST(flipped_at AS DATE), DATE '1900-01-01')"
    else:
        day, flip = "date(at)", "coalesce(date(flipped_at), '1900-01-01')"
    keys = {"department": "coalesce(department, '')", "role": "coalesce(role, '')",
            "person": "coalesce(person, '')", "community": f"coalesce(substr(grid_cell, 1, {_COMMUNITY_LEN}), '')"}
    code = "CASE WHEN {0} IS NULL THEN -1 WHEN {0} THEN 1 ELSE 0 END"
    out = ["DELETE FROM case_fact_rollup"]
    for dim, key in keys.items():
        out.append(
            "INSERT INTO case_fact_rollup (dim, day, key, kind, on_time, ok, still_open, flip_day, n) "
            f"SELECT '{dim}', {day}, {key}, kind, {code.format('on_time')}, {code.format('ok')}, still_open, "
            f"{flip}, count(*) FROM case_facts "
            f"GROUP BY {day}, {key}, kind, {code.format('on_time')}, {code.format('ok')}, still_open, {flip}"
        )
    return out


def rebuild_rollup(conn: Connection) -> None:
    """Recompute the evaluation rollup from ``case_facts`` (after a bulk load of facts)."""
    from sqlalchemy import text

    for stmt in rebuild_rollup_sql(conn.dialect.name):
        conn.execute(text(stmt))


class EvaluationSql:
    engine: AsyncEngine

    # -- evaluation -----------------------------------------------------------------------
    async def evaluation_counts(
        self, start: datetime, end: datetime, group_by: str | None, area_level: str = "street", *,
        rollup: bool = True,
    ) -> dict[str | None, list[tuple[Fact, int]]]:
        """Facts in ``[start, end)`` counted per group and judgement, aggregated in SQL.

        Whole days inside the period are read from ``case_fact_rollup`` (a few rows per
        day and group); the partial days at either end, and periods shorter than a day,
        from ``case_facts``. A judgement that flipped on the period's last, partial day
        is put right from the facts that flipped before ``end``. ``rollup=False`` counts
        every fact in ``case_facts`` instead (the reference the rollup is checked against).
        """
        if group_by not in (None, "department", "role", "person", "area"):
            raise ValueError(f"group_by must be department, area, role or person, got {group_by!r}")
        if group_by == "area" and area_level != "grid" and area_level not in AREA_LEVELS:
            raise ValueError(f"area_level must be grid or one of {tuple(AREA_LEVELS)}")
        first_day = datetime.combine(start.date(), datetime.min.time())
        if first_day < start:
            first_day += timedelta(days=1)
        last_day = datetime.combine(end.date(), datetime.min.time())
        use_rollup = rollup and first_day < last_day and not (group_by == "area" and area_level == "grid")
        counts: dict[tuple, int] = {}
        async with self.engine.connect() as conn:
            if not use_rollup:
                await _count_facts(conn, counts, start, end, end, group_by, area_level)
            else:
                if start < first_day:
                    await _count_facts(conn, counts, start, first_day, end, group_by, area_level)
                await _count_rollup(conn, counts, first_day.date(), last_day.date(), group_by, area_level)
                if last_day < end:
                    await _count_facts(conn, counts, last_day, end, end, group_by, area_level)
                    await _fix_last_day_flips(conn, counts, first_day, last_day, end, group_by, area_level)
        out: dict[str | None, list[tuple[Fact, int]]] = {}
        for (k, kind, still_open, on_time, ok), n in counts.items():
            if n == 0:
                continue
            fact = Fact(kind=kind, case_number="", at=start, role="", person="", department=None, grid_cell=None,
                        on_time=on_time, ok=ok, still_open=still_open)
            out.setdefault(k, []).append((fact, int(n)))
        return out

    async def rebuild_evaluation_rollup(self) -> None:
        """Recompute ``case_fact_rollup`` from ``case_facts`` (after facts were loaded in bulk)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(rebuild_rollup)

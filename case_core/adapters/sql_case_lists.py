"""The case list's and the worklists' queries (`case_core.ports.CaseQueries`) on the `cases`
table: filters, least-privilege scope, worklist selections, sorting, paging and counts.

A mixin of `SqlRepository` (it needs only `self.engine`); the web hands in plain values
(`case_core.views.CaseFilter`, `CaseSelection`) and gets ids and counts back.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Mapping

from sqlalchemy import and_, case, func, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from case_core.adapters import orm
from case_core.domain import workflow
from case_core.views import CaseFilter, CaseSelection, deadline_of_state

__all__ = ["CaseListsSql", "filter_where", "selection_where"]

_c = orm.cases.c
_SORT_COLUMNS = {
    "created": (_c.created_at,),
    "number": (_c.number,),
    "status": (_c.status,),
    "channel": (_c.channel,),
    "category": (_c.category_kind, _c.category_code),
    "department": (_c.department,),
    "due": (_c.due_at,),
}
_URGENT_FIRST = case((_c.case_type == "urgent", 0), else_=1)


def filter_where(f: CaseFilter, now: datetime) -> ColumnElement:
    """Every filter but 黄灯 (which needs the working calendar: see `case_page`)."""
    parts: list[ColumnElement] = []
    if f.status:
        parts.append(_c.status.in_(f.status))
    if f.category:
        kind, _, code = f.category.rpartition(":")
        if kind:
            parts.append(_c.category_kind == kind)
        parts.append(_c.category_code == code if len(code) == 5 else _c.category_code.like(f"{code}%"))
    if f.department:
        parts.append(_c.department == f.department)
    if f.channel:
        parts.append(_c.channel == f.channel)
    if f.date_from:
        parts.append(_c.created_at >= datetime.combine(f.date_from, datetime.min.time()))
    if f.date_to:
        parts.append(_c.created_at < datetime.combine(f.date_to + timedelta(days=1), datetime.min.time()))
    if f.q:
        like = f"%{f.q}%"
        parts.append(or_(_c.number.like(like), _c.description.like(like), _c.address.like(like),
                         _c.reporter_phone.like(like)))
    if f.deadline == "overdue":
        parts.append(_c.due_at < now)
    elif f.deadline == "yellow":
        parts.append(_c.due_at >= now)
    return and_(true(), *parts)


def selection_where(sel: CaseSelection) -> ColumnElement:
    if sel.pending_kinds is not None:
        if not sel.pending_kinds:
            return _c.id < 0
        # Pending applications live only in `state_json` (written by sqlalchemy_repo as
        # `"pending": [{"kind": "…", …}]`, with nothing after it that has a "kind").
        likes = [_c.state_json.like(f'%"pending": [%"kind": "{k}"%') for k in sel.pending_kinds]
        return and_(_c.status.in_(sel.statuses), or_(*likes))
    where: ColumnElement = _c.status.in_(sel.statuses)
    if sel.verify_exempt_reports:
        exempt = and_(_c.status == "accepted", _c.kind == "report",
                      or_(_c.case_type == "urgent", _c.channel.in_(sorted(workflow.VERIFY_EXEMPT_CHANNELS))))
        where = or_(where, exempt)
    return where


def _where(f: CaseFilter | None, now: datetime, selection: CaseSelection | None,
           scope: Mapping[str, str] | None) -> ColumnElement:
    parts: list[ColumnElement] = []
    if selection is not None:
        parts.append(selection_where(selection))
    parts.extend(getattr(_c, name) == value for name, value in (scope or {}).items())
    if f is not None:
        parts.append(filter_where(f, now))
    return and_(true(), *parts)


def _order(f: CaseFilter, urgent_first: bool) -> list:
    columns = _SORT_COLUMNS.get(f.sort, _SORT_COLUMNS["created"])
    ordered = [col.desc() if f.dir == "desc" else col.asc() for col in columns]
    if f.sort == "due":  # cases without a deadline last, whichever the direction
        ordered = [_c.due_at.is_(None).asc(), *ordered]
    tie = _c.id.desc() if f.dir == "desc" else _c.id.asc()
    return [*((_URGENT_FIRST,) if urgent_first else ()), *ordered, tie]


class CaseListsSql:
    """Pages and counts of case lists (mixed into `SqlRepository`)."""

    engine: object

    async def case_page(self, f: CaseFilter, now: datetime, calendar, *, selection: CaseSelection | None = None,
                        scope: Mapping[str, str] | None = None, urgent_first: bool = False,
                        page_size: int = 30) -> tuple[list[int], int, int]:
        """(ids of the page, total matching, the page number actually shown): the cases of
        `selection` (a worklist; None: all) within `scope` (column → value, least privilege)
        that pass `f`, sorted by `f` (urgent ones first with `urgent_first`)."""
        where = _where(f, now, selection, scope)
        order = _order(f, urgent_first)
        async with self.engine.connect() as conn:  # type: ignore[attr-defined]
            if f.deadline == "yellow":
                rows = (await conn.execute(select(_c.id, _c.state_json).where(where).order_by(*order))).all()
                ids = [r.id for r in rows
                       if deadline_of_state(json.loads(r.state_json or "{}"), calendar, now) == "yellow"]
                total = len(ids)
                page = min(f.page, max(1, math.ceil(total / page_size)))
                return ids[(page - 1) * page_size: page * page_size], total, page
            total = (await conn.execute(select(func.count()).select_from(orm.cases).where(where))).scalar_one()
            page = min(f.page, max(1, math.ceil(total / page_size)))
            query = select(_c.id).where(where).order_by(*order).limit(page_size).offset((page - 1) * page_size)
            ids = [r[0] for r in (await conn.execute(query)).all()]
        return ids, int(total), page

    async def case_counts(self, now: datetime, *, selection: CaseSelection | None = None,
                          scope: Mapping[str, str] | None = None, f: CaseFilter | None = None) -> dict[str, int]:
        """`total`, `urgent` and `overdue` (due before `now`) of the cases `case_page` would list."""
        query = select(
            func.count(),
            func.coalesce(func.sum(case((_c.case_type == "urgent", 1), else_=0)), 0),
            func.coalesce(func.sum(case((_c.due_at < now, 1), else_=0)), 0),
        ).where(_where(f, now, selection, scope))
        async with self.engine.connect() as conn:  # type: ignore[attr-defined]
            total, urgent, overdue = (await conn.execute(query)).one()
        return {"total": int(total), "urgent": int(urgent), "overdue": int(overdue)}

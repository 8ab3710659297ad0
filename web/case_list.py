"""Filters, sorting and paging of the case list (`/cases`) and of each worklist, all in the
URL query so that a link reproduces the view:

    /cases?status=dispatched,handling&category=component:01002&department=D01&deadline=yellow
          &channel=12319&from=2026-11-01&to=2026-11-30&q=井盖&sort=due&dir=asc&page=2

- `status` one or more statuses (comma-separated); `category` a category key (`kind:code`,
  chosen with the picker); `department` a department code (a list); `deadline` `overdue`
  (超期) or `yellow` (黄灯: 80 % of the step's working time used, not yet overdue);
  `channel`; `from` / `to` dates (YYYY-MM-DD, both days included); `q` text in number,
  description or address.
- `sort` one of `created` (default), `number`, `status`, `channel`, `category`,
  `department`, `due`; `dir` `asc` or `desc` (default desc for created, asc otherwise).
- `page` (30 rows a page).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Mapping
from urllib.parse import urlencode

from case_core.domain import workflow
from case_core.views import CASE_SORTS, CaseFilter, deadline_of_state

__all__ = ["PAGE_SIZE", "SORTS", "DEADLINES", "ListQuery", "parse_query", "deadline_of_state"]

PAGE_SIZE = 30
SORTS = CASE_SORTS  # the repository sorts (case_core.ports.CaseQueries)
DEADLINES = {"overdue": "超期", "yellow": "黄灯"}


@dataclass(frozen=True)
class ListQuery(CaseFilter):
    """A `CaseFilter` read from the URL, with what was wrong in it (`errors`)."""

    errors: tuple[str, ...] = field(default=(), compare=False)

    def params(self, **changes: Any) -> dict[str, str]:
        """The query's URL parameters (defaults left out), with `changes` applied."""
        lq = replace(self, **changes) if changes else self
        out = {
            "status": ",".join(lq.status), "category": lq.category, "department": lq.department,
            "deadline": lq.deadline, "channel": lq.channel,
            "from": lq.date_from.isoformat() if lq.date_from else "",
            "to": lq.date_to.isoformat() if lq.date_to else "", "q": lq.q,
        }
        if lq.sort != "created" or lq.dir != "desc":
            out.update(sort=lq.sort, dir=lq.dir)
        if lq.page > 1:
            out["page"] = str(lq.page)
        return {k: v for k, v in out.items() if v}

    def url(self, path: str, **changes: Any) -> str:
        params = self.params(**changes)
        return f"{path}?{urlencode(params)}" if params else path

    def sort_url(self, path: str, key: str) -> str:
        """Link of a column header: sort by it, or flip the direction when it already is."""
        if self.sort == key:
            return self.url(path, dir="asc" if self.dir == "desc" else "desc", page=1)
        return self.url(path, sort=key, dir="desc" if key == "created" else "asc", page=1)

    @property
    def active(self) -> bool:
        return bool(self.status or self.category or self.department or self.deadline or self.channel
                    or self.date_from or self.date_to or self.q)


def _date(raw: str, name: str, errors: list[str]) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        errors.append(f"{name} 日期格式应为 YYYY-MM-DD")
        return None


def parse_query(query: Mapping[str, str]) -> ListQuery:
    """The filters of a page's URL; unknown values are dropped and reported in `errors`."""
    errors: list[str] = []
    statuses = tuple(s for s in (query.get("status") or "").split(",") if s)
    bad = [s for s in statuses if s not in workflow.STATUS_LABELS]
    if bad:
        errors.append(f"未知状态：{'、'.join(bad)}")
    deadline = query.get("deadline") or ("overdue" if query.get("overdue") in ("1", "true") else "")
    if deadline and deadline not in DEADLINES:
        errors.append("时限筛选只能是 超期 或 黄灯")
        deadline = ""
    sort = query.get("sort") or "created"
    if sort not in SORTS:
        sort = "created"
    direction = query.get("dir") or ("desc" if sort == "created" else "asc")
    if direction not in ("asc", "desc"):
        direction = "desc"
    try:
        page = max(1, int(query.get("page") or "1"))
    except ValueError:
        page = 1
    date_from = _date(query.get("from") or "", "起始", errors)
    date_to = _date(query.get("to") or "", "截止", errors)
    if date_from and date_to and date_to < date_from:
        errors.append("截止日期早于起始日期")
    return ListQuery(
        status=tuple(s for s in statuses if s in workflow.STATUS_LABELS),
        category=(query.get("category") or "").strip(), department=(query.get("department") or "").strip(),
        deadline=deadline, channel=(query.get("channel") or "").strip(), date_from=date_from, date_to=date_to,
        q=(query.get("q") or "").strip(), sort=sort, dir=direction, page=page, errors=tuple(errors))


async def list_context(request) -> dict[str, Any]:
    """What cases.html shows: the filters, one page of rows, the choices of each filter."""
    from web.app import CTX, USER
    from web.case_api import local_now
    from web.worklists import category_filter_text, listed_row

    ctx = request.app[CTX]
    user = request[USER]
    lq = parse_query(request.query)
    now = local_now(request)
    ref = await ctx.service.reference()
    # Least privilege (web.photos.visible_where): department staff see only their department's cases.
    from web.photos import visible_where

    ids, total, page = await ctx.repo.case_page(lq, now, ref.calendar, scope=visible_where(user), page_size=PAGE_SIZE)
    found = {v.id: v for v in await ctx.service.search(case_ids=tuple(ids), limit=len(ids))} if ids else {}
    rows = []
    for case_id in ids:
        v = found.get(case_id)
        if v is None:
            continue
        rows.append(listed_row(v, ref, now))
    category_text = category_filter_text(ref, lq.category) if lq.category else ""
    return {"lq": lq, "rows": rows, "total": total, "page": page, "pages": max(1, math.ceil(total / PAGE_SIZE)),
            "departments": sorted((code, d.name) for code, d in ref.departments.items()),
            "statuses": list(workflow.STATUS_LABELS.items()), "deadlines": DEADLINES,
            "category_text": category_text, "q": lq.q,
            "own_department": user.department if user.role == "department" else None}

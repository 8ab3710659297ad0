"""What the case side shows: read views of cases, their history and recordings, and users.

Frozen values the services return and the web renders; the SQLAlchemy adapter builds them
from rows (`case_core.adapters.sqlalchemy_repo`), a fake repository builds them by hand.
`NotFound` is what every lookup raises for an unknown id or number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Mapping

__all__ = ["CASE_SORTS", "CaseFilter", "CaseSelection", "CaseView", "HistoryView", "NotFound", "RecordingView",
           "UserView", "deadline_of_state"]


class NotFound(LookupError):
    """No case, user or recording with that id or number."""


@dataclass(frozen=True)
class RecordingView:
    id: int
    call_id: str
    case_id: int | None
    kind: str
    path: str
    channels: int
    duration_s: float
    created_at: datetime


@dataclass(frozen=True)
class HistoryView:
    seq: int
    action: str
    actor: str
    role: str
    at: datetime
    comment: str
    before_status: str | None
    after_status: str | None
    fields: dict[str, Any]


@dataclass(frozen=True)
class CaseView:
    id: int
    number: str
    channel: str
    kind: str
    case_type: str
    status: str
    reporter_phone: str | None
    description: str
    address: str
    category_kind: str | None
    category_code: str | None
    call_id: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    recordings: tuple[RecordingView, ...] = ()
    history: tuple[HistoryView, ...] = ()
    state: dict[str, Any] = field(default_factory=dict)
    department: str | None = None
    grid_cell: str | None = None
    inspector: str | None = None
    due_at: datetime | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True)
class UserView:
    id: int
    username: str
    display_name: str
    role: str
    department: str | None = None  # 处置部门 staff: the department whose cases they handle
    disabled: bool = False  # `hotline user set NAME --disable`: no login, no token


# ------------------------------------------------------------ case lists and worklists
# The case list (/cases) and the worklists ask the repository (`case_core.ports.CaseQueries`)
# for a page of case ids with these values; the SQL lives in the adapter.

CASE_SORTS = ("created", "number", "status", "channel", "category", "department", "due")


@dataclass(frozen=True)
class CaseFilter:
    """The filters, sorting and page of a case list (what `/cases?…` says).

    `category` is `kind:code` or a code prefix; `deadline` "" / "overdue" (超期) / "yellow"
    (黄灯: 80 % of the step's working time used, not yet overdue); `q` text in number,
    description, address or reporter phone; `sort` one of `CASE_SORTS`, `dir` asc/desc."""

    status: tuple[str, ...] = ()
    category: str = ""
    department: str = ""
    deadline: str = ""
    channel: str = ""
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""
    sort: str = "created"
    dir: str = "desc"
    page: int = 1


@dataclass(frozen=True)
class CaseSelection:
    """Which cases one worklist holds, as data: the statuses; with `verify_exempt_reports`
    also the accepted reports the workflow lets skip 核实 (urgent ones and those of the
    `VERIFY_EXEMPT_CHANNELS`); with `pending_kinds` only the cases with a pending
    application of one of those kinds (none: no case)."""

    statuses: tuple[str, ...] = ()
    verify_exempt_reports: bool = False
    pending_kinds: tuple[str, ...] | None = None


def _parse_dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def deadline_of_state(state: Mapping[str, Any], calendar, now: datetime) -> str | None:
    """The colour (on_time / yellow / overdue) of the earliest open step deadline, or None."""
    best = None
    for clock in (state.get("deadlines") or {}).values():
        due = _parse_dt(clock.get("due_at"))
        if due is None or clock.get("done_at"):
            continue
        if best is None or due < best[0]:
            best = (due, _parse_dt(clock.get("started_at")) or due)
    if best is None:
        return None
    return calendar.deadline_status(best[0], now, started_at=best[1])

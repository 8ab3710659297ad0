"""What the case side shows: read views of cases, their history and recordings, and users.

Frozen values the services return and the web renders; the SQLAlchemy adapter builds them
from rows (`case_core.adapters.sqlalchemy_repo`), a fake repository builds them by hand.
`NotFound` is what every lookup raises for an unknown id or number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["CaseView", "HistoryView", "NotFound", "RecordingView", "UserView"]


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

"""SQLAlchemy (asyncio) repository: cases with history, calls (CDR), recordings, users, tokens.

Works on SQLite (aiosqlite, WAL) and PostgreSQL (asyncpg). Case numbers are allocated with an
atomic UPDATE … RETURNING on a per-day counter row, so concurrent nodes never collide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import event, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from case_core import security
from case_core.adapters import orm
from case_core.domain.numbering import format_case_number


def async_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://"):]
    return url


def sync_url(url: str) -> str:
    if url.startswith("sqlite+aiosqlite:///"):
        return "sqlite:///" + url[len("sqlite+aiosqlite:///"):]
    if url.startswith("postgresql+asyncpg://"):
        return "postgresql+psycopg2://" + url[len("postgresql+asyncpg://"):]
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def make_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(async_url(url))
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            # WAL: readers (web pages) never block the writer (the call path).
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    return engine


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


@dataclass(frozen=True)
class UserView:
    id: int
    username: str
    display_name: str
    role: str


class NotFound(LookupError):
    pass


def _case_view(row, recordings=(), history=()) -> CaseView:
    m = row._mapping
    return CaseView(
        id=m["id"],
        number=m["number"],
        channel=m["channel"],
        kind=m["kind"],
        case_type=m["case_type"],
        status=m["status"],
        reporter_phone=m["reporter_phone"],
        description=m["description"],
        address=m["address"],
        category_kind=m["category_kind"],
        category_code=m["category_code"],
        call_id=m["call_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        version=m["version"],
        recordings=tuple(recordings),
        history=tuple(history),
        state=json.loads(m["state_json"] or "{}"),
    )


def _recording_view(row) -> RecordingView:
    m = row._mapping
    return RecordingView(
        id=m["id"],
        call_id=m["call_id"],
        case_id=m["case_id"],
        kind=m["kind"],
        path=m["path"],
        channels=m["channels"],
        duration_s=m["duration_s"],
        created_at=m["created_at"],
    )


class SqlRepository:
    """All persistence the hotline needs, one short transaction per method."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def close(self) -> None:
        await self.engine.dispose()

    # -- case numbers ---------------------------------------------------------------
    async def allocate_case_number(self, day: date) -> str:
        """Next number of the day in its own short transaction (a failed create leaves a gap, never a duplicate)."""
        async with self.engine.begin() as conn:
            return await self._next_number(conn, day)

    async def _next_number(self, conn: AsyncConnection, day: date) -> str:
        key = day.strftime("%Y%m%d")
        dialect = conn.dialect.name
        ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(orm.case_number_seq)
        await conn.execute(ins.values(day=key, last_seq=0).on_conflict_do_nothing(index_elements=["day"]))
        seq = (
            await conn.execute(
                update(orm.case_number_seq)
                .where(orm.case_number_seq.c.day == key)
                .values(last_seq=orm.case_number_seq.c.last_seq + 1)
                .returning(orm.case_number_seq.c.last_seq)
            )
        ).scalar_one()
        return format_case_number(day, seq)

    # -- cases ------------------------------------------------------------------------
    async def create_case(
        self,
        *,
        number: str,
        now: datetime,
        channel: str,
        status: str,
        history: list[dict[str, Any]],
        kind: str = "report",
        case_type: str = "normal",
        reporter_phone: str | None = None,
        description: str = "",
        address: str = "",
        category_kind: str | None = None,
        category_code: str | None = None,
        call_id: str | None = None,
        recording_ids: tuple[int, ...] = (),
        state: dict[str, Any] | None = None,
    ) -> CaseView:
        async with self.engine.begin() as conn:
            case_id = (
                await conn.execute(
                    insert(orm.cases)
                    .values(
                        number=number,
                        channel=channel,
                        kind=kind,
                        case_type=case_type,
                        status=status,
                        reporter_phone=reporter_phone,
                        description=description,
                        address=address,
                        category_kind=category_kind,
                        category_code=category_code,
                        call_id=call_id,
                        created_at=now,
                        updated_at=now,
                        version=1,
                        state_json=json.dumps(state or {}, ensure_ascii=False),
                    )
                    .returning(orm.cases.c.id)
                )
            ).scalar_one()
            for seq, entry in enumerate(history, start=1):
                await conn.execute(
                    insert(orm.case_history).values(
                        case_id=case_id,
                        seq=seq,
                        action=entry["action"],
                        actor=entry["actor"],
                        role=entry["role"],
                        at=entry["at"],
                        comment=entry.get("comment", ""),
                        before_status=entry.get("before_status"),
                        after_status=entry.get("after_status"),
                        fields_json=json.dumps(entry.get("fields", {}), ensure_ascii=False, default=str),
                    )
                )
            if recording_ids:
                await conn.execute(
                    update(orm.recordings)
                    .where(orm.recordings.c.id.in_(recording_ids))
                    .values(case_id=case_id)
                )
            if call_id:
                await conn.execute(
                    update(orm.calls).where(orm.calls.c.call_id == call_id).values(case_id=case_id)
                )
        return await self.get_case(case_id)

    async def get_case(self, case_id: int) -> CaseView:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(orm.cases).where(orm.cases.c.id == case_id))).first()
            if row is None:
                raise NotFound(f"case {case_id} not found")
            recs = (
                await conn.execute(
                    select(orm.recordings)
                    .where(orm.recordings.c.case_id == case_id)
                    .order_by(orm.recordings.c.id)
                )
            ).all()
            hist = (
                await conn.execute(
                    select(orm.case_history)
                    .where(orm.case_history.c.case_id == case_id)
                    .order_by(orm.case_history.c.seq)
                )
            ).all()
        history = [
            HistoryView(
                seq=h.seq,
                action=h.action,
                actor=h.actor,
                role=h.role,
                at=h.at,
                comment=h.comment,
                before_status=h.before_status,
                after_status=h.after_status,
                fields=json.loads(h.fields_json or "{}"),
            )
            for h in hist
        ]
        return _case_view(row, [_recording_view(r) for r in recs], history)

    async def find_case_by_number(self, number: str) -> CaseView | None:
        async with self.engine.connect() as conn:
            case_id = (
                await conn.execute(select(orm.cases.c.id).where(orm.cases.c.number == number))
            ).scalar_one_or_none()
        return None if case_id is None else await self.get_case(case_id)

    async def list_cases(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        reporter_phone: str | None = None,
        channel: str | None = None,
        text: str | None = None,
    ) -> list[CaseView]:
        query = select(orm.cases)
        if status:
            query = query.where(orm.cases.c.status == status)
        if reporter_phone:
            query = query.where(orm.cases.c.reporter_phone == reporter_phone)
        if channel:
            query = query.where(orm.cases.c.channel == channel)
        if text:
            like = f"%{text}%"
            query = query.where(
                or_(
                    orm.cases.c.number.like(like),
                    orm.cases.c.description.like(like),
                    orm.cases.c.address.like(like),
                )
            )
        query = query.order_by(orm.cases.c.created_at.desc(), orm.cases.c.id.desc()).limit(limit).offset(offset)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            ids = [r.id for r in rows]
            recs = (
                (
                    await conn.execute(
                        select(orm.recordings)
                        .where(orm.recordings.c.case_id.in_(ids))
                        .order_by(orm.recordings.c.id)
                    )
                ).all()
                if ids
                else []
            )
        by_case: dict[int, list[RecordingView]] = {}
        for r in recs:
            by_case.setdefault(r.case_id, []).append(_recording_view(r))
        return [_case_view(r, by_case.get(r.id, ())) for r in rows]

    async def count_cases(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(orm.cases))).scalar_one()

    # -- calls and recordings ---------------------------------------------------------
    async def call_started(
        self, *, call_id: str, direction: str, did: str | None, caller: str | None, now: datetime
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(orm.calls).values(
                    call_id=call_id, direction=direction, did=did, caller=caller, started_at=now, ivr_path=""
                )
            )

    async def call_answered(self, call_id: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(orm.calls).where(orm.calls.c.call_id == call_id).values(answered_at=now)
            )

    async def call_ended(self, call_id: str, now: datetime, reason: str, ivr_path: str = "") -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(orm.calls)
                .where(orm.calls.c.call_id == call_id)
                .values(ended_at=now, end_reason=reason[:64], ivr_path=ivr_path)
            )

    async def calls_by_caller(self, caller: str, limit: int = 20) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(orm.calls)
                    .where(orm.calls.c.caller == caller)
                    .order_by(orm.calls.c.started_at.desc())
                    .limit(limit)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    async def add_recording(
        self,
        *,
        call_id: str,
        kind: str,
        path: str,
        channels: int,
        duration_s: float,
        now: datetime,
        case_id: int | None = None,
    ) -> int:
        async with self.engine.begin() as conn:
            return (
                await conn.execute(
                    insert(orm.recordings)
                    .values(
                        call_id=call_id,
                        case_id=case_id,
                        kind=kind,
                        path=path,
                        channels=channels,
                        duration_s=duration_s,
                        created_at=now,
                    )
                    .returning(orm.recordings.c.id)
                )
            ).scalar_one()

    async def update_recording(self, recording_id: int, *, duration_s: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(orm.recordings).where(orm.recordings.c.id == recording_id).values(duration_s=duration_s)
            )

    async def attach_call_recordings(self, call_id: str, case_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(orm.recordings)
                .where(orm.recordings.c.call_id == call_id, orm.recordings.c.case_id.is_(None))
                .values(case_id=case_id)
            )

    async def get_recording(self, recording_id: int) -> RecordingView:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(orm.recordings).where(orm.recordings.c.id == recording_id))
            ).first()
        if row is None:
            raise NotFound(f"recording {recording_id} not found")
        return _recording_view(row)

    # -- users and tokens ---------------------------------------------------------------
    async def create_user(
        self, *, username: str, password: str, role: str, display_name: str = "", now: datetime
    ) -> UserView:
        async with self.engine.begin() as conn:
            existing = (
                await conn.execute(select(orm.users.c.id).where(orm.users.c.username == username))
            ).scalar_one_or_none()
            if existing is None:
                uid = (
                    await conn.execute(
                        insert(orm.users)
                        .values(
                            username=username,
                            display_name=display_name or username,
                            role=role,
                            password_hash=security.hash_password(password),
                            created_at=now,
                        )
                        .returning(orm.users.c.id)
                    )
                ).scalar_one()
            else:
                uid = existing
        return UserView(uid, username, display_name or username, role)

    async def get_user(self, username: str) -> UserView | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(orm.users).where(orm.users.c.username == username))).first()
        return None if row is None else UserView(row.id, row.username, row.display_name, row.role)

    async def check_password(self, username: str, password: str) -> UserView | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(orm.users).where(orm.users.c.username == username))).first()
        if row is None or not security.verify_password(password, row.password_hash):
            return None
        return UserView(row.id, row.username, row.display_name, row.role)

    async def create_token(self, username: str, now: datetime) -> str:
        user = await self.get_user(username)
        if user is None:
            raise NotFound(f"user {username!r} does not exist")
        token = security.new_token()
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(orm.api_tokens).values(
                    user_id=user.id, token_sha256=security.token_digest(token), created_at=now
                )
            )
        return token

    async def user_for_token(self, token: str) -> UserView | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(orm.users)
                    .join(orm.api_tokens, orm.api_tokens.c.user_id == orm.users.c.id)
                    .where(orm.api_tokens.c.token_sha256 == security.token_digest(token))
                )
            ).first()
        return None if row is None else UserView(row.id, row.username, row.display_name, row.role)

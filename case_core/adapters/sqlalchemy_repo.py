"""SQLAlchemy (asyncio) repository: cases with history, calls (CDR), recordings, users, tokens.

Works on SQLite (aiosqlite, WAL) and PostgreSQL (asyncpg). Case numbers are allocated with an
atomic UPDATE … RETURNING on a per-day counter row, so concurrent nodes never collide.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any, Callable, Mapping, TypeVar

from sqlalchemy import Boolean, Connection, DateTime, Engine, and_, case, create_engine, delete, event, func, insert, literal, not_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from case_core import security
from case_core.adapters import orm
from case_core.domain.duplicates import INACTIVE_STATUSES
from case_core.domain.evaluation import Fact, extract_facts
from case_core.domain.numbering import format_case_number
from case_core.domain.reference import AREA_LEVELS
from case_core.domain.workflow import (
    Application,
    CaseState,
    HistoryEntry,
    StepClock,
    VersionConflict,
)
from case_core.views import CaseView, HistoryView, NotFound, RecordingView, UserView  # noqa: F401  (re-exported)


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
    if async_url(url).startswith("sqlite"):
        # One connection for the event loop's work: SQLite has one writer anyway, and
        # queueing in the pool is orderly where competing connections hit "database is
        # locked" under load (seen at 200+ concurrent calls).
        engine = create_async_engine(async_url(url), pool_size=1, max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(async_url(url))


def _user_view(row) -> UserView:
    return UserView(row.id, row.username, row.display_name, row.role, row.department, bool(row.disabled))


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
        department=m["department"],
        grid_cell=m["grid_cell"],
        inspector=m.get("inspector"),
        due_at=m.get("due_at"),
        lat=m.get("lat"),
        lon=m.get("lon"),
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


def _full_view(row, recs, hist) -> CaseView:
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


def make_sync_engine(url: str) -> Engine:
    """A blocking engine for work done in a thread (see SqlRepository.update_states)."""
    engine = create_engine(sync_url(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
    cur = dbapi_conn.cursor()
    # WAL: readers (web pages) never block the writer (the call path).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # The thread engine's transactions may meet the loop's: wait rather than fail.
    cur.execute("PRAGMA busy_timeout=30000")
    # In WAL mode NORMAL only syncs at checkpoints: a commit survives a process
    # crash (not a power cut), and a workflow step costs no fsync.
    cur.execute("PRAGMA synchronous=NORMAL")
    # Checkpoint the WAL every ~40 MB rather than every 4 MB: each checkpoint costs two
    # fsyncs inside some commit, and a case change dirties the same hot pages (indexes,
    # the evaluation rollup) that a longer WAL writes back once (transitions/s ×1.5).
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.close()


async def _hash_in_thread(password: str) -> str:
    return await asyncio.to_thread(security.hash_password, password)


class SqlRepository:
    """All persistence the hotline needs, one short transaction per method."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self._sync: Engine | None = None
        # Called inside the transaction that stores a case change, with the new state and
        # the change's events, so side effects (the SMS outbox) commit or roll back with it:
        # `async hook(conn, state, events)`; it may only await `conn.execute`.
        self.change_hook = None
        # Password hashing (scrypt, ~30 ms) for create_user/update_user, off the event loop:
        # a worker thread by default; the web side sets the login's niced pool
        # (AuthStore.hash_password) so that every hash in the server runs there.
        self.hash_password: Callable[[str], Any] = _hash_in_thread

    async def close(self) -> None:
        await self.engine.dispose()
        if self._sync is not None:
            self._sync.dispose()

    async def _run_change_hook(self, conn, state: CaseState, events) -> None:
        if self.change_hook is not None and events:
            await self.change_hook(conn, state, list(events))

    def _sync_engine(self) -> Engine:
        if self._sync is None:
            self._sync = make_sync_engine(self.engine.url.render_as_string(hide_password=False))
        return self._sync

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
    async def replace_description(self, case_id: int, expected: str, text: str) -> bool:
        """Set a case's description only if it is still `expected` (e.g. the voice-message
        placeholder), so a description an agent typed is never overwritten."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(orm.cases)
                .where(orm.cases.c.id == case_id, orm.cases.c.description == expected)
                .values(description=text)
            )
        return result.rowcount == 1

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
        return _full_view(row, recs, hist)

    async def case_id_for_call(self, call_id: str) -> int | None:
        """The case filed from a call (`cases.call_id`), for recordings not yet linked to it."""
        async with self.engine.connect() as conn:
            return (await conn.execute(select(orm.cases.c.id).where(orm.cases.c.call_id == call_id)
                                       .order_by(orm.cases.c.id).limit(1))).scalar_one_or_none()

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

    async def link_call(self, call_id: str | None, case_id: int) -> bool:
        """Store a call on a case: the call row points at the case (unless the call already
        filed another case of its own) and its recordings join the case.

        True when the call row now names this case. The workflow has no comment-only action,
        so a link to an existing case does not appear in that case's history.
        """
        if not call_id:
            return False
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(orm.calls)
                .where(orm.calls.c.call_id == call_id,
                       (orm.calls.c.case_id.is_(None)) | (orm.calls.c.case_id == case_id))
                .values(case_id=case_id)
            )
            linked = result.rowcount > 0
        await self.attach_call_recordings(call_id, case_id)
        return linked

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
        self, *, username: str, password: str, role: str, display_name: str = "", now: datetime,
        department: str | None = None,
    ) -> UserView:
        """Create the user; an existing username is left as it is and returned."""
        existing_user = await self.get_user(username)
        if existing_user is not None:  # no hash spent on a user that exists (the demo seed at each start)
            return existing_user
        password_hash = await self.hash_password(password)  # before the transaction: no connection held
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
                            password_hash=password_hash,
                            created_at=now,
                            department=department or None,
                        )
                        .returning(orm.users.c.id)
                    )
                ).scalar_one()
        if existing is not None:
            # Read after the transaction closed: SQLite's pool has one connection, and asking
            # for a second one while holding it waits forever (the second `make run` hung so).
            return await self.get_user(username)  # type: ignore[return-value]
        return UserView(uid, username, display_name or username, role, department or None)

    async def update_user(self, username: str, *, role: str | None = None, display_name: str | None = None,
                          department: str | None = None, clear_department: bool = False,
                          password: str | None = None) -> UserView | None:
        """Change what is given; None if there is no such user."""
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = role
        if display_name is not None:
            values["display_name"] = display_name
        if department is not None or clear_department:
            values["department"] = None if clear_department else department
        if password is not None:
            values["password_hash"] = await self.hash_password(password)
        if values:
            async with self.engine.begin() as conn:
                await conn.execute(update(orm.users).where(orm.users.c.username == username).values(**values))
        return await self.get_user(username)

    async def list_users(self) -> list[UserView]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(orm.users).order_by(orm.users.c.username))).all()
        return [_user_view(r) for r in rows]

    async def get_user(self, username: str) -> UserView | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(orm.users).where(orm.users.c.username == username))).first()
        return None if row is None else _user_view(row)

    async def check_password(self, username: str, password: str) -> UserView | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(orm.users).where(orm.users.c.username == username))).first()
        if row is None or not security.verify_password(password, row.password_hash):
            return None
        return _user_view(row)

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
                    .where(orm.api_tokens.c.token_sha256 == security.token_digest(token),
                           orm.api_tokens.c.revoked_at.is_(None), orm.users.c.disabled.is_(False))
                )
            ).first()
        return None if row is None else _user_view(row)

    # -- workflow: domain CaseState in and out ------------------------------------------
    async def load_state(self, case_id: int) -> CaseState:
        """The case as the domain sees it, rebuilt from its columns, state_json and history."""
        async with self.engine.connect() as conn:
            return await self._load_state(conn, case_id)

    async def _load_state(self, conn: AsyncConnection, case_id: int) -> CaseState:
        row = (await conn.execute(select(orm.cases).where(orm.cases.c.id == case_id))).first()
        if row is None:
            raise NotFound(f"case {case_id} not found")
        hist = (
            await conn.execute(
                select(orm.case_history).where(orm.case_history.c.case_id == case_id).order_by(orm.case_history.c.seq)
            )
        ).all()
        return state_from_rows(row, hist)

    async def case_id_for_number(self, number: str) -> int | None:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(select(orm.cases.c.id).where(orm.cases.c.number == number))
            ).scalar_one_or_none()

    async def insert_case_state(
        self,
        state: CaseState,
        *,
        call_id: str | None = None,
        recording_ids: tuple[int, ...] = (),
        extra: dict[str, Any] | None = None,
        events: list | tuple = (),
    ) -> int:
        """Store a new case (from ``workflow.new_case``) with its history and facts; return its id."""
        async with self.engine.begin() as conn:
            await self._run_change_hook(conn, state, events)
            values = _case_columns(state, extra or {})
            case_id = (
                await conn.execute(
                    insert(orm.cases)
                    .values(number=state.number, channel=state.channel, kind=state.kind, call_id=call_id,
                            created_at=state.created_at, **values)
                    .returning(orm.cases.c.id)
                )
            ).scalar_one()
            await conn.execute(insert(orm.case_history), [_history_row(case_id, i, h) for i, h in
                                                          enumerate(state.history, start=1)])
            rows = _fact_rows(case_id, state)
            if rows:
                await conn.execute(insert(orm.case_facts), rows)
                await conn.execute(_rollup_upsert(conn.dialect.name), _rollup_params({}, rows))
            if recording_ids:
                await conn.execute(
                    update(orm.recordings).where(orm.recordings.c.id.in_(recording_ids)).values(case_id=case_id)
                )
            if call_id:
                await conn.execute(update(orm.calls).where(orm.calls.c.call_id == call_id).values(case_id=case_id))
        return case_id

    async def allocate_case_numbers(self, counts: Mapping[date, int]) -> dict[date, list[str]]:
        """``counts[day]`` consecutive numbers for each day, in one transaction (bulk loads)."""
        async with self.engine.begin() as conn:
            out: dict[date, list[str]] = {}
            for day, n in sorted(counts.items()):
                key = day.strftime("%Y%m%d")
                ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(orm.case_number_seq)
                await conn.execute(ins.values(day=key, last_seq=0).on_conflict_do_nothing(index_elements=["day"]))
                last = (await conn.execute(
                    update(orm.case_number_seq).where(orm.case_number_seq.c.day == key)
                    .values(last_seq=orm.case_number_seq.c.last_seq + n).returning(orm.case_number_seq.c.last_seq)
                )).scalar_one()
                out[day] = [format_case_number(day, seq) for seq in range(last - n + 1, last + 1)]
        return out

    async def insert_case_states(self, items: list[tuple[CaseState, dict[str, Any]]]) -> list[int]:
        """Store many new cases ``(state, extra)``, each with its whole history, its facts and
        their rollup, in one transaction (all or nothing; bulk loads such as the demo city)."""
        def run(conn: Connection) -> list[int]:
            ids, facts = [], []
            for state, extra in items:
                case_id = conn.execute(
                    insert(orm.cases)
                    .values(number=state.number, channel=state.channel, kind=state.kind, call_id=None,
                            created_at=state.created_at, **_case_columns(state, extra))
                    .returning(orm.cases.c.id)
                ).scalar_one()
                conn.execute(insert(orm.case_history),
                             [_history_row(case_id, i, h) for i, h in enumerate(state.history, start=1)])
                facts += _fact_rows(case_id, state)
                ids.append(case_id)
            if facts:
                conn.execute(insert(orm.case_facts), facts)
                conn.execute(_rollup_upsert(conn.dialect.name), _rollup_params({}, facts))
            return ids

        async with self.engine.begin() as conn:
            return await conn.run_sync(run)

    async def save_states(self, changes: list[tuple[int, int, CaseState]]) -> None:
        """Persist new states ``(case_id, version read, new state)`` in one transaction.

        Optimistic locking in SQL: each UPDATE matches only the version that was read;
        if any case has moved on, nothing is written and VersionConflict is raised.
        """
        def run() -> None:
            with self._sync_engine().begin() as conn:
                delta: dict[tuple, int] = {}
                for case_id, old_version, state in changes:
                    extra = json.loads(conn.execute(
                        select(orm.cases.c.state_json).where(orm.cases.c.id == case_id)).scalar_one() or "{}")
                    _write_state(conn, case_id, old_version, state, extra, delta)
                _apply_rollup(conn, delta)

        await asyncio.to_thread(run)

    async def update_states(
        self, case_ids: list[int], mutate: Callable[[list[CaseState]], tuple[list[CaseState], R]]
    ) -> tuple[R, list[CaseView]]:
        """Read cases, let ``mutate`` (pure, fast) compute their new states, write them.

        One thread hop and one transaction for the whole read-modify-write: with
        aiosqlite every statement would cost a round trip through its worker thread.
        The UPDATEs still check the version read (another node may write in between).
        Returns what ``mutate`` returned besides the states, and the fresh views.
        """
        def run() -> tuple[R, list[CaseView]]:
            with self._sync_engine().begin() as conn:
                loaded = [_load_rows_sync(conn, cid) for cid in case_ids]
                new_states, result = mutate([state for state, _extra, _row, _hist in loaded])
                delta: dict[tuple, int] = {}
                written = []
                for cid, (old, extra, _row, _hist), new in zip(case_ids, loaded, new_states):
                    written.append(_write_state(conn, cid, old.version, new, extra, delta))
                    if self.change_hook is not None and new.version != old.version:
                        mine = [e for e in (result if isinstance(result, list) else []) if e.case_number == new.number]
                        _run_to_completion(self.change_hook(_AsyncShim(conn), new, mine))
                # The fresh views from what was read and written, not read back: the
                # UPDATE matched the version read, so nobody else changed these rows.
                views = [_view_after(conn, cid, row, hist, w)
                         for cid, (_s, _e, row, hist), w in zip(case_ids, loaded, written)]
                # Last before the commit: concurrent writers share rollup rows (PostgreSQL
                # holds their row locks until commit), so hold them as briefly as possible.
                _apply_rollup(conn, delta)
                return result, views

        return await asyncio.to_thread(run)

    # -- search and worklists -----------------------------------------------------------
    async def search_cases(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        status: str | tuple[str, ...] | None = None,
        category: str | None = None,
        department: str | None = None,
        inspector: str | None = None,
        overdue_at: datetime | None = None,
        urgent: bool | None = None,
        text: str | None = None,
        reporter_phone: str | None = None,
        channel: str | None = None,
        number: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        case_ids: tuple[int, ...] | None = None,
        oldest_first: bool = False,
        with_recordings: bool = True,
        unassigned_in_cells: tuple[str, ...] | None = None,
    ) -> list[CaseView]:
        """Cases matching every given filter, newest first (worklists use the indexes).

        ``category`` is ``kind:code``, a 5-digit code or a 2-digit class; ``overdue_at``
        keeps cases whose earliest open step was due before that moment. With ``inspector``,
        ``unassigned_in_cells`` also keeps cases with no inspector in those grid cells.
        """
        c = orm.cases.c
        query = select(orm.cases)
        if isinstance(status, str):
            query = query.where(c.status == status)
        elif status:
            query = query.where(c.status.in_(status))
        if category:
            kind, _, code = category.rpartition(":")
            if kind:
                query = query.where(c.category_kind == kind)
            query = query.where(c.category_code == code if len(code) == 5 else c.category_code.like(f"{code}%"))
        if department:
            query = query.where(c.department == department)
        if inspector and unassigned_in_cells:
            query = query.where(or_(c.inspector == inspector,
                                    and_(c.inspector.is_(None), c.grid_cell.in_(unassigned_in_cells))))
        elif inspector:
            query = query.where(c.inspector == inspector)
        if overdue_at is not None:
            query = query.where(c.due_at < overdue_at)
        if urgent is not None:
            query = query.where(c.case_type == "urgent" if urgent else c.case_type != "urgent")
        if reporter_phone:
            query = query.where(c.reporter_phone == reporter_phone)
        if channel:
            query = query.where(c.channel == channel)
        if number:
            query = query.where(c.number == number)
        if created_from is not None:
            query = query.where(c.created_at >= created_from)
        if created_to is not None:
            query = query.where(c.created_at < created_to)
        if case_ids is not None:
            query = query.where(c.id.in_(case_ids))
        if text:
            like = f"%{text}%"
            query = query.where(or_(c.number.like(like), c.description.like(like), c.address.like(like)))
        order = (c.created_at.asc(), c.id.asc()) if oldest_first else (c.created_at.desc(), c.id.desc())
        query = query.order_by(*order).limit(limit).offset(offset)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            by_case: dict[int, list[RecordingView]] = {}
            if with_recordings and rows:
                recs = (
                    await conn.execute(
                        select(orm.recordings)
                        .where(orm.recordings.c.case_id.in_([r.id for r in rows]))
                        .order_by(orm.recordings.c.id)
                    )
                ).all()
                for r in recs:
                    by_case.setdefault(r.case_id, []).append(_recording_view(r))
        return [_case_view(r, by_case.get(r.id, ())) for r in rows]

    async def duplicate_candidates(
        self, *, category: str | None, created_at: datetime, window_days: float, exclude_id: int | None, limit: int = 200
    ) -> list[CaseView]:
        """Active cases of the same category reported within the window (for ``suggest_duplicates``)."""
        c = orm.cases.c
        query = select(orm.cases).where(
            c.created_at >= created_at - timedelta(days=window_days),
            c.created_at <= created_at + timedelta(days=window_days),
            c.status.not_in(tuple(INACTIVE_STATUSES)),
        )
        if category and ":" in category:
            kind, code = category.split(":", 1)
            query = query.where(or_(c.category_code.is_(None), (c.category_kind == kind) & (c.category_code == code)))
        if exclude_id is not None:
            query = query.where(c.id != exclude_id)
        query = query.order_by(c.created_at.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [_case_view(r) for r in (await conn.execute(query)).all()]

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

    # -- reference data ---------------------------------------------------------------------
    async def replace_reference(self, table: str, rows: list[dict[str, Any]], *, local: bool = False) -> int:
        """Replace one reference table's contents (local categories: only the local rows), atomically."""
        t = _REF_TABLES[table]
        async with self.engine.begin() as conn:
            stmt = delete(t)
            if table == "categories":
                stmt = stmt.where(t.c.local == local)
            await conn.execute(stmt)
            if rows:
                await conn.execute(insert(t), rows)
        return len(rows)

    async def reference_rows(self, table: str) -> list[dict[str, Any]]:
        t = _REF_TABLES[table]
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(select(t).order_by(*t.primary_key.columns))).all()]


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


_ROLLUP_DIM = {None: "department", "department": "department", "role": "role", "person": "person",
               "area": "community"}


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


_FOREVER = datetime(9999, 1, 1)

R = TypeVar("R")


def _fact_rows(case_id: int, state: CaseState) -> list[dict[str, Any]]:
    return [
        {
            "case_id": case_id,
            "kind": f.kind,
            "at": f.at,
            "role": f.role or "",
            "person": (f.person or "")[:64],
            "department": f.department,
            "grid_cell": f.grid_cell,
            "on_time": f.on_time,
            "ok": f.ok,
            "flipped_at": f.flipped_at,
            "still_open": f.still_open,
        }
        for f in extract_facts(state, until=_FOREVER)
    ]


# Hot-path statements built once: SQLAlchemy then skips construction and cache-key work.
class _RawSelect:
    """``SELECT <all columns> FROM table WHERE col = ? [ORDER BY …]`` through the DBAPI cursor
    of a sync connection (same transaction), rows as ``_Row`` with the types SQLAlchemy
    would give: on the hot path SQLAlchemy's per-row result processing costs more than the
    query (on SQLite datetimes are stored as ISO text, booleans as 0/1)."""

    def __init__(self, table, where: str, order_by: str | None = None):
        self.columns = tuple(table.c.keys())
        self.datetimes = tuple(i for i, c in enumerate(table.c) if isinstance(c.type, DateTime))
        self.booleans = tuple(i for i, c in enumerate(table.c) if isinstance(c.type, Boolean))
        self.sql = (f"SELECT {', '.join(self.columns)} FROM {table.name} WHERE {where} = {{mark}}"
                    + (f" ORDER BY {order_by}" if order_by else ""))
        self._sql = {"?": self.sql.format(mark="?"), "%s": self.sql.format(mark="%s")}

    def rows(self, conn: Connection, value: Any) -> list["_Row"]:
        on_sqlite = conn.dialect.paramstyle == "qmark"
        cur = conn.connection.cursor()
        try:
            cur.execute(self._sql["?" if on_sqlite else "%s"], (value,))
            raw = cur.fetchall()
        finally:
            cur.close()
        out = []
        for r in raw:
            if on_sqlite:
                r = list(r)
                for i in self.datetimes:
                    if isinstance(r[i], str):
                        r[i] = datetime.fromisoformat(r[i])
                for i in self.booleans:
                    if r[i] is not None:
                        r[i] = bool(r[i])
            out.append(_Row(dict(zip(self.columns, r))))
        return out


_CASE_BY_ID = _RawSelect(orm.cases, "id")
_HISTORY_OF = _RawSelect(orm.case_history, "case_id", "seq")
_RECORDINGS_OF = _RawSelect(orm.recordings, "case_id", "id")
_UPDATE_COLUMNS = ("case_type", "status", "reporter_phone", "description", "address", "category_kind",
                   "category_code", "grid_cell", "department", "inspector", "due_at", "updated_at", "version",
                   "state_json")
_UPDATE_CASE_SQL = ("UPDATE cases SET " + ", ".join(f"{c} = {{mark}}" for c in _UPDATE_COLUMNS)
                    + " WHERE id = {mark} AND version = {mark}")
_HISTORY_COLUMNS = ("case_id", "seq", "action", "actor", "role", "at", "comment", "before_status", "after_status",
                    "fields_json", "version", "ended_json")
_INSERT_HISTORY_SQL = (f"INSERT INTO case_history ({', '.join(_HISTORY_COLUMNS)}) VALUES "
                       "(" + ", ".join(["{mark}"] * len(_HISTORY_COLUMNS)) + ")")
_HOT_SQL = {mark: {"update": _UPDATE_CASE_SQL.format(mark=mark), "history": _INSERT_HISTORY_SQL.format(mark=mark)}
            for mark in ("?", "%s")}


def _db_value(value: Any, on_sqlite: bool) -> Any:
    return _sqlite_dt(value) if on_sqlite and isinstance(value, datetime) else value


def _load_rows_sync(conn: Connection, case_id: int) -> tuple[CaseState, dict[str, Any], Any, list]:
    found = _CASE_BY_ID.rows(conn, case_id)
    if not found:
        raise NotFound(f"case {case_id} not found")
    row = found[0]
    hist = _HISTORY_OF.rows(conn, case_id)
    extra = json.loads(row.state_json or "{}")
    return state_from_rows(row, hist), {k: v for k, v in extra.items() if k in EXTRA_KEYS}, row, hist


class _Row:
    """A row-like object (attribute and ``_mapping`` access) built from a dict."""

    def __init__(self, values: Mapping[str, Any]):
        self.__dict__.update(values)
        self._mapping = values


def _view_after(conn: Connection, case_id: int, row, hist: list,
                written: tuple[dict[str, Any], list[dict[str, Any]]] | None) -> CaseView:
    """The case as it now stands: the row read, with the columns and history just written."""
    if written is not None:
        values, new_history = written
        row = _Row({**row._mapping, **values})
        hist = [*hist, *(_Row(h) for h in new_history)]
    recs = _RECORDINGS_OF.rows(conn, case_id)
    return _full_view(row, recs, hist)


def _write_state(conn: Connection, case_id: int, old_version: int, state: CaseState, extra: dict[str, Any],
                 rollup_delta: dict[tuple, int] | None = None,
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """UPDATE … WHERE version = old_version, then the new history rows and the facts that changed.

    Only facts that differ from the stored ones are deleted or inserted; their effect on
    ``case_fact_rollup`` is added to ``rollup_delta`` (apply it with ``_apply_rollup`` in
    the same transaction), or applied at once when no dict is given. Returns the column
    values and history rows written (None when the state did not change).
    """
    if state.version == old_version:
        return None
    values = _case_columns(state, {k: v for k, v in extra.items() if k in EXTRA_KEYS})
    new_entries = [h for h in state.history if h.version > old_version]
    first_seq = len(state.history) - len(new_entries) + 1
    history = [_history_row(case_id, seq, h) for seq, h in enumerate(new_entries, start=first_seq)]
    # Through the DBAPI cursor of this connection (same transaction): these two statements
    # run on every transition, where SQLAlchemy's parameter processing costs more than them.
    on_sqlite = conn.dialect.paramstyle == "qmark"
    sql = _HOT_SQL["?" if on_sqlite else "%s"]
    cur = conn.connection.cursor()
    try:
        cur.execute(sql["update"], tuple(_db_value(values[c], on_sqlite) for c in _UPDATE_COLUMNS)
                    + (case_id, old_version))
        if cur.rowcount != 1:
            raise VersionConflict(f"case {state.number} changed since version {old_version}",
                                  "案卷已被他人修改，请刷新后重试")
        if history:
            cur.executemany(sql["history"], [tuple(_db_value(h[c], on_sqlite) for c in _HISTORY_COLUMNS)
                                             for h in history])
    finally:
        cur.close()
    apply_now = rollup_delta is None
    delta = {} if apply_now else rollup_delta
    _sync_facts(conn, case_id, state, delta)
    if apply_now:
        _apply_rollup(conn, delta)
    return values, history


def _sync_facts(conn: Connection, case_id: int, state: CaseState, delta: dict[tuple, int]) -> None:
    """Make the case's stored facts equal to ``extract_facts(state)`` touching only the difference.

    On the hot path of every transition, so through the DBAPI cursor of the same
    connection (same transaction) with the values as the database holds them; on SQLite
    datetimes are SQLAlchemy's text form and booleans 0/1, so stored rows compare equal.
    """
    on_sqlite = conn.dialect.paramstyle == "qmark"
    mark = "?" if on_sqlite else "%s"
    stored: dict[tuple, list[int]] = {}
    cur = conn.connection.cursor()
    try:
        cur.execute(f"SELECT id, {_FACT_COLUMNS_SQL} FROM case_facts WHERE case_id = {mark}", (case_id,))
        for r in cur.fetchall():
            stored.setdefault(tuple(r[1:]), []).append(r[0])
        added = []
        for row in _fact_rows(case_id, state):
            values = tuple(row[c] for c in _FACT_COLUMNS)
            if on_sqlite:
                values = _sqlite_fact(values)
            same = stored.get(values)
            if same:
                same.pop()
            else:
                added.append(values)
        removed_ids = [i for ids in stored.values() for i in ids]
        removed = [v for v, ids in stored.items() for _ in ids]
        if removed_ids:
            cur.execute(f"DELETE FROM case_facts WHERE id IN ({','.join([mark] * len(removed_ids))})",
                        tuple(removed_ids))
        if added:
            row_marks = "(" + ",".join([mark] * (len(_FACT_COLUMNS) + 1)) + ")"
            params: list[Any] = []
            for values in added:
                params += (case_id, *values)
            cur.execute(f"INSERT INTO case_facts (case_id, {_FACT_COLUMNS_SQL}) VALUES "
                        + ",".join([row_marks] * len(added)), tuple(params))
    finally:
        cur.close()
    _add_rollup_delta(delta, (dict(zip(_FACT_COLUMNS, v)) for v in removed), -1)
    _add_rollup_delta(delta, (dict(zip(_FACT_COLUMNS, v)) for v in added), 1)


def _sqlite_dt(value: datetime | None) -> str | None:
    """A naive datetime as SQLAlchemy's SQLite DateTime stores it."""
    if value is None:
        return None
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}")


def _sqlite_fact(values: tuple) -> tuple:
    kind, at, role, person, department, grid_cell, on_time, ok, flipped_at, still_open = values
    return (kind, _sqlite_dt(at), role, person, department, grid_cell,
            None if on_time is None else int(bool(on_time)), None if ok is None else int(bool(ok)),
            _sqlite_dt(flipped_at), int(bool(still_open)))


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

_REF_TABLES = {
    "categories": orm.ref_categories,
    "areas": orm.ref_areas,
    "grid_cells": orm.ref_grid_cells,
    "gazetteer": orm.ref_places,
    "departments": orm.ref_departments,
    "routing": orm.ref_routing_rules,
    "holidays": orm.ref_holidays,
}

# Keys of state_json that are not workflow state (kept across transitions).
EXTRA_KEYS = frozenset({"location", "media_url", "reporter_name", "reporter_email", "source"})


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _typed_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Undo JSON for workflow fields: datetimes back from ISO text, photo lists to tuples."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if k.endswith("_deadline") and isinstance(v, str):
            try:
                v = datetime.fromisoformat(v)
            except ValueError:
                pass
        elif isinstance(v, list):
            v = tuple(v)
        out[k] = v
    return out


def _case_columns(state: CaseState, extra: dict[str, Any]) -> dict[str, Any]:
    kind, code = (state.category.split(":", 1) if state.category and ":" in state.category
                  else (None, state.category))
    open_dues = [c.due_at for c in state.deadlines.values() if c.done_at is None and c.due_at is not None]
    workflow_state = {
        "verify_result": state.verify_result,
        "check_result": state.check_result,
        "satisfaction": state.satisfaction,
        "rework_count": state.rework_count,
        "urge_count": state.urge_count,
        "pending": [
            {"kind": a.kind, "applicant": a.applicant, "role": a.role, "at": _iso(a.at), "reason": a.reason,
             "fields": _jsonable(dict(a.fields))}
            for a in state.pending
        ],
        "deadlines": {
            step: {"started_at": _iso(c.started_at), "due_at": _iso(c.due_at), "done_at": _iso(c.done_at)}
            for step, c in state.deadlines.items()
        },
        "resume_status": state.resume_status,
        "merged_into": state.merged_into,
        "merged_from": list(state.merged_from),
    }
    updated_at = state.history[-1].at if state.history else state.created_at
    return {
        "case_type": state.case_type,
        "status": state.status,
        "reporter_phone": state.reporter_phone or None,
        "description": state.description,
        "address": state.address,
        "category_kind": kind,
        "category_code": code,
        "grid_cell": state.grid_cell,
        "department": state.department,
        "inspector": state.inspector,
        "due_at": min(open_dues) if open_dues else None,
        # The position lives in state_json's "location" (Open311 lat/long); the columns copy it.
        "lat": _coord((extra.get("location") or {}).get("lat")),
        "lon": _coord((extra.get("location") or {}).get("long")),
        "updated_at": updated_at,
        "version": state.version,
        "state_json": json.dumps({**extra, **workflow_state}, ensure_ascii=False),
    }


def _coord(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _history_row(case_id: int, seq: int, h: HistoryEntry) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "seq": seq,
        "action": h.action,
        "actor": h.actor[:64],
        "role": h.role,
        "at": h.at,
        "comment": h.comment,
        "before_status": h.before_status,
        "after_status": h.after_status,
        "fields_json": json.dumps(_jsonable(dict(h.fields)), ensure_ascii=False),
        "version": h.version,
        "ended_json": json.dumps({k: _iso(v) for k, v in h.ended.items()}),
    }


def state_from_rows(row, history_rows) -> CaseState:
    """Rebuild the domain ``CaseState`` from a ``cases`` row and its ``case_history`` rows."""
    m = row._mapping
    extra = json.loads(m["state_json"] or "{}")
    history = tuple(
        HistoryEntry(
            actor=h.actor,
            role=h.role,
            action=h.action,
            at=h.at,
            comment=h.comment or "",
            before_status=h.before_status,
            after_status=h.after_status,
            fields=MappingProxyType(_typed_fields(json.loads(h.fields_json or "{}"))),
            version=h.version if h.version is not None else h.seq,
            ended=MappingProxyType({k: _dt(v) for k, v in json.loads(h.ended_json or "{}").items()}),
        )
        for h in history_rows
    )
    clocks = {
        step: StepClock(step, _dt(c["started_at"]), _dt(c.get("due_at")), _dt(c.get("done_at")))
        for step, c in (extra.get("deadlines") or {}).items()
    }
    pending = tuple(
        Application(a["kind"], a["applicant"], a["role"], _dt(a["at"]), a.get("reason", ""),
                    MappingProxyType(_typed_fields(a.get("fields") or {})))
        for a in extra.get("pending") or ()
    )
    category = (f"{m['category_kind']}:{m['category_code']}" if m["category_kind"] else m["category_code"])
    return CaseState(
        number=m["number"],
        kind=m["kind"],
        channel=m["channel"],
        reporter_phone=m["reporter_phone"] or "",
        description=m["description"] or "",
        category=category,
        address=m["address"] or "",
        created_at=m["created_at"],
        status=m["status"],
        version=m["version"],
        case_type=m["case_type"],
        grid_cell=m["grid_cell"],
        department=m["department"],
        inspector=m["inspector"],
        verify_result=extra.get("verify_result"),
        check_result=extra.get("check_result"),
        satisfaction=extra.get("satisfaction"),
        rework_count=extra.get("rework_count", 0),
        urge_count=extra.get("urge_count", 0),
        pending=pending,
        deadlines=MappingProxyType(clocks),
        resume_status=extra.get("resume_status"),
        merged_into=extra.get("merged_into"),
        merged_from=tuple(extra.get("merged_from") or ()),
        history=history,
    )



class _AsyncShim:
    """An async-looking face on a sync Connection, for change hooks written against
    AsyncConnection, run inside the sync workflow transaction (see `_run_to_completion`)."""

    def __init__(self, conn: Connection):
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, *args, **kwargs):
        return self._conn.execute(*args, **kwargs)


def _run_to_completion(coro):
    """Run a coroutine that never really suspends (it only awaits `_AsyncShim.execute`)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a case change hook suspended inside a sync transaction")

"""SQLAlchemy (asyncio) repository: cases with history, calls (CDR), recordings, users, tokens.

Split by aggregate: this module holds the cases; `sql_calls.py`, `sql_users.py`,
`sql_evaluation.py` and `sql_reference.py` the others, joined in `SqlRepository`.

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
from case_core.adapters.sql_calls import CallRecordsSql, _recording_view
from case_core.adapters.sql_case_lists import CaseListsSql
from case_core.adapters.sql_evaluation import (  # noqa: F401  (rebuild_rollup re-exported for bench/case_bench.py)
    _FACT_COLUMNS,
    _FACT_COLUMNS_SQL,
    EvaluationSql,
    _add_rollup_delta,
    _apply_rollup,
    _rollup_params,
    _rollup_upsert,
    rebuild_rollup,
)
from case_core.adapters.sql_reference import ReferenceSql
from case_core.adapters.sql_users import UsersSql, _hash_in_thread


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


class SqlRepository(CallRecordsSql, UsersSql, EvaluationSql, ReferenceSql, CaseListsSql):
    """All persistence the hotline needs, one short transaction per method (`case_core.ports.CaseRepository`).

    The case aggregate (numbers, cases, the workflow's unit of work `update_states`, search)
    is here; calls and recordings, users and tokens, evaluation counts and reference data are
    the mixins of `sql_calls`, `sql_users`, `sql_evaluation` and `sql_reference`.
    """

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

    async def case_ids_for_numbers(self, numbers) -> dict[str, int]:
        """Case number → id for those of `numbers` that exist (blank ones ignored)."""
        wanted = sorted({n for n in numbers if n})
        if not wanted:
            return {}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(orm.cases.c.number, orm.cases.c.id)
                                       .where(orm.cases.c.number.in_(wanted)))).all()
        return {number: case_id for number, case_id in rows}

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

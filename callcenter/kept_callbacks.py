"""Kept-place callbacks in the database, so that a stop or a crash loses none.

A caller who pressed 1 in the queue ("call me back, keep my place") is stored when the ACD
accepts it (`kept_callbacks`, migration 0016) with the queue, the number, the original
enqueue time (the place) and the state `pending`. At start every pending row goes back into
its queue at that place (`callcenter.acd.CallbacksRestored`). A row leaves `pending` once:
`done` when the callback is answered, `moved` to the scheduled-callback list (`callbacks`,
kind `scheduled`, status `new`, the last agent tried as its agent) after
`[acd] callback_max_tries` failed tries or when its deadline passed, `cancelled` when the
caller's place is given up. Every change is one transaction guarded by `state = 'pending'`,
so a second stop in between repeats nothing.

Times are stored as naive local time, as the queue log's.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlalchemy import Column, DateTime, Index, Integer, String, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter import acd
from callcenter.callbacks.dialer import callbacks_table
from case_core.adapters.orm import metadata

__all__ = ["kept_callbacks", "KeptCallbackStore", "STATES"]

STATES = ("pending", "done", "moved", "cancelled")

kept_callbacks = Table(
    "kept_callbacks",
    metadata,
    Column("call_id", String(255), primary_key=True),
    Column("queue", String(64), nullable=False),
    Column("caller", String(64), nullable=False),
    Column("number", String(64), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("skill", String(64)),
    Column("joined_at", DateTime(timezone=False), nullable=False),  # the place
    Column("requested_at", DateTime(timezone=False), nullable=False),
    Column("expires_at", DateTime(timezone=False), nullable=False),
    Column("tries", Integer, nullable=False),  # failed tries so far
    Column("last_agent", String(64)),
    Column("state", String(16), nullable=False),  # pending | done | moved | cancelled
    Column("outcome", String(64)),  # answered, the last failure, expired, the move's callback id
    Column("updated_at", DateTime(timezone=False), nullable=False),
)
Index("ix_kept_callbacks_state", kept_callbacks.c.state)


def _naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None)


class KeptCallbackStore:
    def __init__(self, engine: AsyncEngine, tz: tzinfo):
        self.engine = engine
        self.tz = tz

    def _aware(self, t: datetime) -> datetime:
        return t.replace(tzinfo=self.tz) if t.tzinfo is None else t

    def _place(self, row) -> acd.KeptPlace:
        return acd.KeptPlace(
            call=row.call_id, queue=row.queue, caller=row.caller, number=row.number,
            joined_at=self._aware(row.joined_at), requested_at=self._aware(row.requested_at),
            expires_at=self._aware(row.expires_at), priority=row.priority, skill=row.skill,
        )

    async def add(self, place: acd.KeptPlace, now: datetime) -> bool:
        """Store a newly kept place; False when the call is stored already (nothing changes)."""
        async with self.engine.begin() as conn:
            insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(kept_callbacks)
            result = await conn.execute(
                insert.values(
                    call_id=place.call, queue=place.queue, caller=place.caller, number=place.number,
                    priority=place.priority, skill=place.skill, joined_at=_naive(place.joined_at),
                    requested_at=_naive(place.requested_at), expires_at=_naive(place.expires_at),
                    tries=0, state="pending", updated_at=_naive(now),
                ).on_conflict_do_nothing(index_elements=["call_id"])
            )
        return result.rowcount == 1

    async def pending(self) -> list[acd.KeptPlace]:
        """Every pending kept place, in original enqueue order."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(kept_callbacks).where(kept_callbacks.c.state == "pending")
                    .order_by(kept_callbacks.c.joined_at, kept_callbacks.c.call_id)
                )
            ).all()
        return [self._place(r) for r in rows]

    async def get(self, call_id: str) -> dict | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(kept_callbacks).where(kept_callbacks.c.call_id == call_id))).first()
        return dict(row._mapping) if row is not None else None

    async def finish(self, call_id: str, state: str, outcome: str, now: datetime) -> bool:
        """pending → `state` (done, cancelled); True only for the one call that changed it."""
        if state not in ("done", "cancelled"):
            raise ValueError(f"state must be done or cancelled, got {state!r}")
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(kept_callbacks)
                .where(kept_callbacks.c.call_id == call_id, kept_callbacks.c.state == "pending")
                .values(state=state, outcome=outcome, updated_at=_naive(now))
            )
        return result.rowcount == 1

    async def failed(self, call_id: str, agent: str | None, reason: str, now: datetime,
                     max_tries: int) -> acd.KeptPlace | str | None:
        """Count one failed try. Returns the place to try again, or the id of the scheduled
        callback it moved to after `max_tries`, or None when the row is not pending."""
        async with self.engine.begin() as conn:
            row = await self._pending(conn, call_id)
            if row is None:
                return None
            tries = row.tries + 1
            await conn.execute(
                update(kept_callbacks).where(kept_callbacks.c.call_id == call_id)
                .values(tries=tries, last_agent=agent or row.last_agent, outcome=reason[:64],
                        updated_at=_naive(now))
            )
            if tries < max_tries:
                return self._place(row)
            return await self._move(conn, row, agent or row.last_agent, now)

    async def expire(self, call_id: str, now: datetime) -> str | None:
        """Its deadline passed: to the scheduled-callback list (id returned), or None."""
        async with self.engine.begin() as conn:
            row = await self._pending(conn, call_id)
            if row is None:
                return None
            return await self._move(conn, row, row.last_agent, now)

    @staticmethod
    async def _pending(conn, call_id: str):
        """The row of `call_id` while it is still pending, else None."""
        return (
            await conn.execute(
                select(kept_callbacks).where(kept_callbacks.c.call_id == call_id, kept_callbacks.c.state == "pending")
            )
        ).first()

    async def _move(self, conn, row, agent: str | None, now: datetime) -> str:
        callback_id = f"kept:{row.call_id}"[:128]
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(callbacks_table)
        await conn.execute(
            insert.values(
                id=callback_id, kind="scheduled", number=row.number, agent=agent, status="new",
                attempts_json="[]", created_at=_naive(now), updated_at=_naive(now),
            ).on_conflict_do_nothing(index_elements=["id"])
        )
        await conn.execute(
            update(kept_callbacks).where(kept_callbacks.c.call_id == row.call_id)
            .values(state="moved", outcome=callback_id, updated_at=_naive(now))
        )
        return callback_id

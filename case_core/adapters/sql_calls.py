"""Calls (CDR rows) and recordings: `case_core.ports.CallRecords` on SQLAlchemy.

A mixin of `case_core.adapters.sqlalchemy_repo.SqlRepository`, which brings `self.engine`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from case_core.adapters import orm
from case_core.views import NotFound, RecordingView


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


class CallRecordsSql:
    engine: AsyncEngine

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

    async def call_records(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """话单: every call row started in [start, end), oldest first, with `case_number` of its case."""
        query = (
            select(orm.calls, orm.cases.c.number.label("case_number"))
            .join(orm.cases, orm.cases.c.id == orm.calls.c.case_id, isouter=True)
            .where(orm.calls.c.started_at >= start, orm.calls.c.started_at < end)
            .order_by(orm.calls.c.started_at)
        )
        async with self.engine.connect() as conn:
            return [dict(row._mapping) for row in (await conn.execute(query)).all()]

    async def get_recording(self, recording_id: int) -> RecordingView:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(orm.recordings).where(orm.recordings.c.id == recording_id))
            ).first()
        if row is None:
            raise NotFound(f"recording {recording_id} not found")
        return _recording_view(row)

"""Start-up recovery after a crash: calls that never ended, and voice messages never filed.

Recordings are flushed to disk about once a second as valid WAV files, so after a crash
(kill -9, power loss) the audio up to the last flush is there. At start-up this module
closes the interrupted calls in the CDR, fixes the recordings' durations from the files,
and files every unfiled voice message as a case, so a citizen's report is never lost.

On a shared PostgreSQL database another live node's calls also look unfinished: a cluster
node (`[cluster] node_id`) recovers only the calls with its own node id; a single node on
PostgreSQL without a node id does not run this.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from case_core.adapters import orm

log = logging.getLogger(__name__)

# A message shorter than this after recovery is just the beep and silence.
MIN_MESSAGE_S = 0.5


async def recover_interrupted_calls(engine: AsyncEngine, service, now: datetime,
                                    seconds_of: Callable[[str], float], node_id: str | None = None) -> list[str]:
    """Close unfinished calls; file their unfiled messages. Returns the new case numbers.

    `seconds_of(path)`: a recording file's length in seconds, 0.0 when unreadable (the
    composition root passes `callcenter.media.wav.wav_seconds`; the case core reads no audio).
    `node_id`: only the calls of this cluster node (the others belong to live nodes).
    """
    query = select(orm.calls).where(orm.calls.c.ended_at.is_(None))
    if node_id is not None:
        query = query.where(orm.calls.c.node_id == node_id)
    async with engine.connect() as conn:
        calls = (await conn.execute(query)).all()
    filed: list[str] = []
    for call in calls:
        async with engine.connect() as conn:
            recs = (
                await conn.execute(select(orm.recordings).where(orm.recordings.c.call_id == call.call_id))
            ).all()
        message_ids = []
        async with engine.begin() as conn:
            for rec in recs:
                seconds = seconds_of(rec.path) if Path(rec.path).is_file() else 0.0
                await conn.execute(
                    update(orm.recordings).where(orm.recordings.c.id == rec.id).values(duration_s=seconds)
                )
                if rec.kind == "message" and rec.case_id is None and seconds >= MIN_MESSAGE_S:
                    message_ids.append(rec.id)
            await conn.execute(
                update(orm.calls)
                .where(orm.calls.c.id == call.id)
                .values(ended_at=now, end_reason="interrupted")
            )
        if message_ids and call.case_id is None:
            number = await service.file_report(
                channel=call.did or "12319",
                reporter_phone=call.caller,
                call_id=call.call_id,
                recording_ids=tuple(message_ids),
                variables={},
                now=now,
                description="来电留言（通话中断后恢复，见录音）",
            )
            filed.append(number)
            log.warning("recovered the voice message of interrupted call %s as case %s", call.call_id, number)
    if calls:
        log.warning("closed %d call(s) interrupted by a restart", len(calls))
    return filed

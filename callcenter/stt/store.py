"""Stored transcripts: the `transcripts` table (one row per recognised segment) and the
`transcript_jobs` table (one row per recording: queued / done / failed, with the error),
and the async store that writes, reads and searches them.

A transcript belongs to a recording and so to its call; it belongs to a case through the
recording (`recordings.case_id`, set when the case is filed, often after the transcript is
stored) or through the case's own `call_id`. Reads therefore join the recordings table
instead of trusting the `case_id` copied at transcription time.

Search matches a normalised form of the text (NFKC, traditional → simplified, lower case,
no spaces or punctuation), so "长江路 井盖" finds "长江路井盖，" and a phrase that Whisper
split over two segments is still found through the per-recording full text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import (
    Column, DateTime, Float, ForeignKey, Index, Integer, String, Table, Text, delete, insert, or_,
    select, update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.stt.port import Segment, Transcript
from callcenter.write_queue import retry_transient
from case_core.adapters import orm
from case_core.adapters.orm import metadata

__all__ = [
    "transcripts", "transcript_jobs", "QUEUED", "DONE", "FAILED", "STATUSES",
    "StoredSegment", "RecordingTranscript", "SearchHit", "TranscriptStore", "normalize_for_search",
]

QUEUED, DONE, FAILED = "queued", "done", "failed"
STATUSES = (QUEUED, DONE, FAILED)

transcripts = Table(
    "transcripts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("recording_id", Integer, ForeignKey("recordings.id", ondelete="CASCADE"), nullable=False),
    Column("call_id", String(255), nullable=False),
    Column("case_id", Integer, ForeignKey("cases.id", ondelete="SET NULL")),
    Column("channel", Integer, nullable=False),
    Column("start_s", Float, nullable=False),
    Column("end_s", Float, nullable=False),
    Column("text", Text, nullable=False),
    Column("norm_text", Text, nullable=False),
    Column("engine", String(16), nullable=False),
    Column("created_at", DateTime(timezone=False), nullable=False),
)
Index("ix_transcripts_recording_id", transcripts.c.recording_id, transcripts.c.start_s)
Index("ix_transcripts_call_id", transcripts.c.call_id)
Index("ix_transcripts_case_id", transcripts.c.case_id)

transcript_jobs = Table(
    "transcript_jobs",
    metadata,
    Column("recording_id", Integer, ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(16), nullable=False),  # queued, done, failed
    Column("engine", String(16), nullable=False),
    Column("error", Text),
    Column("language", String(8)),
    Column("duration_s", Float),
    Column("rtf", Float),
    # The whole transcript, normalised, so a phrase split over segments is still found.
    Column("norm_text", Text, nullable=False, default=""),
    Column("queued_at", DateTime(timezone=False), nullable=False),
    Column("finished_at", DateTime(timezone=False)),
)
Index("ix_transcript_jobs_status", transcript_jobs.c.status)


def normalize_for_search(text: str) -> str:
    """The form both stored text and queries are compared in."""
    from callcenter.stt.quality import to_simplified

    text = to_simplified(unicodedata.normalize("NFKC", text)).lower()
    return "".join(c for c in text if not c.isspace()
                   and not unicodedata.category(c).startswith(("P", "S")))


@dataclass(frozen=True)
class StoredSegment:
    channel: int
    start_s: float
    end_s: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RecordingTranscript:
    """A recording with its transcription status and segments (empty unless done)."""

    recording_id: int
    call_id: str
    case_id: int | None
    kind: str
    channels: int
    duration_s: float
    created_at: datetime
    status: str | None  # None: never submitted
    engine: str | None
    error: str | None
    segments: tuple[StoredSegment, ...]

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "call_id": self.call_id,
            "case_id": self.case_id,
            "kind": self.kind,
            "channels": self.channels,
            "duration_s": round(self.duration_s, 2),
            "created_at": self.created_at.isoformat(),
            "url": f"/recordings/{self.recording_id}.wav",
            "status": self.status or "none",
            "engine": self.engine,
            "error": self.error,
            "text": self.text,
            "segments": [s.to_dict() for s in self.segments],
        }


@dataclass(frozen=True)
class SearchHit:
    """A recording whose transcript contains the query, with the segments that say it."""

    recording_id: int
    call_id: str
    case_id: int | None
    case_number: str | None
    kind: str
    created_at: datetime
    segments: tuple[StoredSegment, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "call_id": self.call_id,
            "case_id": self.case_id,
            "case_number": self.case_number,
            "kind": self.kind,
            "created_at": self.created_at.isoformat(),
            "url": f"/recordings/{self.recording_id}.wav",
            "segments": [s.to_dict() for s in self.segments],
        }


def _matching_segments(segments: Sequence[StoredSegment], query: str) -> tuple[StoredSegment, ...]:
    """Segments containing the query; else the shortest run of consecutive segments
    (in time order) whose joined text contains it."""
    norms = [normalize_for_search(s.text) for s in segments]
    single = tuple(s for s, n in zip(segments, norms) if query in n)
    if single:
        return single
    for width in range(2, len(segments) + 1):
        for i in range(len(segments) - width + 1):
            if query in "".join(norms[i:i + width]):
                return tuple(segments[i:i + width])
    return ()


class TranscriptStore:
    """All transcript persistence, one short transaction per method."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def recording(self, recording_id: int):
        """The `recordings` row, or None."""
        async with self.engine.connect() as conn:
            return (await conn.execute(
                select(orm.recordings).where(orm.recordings.c.id == recording_id))).first()

    # Writes are retried through passing failures (a busy pool, a locked database): a
    # transcript or its job state is never lost because calls were flooding the database.
    async def mark_queued(self, recording_id: int, *, engine: str, now: datetime) -> None:
        await retry_transient(lambda: self._mark_queued(recording_id, engine=engine, now=now),
                              what=f"transcript job {recording_id}")

    async def mark_failed(self, recording_id: int, error: str, *, now: datetime) -> None:
        await retry_transient(lambda: self._mark_failed(recording_id, error, now=now),
                              what=f"transcript job {recording_id}")

    async def save(self, recording_id: int, transcript: Transcript, *, now: datetime) -> None:
        """Replace the recording's segments with ``transcript``'s and mark it done."""
        await retry_transient(lambda: self._save(recording_id, transcript, now=now),
                              what=f"transcript of {recording_id}")

    async def _mark_queued(self, recording_id: int, *, engine: str, now: datetime) -> None:
        values = dict(status=QUEUED, engine=engine, error=None, queued_at=now, finished_at=None)
        async with self.engine.begin() as conn:
            changed = (await conn.execute(update(transcript_jobs)
                                          .where(transcript_jobs.c.recording_id == recording_id)
                                          .values(**values))).rowcount
            if not changed:
                await conn.execute(insert(transcript_jobs).values(recording_id=recording_id, norm_text="", **values))

    async def _mark_failed(self, recording_id: int, error: str, *, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(transcript_jobs)
                               .where(transcript_jobs.c.recording_id == recording_id)
                               .values(status=FAILED, error=error[:2000], finished_at=now))

    async def _save(self, recording_id: int, transcript: Transcript, *, now: datetime) -> None:
        async with self.engine.begin() as conn:
            rec = (await conn.execute(
                select(orm.recordings.c.call_id, orm.recordings.c.case_id)
                .where(orm.recordings.c.id == recording_id))).first()
            if rec is None:
                raise LookupError(f"recording {recording_id} not found")
            await conn.execute(delete(transcripts).where(transcripts.c.recording_id == recording_id))
            ordered = sorted(transcript.segments, key=lambda s: (s.start_s, s.channel))
            rows = [_segment_row(recording_id, rec.call_id, rec.case_id, s, transcript.engine, now)
                    for s in ordered if s.text.strip()]
            if rows:
                await conn.execute(insert(transcripts), rows)
            await conn.execute(
                update(transcript_jobs).where(transcript_jobs.c.recording_id == recording_id)
                .values(status=DONE, error=None, engine=transcript.engine, language=transcript.language,
                        duration_s=transcript.duration_s, rtf=transcript.rtf, finished_at=now,
                        norm_text="".join(r["norm_text"] for r in rows)))

    async def unfinished(self) -> list[int]:
        """Recordings queued but never finished (the process stopped first), oldest first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(transcript_jobs.c.recording_id).where(transcript_jobs.c.status == QUEUED)
                .order_by(transcript_jobs.c.queued_at))).all()
        return [r.recording_id for r in rows]

    async def for_recording(self, recording_id: int) -> RecordingTranscript | None:
        """The recording's transcript and status, or None if there is no such recording."""
        found = await self._transcripts(orm.recordings.c.id == recording_id)
        return found[0] if found else None

    async def for_case(self, case_id: int) -> list[RecordingTranscript] | None:
        """Transcripts of every recording of the case (attached to it, or of its call);
        None if there is no such case."""
        async with self.engine.connect() as conn:
            case = (await conn.execute(
                select(orm.cases.c.call_id).where(orm.cases.c.id == case_id))).first()
        if case is None:
            return None
        condition = orm.recordings.c.case_id == case_id
        if case.call_id:
            condition = or_(condition, orm.recordings.c.call_id == case.call_id)
        return await self._transcripts(condition)

    async def _transcripts(self, condition) -> list[RecordingTranscript]:
        r, j = orm.recordings, transcript_jobs
        async with self.engine.connect() as conn:
            recs = (await conn.execute(
                select(r, j.c.status, j.c.engine, j.c.error)
                .select_from(r.outerjoin(j, j.c.recording_id == r.c.id))
                .where(condition).order_by(r.c.created_at, r.c.id))).all()
            segs = await self._segments(conn, [x.id for x in recs])
        return [RecordingTranscript(
            recording_id=x.id, call_id=x.call_id, case_id=x.case_id, kind=x.kind, channels=x.channels,
            duration_s=x.duration_s or 0.0, created_at=x.created_at, status=x.status, engine=x.engine,
            error=x.error, segments=tuple(segs.get(x.id, ())) if x.status == DONE else ())
            for x in recs]

    @staticmethod
    async def _segments(conn, recording_ids: list[int]) -> dict[int, list[StoredSegment]]:
        if not recording_ids:
            return {}
        t = transcripts
        rows = (await conn.execute(
            select(t.c.recording_id, t.c.channel, t.c.start_s, t.c.end_s, t.c.text)
            .where(t.c.recording_id.in_(recording_ids))
            .order_by(t.c.recording_id, t.c.start_s, t.c.channel, t.c.id))).all()
        out: dict[int, list[StoredSegment]] = {}
        for row in rows:
            out.setdefault(row.recording_id, []).append(
                StoredSegment(row.channel, row.start_s, row.end_s, row.text))
        return out

    async def search(self, text: str, *, limit: int = 50, offset: int = 0) -> list[SearchHit]:
        """Recordings whose transcript contains ``text`` (normalised), newest first."""
        query = normalize_for_search(text)
        if not query:
            return []
        r, j, c = orm.recordings, transcript_jobs, orm.cases
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(r.c.id, r.c.call_id, r.c.case_id, r.c.kind, r.c.created_at, c.c.number)
                .select_from(j.join(r, r.c.id == j.c.recording_id).outerjoin(c, c.c.id == r.c.case_id))
                .where(j.c.status == DONE, j.c.norm_text.contains(query, autoescape=True))
                .order_by(r.c.created_at.desc(), r.c.id.desc()).limit(limit).offset(offset))).all()
            segs = await self._segments(conn, [x.id for x in rows])
        return [SearchHit(recording_id=x.id, call_id=x.call_id, case_id=x.case_id, case_number=x.number,
                          kind=x.kind, created_at=x.created_at,
                          segments=_matching_segments(segs.get(x.id, []), query))
                for x in rows]


def _segment_row(recording_id: int, call_id: str, case_id: int | None, s: Segment, engine: str,
                 now: datetime) -> dict[str, Any]:
    return dict(recording_id=recording_id, call_id=call_id, case_id=case_id, channel=s.channel,
                start_s=s.start_s, end_s=s.end_s, text=s.text, norm_text=normalize_for_search(s.text),
                engine=engine, created_at=now)

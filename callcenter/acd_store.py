"""Agents' call-center profiles (extension, skills) and the queue event log, in the database.

An agent is a web user (`users.username`) with a SIP extension; the ACD's agent id is the
username. The queue log (join, ring, connect, abandon, complete…) is the source of the
wallboard's day figures after a restart and of the CSV export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlalchemy import Column, DateTime, Float, Index, Integer, String, Table, Text, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.acd.actions import QueueEventLogged
from callcenter.acd.series import day_series as _day_series
from case_core.adapters.orm import metadata, users

agent_profiles = Table(
    "agent_profiles",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("extension", String(32), nullable=False, unique=True),
    Column("skills_json", Text, nullable=False, default="{}"),
    Column("created_at", DateTime(timezone=False), nullable=False),
)

queue_events = Table(
    "queue_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=False), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("call_id", String(255), nullable=False),
    Column("agent", String(64)),
    Column("caller", String(64)),
    Column("position", Integer),
    Column("wait_s", Float),
    Column("talk_s", Float),
    Column("wrap_s", Float),
    Column("detail", Text),
)
Index("ix_queue_events_at", queue_events.c.at)


@dataclass(frozen=True)
class AgentProfile:
    username: str
    extension: str
    skills: dict[str, int]
    role: str = "agent"  # the web user's role: only agents take queue calls; supervisors listen in


class AcdStore:
    def __init__(self, engine: AsyncEngine, writer=None):
        self.engine = engine
        # callcenter.write_queue.WriteQueue: queue events go through the single writer (never
        # lost when the pool is busy); None writes them directly (CLI, web).
        self.writer = writer

    async def set_profile(self, username: str, extension: str, skills: dict[str, int], now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(agent_profiles).where(agent_profiles.c.username == username))
            await conn.execute(
                insert(agent_profiles).values(
                    username=username, extension=extension, skills_json=json.dumps(skills), created_at=now
                )
            )

    async def profiles(self) -> list[AgentProfile]:
        query = (
            select(agent_profiles, users.c.role)
            .join(users, users.c.username == agent_profiles.c.username, isouter=True)
            .order_by(agent_profiles.c.username)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            AgentProfile(r.username, r.extension, json.loads(r.skills_json or "{}"), r.role or "agent") for r in rows
        ]

    async def log_event(self, event) -> None:
        """Store one `callcenter.acd.QueueEventLogged` (times as naive local time)."""
        stmt = insert(queue_events).values(
            at=event.at.replace(tzinfo=None),
            kind=event.kind,
            queue=event.queue,
            call_id=event.call,
            agent=event.agent,
            caller=event.caller,
            position=event.position,
            wait_s=event.wait_s,
            talk_s=event.talk_s,
            wrap_s=event.wrap_s,
            detail=event.detail,
        )
        if self.writer is not None:
            await self.writer.submit(lambda conn: conn.execute(stmt), f"queue event {event.kind} {event.call}")
            return
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def logged_since(self, since: datetime, tz: tzinfo) -> list:
        """The stored queue log from `since` (naive local time) as `QueueEventLogged` lines
        with `tz`, oldest first: what a restarted ACD counts in today's queue figures."""
        return [QueueEventLogged(at=r["at"].replace(tzinfo=tz), kind=r["kind"], queue=r["queue"], call=r["call_id"],
                                 agent=r["agent"], caller=r["caller"], position=r["position"], wait_s=r["wait_s"],
                                 talk_s=r["talk_s"], wrap_s=r["wrap_s"], detail=r["detail"])
                for r in await self.events_since(since)]

    async def events_since(self, since: datetime) -> list[dict]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(queue_events).where(queue_events.c.at >= since).order_by(queue_events.c.id))
            ).all()
        return [dict(r._mapping) for r in rows]


class QueueLog(AcdStore):
    """What the web reads of the queue log (`web.ports.QueueLog`): the stored rows and
    today's series drawn from them."""

    @staticmethod
    def day_series(records, day_start: datetime, now: datetime, interval_s: int = 900,
                   queue: str | None = None) -> list:
        return _day_series(records, day_start, now, interval_s, queue)

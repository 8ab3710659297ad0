"""The audit log: who did what, when, and from where (table `audit_log`, migration 0017).

One call records one event:

    await audit.record(actor, action, target, source_ip, detail, now)

- `actor`: the user name, or "" when nobody is known (a failed login records the name tried
  as `target`); SIP-side events use e.g. "sip:1001" or "".
- `action`: a short snake_case verb from `ACTIONS` (others are accepted, so a new feature
  needs no change here, but add it to the list to document it).
- `target`: what was acted on (a user name, "case:12", "recording:7", "call:<id>", a source).
- `source_ip`: the remote address ("" when local, e.g. the command line).
- `detail`: a small JSON-able dict (stored as JSON text, at most `DETAIL_MAX` characters).
- `now`: a datetime (naive local time, as the other tables) or epoch seconds (a reactor's
  clock); it is a parameter, never read here.

Code that is not a coroutine (SIP transports, Twisted callbacks) calls `record_soon(...)`
with the same arguments: the write is scheduled on the running loop and never raises; at
most `MAX_PENDING` writes wait at a time (the rest are counted in `dropped` and logged), so
a flood cannot queue unbounded work through the audit log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import Column, DateTime, Index, Integer, String, Table, Text, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from case_core.adapters.orm import metadata

__all__ = ["ACTIONS", "AuditEntry", "AuditLog", "audit_log", "entry"]

log = logging.getLogger(__name__)

# The actions recorded today; the owner of each is the module that records it.
ACTIONS = {
    "login": "web login succeeded",
    "login_failed": "web login refused (unknown user or wrong password; target: the name tried)",
    "login_throttled": "web login refused with 429 (too many failures for the user or the source)",
    "logout": "web logout (the session is revoked)",
    "session_revoked": "sessions revoked (hotline user sessions revoke, password change, disable)",
    "password_changed": "a user's password was changed",
    "role_changed": "a user's role or department was changed (detail: old and new)",
    "user_created": "a user was created (hotline user add; detail: role, department)",
    "user_disabled": "a user was disabled (sessions revoked, tokens refused)",
    "user_enabled": "a disabled user was enabled again",
    "token_created": "an API token was issued (detail: scope, expires_at)",
    "token_revoked": "API tokens were revoked (detail: ids)",
    "recording_download": "a recording was downloaded",
    "listen_in": "a supervisor listened in to a call",
    "sip_ban": "a SIP source was banned (flood, digest failures or a scanner; detail: reason, count, ban_s)",
    "sip_unban": "a SIP source's ban ended, or an admin lifted it (DELETE /api/sip/bans; detail: dropped, by_hand)",
}

FIELD_MAX = {"actor": 64, "action": 64, "target": 255, "source_ip": 64}
DETAIL_MAX = 4000
MAX_PENDING = 1000

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=False), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=False),
    Column("source_ip", String(64), nullable=False),
    Column("detail", Text, nullable=False),  # JSON object
)
Index("ix_audit_log_at", audit_log.c.at)
Index("ix_audit_log_actor", audit_log.c.actor)
Index("ix_audit_log_action", audit_log.c.action)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    source_ip: str
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "actor": self.actor, "action": self.action,
                "target": self.target, "source_ip": self.source_ip, "detail": self.detail}


def _local(now: datetime | float, tz: tzinfo | None) -> datetime:
    if isinstance(now, datetime):
        return now.astimezone(tz).replace(tzinfo=None) if (now.tzinfo and tz) else now.replace(tzinfo=None)
    return datetime.fromtimestamp(float(now), tz).replace(tzinfo=None)


def entry(actor: str | None, action: str, target: str | None = "", source_ip: str | None = "",
          detail: dict[str, Any] | None = None, now: datetime | float = 0.0, *,
          tz: tzinfo | None = None) -> dict[str, Any]:
    """The row for one event: fields cut to their column sizes, detail as bounded JSON text."""
    if not action:
        raise ValueError("audit action must not be empty")
    values = {"actor": actor or "", "action": action, "target": target or "", "source_ip": source_ip or ""}
    row: dict[str, Any] = {k: str(v)[: FIELD_MAX[k]] for k, v in values.items()}
    text = json.dumps(detail or {}, ensure_ascii=False, default=str, sort_keys=True)
    if len(text) > DETAIL_MAX:
        text = json.dumps({"truncated": text[: DETAIL_MAX - 40]}, ensure_ascii=False)
    row["detail"] = text
    row["at"] = _local(now, tz)
    return row


class AuditLog:
    """The audit log on the database (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, tz: tzinfo | None = None):
        self.engine = engine
        self.tz = tz  # local zone for epoch-second `now`s (None: the machine's)
        self.dropped = 0
        self._pending: set[asyncio.Future] = set()

    async def record(self, actor: str | None, action: str, target: str | None = "", source_ip: str | None = "",
                     detail: dict[str, Any] | None = None, now: datetime | float | None = None) -> None:
        if now is None:
            raise ValueError("audit record needs `now` (a datetime or epoch seconds)")
        row = entry(actor, action, target, source_ip, detail, now, tz=self.tz)
        async with self.engine.begin() as conn:
            await conn.execute(insert(audit_log).values(**row))

    def record_soon(self, actor: str | None, action: str, target: str | None = "", source_ip: str | None = "",
                    detail: dict[str, Any] | None = None, now: datetime | float | None = None) -> None:
        """`record` from code that is not a coroutine: scheduled on the running loop, never raises."""
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("audit log: %d events dropped (more than %d waiting)", self.dropped, MAX_PENDING)
            return
        try:
            future = asyncio.ensure_future(self.record(actor, action, target, source_ip, detail, now))
        except RuntimeError:  # no running loop (a test or a command without one)
            log.warning("audit log: no running loop, %s by %r not recorded", action, actor)
            return
        self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("audit log: write failed: %s", future.exception())

    async def flush(self) -> None:
        """Wait for the writes `record_soon` scheduled (tests, shutdown)."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def query(self, *, actor: str | None = None, action: str | None = None, since: datetime | None = None,
                    limit: int = 50, offset: int = 0) -> tuple[list[AuditEntry], int]:
        """Newest first, with the total count of matching rows (for paging)."""
        where = []
        if actor:
            where.append(audit_log.c.actor == actor)
        if action:
            where.append(audit_log.c.action == action)
        if since is not None:
            where.append(audit_log.c.at >= since)
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(audit_log).where(*where))).scalar_one()
            rows = (await conn.execute(
                select(audit_log).where(*where).order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
                .limit(limit).offset(offset)
            )).all()
        out = []
        for r in rows:
            try:
                detail = json.loads(r.detail)
            except ValueError:
                detail = {"text": r.detail}
            out.append(AuditEntry(r.id, r.at, r.actor, r.action, r.target, r.source_ip, detail))
        return out, total

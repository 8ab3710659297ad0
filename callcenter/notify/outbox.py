"""The SMS outbox: `sms_outbox` and `sms_opt_outs` tables and every read and write on them.

A message enters with `enqueue_sms` on the caller's connection, so it commits or rolls back
with the case change that caused it. Its `dedupe_key` is unique: queueing the same
notification again (a retried request, a replayed event) is a no-op. Life of a message:

    queued ──claim──▶ sending ──driver ok──▶ sent ──DLR──▶ delivered
       ▲                 │                     └────DLR──▶ failed
       └──retry/defer────┤──attempts used up / permanent error──▶ failed
                         └──number opted out (退订)──▶ suppressed

Claims are one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`, so two
nodes on PostgreSQL never take the same row; a claim left by a dead node expires after a
lease and the message is queued again.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from case_core.adapters.orm import metadata
from callcenter.notify.encoding import layout
from callcenter.notify.policy import mobile_number
from callcenter.notify.settings import NotifySettings
from callcenter.notify.templates import SmsTemplates, TemplateError

__all__ = [
    "sms_outbox", "sms_opt_outs", "STATUSES", "OutboxMessage",
    "enqueue_sms", "claim_due", "requeue_stale", "mark_sent", "mark_retry", "mark_failed",
    "mark_suppressed", "defer", "apply_dlr", "recent_sends", "opt_out", "opt_in", "is_opted_out",
    "list_messages", "get_message", "DLR_CODES", "handling_result", "enqueue_for_event",
]

log = logging.getLogger(__name__)

STATUSES = ("queued", "sending", "sent", "delivered", "failed", "suppressed")

sms_outbox = Table(
    "sms_outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("to_number", String(32), nullable=False),
    Column("template", String(32), nullable=False),
    Column("event", String(64), nullable=False, default=""),
    Column("case_number", String(32)),
    Column("text", Text, nullable=False),
    Column("encoding", String(8), nullable=False),
    Column("parts", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=False), nullable=False),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Column("updated_at", DateTime(timezone=False), nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_at", DateTime(timezone=False)),
    Column("sent_at", DateTime(timezone=False)),
    Column("delivered_at", DateTime(timezone=False)),
    Column("last_error", Text),
    Column("gateway_id", String(128)),
    # Secret the gateway echoes in the delivery-report URL, so no one else can fake a report.
    Column("dlr_token", String(32), nullable=False),
    Column("dlr_status", Integer),
)
Index("ix_sms_outbox_due", sms_outbox.c.status, sms_outbox.c.next_attempt_at)
Index("ix_sms_outbox_to_number_sent_at", sms_outbox.c.to_number, sms_outbox.c.sent_at)
Index("ix_sms_outbox_case_number", sms_outbox.c.case_number)

sms_opt_outs = Table(
    "sms_opt_outs",
    metadata,
    Column("number", String(32), primary_key=True),
    Column("at", DateTime(timezone=False), nullable=False),
    # "reply" (the citizen texted 退订), "cli", "web".
    Column("source", String(16), nullable=False),
)

# Kannel delivery-report bits (dlr-mask=31): 1 delivered, 2 undelivered, 4 buffered at the
# SMSC, 8 accepted by the SMSC, 16 rejected by the SMSC.
DLR_CODES = {1: "delivered", 2: "undelivered", 4: "buffered", 8: "smsc accepted", 16: "smsc rejected"}


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    dedupe_key: str
    to_number: str
    template: str
    event: str
    case_number: str | None
    text: str
    encoding: str
    parts: int
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    gateway_id: str | None
    dlr_token: str
    dlr_status: int | None

    def as_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "dlr_token"}
        for k, v in out.items():
            if isinstance(v, datetime):
                out[k] = v.isoformat()
        return out


def _message(row) -> OutboxMessage:
    m = row._mapping
    return OutboxMessage(**{k: m[k] for k in OutboxMessage.__dataclass_fields__})


def _insert(conn: AsyncConnection):
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _fit(text: str, max_parts: int) -> str:
    """Cut a text that would need more than `max_parts` SMS (a very long result), marking the cut."""
    if layout(text).count <= max_parts:
        return text
    text = text[: max_parts * 153]
    while text and layout(text + "…").count > max_parts:
        text = text[:-1]
    return text + "…"


async def enqueue_sms(
    conn: AsyncConnection,
    *,
    to: str | None,
    template: str,
    context: Mapping[str, Any],
    case_number: str | None,
    event: str,
    now: datetime,
    dedupe_key: str,
    templates: SmsTemplates | None = None,
    settings: NotifySettings | None = None,
) -> int | None:
    """Queue one SMS in the caller's transaction; return its id (the existing one for a repeat).

    Returns None, queueing nothing, for an anonymous reporter or a number that cannot take
    SMS (landline). A template that fails to render never fails the case change: the row is
    stored as `failed` with the error, for staff to see.
    """
    number = mobile_number(to)
    if number is None:
        log.debug("sms %s not queued: %r is not a mobile number", dedupe_key, to)
        return None
    settings = settings or NotifySettings()
    templates = templates or SmsTemplates(settings.templates_path(), max_parts=settings.max_parts)
    values = {"signature": settings.signature, "hotline": settings.hotline, "case_number": case_number or "", **context}
    status, error = "queued", None
    try:
        text = _fit(templates.render(template, values), settings.max_parts)
    except TemplateError as exc:
        text, status, error = "", "failed", f"template: {exc}"
        log.error("sms %s not sendable: %s", dedupe_key, exc)
    if status == "queued" and await is_opted_out(conn, number):
        status, error = "suppressed", "opted out (退订)"
    lay = layout(text)
    stmt = (
        _insert(conn)(sms_outbox)
        .values(
            dedupe_key=dedupe_key,
            to_number=number,
            template=template,
            event=event,
            case_number=case_number,
            text=text,
            encoding=lay.encoding,
            parts=lay.count,
            status=status,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
            last_error=error,
            dlr_token=secrets.token_hex(12),
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(sms_outbox.c.id)
    )
    new_id = (await conn.execute(stmt)).scalar()
    if new_id is not None:
        return new_id
    return (await conn.execute(select(sms_outbox.c.id).where(sms_outbox.c.dedupe_key == dedupe_key))).scalar_one()


async def claim_due(conn: AsyncConnection, *, now: datetime, node: str, limit: int) -> list[OutboxMessage]:
    """Take up to `limit` due queued messages for this node (status → sending), oldest first."""
    due = (
        select(sms_outbox.c.id)
        .where(sms_outbox.c.status == "queued", sms_outbox.c.next_attempt_at <= now)
        .order_by(sms_outbox.c.next_attempt_at, sms_outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(sms_outbox)
        .where(sms_outbox.c.id.in_(due.scalar_subquery()), sms_outbox.c.status == "queued")
        .values(status="sending", claimed_by=node, claimed_at=now, updated_at=now)
        .returning(*sms_outbox.c)
    )
    rows = (await conn.execute(stmt)).all()
    return sorted((_message(r) for r in rows), key=lambda m: (m.next_attempt_at, m.id))


async def requeue_stale(conn: AsyncConnection, *, now: datetime, lease: timedelta) -> int:
    """Queue again messages whose claim outlived the lease (the node died mid-send)."""
    result = await conn.execute(
        update(sms_outbox)
        .where(sms_outbox.c.status == "sending", sms_outbox.c.claimed_at < now - lease)
        .values(status="queued", claimed_by=None, updated_at=now, last_error="claim expired; retrying")
    )
    return result.rowcount or 0


def _owned(msg_id: int, node: str | None):
    cond = [sms_outbox.c.id == msg_id, sms_outbox.c.status == "sending"]
    if node is not None:
        cond.append(sms_outbox.c.claimed_by == node)
    return cond


async def mark_sent(conn, msg_id: int, *, now: datetime, gateway_id: str | None, node: str | None = None) -> bool:
    result = await conn.execute(
        update(sms_outbox).where(*_owned(msg_id, node)).values(
            status="sent", sent_at=now, updated_at=now, gateway_id=gateway_id,
            attempts=sms_outbox.c.attempts + 1, last_error=None,
        )
    )
    return bool(result.rowcount)


async def mark_retry(conn, msg_id: int, *, now: datetime, at: datetime, error: str, node: str | None = None) -> bool:
    result = await conn.execute(
        update(sms_outbox).where(*_owned(msg_id, node)).values(
            status="queued", next_attempt_at=at, updated_at=now, last_error=error[:2000],
            attempts=sms_outbox.c.attempts + 1, claimed_by=None,
        )
    )
    return bool(result.rowcount)


async def mark_failed(conn, msg_id: int, *, now: datetime, error: str, attempted: bool = True,
                      node: str | None = None) -> bool:
    values: dict[str, Any] = {"status": "failed", "updated_at": now, "last_error": error[:2000]}
    if attempted:
        values["attempts"] = sms_outbox.c.attempts + 1
    result = await conn.execute(update(sms_outbox).where(*_owned(msg_id, node)).values(**values))
    return bool(result.rowcount)


async def mark_suppressed(conn, msg_id: int, *, now: datetime, reason: str, node: str | None = None) -> bool:
    result = await conn.execute(
        update(sms_outbox).where(*_owned(msg_id, node)).values(status="suppressed", updated_at=now, last_error=reason)
    )
    return bool(result.rowcount)


async def defer(conn, msg_id: int, *, now: datetime, until: datetime, reason: str, node: str | None = None) -> bool:
    """Put a claimed message back without counting an attempt (rate limit, quiet hours)."""
    result = await conn.execute(
        update(sms_outbox).where(*_owned(msg_id, node)).values(
            status="queued", next_attempt_at=until, updated_at=now, last_error=reason, claimed_by=None,
        )
    )
    return bool(result.rowcount)


async def apply_dlr(conn: AsyncConnection, msg_id: int, token: str, code: int, *, now: datetime,
                    smsc_id: str | None = None) -> str | None:
    """Apply a gateway delivery report; the message's new status, or None if id/token do not match.

    Reports only move a message forward: a late "accepted" never undoes "delivered". A report
    for a message still queued or sending (the node died after the gateway took it) marks it
    sent, so it is not sent again.
    """
    # Read, decide, then write only if the status is still the one read: Kannel may post two
    # reports for one message at the same instant (8 "submitted" and 1 "delivered"), and on
    # PostgreSQL the later-committing one must not put "sent" back over "delivered".
    for _attempt in range(10):
        row = (await conn.execute(select(sms_outbox).where(sms_outbox.c.id == msg_id))).first()
        if row is None or not secrets.compare_digest(row.dlr_token, token):
            return None
        status = row.status
        values: dict[str, Any] = {"dlr_status": code, "updated_at": now}
        if smsc_id and not row.gateway_id:
            values["gateway_id"] = smsc_id[:128]
        undelivered = code & (2 | 16)
        if status in ("queued", "sending", "sent"):
            if code & 1:
                values.update(status="delivered", delivered_at=now)
            elif undelivered:
                values.update(status="failed",
                              last_error=f"delivery report: {DLR_CODES[undelivered & -undelivered]} ({code})")
            elif code & (4 | 8) and status != "sent":
                values.update(status="sent")
            if values.get("status") in ("sent", "delivered", "failed") and row.sent_at is None:
                values["sent_at"] = now
        result = await conn.execute(update(sms_outbox).where(
            sms_outbox.c.id == msg_id, sms_outbox.c.status == status).values(**values))
        if result.rowcount:
            return values.get("status", status)
    return None


async def recent_sends(conn, number: str, *, since: datetime) -> list[datetime]:
    rows = await conn.execute(
        select(sms_outbox.c.sent_at).where(sms_outbox.c.to_number == number, sms_outbox.c.sent_at > since)
    )
    return [r[0] for r in rows]


async def opt_out(conn, number: str, *, now: datetime, source: str) -> str:
    """Stop all SMS to `number` (退订); queued ones are suppressed. Returns the normalised number."""
    n = mobile_number(number)
    if n is None:
        raise ValueError(f"{number!r} is not a mobile number")
    await conn.execute(
        _insert(conn)(sms_opt_outs).values(number=n, at=now, source=source).on_conflict_do_nothing(index_elements=["number"])
    )
    await conn.execute(
        update(sms_outbox)
        .where(sms_outbox.c.to_number == n, sms_outbox.c.status == "queued")
        .values(status="suppressed", updated_at=now, last_error="opted out (退订)")
    )
    return n


async def opt_in(conn, number: str) -> bool:
    n = mobile_number(number)
    if n is None:
        raise ValueError(f"{number!r} is not a mobile number")
    return bool((await conn.execute(delete(sms_opt_outs).where(sms_opt_outs.c.number == n))).rowcount)


async def is_opted_out(conn, number: str) -> bool:
    found = await conn.execute(select(func.count()).select_from(sms_opt_outs).where(sms_opt_outs.c.number == number))
    return bool(found.scalar())


async def get_message(conn, msg_id: int) -> OutboxMessage | None:
    row = (await conn.execute(select(sms_outbox).where(sms_outbox.c.id == msg_id))).first()
    return _message(row) if row is not None else None


async def list_messages(conn, *, status: str | None = None, case_number: str | None = None,
                        to: str | None = None, limit: int = 50) -> list[OutboxMessage]:
    stmt = select(sms_outbox).order_by(sms_outbox.c.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(sms_outbox.c.status == status)
    if case_number:
        stmt = stmt.where(sms_outbox.c.case_number == case_number)
    if to:
        stmt = stmt.where(sms_outbox.c.to_number == (mobile_number(to) or to))
    return [_message(r) for r in (await conn.execute(stmt)).all()]


def handling_result(state: Any) -> str:
    """The department's 处置结果: the `result` of the latest `report_done` in the case history."""
    for entry in reversed(tuple(getattr(state, "history", ()) or ())):
        if entry.action == "report_done" and str(entry.fields.get("result") or "").strip():
            return str(entry.fields["result"]).strip()
    return ""


async def enqueue_for_event(
    conn: AsyncConnection,
    event: Any,
    *,
    reporter_phone: str | None,
    now: datetime,
    templates: SmsTemplates | None = None,
    settings: NotifySettings | None = None,
    state: Any = None,
) -> int | None:
    """Queue the SMS a case event calls for (see templates.EVENT_TEMPLATES), if any.

    `event` is a `case_core.domain.workflow.CaseEvent`, `state` the case after it (a
    `CaseState` with its history): closing carries no result of its own, so the 办结 text
    takes the department's 处置结果 from the latest `report_done` in the history. The
    dedupe key is case, event and case version, so the same change never texts twice while
    a later decline (after a reopen) still does.
    """
    from callcenter.notify.templates import EVENT_TEMPLATES

    template = EVENT_TEMPLATES.get(event.name)
    if template is None:
        return None
    fields = dict(event.fields or {})
    context = {k: str(fields[k]).strip() for k in ("reason", "result") if fields.get(k) is not None}
    if not context.get("result") and state is not None:
        context["result"] = handling_result(state)
    context.setdefault("reason", "")
    context["result"] = context.get("result") or "已按规定处置完毕"
    return await enqueue_sms(
        conn,
        to=reporter_phone,
        template=template,
        context=context,
        case_number=event.case_number,
        event=event.name,
        now=now,
        dedupe_key=f"{event.case_number}:{event.name}:v{event.version}",
        templates=templates,
        settings=settings,
    )

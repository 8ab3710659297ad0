"""Follow-up calls (回访) and scheduled callbacks: their table, and the dialer that drives the
pure scheduler (`callcenter.callbacks.scheduler`).

A follow-up is requested inside the transaction that closes a case (the repository's change
hook), so none is lost or doubled. The dialer loads open callbacks at start (an attempt that
was dialling when the process died counts as failed and is retried by the policy), picks up
new ones every few seconds, places calls through the trunk, runs the satisfaction survey on
answered follow-ups, and stores each attempt and the result on the case.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, time, timedelta
from typing import Any, Awaitable, Callable

from sqlalchemy import Column, DateTime, Index, String, Table, Text, select, update
from sqlalchemy.dialects import postgresql, sqlite

from callcenter.callbacks import scheduler as cbs
from case_core.adapters.orm import metadata

log = logging.getLogger(__name__)

callbacks_table = Table(
    "callbacks",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),  # queue | scheduled | follow_up
    Column("number", String(64), nullable=False),
    Column("case_number", String(32)),
    Column("agent", String(64)),
    # new (requested, not yet scheduled) | pending | dialing | answered | failed | cancelled
    Column("status", String(16), nullable=False),
    Column("due_at", DateTime(timezone=False)),
    Column("rank_at", DateTime(timezone=False)),
    Column("deadline", DateTime(timezone=False)),
    Column("attempts_json", Text, nullable=False, default="[]"),
    Column("result", String(32)),  # survey answer or failure reason
    Column("created_at", DateTime(timezone=False), nullable=False),
    Column("updated_at", DateTime(timezone=False), nullable=False),
)
Index("ix_callbacks_status", callbacks_table.c.status)

# Case events after which the reporter gets a follow-up call.
FOLLOW_UP_EVENTS = ("CaseClosed", "CaseAnsweredDirectly")
SURVEY_ANSWERS = ("satisfied", "basically_satisfied", "dissatisfied")


async def request_follow_up(conn, state, events) -> None:
    """Change hook: queue a follow-up call when a case with a reporter's number closes."""
    for event in events:
        if event.name not in FOLLOW_UP_EVENTS or not state.reporter_phone:
            continue
        now = event.at
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(callbacks_table)
        await conn.execute(
            insert.values(
                id=f"follow_up:{state.number}:v{event.version}",
                kind="follow_up",
                number=state.reporter_phone,
                case_number=state.number,
                status="new",
                attempts_json="[]",
                created_at=now,
                updated_at=now,
            ).on_conflict_do_nothing(index_elements=["id"])
        )


def _attempts_to_json(attempts) -> str:
    return json.dumps(
        [
            {
                "number": a.number,
                "started_at": a.started_at.isoformat(),
                "outcome": a.outcome,
                "ended_at": a.ended_at.isoformat() if a.ended_at else None,
            }
            for a in attempts
        ]
    )


def _attempts_from_json(text: str) -> tuple:
    out = []
    for a in json.loads(text or "[]"):
        out.append(
            cbs.Attempt(
                a["number"],
                datetime.fromisoformat(a["started_at"]),
                a.get("outcome"),
                datetime.fromisoformat(a["ended_at"]) if a.get("ended_at") else None,
            )
        )
    return tuple(out)


def parse_hours(text: str) -> tuple[tuple[time, time], ...]:
    """"08:30-12:00,13:30-20:00" → ((08:30, 12:00), (13:30, 20:00))."""
    periods = []
    for part in text.split(","):
        start, end = part.strip().split("-")
        periods.append((time.fromisoformat(start.strip()), time.fromisoformat(end.strip())))
    return tuple(periods)


class FollowUpDialer:
    """Owns the scheduler state in memory, mirrored row by row in `callbacks`."""

    Error = cbs.CallbackError  # what `request` and the changes raise when refused (web.ports.CallbackDialer)

    def __init__(
        self,
        *,
        engine,
        scheduler: cbs.CallbackScheduler,
        router,
        service,
        clock,
        now_dt: Callable[[], datetime],
        spawn: Callable[[Awaitable[Any]], Any],
        poll_s: float = 5.0,
    ):
        self.engine = engine
        self.scheduler = scheduler
        self.router = router
        self.service = service
        self.clock = clock
        self.now_dt = now_dt
        self.spawn = spawn
        self.poll_s = poll_s
        self.state = cbs.SchedulerState()
        self._timer = None
        self._poller = None
        self._busy = False
        self.calls: dict[str, Any] = {}  # callback id → live outbound Call

    # -- start-up and polling ------------------------------------------------------------
    async def start(self) -> None:
        now = self.now_dt()
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(callbacks_table).where(callbacks_table.c.status.in_(("pending", "dialing")))
                )
            ).all()
        for row in rows:
            cb = cbs.Callback(
                id=row.id,
                kind=row.kind,
                number=row.number,
                due_at=row.due_at or now,
                rank=row.rank_at or row.created_at,
                status="pending",
                case_number=row.case_number,
                agent=row.agent,
                deadline=row.deadline,
                attempts=_attempts_from_json(row.attempts_json),
            )
            if row.status == "dialing" and cb.attempts and cb.attempts[-1].outcome is None:
                # The process died during this attempt: it counts, as a failed one, and the
                # retry keeps the policy's spacing (the citizen's phone may just have rung).
                last = replace(cb.attempts[-1], outcome="failed", ended_at=now)
                retry_at = now + self.scheduler.policy.retry_spacing["failed"]
                cb = replace(cb, attempts=cb.attempts[:-1] + (last,), due_at=retry_at)
            self.state = self.state.with_callback(cb)
        if rows:
            log.info("follow-up dialer: %d open callback(s) resumed", len(rows))
        await self.poll()

    async def poll(self) -> None:
        """Schedule callbacks requested since the last look (by any node's case changes)."""
        self._poller = None
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(select(callbacks_table).where(callbacks_table.c.status == "new"))).all()
            for row in rows:
                if row.id not in self.state.callbacks:
                    await self._step(
                        cbs.CallbackRequested(row.id, row.kind, row.number, case_number=row.case_number, agent=row.agent)
                    )
            if not rows:
                await self._step(cbs.Tick())
        except Exception:
            log.exception("follow-up dialer: polling failed")
        self._poller = self.clock.callLater(self.poll_s, lambda: self.spawn(self.poll()))

    # -- requests from the desk (agents schedule, reschedule, cancel, call now) ---------------
    async def request(self, *, kind: str, number: str, due_at: datetime | None = None,
                      case_number: str | None = None, agent: str | None = None) -> str:
        """Schedule a callback; returns its id. `scheduled` ones ring `agent` first (preview)."""
        import uuid

        callback_id = f"{kind}:{uuid.uuid4().hex[:12]}"
        now = self.now_dt()
        async with self.engine.begin() as conn:
            await conn.execute(
                callbacks_table.insert().values(
                    id=callback_id, kind=kind, number=number, case_number=case_number, agent=agent,
                    status="new", due_at=due_at, attempts_json="[]", created_at=now, updated_at=now,
                )
            )
        await self._step(
            cbs.CallbackRequested(callback_id, kind, number, case_number=case_number, due_at=due_at, agent=agent)
        )
        if callback_id not in self.state.callbacks:
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(callbacks_table).where(callbacks_table.c.id == callback_id)
                    .values(status="failed", result="refused")
                )
            raise cbs.CallbackError(f"callback for {number} refused")
        return callback_id

    async def cancel(self, callback_id: str) -> None:
        await self._step_checked(cbs.CallbackCancelled(callback_id))

    async def reschedule(self, callback_id: str, due_at: datetime) -> None:
        await self._step_checked(cbs.CallbackRescheduled(callback_id, due_at))

    async def call_now(self, callback_id: str) -> None:
        await self._step_checked(cbs.CallNow(callback_id))

    async def _step_checked(self, event) -> None:
        """Like _step, but a refused event raises CallbackError for the caller to show."""
        before = self.state
        self.state, actions = self.scheduler.step(self.state, event, self.now_dt())
        await self._save(before, self.state)
        for action in actions:
            await self._perform(action)

    async def list(self, *, limit: int = 100, status: str | None = None) -> list[dict]:
        query = select(callbacks_table).order_by(callbacks_table.c.updated_at.desc()).limit(limit)
        if status:
            query = query.where(callbacks_table.c.status == status)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        out = []
        for row in rows:
            item = dict(row._mapping)
            item["attempts"] = json.loads(item.pop("attempts_json") or "[]")
            out.append(item)
        return out

    async def get(self, callback_id: str) -> dict | None:
        """One stored callback as `list` gives it, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(callbacks_table).where(callbacks_table.c.id == callback_id))).first()
        if row is None:
            return None
        item = dict(row._mapping)
        item["attempts"] = json.loads(item.pop("attempts_json") or "[]")
        return item

    def stop(self) -> None:
        for t in (self._timer, self._poller):
            if t is not None and t.active():
                t.cancel()

    # -- the scheduler -----------------------------------------------------------------------
    async def _step(self, event) -> None:
        before = self.state
        try:
            self.state, actions = self.scheduler.step(self.state, event, self.now_dt())
        except cbs.CallbackError as exc:
            log.warning("follow-up dialer refused %r: %s", event, exc)
            return
        await self._save(before, self.state)
        for action in actions:
            await self._perform(action)

    async def _save(self, before, after) -> None:
        now = self.now_dt()
        changed = [cb for cid, cb in after.callbacks.items() if before.callbacks.get(cid) != cb]
        if not changed:
            return
        async with self.engine.begin() as conn:
            for cb in changed:
                await conn.execute(
                    update(callbacks_table)
                    .where(callbacks_table.c.id == cb.id)
                    .values(
                        status=cb.status,
                        due_at=cb.due_at,
                        rank_at=cb.rank,
                        deadline=cb.deadline,
                        attempts_json=_attempts_to_json(cb.attempts),
                        updated_at=now,
                    )
                )

    async def _set_result(self, callback_id: str, result: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(callbacks_table).where(callbacks_table.c.id == callback_id).values(result=result)
            )

    async def _perform(self, a) -> None:
        if isinstance(a, cbs.SetTimer):
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            if a.at is not None:
                delay = max(0.0, (a.at - self.now_dt()).total_seconds())
                self._timer = self.clock.callLater(delay, lambda: self.spawn(self._step(cbs.Tick())))
        elif isinstance(a, cbs.PlaceCall):
            self._place(a)
        elif isinstance(a, cbs.CallbackFailed):
            await self._set_result(a.callback_id, a.reason)
            cb = self.state.callbacks[a.callback_id]
            if cb.kind == "follow_up" and cb.case_number:
                await self._record_on_case(cb.case_number, "unreachable")
        elif isinstance(a, cbs.AttemptRecorded):
            log.info("callback %s attempt %d: %s", a.callback_id, a.attempt, a.outcome)

    # -- calls ------------------------------------------------------------------------------------
    def _place(self, a: cbs.PlaceCall) -> None:
        done = lambda outcome: self.spawn(self._step(cbs.CallEnded(a.callback_id, outcome)))  # noqa: E731
        if a.kind != "follow_up":
            # An agent's callback: ring the agent first (they see the case), then the citizen.
            if not self.router.place_agent_callback(a.callback_id, a.number, a.agent, on_outcome=done):
                self.clock.callLater(0, done, "failed")
            return
        variables = {"case_number": a.case_number or "", "callback_id": a.callback_id}
        call = self.router.place_ivr_call(
            number=a.number,
            flow_name="survey",
            variables=variables,
            on_outcome=lambda outcome: self.spawn(self._step(cbs.CallEnded(a.callback_id, outcome))),
            on_survey=lambda answer: self.spawn(self._survey_answered(a.callback_id, answer)),
        )
        if call is None:
            self.clock.callLater(0, lambda: self.spawn(self._step(cbs.CallEnded(a.callback_id, "failed"))))

    async def _survey_answered(self, callback_id: str, answer: str) -> None:
        await self._set_result(callback_id, answer)
        cb = self.state.callbacks.get(callback_id)
        if cb is not None and cb.case_number:
            await self._record_on_case(cb.case_number, answer)

    async def _record_on_case(self, case_number: str, satisfaction: str) -> None:
        case_id = await self.service.repo.case_id_for_number(case_number)
        if case_id is None:
            return
        try:
            await self.service.act(
                case_id,
                "follow_up",
                actor="ivr",
                role="agent",
                fields={"satisfaction": satisfaction},
                now=self.now_dt(),
            )
        except Exception as exc:  # a case already followed up, or changed meanwhile
            log.warning("follow-up result %s not stored on case %s: %s", satisfaction, case_number, exc)


def make_scheduler(settings) -> cbs.CallbackScheduler:
    from case_core.domain.calendar import WorkCalendar

    f = settings.followup
    policy = cbs.CallbackPolicy(
        calling_hours=parse_hours(f.calling_hours),
        max_concurrent=f.max_concurrent,
        max_attempts=f.max_attempts,
        retry_spacing={
            "busy": timedelta(seconds=f.busy_retry_s),
            "no_answer": timedelta(seconds=f.no_answer_retry_s),
            "failed": timedelta(seconds=f.failed_retry_s),
        },
        follow_up_delay=timedelta(seconds=f.delay_s),
        follow_up_days=f.within_workdays,
        holiday_kinds=frozenset({"follow_up"}) if f.workdays_only else frozenset(),
    )
    return cbs.CallbackScheduler(policy, WorkCalendar())



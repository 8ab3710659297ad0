"""Service layer: the commands the call center and the web use, over the repository.

Each handler takes `now` from its caller (time is a parameter) and returns plain views.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

from case_core.adapters.sqlalchemy_repo import CaseView, SqlRepository
from case_core.domain import workflow

log = logging.getLogger(__name__)

# The call center files reports as this system actor.
IVR_ACTOR = "ivr"
IVR_ROLE = "agent"


def normalize_case_number(text: str) -> str:
    """Accept a number as keyed on a phone (digits only) as well as the printed form."""
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) > 8 and "-" not in text:
        return f"{digits[:8]}-{digits[8:]}"
    return text.strip()


def _history_rows(state) -> list[dict]:
    return [
        {
            "action": h.action,
            "actor": h.actor,
            "role": h.role,
            "at": h.at,
            "comment": h.comment,
            "before_status": h.before_status,
            "after_status": h.after_status,
            "fields": dict(h.fields),
        }
        for h in state.history
    ]


class CaseService:
    def __init__(self, repo: SqlRepository, on_event: Callable[[str, dict], None] | None = None):
        self.repo = repo
        # Live notifications (web desk, wallboard); must not block.
        self.on_event = on_event or (lambda kind, data: None)

    # -- cases ------------------------------------------------------------------------------
    async def file_report(
        self,
        *,
        channel: str,
        reporter_phone: str | None,
        call_id: str | None,
        recording_ids: tuple[int, ...],
        variables: dict,
        now: datetime,
        description: str = "",
        kind: str = "report",
    ) -> str:
        """A report arrives by phone (a voice message): accept it as a new case."""
        number = await self.repo.allocate_case_number(now.date())
        state, _events = workflow.new_case(
            number=number,
            channel=channel,
            reporter_phone=reporter_phone or "",
            description=description or "来电留言（见录音）",
            category=None,
            address="",
            now=now,
            kind=kind,
            actor=IVR_ACTOR,
            role=IVR_ROLE,
        )
        view = await self.repo.create_case(
            number=number,
            history=_history_rows(state),
            now=now,
            channel=channel,
            status=state.status,
            kind=kind,
            reporter_phone=reporter_phone,
            description=description or "来电留言（见录音）",
            call_id=call_id,
            recording_ids=recording_ids,
        )
        if call_id:
            await self.repo.attach_call_recordings(call_id, view.id)
        self.on_event("case_created", {"id": view.id, "number": view.number, "channel": channel})
        return view.number

    async def lookup_case(self, number: str) -> tuple[bool, str | None]:
        view = await self.repo.find_case_by_number(normalize_case_number(number))
        return (False, None) if view is None else (True, view.status)

    async def list_cases(self, **filters) -> list[CaseView]:
        return await self.repo.list_cases(**filters)

    async def get_case(self, case_id: int) -> CaseView:
        return await self.repo.get_case(case_id)

    # -- calls and recordings -----------------------------------------------------------------
    async def call_started(self, *, call_id, direction, did, caller, now) -> None:
        await self.repo.call_started(call_id=call_id, direction=direction, did=did, caller=caller, now=now)

    async def call_answered(self, call_id: str, now: datetime) -> None:
        await self.repo.call_answered(call_id, now)

    async def call_ended(self, call_id: str, now: datetime, reason: str, ivr_path: str) -> None:
        await self.repo.call_ended(call_id, now, reason, ivr_path)

    async def recording_started(self, *, call_id: str, kind: str, path: str, channels: int, now: datetime) -> int:
        return await self.repo.add_recording(
            call_id=call_id, kind=kind, path=path, channels=channels, duration_s=0.0, now=now
        )

    async def recording_finished(self, recording_id: int, duration_s: float) -> None:
        await self.repo.update_recording(recording_id, duration_s=duration_s)

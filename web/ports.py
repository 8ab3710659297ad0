"""What the web needs from the call center, as interfaces: the web imports these, never
`callcenter`.

The composition root (`callcenter.bootstrap`) builds the implementations and hands them
to the app through its typed app keys (`web.metrics.METRICS`, …) or the `WebContext`;
tests hand in the same implementations or small fakes. The dependency points one way:
callcenter → web → case_core.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = ["CallbackDialer", "Desk", "MetricsExposition"]


@runtime_checkable
class MetricsExposition(Protocol):
    """The Prometheus text of this hotline (`callcenter.metrics.HotlineMetrics`)."""

    content_type: str  # the exposition format's Content-Type

    async def exposition(self) -> bytes:
        """The current metrics, rendered for a scrape."""
        ...


class Desk(Protocol):
    """The agent desk over the running ACD and calls (`callcenter.desk_service.DeskService`).

    `acd` (the ACD driver: `wallboard()`, `state`, `log`) and `router` (its `dialplan`) are
    still reached through; the call controller's package (issue 16 items 1-2) narrows them.
    """

    Error: type[Exception]  # raised for a refused request; `message_zh` is shown to the agent
    pause_reasons: dict[str, str]  # reason code → 中文 label (示忙原因)
    CALL_ACTIONS: Any  # the actions `call_control` takes
    acd: Any
    router: Any

    def now_dt(self) -> datetime: ...
    def status(self, username: str) -> dict | None: ...
    def set_state(self, username: str, state: str, reason: str | None = None) -> dict: ...
    def wrap_up_done(self, username: str) -> None: ...
    def listen_in(self, username: str, call_id: str) -> None: ...
    def transfer(self, username: str, call_id: str, kind: str, target: str) -> None: ...
    def consult(self, username: str, call_id: str, kind: str, target: str) -> None: ...
    def consult_complete(self, username: str, call_id: str) -> None: ...
    def consult_cancel(self, username: str, call_id: str) -> None: ...
    def call_control(self, username: str, action: str, call_id: str = "") -> dict[str, Any]: ...
    async def cases_today(self) -> dict[str, int]: ...


class CallbackDialer(Protocol):
    """Scheduled callbacks and follow-up calls (`callcenter.callbacks.dialer.FollowUpDialer`).

    `scheduler` (`policy.calling_hours`, `next_calling_time(kind, due)`) and `state.callbacks`
    (the live schedule) are read as they are.
    """

    Error: type[Exception]  # the scheduler's refusal (English text; the web words it in 中文)
    scheduler: Any
    state: Any

    def now_dt(self) -> datetime: ...
    async def request(self, *, kind: str, number: str, due_at: datetime | None = None,
                      case_number: str | None = None, agent: str | None = None) -> str: ...
    async def cancel(self, callback_id: str) -> None: ...
    async def reschedule(self, callback_id: str, due_at: datetime) -> None: ...
    async def call_now(self, callback_id: str) -> None: ...
    async def list(self, *, limit: int = 100, status: str | None = None) -> list[dict]: ...
    async def get(self, callback_id: str) -> dict | None: ...

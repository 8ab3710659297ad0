"""What the web needs from the call center, as interfaces: the web imports these, never
`callcenter`.

The composition root (`callcenter.bootstrap`) builds the implementations and hands them
to the app through its typed app keys (`web.metrics.METRICS`, …) or the `WebContext`;
tests hand in the same implementations or small fakes. The dependency points one way:
callcenter → web → case_core.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

__all__ = ["CallbackDialer", "Desk", "MetricsExposition", "QUEUE_LOG", "QueueLog", "SMS", "Sms", "TRANSCRIPTS",
           "Transcripts"]


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


class QueueLog(Protocol):
    """The stored queue log and today's series drawn from it (`callcenter.acd_store.QueueLog`)."""

    async def events_since(self, since: datetime) -> list[dict]:
        """Queue-log rows from `since` (naive local time), oldest first, as mappings."""
        ...

    async def logged_since(self, since: datetime, tz: tzinfo) -> list:
        """The same rows as the ACD's `QueueEventLogged` lines with `tz` (restored at start)."""
        ...

    def day_series(self, records: Any, day_start: datetime, now: datetime,
                   interval_s: int = 900, queue: str | None = None) -> list:
        """Per-interval offered/answered/abandoned/service level (`callcenter.acd.series`)."""
        ...


class Transcripts(Protocol):
    """Transcripts of stored recordings (`callcenter.stt.store.TranscriptStore`)."""

    async def recording(self, recording_id: int) -> Any:
        """The recording's `case_id`/`call_id`, or None when there is no such recording."""
        ...

    async def for_recording(self, recording_id: int) -> Any:
        """The recording's transcript (`to_dict()`, `segments`, `case_id`, `call_id`) or None."""
        ...

    async def for_case(self, case_id: int) -> list | None:
        """Every recording of the case with its transcript; None when the case does not exist."""
        ...

    async def search(self, text: str, *, limit: int = 50, offset: int = 0) -> list:
        """Recordings whose transcript says `text`, newest first (`to_dict()`, `case_id`, `call_id`)."""
        ...


class Sms(Protocol):
    """The SMS outbox, templates and opt-outs (`callcenter.notify.web_service.SmsWebService`).

    `opt_out`/`opt_in` raise ValueError for a string that is not a mobile number."""

    statuses: tuple[str, ...]  # an outbox message's statuses
    template_names: tuple[str, ...]
    TemplateError: type[Exception]  # a template refused on save; str() says why
    inbound_token: str  # the replies' sms-service is disabled while empty
    templates_editable: bool  # whether templates can be saved (a templates folder is set)

    async def apply_dlr(self, msg_id: int, token: str, code: int, *, now: datetime,
                        smsc_id: str | None = None) -> str | None:
        """A delivery report: the message's new status, None for an unknown id or token."""
        ...

    async def opt_out(self, number: str, *, now: datetime, source: str) -> str: ...
    async def opt_in(self, number: str) -> bool: ...
    async def list_messages(self, *, status: str | None = None, case_number: str | None = None,
                            to: str | None = None, limit: int = 50) -> list[dict[str, Any]]: ...
    def templates(self) -> list[dict[str, Any]]: ...
    def save_template(self, name: str, source: str) -> None: ...


# Set by the composition root (`callcenter.bootstrap.install_web_stores`); tests set them too.
QUEUE_LOG = web.AppKey("queue_log", QueueLog)
TRANSCRIPTS = web.AppKey("transcripts", Transcripts)
SMS = web.AppKey("sms", Sms)

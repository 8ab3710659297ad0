"""The call side's ports: what call control needs from the rest, and what it offers the ACD.

- `SipPort`: typed SIP commands on one dialog (answer, reject, hangup …), not command strings;
  `twisted_sip.SipEndpoint` implements it.
- `AcdPort`: what a call tells the ACD and asks it (the local `AcdDriver`, or a cross-node one).
- `CallControl`: what the ACD driver may do to calls — deliver an event, describe a call for
  the screen pop, place a kept-place callback. Nothing reaches into the router's calls.
- `CallServices`: the case service's call records (implemented by case_core.service).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class CallServices(Protocol):
    """What call control needs from the rest of the system (implemented by case_core.service)."""

    async def call_started(self, *, call_id: str, direction: str, did: str | None, caller: str | None, now: datetime) -> None: ...
    async def call_answered(self, call_id: str, now: datetime) -> None: ...
    async def call_ended(self, call_id: str, now: datetime, reason: str, ivr_path: str) -> None: ...
    async def recording_started(self, *, call_id: str, kind: str, path: str, channels: int, now: datetime) -> int: ...
    async def recording_finished(self, recording_id: int, duration_s: float) -> None: ...
    async def file_report(self, *, channel: str, reporter_phone: str | None, call_id: str, recording_ids: tuple[int, ...], variables: dict, now: datetime) -> str: ...
    async def lookup_case(self, number: str) -> tuple[bool, str | None]: ...


class SipPort(Protocol):
    """SIP commands for one dialog at a time, as call control uses them."""

    registrar: Any

    def ringing(self, call_id: str) -> None: ...
    def answer(self, call_id: str, sdp: bytes) -> bool | None: ...
    def reject(self, call_id: str, status: int, headers: tuple = ()) -> None: ...
    def hangup(self, call_id: str) -> None: ...
    def answer_reoffer(self, call_id: str, sdp: bytes) -> None: ...
    def invite(self, *, target_uri: str, remote: tuple[str, int], from_user: str, sdp: bytes,
               credentials: Any = None) -> str | None: ...


class AcdPort(Protocol):
    """The ACD as a call sees it. `handle` is False when the ACD refuses the event."""

    def handle(self, event) -> bool: ...
    def agents_staffed(self) -> int: ...
    def agent_extension(self, agent_id: str) -> str | None: ...
    def longest_ready(self, has_phone) -> tuple[str, str] | None: ...
    def release_consulted(self, agent_id: str) -> None: ...


@dataclass(frozen=True)
class CallInfo:
    """A snapshot of a call (not the live call): what the ACD's screen pop shows, and what the
    desk checks before it delivers an event (whose call it is, held, muted)."""

    call_id: str
    caller: str | None
    did: str
    ivr_path: tuple[str, ...] = ()
    transcript_lines: tuple[str, ...] = ()
    agent: str | None = None  # the ACD agent talking to the caller (a callback: the agent it is for)
    consult_agent: str | None = None  # the agent consulted (paused while consulted)
    callback: bool = False
    desk_held: bool = False
    muted: bool = False


class CallControl(Protocol):
    """What the ACD driver and the desk may do to calls."""

    def deliver(self, call_id: str, event) -> bool: ...
    def describe(self, call_id: str) -> CallInfo | None: ...
    def place_callback(self, call_id: str, number: str, agent_id: str, extension: str, queue: str,
                       ring_timeout_s: float) -> bool: ...

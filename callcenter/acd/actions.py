"""Actions the ACD asks the driver to perform (imperative), and the queue log record.

Contract with the driver:
- `RingAgent` → ring the extension; report `AgentAnswered` or `AgentNoAnswer`. The ACD
  also times the ring out itself (`ring_until`, via `Tick`) and then sends `StopRinging`.
- `PlaceCallback` → dial the citizen's number; when they answer, report
  `CallbackAnswered` (then `Bridge` follows), else `CallbackFailed`.
- `Bridge` → connect the caller leg to the agent. `Unbridge` → hang up the agent leg and
  give the caller hold music (a blind transfer follows).
- `Overflow` → the ACD is done with the caller; route them to the target (a `queue`
  target has already been joined by the ACD; the action is for the call's record).
- `QueueEventLogged` → append to the queue log (CDR side, statistics, CSV).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

__all__ = [
    "Action", "RingAgent", "StopRinging", "Bridge", "Unbridge", "TransferToNumber",
    "AnnouncePosition", "OfferCallback", "Overflow", "PlaceCallback", "StartWrapUp",
    "EndWrapUp", "QueueEventLogged", "LOG_KINDS",
]


@dataclass(frozen=True)
class Action:
    """Base class of everything `step` returns."""


@dataclass(frozen=True)
class RingAgent(Action):
    agent: str
    call: str
    timeout_s: float
    extension: str
    queue: str
    caller: str  # for the screen pop


@dataclass(frozen=True)
class StopRinging(Action):
    agent: str
    call: str


@dataclass(frozen=True)
class Bridge(Action):
    call: str
    agent: str


@dataclass(frozen=True)
class Unbridge(Action):
    call: str
    agent: str


@dataclass(frozen=True)
class TransferToNumber(Action):
    call: str
    number: str


@dataclass(frozen=True)
class AnnouncePosition(Action):
    """"您前面还有{position-1}位，预计等待{eta_s/60}分钟"; eta_s is None when unknown."""

    call: str
    position: int  # 1 = next in line
    eta_s: int | None  # whole minutes, in seconds


@dataclass(frozen=True)
class OfferCallback(Action):
    call: str


@dataclass(frozen=True)
class Overflow(Action):
    call: str
    target: str  # "queue:<name>", "voicemail" or "callback"
    reason: str  # max_wait | max_len | join_empty | leave_empty


@dataclass(frozen=True)
class PlaceCallback(Action):
    call: str
    number: str
    agent: str
    queue: str


@dataclass(frozen=True)
class StartWrapUp(Action):
    agent: str
    call: str
    until: _dt.datetime


@dataclass(frozen=True)
class EndWrapUp(Action):
    agent: str
    call: str


LOG_KINDS = (
    "join", "ring", "no_answer", "ring_cancelled", "connect", "abandon", "exit", "overflow",
    "callback_offer", "callback", "callback_placed", "callback_failed", "callback_expired",
    "callback_restored", "transfer", "complete", "wrap_up",
)


@dataclass(frozen=True)
class QueueEventLogged(Action):
    """One line of the queue log. `wait_s` on connect/abandon/overflow/exit, `talk_s` on
    complete/transfer, `wrap_s` on wrap_up; `detail` says the rest (reason, target...)."""

    at: _dt.datetime
    kind: str
    queue: str
    call: str
    agent: str | None = None
    caller: str | None = None
    position: int | None = None
    wait_s: float | None = None
    talk_s: float | None = None
    wrap_s: float | None = None
    detail: str | None = None

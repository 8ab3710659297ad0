"""Events the driver feeds into the ACD (past tense: things that happened).

Each event checks its own fields; whether it is allowed in the current state is the
engine's business. Times come in as `now` to `step`, never inside events.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from callcenter.acd.model import TRANSFER_KINDS, IllegalEvent

__all__ = [
    "Event", "AgentLoggedIn", "AgentLoggedOut", "AgentReady", "AgentPaused",
    "CallerJoined", "CallerAbandoned", "CallerLeft", "AgentAnswered", "AgentNoAnswer",
    "CallEnded", "WrapUpDone", "CallbackRequested", "CallbackAnswered", "CallbackFailed",
    "TransferRequested", "KeptPlace", "CallbacksRestored", "Tick",
]


def _name(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise IllegalEvent(f"{what} must be a non-empty string, got {value!r}")


@dataclass(frozen=True)
class Event:
    """Base class of everything `step` accepts."""

    def __post_init__(self) -> None:
        for name in ("agent", "call", "queue", "caller", "number", "reason", "target"):
            if name in self.__dataclass_fields__:
                _name(getattr(self, name), f"{type(self).__name__}.{name}")


@dataclass(frozen=True)
class AgentLoggedIn(Event):
    agent: str


@dataclass(frozen=True)
class AgentLoggedOut(Event):
    agent: str


@dataclass(frozen=True)
class AgentReady(Event):
    """示闲; also ends wrap-up early."""

    agent: str


@dataclass(frozen=True)
class AgentPaused(Event):
    """示忙 / 小休 with a reason (lunch, training, no_answer...)."""

    agent: str
    reason: str


@dataclass(frozen=True)
class CallerJoined(Event):
    queue: str
    call: str
    caller: str
    priority: int = 0
    skill: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        p = self.priority
        if isinstance(p, bool) or not isinstance(p, int) or p < 0:
            raise IllegalEvent(f"CallerJoined.priority must be an int ≥ 0, got {self.priority!r}")
        if self.skill is not None:
            _name(self.skill, "CallerJoined.skill")


@dataclass(frozen=True)
class CallerAbandoned(Event):
    """The caller hung up while waiting or ringing."""

    call: str


@dataclass(frozen=True)
class CallerLeft(Event):
    """The caller left on purpose (pressed a key for voicemail, cancelled a callback)."""

    call: str
    reason: str


@dataclass(frozen=True)
class AgentAnswered(Event):
    agent: str
    call: str


@dataclass(frozen=True)
class AgentNoAnswer(Event):
    """The agent's phone gave up (busy, declined, its own timeout)."""

    agent: str
    call: str


@dataclass(frozen=True)
class CallEnded(Event):
    agent: str
    call: str
    hung_up_by: str = "caller"  # caller | agent

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hung_up_by not in ("caller", "agent"):
            raise IllegalEvent(f"CallEnded.hung_up_by must be 'caller' or 'agent', "
                               f"got {self.hung_up_by!r}")


@dataclass(frozen=True)
class WrapUpDone(Event):
    """The agent saved the case form."""

    agent: str


@dataclass(frozen=True)
class CallbackRequested(Event):
    """The caller accepted the callback offer and confirmed the number; they hang up."""

    call: str
    number: str


@dataclass(frozen=True)
class CallbackAnswered(Event):
    call: str


@dataclass(frozen=True)
class CallbackFailed(Event):
    call: str
    reason: str


@dataclass(frozen=True)
class TransferRequested(Event):
    """Blind transfer by the agent on the call to an agent, a queue or an outside number."""

    agent: str
    call: str
    kind: str
    target: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in TRANSFER_KINDS:
            raise IllegalEvent(f"TransferRequested.kind must be one of {TRANSFER_KINDS}, "
                               f"got {self.kind!r}")


@dataclass(frozen=True)
class KeptPlace:
    """A kept-place callback as stored: `joined_at` is the original enqueue time (the place)."""

    call: str
    queue: str
    caller: str
    number: str
    joined_at: _dt.datetime
    requested_at: _dt.datetime
    expires_at: _dt.datetime
    priority: int = 0
    skill: str | None = None

    def __post_init__(self) -> None:
        for name in ("call", "queue", "caller", "number"):
            if name != "caller" or self.caller:
                _name(getattr(self, name), f"KeptPlace.{name}")
        for name in ("joined_at", "requested_at", "expires_at"):
            value = getattr(self, name)
            if not isinstance(value, _dt.datetime) or value.tzinfo is None:
                raise IllegalEvent(f"KeptPlace.{name} must be an aware datetime, got {value!r}")
        p = self.priority
        if isinstance(p, bool) or not isinstance(p, int) or p < 0:
            raise IllegalEvent(f"KeptPlace.priority must be an int ≥ 0, got {p!r}")


@dataclass(frozen=True)
class CallbacksRestored(Event):
    """Kept-place callbacks put back into their queues (after a restart, or for another try
    after a failed one), each at its original place: ordered by `joined_at` among the
    callers already there."""

    places: tuple[KeptPlace, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.places, tuple) or not all(isinstance(p, KeptPlace) for p in self.places):
            raise IllegalEvent("CallbacksRestored.places must be a tuple of KeptPlace")
        calls = [p.call for p in self.places]
        if len(set(calls)) != len(calls):
            raise IllegalEvent("CallbacksRestored.places names a call twice")


@dataclass(frozen=True)
class Tick(Event):
    """The timer armed from `next_deadline` fired; deadlines ≤ now are handled."""

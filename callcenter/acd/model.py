"""ACD configuration (agents, queues) and the running state `step` works on.

This module owns the plain values: what an operator configures (`AgentConfig`,
`QueueConfig`, `AcdConfig`) and what changes while calls flow (`Agent`, `QueueEntry`,
`AcdState`). Everything is a frozen dataclass; mappings are read-only views, replaced
whole on every change. No I/O, no clock.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "AcdError", "IllegalEvent", "ConfigError",
    "STRATEGIES", "AGENT_STATUSES", "ENTRY_STATUSES", "OVERFLOW_KINDS", "TRANSFER_KINDS",
    "OverflowTarget", "AgentConfig", "QueueConfig", "AcdConfig", "always_callable",
    "CallInfo", "Agent", "QueueEntry", "AcdState", "new_state",
]


class AcdError(ValueError):
    """Base of every error the ACD raises on bad input."""


class IllegalEvent(AcdError):
    """An event that is malformed, names something unknown, or is not allowed now."""


class ConfigError(AcdError):
    """The agent/queue configuration is inconsistent."""


STRATEGIES = ("longest_idle", "round_robin", "fewest_calls", "ring_all", "skills_penalty")
# `dialing` is not in the list: an agent reserved for a keep-my-place callback
# while we dial the citizen. It is neither free nor ringing, so it gets its own row.
AGENT_STATUSES = ("logged_out", "ready", "ringing", "dialing", "on_call", "wrap_up", "paused")
# waiting/ringing: caller on the line. callback/dialing: caller hung up, place kept.
ENTRY_STATUSES = ("waiting", "ringing", "callback", "dialing")
OVERFLOW_KINDS = ("queue", "voicemail", "callback")
TRANSFER_KINDS = ("agent", "queue", "number")


def _ro(mapping: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


def _check_name(value: object, what: str, error: type[AcdError] = ConfigError) -> None:
    if not isinstance(value, str) or not value:
        raise error(f"{what} must be a non-empty string, got {value!r}")


def _check_seconds(value: object, what: str, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{what} must be a number of seconds ≥ 0, got {value!r}")


@dataclass(frozen=True)
class OverflowTarget:
    """Where a caller goes when the queue will not keep them.

    `queue`: the ACD moves the caller into that queue itself. `voicemail` and `callback`
    (a scheduled callback, not a kept place) are done by the driver.
    """

    kind: str
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in OVERFLOW_KINDS:
            raise ConfigError(f"overflow kind must be one of {OVERFLOW_KINDS}, got {self.kind!r}")
        if self.kind == "queue":
            _check_name(self.name, "overflow queue name")

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind


@dataclass(frozen=True)
class AgentConfig:
    id: str
    extension: str
    skills: Mapping[str, int] = field(default_factory=dict)  # skill → level (1 = basic)

    def __post_init__(self) -> None:
        _check_name(self.id, "agent id")
        _check_name(self.extension, f"extension of agent {self.id}")
        for skill, level in dict(self.skills).items():
            _check_name(skill, f"skill of agent {self.id}")
            if isinstance(level, bool) or not isinstance(level, int) or level < 1:
                raise ConfigError(f"agent {self.id}: level of skill {skill!r} must be an int ≥ 1, "
                                  f"got {level!r}")
        object.__setattr__(self, "skills", _ro(self.skills))


@dataclass(frozen=True)
class QueueConfig:
    """One queue. Times in seconds; `None` switches a feature off."""

    name: str
    strategy: str
    members: Mapping[str, int]  # agent id → penalty (0 = first choice); order matters
    skill: str | None = None
    min_skill_level: int = 1
    max_wait_s: float | None = None
    max_len: int | None = None
    overflow: OverflowTarget = OverflowTarget("voicemail")
    join_empty: bool = True  # may callers join while no member is staffed (logged in, not paused)?
    leave_when_empty: bool = False  # send waiting callers to overflow when none is staffed
    wrap_up_s: float = 0
    ring_timeout_s: float = 15
    pause_on_no_answer: bool = True
    announce_interval_s: float | None = None
    callback_offer_after_s: float | None = None
    callback_expiry_s: float = 4 * 3600
    default_aht_s: float = 180  # ETA before any call has been handled

    def __post_init__(self) -> None:
        _check_name(self.name, "queue name")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"queue {self.name}: strategy must be one of {STRATEGIES}, "
                              f"got {self.strategy!r}")
        for agent, penalty in dict(self.members).items():
            _check_name(agent, f"member of queue {self.name}")
            if isinstance(penalty, bool) or not isinstance(penalty, int) or penalty < 0:
                raise ConfigError(f"queue {self.name}: penalty of {agent} must be an int ≥ 0, "
                                  f"got {penalty!r}")
        object.__setattr__(self, "members", _ro(self.members))
        if self.skill is not None:
            _check_name(self.skill, f"skill of queue {self.name}")
        if self.max_len is not None and (isinstance(self.max_len, bool)
                                         or not isinstance(self.max_len, int) or self.max_len < 1):
            raise ConfigError(f"queue {self.name}: max_len must be an int ≥ 1 or None, "
                              f"got {self.max_len!r}")
        for name in ("max_wait_s", "announce_interval_s", "callback_offer_after_s"):
            _check_seconds(getattr(self, name), f"queue {self.name}: {name}")
        for name in ("wrap_up_s", "callback_expiry_s", "default_aht_s"):
            _check_seconds(getattr(self, name), f"queue {self.name}: {name}", optional=False)
        ring = self.ring_timeout_s
        if isinstance(ring, bool) or not isinstance(ring, (int, float)) or ring <= 0:
            raise ConfigError(f"queue {self.name}: ring_timeout_s must be > 0, "
                              f"got {self.ring_timeout_s!r}")
        if not isinstance(self.overflow, OverflowTarget):
            raise ConfigError(f"queue {self.name}: overflow must be an OverflowTarget")


def always_callable(now: _dt.datetime) -> bool:
    """Default calling-hours predicate: callbacks may be placed at any time."""
    return True


@dataclass(frozen=True)
class AcdConfig:
    queues: Mapping[str, QueueConfig]
    agents: Mapping[str, AgentConfig]
    # When keep-my-place callbacks may be dialled; a callback whose turn comes outside
    # these hours keeps its place and lets later callers by.
    calling_hours: Callable[[_dt.datetime], bool] = always_callable

    @classmethod
    def build(cls, queues: Iterable[QueueConfig], agents: Iterable[AgentConfig],
              calling_hours: Callable[[_dt.datetime], bool] = always_callable) -> AcdConfig:
        qs: dict[str, QueueConfig] = {}
        for q in queues:
            if q.name in qs:
                raise ConfigError(f"queue {q.name} is defined twice")
            qs[q.name] = q
        ags: dict[str, AgentConfig] = {}
        for a in agents:
            if a.id in ags:
                raise ConfigError(f"agent {a.id} is defined twice")
            ags[a.id] = a
        return cls(queues=qs, agents=ags, calling_hours=calling_hours)

    def __post_init__(self) -> None:
        object.__setattr__(self, "queues", _ro(self.queues))
        object.__setattr__(self, "agents", _ro(self.agents))
        for q in self.queues.values():
            for agent in q.members:
                if agent not in self.agents:
                    raise ConfigError(f"queue {q.name}: member {agent} is not a configured agent")
            if q.overflow.kind == "queue" and q.overflow.name not in self.queues:
                raise ConfigError(f"queue {q.name}: overflow queue {q.overflow.name} "
                                  "does not exist")
        if not callable(self.calling_hours):
            raise ConfigError("calling_hours must be a predicate taking a datetime")


@dataclass(frozen=True)
class CallInfo:
    """What an agent keeps about the call it rings for or talks on."""

    call: str
    queue: str
    caller: str
    priority: int
    joined_at: _dt.datetime
    connected_at: _dt.datetime | None = None
    ended_at: _dt.datetime | None = None
    talk_s: float | None = None


@dataclass(frozen=True)
class Agent:
    id: str
    extension: str
    skills: Mapping[str, int]
    status: str = "logged_out"
    since: _dt.datetime | None = None  # when `status` began
    pause_reason: str | None = None
    call: CallInfo | None = None  # ringing/dialing/on_call/wrap_up: the call concerned
    calls_taken: int = 0
    last_call_end: _dt.datetime | None = None
    wrap_up_until: _dt.datetime | None = None

    def time_in_status_s(self, now: _dt.datetime) -> float:
        return 0.0 if self.since is None else (now - self.since).total_seconds()


@dataclass(frozen=True)
class QueueEntry:
    """One caller in a queue, on the line or (after asking for a callback) virtual."""

    call: str
    queue: str
    caller: str
    priority: int  # higher first; urgent callers jump the line
    skill: str | None
    joined_at: _dt.datetime
    seq: int  # join order, the tie-break after priority
    status: str = "waiting"
    ringing: tuple[str, ...] = ()  # agents ringing for this caller now
    ring_until: _dt.datetime | None = None
    tried: tuple[str, ...] = ()  # agents that did not answer this caller
    pinned_agent: str | None = None  # transferred to one agent: only they may take it
    callback_number: str | None = None
    callback_requested_at: _dt.datetime | None = None
    callback_expires_at: _dt.datetime | None = None
    callback_offered: bool = False
    announced: tuple[int, int | None] | None = None  # (position, eta_s) last announced
    announced_at: _dt.datetime | None = None

    @property
    def order_key(self) -> tuple[int, int]:
        return (-self.priority, self.seq)


@dataclass(frozen=True)
class AcdState:
    config: AcdConfig
    agents: Mapping[str, Agent]
    entries: Mapping[str, QueueEntry]  # call id → entry
    rr_last: Mapping[str, str] = field(default_factory=dict)  # queue → agent rung last
    recent_handle_s: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    seq: int = 0
    now: _dt.datetime | None = None  # time of the last step; time may not go back

    def __post_init__(self) -> None:
        for name in ("agents", "entries", "rr_last", "recent_handle_s"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, _ro(value))

    def queue_entries(self, queue: str) -> list[QueueEntry]:
        """The queue's entries in service order (position 1 first)."""
        return sorted((e for e in self.entries.values() if e.queue == queue),
                      key=lambda e: e.order_key)

    def position(self, call: str) -> int:
        entry = self.entries[call]
        return 1 + sum(1 for e in self.entries.values()
                       if e.queue == entry.queue and e.order_key < entry.order_key)


def new_state(config: AcdConfig, now: _dt.datetime) -> AcdState:
    """Every configured agent logged out, every queue empty."""
    agents = {a.id: Agent(id=a.id, extension=a.extension, skills=a.skills, since=now)
              for a in config.agents.values()}
    return AcdState(config=config, agents=agents, entries={}, now=now)

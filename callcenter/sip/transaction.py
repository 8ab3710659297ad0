"""SIP transaction and call (dialog usage) state machines, declared as tables.

Owns RFC 3261 §17 (with the RFC 6026 "accepted" states) for the four transaction kinds,
and the call states a UAS or UAC dialog goes through. Each table maps
(state, event) → Transition(next state, actions); `step` applies one row and raises
`IllegalTransition` for anything the table does not list. Timers A–M are stored
deadlines on a `Transaction` record; `fire` applies a row to a record at time `now`
and hands back the actions the user agent must carry out (send, pass up, report).

Interval names in `StartTimer`: "T1", "T2", "T4", "64*T1" and "32s" (Timer D).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "IllegalTransition",
    "Transition",
    "Action",
    "SendResponse",
    "Retransmit",
    "StartTimer",
    "DoubleTimer",
    "CancelTimer",
    "PassUp",
    "ReportTimeout",
    "SendAck",
    "TABLES",
    "CALL_TABLES",
    "Timing",
    "Transaction",
    "step",
    "step_call",
    "fire",
    "to_dot",
]


class IllegalTransition(LookupError):
    """An event the table has no row for in the current state."""

    def __init__(self, table: str, state: str, event: str):
        super().__init__(f"{table}: no transition for event {event!r} in state {state!r}")
        self.table, self.state, self.event = table, state, event


@dataclass(frozen=True)
class Action:
    pass


@dataclass(frozen=True)
class SendResponse(Action):
    """Send the response that came with the event and remember it for retransmission."""


@dataclass(frozen=True)
class Retransmit(Action):
    """Send again the last message this transaction sent."""


@dataclass(frozen=True)
class StartTimer(Action):
    name: str
    interval: str


@dataclass(frozen=True)
class DoubleTimer(Action):
    """Re-arm a retransmit timer at twice its last interval, capped at T2 (§17.1.2.2)."""

    name: str


@dataclass(frozen=True)
class CancelTimer(Action):
    name: str


@dataclass(frozen=True)
class PassUp(Action):
    """Give the message to the transaction user (dialog/call layer)."""


@dataclass(frozen=True)
class ReportTimeout(Action):
    """Tell the transaction user the transaction timed out (Timer B/F/H)."""


@dataclass(frozen=True)
class SendAck(Action):
    """ICT: acknowledge a non-2xx final response inside the transaction (§17.1.1.3)."""


@dataclass(frozen=True)
class Transition:
    target: str
    actions: tuple[Action, ...] = ()


def _t(target: str, *actions: Action) -> Transition:
    return Transition(target, tuple(actions))


_G, _H, _I, _J, _L = "G", "H", "I", "J", "L"

# INVITE server transaction, RFC 3261 §17.2.1 + RFC 6026 §7.1. Unlike RFC 6026 we keep
# 2xx retransmission here (the "accepted" state re-sends on Timer G) so one table holds
# every retransmission rule; the ACK for a 2xx is routed here by the UA's dialog match.
IST = {
    ("proceeding", "provisional_sent"): _t("proceeding", SendResponse()),
    ("proceeding", "request_retransmitted"): _t("proceeding", Retransmit()),
    ("proceeding", "success_sent"): _t(
        "accepted", SendResponse(), StartTimer(_G, "T1"), StartTimer(_H, "64*T1")),
    ("proceeding", "failure_sent"): _t(
        "completed", SendResponse(), StartTimer(_G, "T1"), StartTimer(_H, "64*T1")),
    ("accepted", "request_retransmitted"): _t("accepted", Retransmit()),
    ("accepted", "timer_G"): _t("accepted", Retransmit(), DoubleTimer(_G)),
    ("accepted", "ack_received"): _t(
        "acked", CancelTimer(_G), CancelTimer(_H), StartTimer(_L, "64*T1"), PassUp()),
    ("accepted", "timer_H"): _t("terminated", CancelTimer(_G), ReportTimeout()),
    ("acked", "request_retransmitted"): _t("acked"),
    ("acked", "ack_received"): _t("acked"),
    ("acked", "timer_L"): _t("terminated"),
    ("completed", "request_retransmitted"): _t("completed", Retransmit()),
    ("completed", "timer_G"): _t("completed", Retransmit(), DoubleTimer(_G)),
    ("completed", "ack_received"): _t(
        "confirmed", CancelTimer(_G), CancelTimer(_H), StartTimer(_I, "T4")),
    ("completed", "timer_H"): _t("terminated", CancelTimer(_G), ReportTimeout()),
    ("confirmed", "request_retransmitted"): _t("confirmed"),
    ("confirmed", "ack_received"): _t("confirmed"),
    ("confirmed", "timer_I"): _t("terminated"),
}

# Non-INVITE server transaction, §17.2.2 (Timer J = 64*T1 on UDP).
NIST = {
    ("trying", "request_retransmitted"): _t("trying"),
    ("trying", "provisional_sent"): _t("proceeding", SendResponse()),
    ("trying", "final_sent"): _t("completed", SendResponse(), StartTimer(_J, "64*T1")),
    ("proceeding", "request_retransmitted"): _t("proceeding", Retransmit()),
    ("proceeding", "provisional_sent"): _t("proceeding", SendResponse()),
    ("proceeding", "final_sent"): _t("completed", SendResponse(), StartTimer(_J, "64*T1")),
    ("completed", "request_retransmitted"): _t("completed", Retransmit()),
    ("completed", "timer_J"): _t("terminated"),
}

# INVITE client transaction, §17.1.1 + RFC 6026 §7.2 (Timer M).
ICT = {
    ("calling", "timer_A"): _t("calling", Retransmit(), DoubleTimer("A")),
    ("calling", "timer_B"): _t("terminated", CancelTimer("A"), ReportTimeout()),
    ("calling", "provisional_received"): _t(
        "proceeding", CancelTimer("A"), CancelTimer("B"), PassUp()),
    ("calling", "success_received"): _t(
        "accepted", CancelTimer("A"), CancelTimer("B"), StartTimer("M", "64*T1"), PassUp()),
    ("calling", "failure_received"): _t(
        "completed", CancelTimer("A"), CancelTimer("B"), SendAck(), StartTimer("D", "32s"),
        PassUp()),
    ("proceeding", "provisional_received"): _t("proceeding", PassUp()),
    ("proceeding", "success_received"): _t("accepted", StartTimer("M", "64*T1"), PassUp()),
    ("proceeding", "failure_received"): _t(
        "completed", SendAck(), StartTimer("D", "32s"), PassUp()),
    ("accepted", "provisional_received"): _t("accepted"),
    ("accepted", "success_received"): _t("accepted", PassUp()),
    ("accepted", "failure_received"): _t("accepted"),
    ("accepted", "timer_M"): _t("terminated"),
    ("completed", "provisional_received"): _t("completed"),
    ("completed", "failure_received"): _t("completed", SendAck()),
    ("completed", "success_received"): _t("completed"),
    ("completed", "timer_D"): _t("terminated"),
}

# Non-INVITE client transaction, §17.1.2 (Timer K = T4 on UDP).
NICT = {
    ("trying", "timer_E"): _t("trying", Retransmit(), DoubleTimer("E")),
    ("trying", "timer_F"): _t("terminated", CancelTimer("E"), ReportTimeout()),
    ("trying", "provisional_received"): _t("proceeding", PassUp()),
    ("trying", "final_received"): _t(
        "completed", CancelTimer("E"), CancelTimer("F"), StartTimer("K", "T4"), PassUp()),
    ("proceeding", "timer_E"): _t("proceeding", Retransmit(), StartTimer("E", "T2")),
    ("proceeding", "timer_F"): _t("terminated", CancelTimer("E"), ReportTimeout()),
    ("proceeding", "provisional_received"): _t("proceeding", PassUp()),
    ("proceeding", "final_received"): _t(
        "completed", CancelTimer("E"), CancelTimer("F"), StartTimer("K", "T4"), PassUp()),
    ("completed", "provisional_received"): _t("completed"),
    ("completed", "final_received"): _t("completed"),
    ("completed", "timer_K"): _t("terminated"),
}

TABLES: dict[str, dict[tuple[str, str], Transition]] = {
    "ist": IST, "nist": NIST, "ict": ICT, "nict": NICT,
}
INITIAL_STATE = {"ist": "proceeding", "nist": "trying", "ict": "calling", "nict": "trying"}
# Timers armed when a transaction starts (the client ones send the request first).
INITIAL_TIMERS = {
    "ist": (), "nist": (),
    "ict": (StartTimer("A", "T1"), StartTimer("B", "64*T1")),
    "nict": (StartTimer("E", "T1"), StartTimer("F", "64*T1")),
}

# Call (dialog usage) tables. Actions are names the user agent implements one method
# each for; keeping them as names keeps this table readable as a spec.
UAS_CALL = {
    ("offered", "ring"): ("early", ("send_provisional",)),
    ("offered", "answer"): ("answered", ("send_success",)),
    ("offered", "reject"): ("ended", ("send_failure", "report_ended_local")),
    ("offered", "hangup"): ("ended", ("send_unavailable", "report_ended_local")),
    ("offered", "cancel_received"): ("ended", ("send_terminated", "report_cancelled")),
    ("offered", "bye_received"): ("ended", ("send_terminated", "report_ended_remote")),
    ("early", "ring"): ("early", ("send_provisional",)),
    ("early", "answer"): ("answered", ("send_success",)),
    ("early", "reject"): ("ended", ("send_failure", "report_ended_local")),
    ("early", "hangup"): ("ended", ("send_unavailable", "report_ended_local")),
    ("early", "cancel_received"): ("ended", ("send_terminated", "report_cancelled")),
    ("early", "bye_received"): ("ended", ("send_terminated", "report_ended_remote")),
    ("answered", "ack_received"): ("confirmed", ("report_acked",)),
    ("answered", "ack_timeout"): ("ended", ("send_bye", "report_ended_timeout")),
    ("answered", "bye_received"): ("ended", ("report_ended_remote",)),
    ("answered", "hangup"): ("ended", ("send_bye", "report_ended_local")),
    ("answered", "cancel_received"): ("answered", ()),
    ("confirmed", "ack_received"): ("confirmed", ()),
    ("confirmed", "ack_timeout"): ("ended", ("send_bye", "report_ended_timeout")),
    ("confirmed", "bye_received"): ("ended", ("report_ended_remote",)),
    ("confirmed", "hangup"): ("ended", ("send_bye", "report_ended_local")),
    ("confirmed", "cancel_received"): ("confirmed", ()),
    ("ended", "ack_received"): ("ended", ()),
    ("ended", "cancel_received"): ("ended", ()),
    # Our BYE (e.g. an unACKed call hung up by call admission) crossed the caller's BYE.
    ("ended", "bye_received"): ("ended", ()),
}

UAC_CALL = {
    ("calling", "provisional"): ("early", ("report_progressed",)),
    ("calling", "success"): ("confirmed", ("send_ack", "report_answered")),
    ("calling", "failure"): ("ended", ("report_failed",)),
    ("calling", "timeout"): ("ended", ("report_failed_timeout",)),
    ("calling", "hangup"): ("cancel_pending", ("report_ended_local",)),
    ("early", "provisional"): ("early", ("report_progressed",)),
    ("early", "success"): ("confirmed", ("send_ack", "report_answered")),
    ("early", "failure"): ("ended", ("report_failed",)),
    ("early", "timeout"): ("ended", ("report_failed_timeout",)),
    ("early", "hangup"): ("cancelling", ("send_cancel", "report_ended_local")),
    # RFC 3261 §9.1: no CANCEL before a provisional response has arrived.
    ("cancel_pending", "provisional"): ("cancelling", ("send_cancel",)),
    ("cancel_pending", "success"): ("ended", ("send_ack", "send_bye")),
    ("cancel_pending", "failure"): ("ended", ()),
    ("cancel_pending", "timeout"): ("ended", ()),
    ("cancelling", "provisional"): ("cancelling", ()),
    ("cancelling", "success"): ("ended", ("send_ack", "send_bye")),
    ("cancelling", "failure"): ("ended", ()),
    ("cancelling", "timeout"): ("ended", ()),
    ("confirmed", "success"): ("confirmed", ("send_ack",)),
    ("confirmed", "bye_received"): ("ended", ("report_ended_remote",)),
    ("confirmed", "hangup"): ("ended", ("send_bye", "report_ended_local")),
    ("ended", "success"): ("ended", ("send_ack",)),
    ("ended", "provisional"): ("ended", ()),
    ("ended", "failure"): ("ended", ()),
}

CALL_TABLES: dict[str, dict[tuple[str, str], tuple[str, tuple[str, ...]]]] = {
    "uas": UAS_CALL, "uac": UAC_CALL,
}


def step(kind: str, state: str, event: str) -> tuple[str, tuple[Action, ...]]:
    """Apply one transaction-table row: (next state, actions)."""
    row = TABLES[kind].get((state, event))
    if row is None:
        raise IllegalTransition(kind, state, event)
    return row.target, row.actions


def step_call(role: str, state: str, event: str) -> tuple[str, tuple[str, ...]]:
    """Apply one call-table row: (next state, names of actions)."""
    row = CALL_TABLES[role].get((state, event))
    if row is None:
        raise IllegalTransition(f"{role}_call", state, event)
    return row


@dataclass(frozen=True)
class Timing:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def interval(self, name: str) -> float:
        return {"T1": self.t1, "T2": self.t2, "T4": self.t4, "64*T1": 64 * self.t1,
                "32s": 32.0}[name]


@dataclass
class Transaction:
    """The mutable record of one transaction; only `fire` changes `state` and `timers`."""

    kind: str
    key: Any
    request: Any
    peer: tuple[str, int]
    state: str = ""
    last_sent: bytes | None = None
    timers: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, float] = field(default_factory=dict)
    # Callback of the transaction user for PassUp/ReportTimeout; set by the UA.
    owner: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.state:
            self.state = INITIAL_STATE[self.kind]

    @property
    def terminated(self) -> bool:
        return self.state == "terminated"

    def next_deadline(self) -> float | None:
        return min(self.timers.values()) if self.timers else None

    def due_timers(self, now: float) -> list[str]:
        return sorted((n for n, d in self.timers.items() if d <= now),
                      key=lambda n: self.timers[n])


def _apply_timer(tx: Transaction, action: Action, now: float, timing: Timing) -> None:
    if isinstance(action, StartTimer):
        iv = timing.interval(action.interval)
        tx.intervals[action.name] = iv
        tx.timers[action.name] = now + iv
    elif isinstance(action, DoubleTimer):
        iv = min(tx.intervals.get(action.name, timing.t1) * 2, timing.t2)
        tx.intervals[action.name] = iv
        tx.timers[action.name] = now + iv
    elif isinstance(action, CancelTimer):
        tx.timers.pop(action.name, None)


def start(tx: Transaction, now: float, timing: Timing) -> None:
    """Arm the timers a transaction starts with (client retransmit and timeout)."""
    for action in INITIAL_TIMERS[tx.kind]:
        _apply_timer(tx, action, now, timing)


def fire(tx: Transaction, event: str, now: float, timing: Timing) -> tuple[Action, ...]:
    """Step `tx` on `event`, update its timers; return the actions the UA must perform."""
    target, actions = step(tx.kind, tx.state, event)
    if event.startswith("timer_"):
        # The timer that fired is spent; a Double/Start action re-arms it.
        tx.timers.pop(event[len("timer_"):], None)
    tx.state = target
    out = []
    for action in actions:
        if isinstance(action, (StartTimer, DoubleTimer, CancelTimer)):
            _apply_timer(tx, action, now, timing)
        else:
            out.append(action)
    if target == "terminated":
        tx.timers.clear()
    return tuple(out)


def _label(actions: tuple[Any, ...]) -> str:
    names = []
    for a in actions:
        if isinstance(a, str):
            names.append(a)
        elif isinstance(a, (StartTimer, DoubleTimer, CancelTimer)):
            names.append(f"{type(a).__name__}({a.name})")
        else:
            names.append(type(a).__name__)
    return ", ".join(names)


def to_dot(name: str) -> str:
    """Graphviz source for a transaction table ("ist", …) or call table ("uas", "uac")."""
    lines = [f"digraph {name} {{", "  rankdir=LR;"]
    if name in TABLES:
        rows = [(s, e, t.target, t.actions) for (s, e), t in TABLES[name].items()]
    else:
        rows = [(s, e, t, a) for (s, e), (t, a) in CALL_TABLES[name].items()]
    for state, event, target, actions in rows:
        label = event + (f" / {_label(actions)}" if actions else "")
        lines.append(f'  "{state}" -> "{target}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"

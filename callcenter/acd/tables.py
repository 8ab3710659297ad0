"""The ACD's two state machines as data: agents and queue entries (callers).

Each row is (from status, trigger, guard, to status, actions emitted). Triggers are event
class names (`AgentAnswered`) or, in lower case, things the ACD itself decides
(`call_offered`) or times out (`ring_timeout`). The engine looks every transition up
here — a (status, trigger) pair with no row is an illegal event — and `render_table`
draws the docs from the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from callcenter.acd.model import AGENT_STATUSES, ENTRY_STATUSES, IllegalEvent

__all__ = ["Transition", "AGENT_TRANSITIONS", "ENTRY_TRANSITIONS", "GONE", "lookup",
           "render_table"]

GONE = "gone"  # the entry has left the queue


@dataclass(frozen=True)
class Transition:
    source: str
    trigger: str
    target: str
    guard: str | None = None
    emits: tuple[str, ...] = ()
    note: str = ""


_T = Transition
_WRAP = "wrap_up_s > 0"
_NO_WRAP = "wrap_up_s = 0"
_PAUSE = "pause_on_no_answer"
_NO_PAUSE = "not pause_on_no_answer"

AGENT_TRANSITIONS: tuple[Transition, ...] = (
    _T("logged_out", "AgentLoggedIn", "ready"),
    _T("ready", "AgentPaused", "paused"),
    _T("ready", "AgentLoggedOut", "logged_out"),
    _T("ready", "call_offered", "ringing", emits=("RingAgent", "log ring"),
       note="chosen by the queue strategy"),
    _T("ready", "callback_assigned", "dialing", emits=("PlaceCallback", "log callback_placed"),
       note="a kept-place callback's turn came"),
    _T("ringing", "AgentAnswered", "on_call",
       emits=("StopRinging (other agents)", "Bridge", "log connect")),
    _T("ringing", "AgentNoAnswer", "paused", _PAUSE, ("log no_answer",), 'reason "no_answer"'),
    _T("ringing", "AgentNoAnswer", "ready", _NO_PAUSE, ("log no_answer",)),
    _T("ringing", "ring_timeout", "paused", _PAUSE, ("StopRinging", "log no_answer"),
       'reason "no_answer"'),
    _T("ringing", "ring_timeout", "ready", _NO_PAUSE, ("StopRinging", "log no_answer")),
    _T("ringing", "ring_withdrawn", "ready", emits=("StopRinging",),
       note="caller gone, or another agent answered (ring_all)"),
    _T("ringing", "AgentPaused", "paused", emits=("StopRinging", "log ring_cancelled")),
    _T("ringing", "AgentLoggedOut", "logged_out", emits=("StopRinging", "log ring_cancelled")),
    _T("dialing", "CallbackAnswered", "on_call", emits=("Bridge", "log connect")),
    _T("dialing", "CallbackFailed", "ready", emits=("log callback_failed",)),
    _T("on_call", "CallEnded", "wrap_up", _WRAP, ("StartWrapUp", "log complete")),
    _T("on_call", "CallEnded", "ready", _NO_WRAP, ("log complete", "log wrap_up")),
    _T("on_call", "TransferRequested", "wrap_up", _WRAP,
       ("Unbridge", "TransferToNumber or rejoin", "log transfer", "StartWrapUp")),
    _T("on_call", "TransferRequested", "ready", _NO_WRAP,
       ("Unbridge", "TransferToNumber or rejoin", "log transfer", "log wrap_up")),
    _T("wrap_up", "WrapUpDone", "ready", emits=("EndWrapUp", "log wrap_up")),
    _T("wrap_up", "wrap_up_expired", "ready", emits=("EndWrapUp", "log wrap_up")),
    _T("wrap_up", "AgentReady", "ready", emits=("EndWrapUp", "log wrap_up")),
    _T("wrap_up", "AgentPaused", "paused", emits=("EndWrapUp", "log wrap_up")),
    _T("wrap_up", "AgentLoggedOut", "logged_out", emits=("EndWrapUp", "log wrap_up")),
    _T("paused", "AgentReady", "ready"),
    _T("paused", "AgentPaused", "paused", note="new reason"),
    _T("paused", "AgentLoggedOut", "logged_out"),
)

ENTRY_TRANSITIONS: tuple[Transition, ...] = (
    _T("waiting", "call_offered", "ringing", emits=("RingAgent ×1, or ×n for ring_all",)),
    _T("waiting", "CallerAbandoned", GONE, emits=("log abandon",)),
    _T("waiting", "CallerLeft", GONE, emits=("log exit",)),
    _T("waiting", "CallbackRequested", "callback", emits=("log callback",),
       note="keeps its place; the caller hangs up"),
    _T("waiting", "max_wait", GONE, emits=("Overflow", "log overflow")),
    _T("waiting", "leave_empty", GONE, "leave_when_empty", ("Overflow", "log overflow")),
    _T("waiting", "callback_offer_due", "waiting", emits=("OfferCallback", "log callback_offer")),
    _T("waiting", "position_changed", "waiting", "announce interval passed",
       ("AnnouncePosition",)),
    _T("ringing", "AgentAnswered", GONE, emits=("Bridge", "log connect")),
    _T("ringing", "no_answer", "ringing", "other agents still ringing",
       note="AgentNoAnswer or ring_timeout of one agent"),
    _T("ringing", "no_answer", "waiting", "last agent ringing",
       note="offered to the next agent at once"),
    _T("ringing", "ring_cancelled", "ringing", "other agents still ringing"),
    _T("ringing", "ring_cancelled", "waiting", "last agent ringing"),
    _T("ringing", "CallerAbandoned", GONE, emits=("StopRinging", "log abandon")),
    _T("ringing", "CallerLeft", GONE, emits=("StopRinging", "log exit")),
    _T("callback", "callback_assigned", "dialing", "within calling hours",
       ("PlaceCallback", "log callback_placed")),
    _T("callback", "callback_expired", GONE, emits=("log callback_expired",)),
    _T("callback", "CallerLeft", GONE, emits=("log exit",), note="callback cancelled"),
    _T("dialing", "CallbackAnswered", GONE, emits=("Bridge", "log connect")),
    _T("dialing", "CallbackFailed", GONE, emits=("log callback_failed",)),
)

_TABLES = {"agent": (AGENT_TRANSITIONS, AGENT_STATUSES),
           "entry": (ENTRY_TRANSITIONS, ENTRY_STATUSES)}


# (machine, status, trigger) → the matching rows, in table order: `lookup` runs on every
# transition, so it does not scan the tables.
_ROWS: dict[tuple[str, str, str], tuple[Transition, ...]] = {}
for _machine, (_rows, _) in _TABLES.items():
    for _row in _rows:
        _key = (_machine, _row.source, _row.trigger)
        _ROWS[_key] = _ROWS.get(_key, ()) + (_row,)
del _machine, _rows, _row, _key


def lookup(machine: str, who: str, status: str, trigger: str,
           guards: Mapping[str, bool] | None = None) -> Transition:
    """The row for (status, trigger) whose guard holds; `IllegalEvent` if there is none."""
    rows, _ = _TABLES[machine]
    matching = _ROWS.get((machine, status, trigger), ())
    if not matching:
        allowed = sorted({r.trigger for r in rows if r.source == status})
        raise IllegalEvent(f"{machine} {who} is {status}: {trigger} is not allowed "
                           f"(allowed: {', '.join(allowed) or 'nothing'})")
    for row in matching:
        if row.guard is None or (guards or {}).get(row.guard, False):
            return row
    raise IllegalEvent(f"{machine} {who} is {status}: no guard of {trigger} holds "
                       f"({', '.join(str(r.guard) for r in matching)})")


def render_table(machine: str = "agent") -> str:
    """The machine as a Markdown table (from, trigger, guard, to, actions), for docs."""
    if machine not in _TABLES:
        raise ValueError(f"machine must be one of {sorted(_TABLES)}, got {machine!r}")
    rows, statuses = _TABLES[machine]
    order = {s: i for i, s in enumerate(statuses)}
    lines = ["| from | trigger | guard | to | actions | note |",
             "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: order[r.source]):  # stable: keeps row order per status
        cells = (r.source, r.trigger, r.guard or "", r.target, ", ".join(r.emits), r.note)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"

"""The pure IVR interpreter: one running flow per call, `start` and `step` to `(state, actions)`.

This module owns the running instance of a flow (`IvrState`), the events the call
controller feeds in, the actions it must perform, and the per-node-type behaviour table.
It does no I/O and reads no clock: time comes in as `now`, timers go out as
`SetTimer`/`CancelTimer` and come back as `TimerFired`.

Contract with the call controller:
- Perform the returned actions in order; answer `Play` with `PlaybackFinished(play_id)`,
  `StartRecording`/`StopRecording` with `RecordingStopped`, `FileReport` with `ReportFiled`,
  `LookupCase` with `CaseLookedUp`, `Enqueue` with `QueueResult`.
- After `CallerHungUp`, keep stepping until `state.finished`: a caller who hangs up while
  recording a message still gets the report filed (the flow runs its non-audio nodes —
  branch, set, file_report — and ends at the first node that needs the caller).
- `state.finished` is true once the IVR is done with the call; `state.end_reason` says why:
  `caller_hung_up`, `answered` (an agent took the call from the queue), `transferred`, or
  the reason of the `hangup` node that ended it.
- Events that do not apply to the current node (a stale play id, a key pressed during a
  prompt that cannot be interrupted...) are ignored and produce no actions.
"""

from __future__ import annotations

import datetime as _dt
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ivr_flows.loader import (
    CASE_STATUSES,
    DTMF_DIGITS,
    SURVEY_ANSWERS,
    BranchNode,
    CollectNode,
    EnqueueNode,
    FileReportNode,
    Flow,
    HangupNode,
    LookupCaseNode,
    MenuNode,
    Node,
    OfferCallbackNode,
    PlayNode,
    RecordNode,
    SayNode,
    SetNode,
    SurveyNode,
    TransferNode,
)

__all__ = [
    "IvrEventError", "IvrState", "start", "step", "evaluate", "say_prompts",
    # events
    "Event", "PlaybackFinished", "DigitReceived", "RecordingStopped", "TimerFired",
    "CallerHungUp", "ReportFiled", "CaseLookedUp", "VariablesChanged", "QueueResult",
    # actions
    "Action", "Play", "StopPlayback", "StartRecording", "StopRecording", "SetTimer",
    "CancelTimer", "FileReport", "LookupCase", "Enqueue", "OfferCallback", "Transfer",
    "RecordSurvey", "Hangup", "Log",
]


class IvrEventError(ValueError):
    """An event or start argument from the controller is malformed."""


def _require_str(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise IvrEventError(f"{what} must be a non-empty string, got {value!r}")


def _frozen_mapping(values: object, what: str) -> Mapping[str, object]:
    if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
        raise IvrEventError(f"{what} must be a mapping with string keys, got {values!r}")
    return MappingProxyType(dict(values))


# --- events (controller → engine) --------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Base class of everything the controller feeds into `step`."""


@dataclass(frozen=True)
class PlaybackFinished(Event):
    play_id: str

    def __post_init__(self) -> None:
        _require_str(self.play_id, "play_id")


@dataclass(frozen=True)
class DigitReceived(Event):
    digit: str

    def __post_init__(self) -> None:
        if not isinstance(self.digit, str) or len(self.digit) != 1 or self.digit not in DTMF_DIGITS:
            raise IvrEventError(f"DTMF digit must be one of {DTMF_DIGITS}, got {self.digit!r}")


RECORDING_STOP_REASONS = ("digit", "silence", "max_length", "hangup")


@dataclass(frozen=True)
class RecordingStopped(Event):
    recording_id: str
    reason: str
    duration_s: float

    def __post_init__(self) -> None:
        _require_str(self.recording_id, "recording_id")
        if self.reason not in RECORDING_STOP_REASONS:
            raise IvrEventError(f"recording stop reason must be one of "
                                f"{RECORDING_STOP_REASONS}, got {self.reason!r}")
        if isinstance(self.duration_s, bool) or not isinstance(self.duration_s, (int, float)) \
                or self.duration_s < 0:
            raise IvrEventError(f"duration_s must be a number ≥ 0, got {self.duration_s!r}")


@dataclass(frozen=True)
class TimerFired(Event):
    timer_id: str

    def __post_init__(self) -> None:
        _require_str(self.timer_id, "timer_id")


@dataclass(frozen=True)
class CallerHungUp(Event):
    pass


@dataclass(frozen=True)
class ReportFiled(Event):
    case_number: str

    def __post_init__(self) -> None:
        _require_str(self.case_number, "case_number")


@dataclass(frozen=True)
class CaseLookedUp(Event):
    found: bool
    case_number: str
    status: str | None

    def __post_init__(self) -> None:
        if not isinstance(self.found, bool):
            raise IvrEventError(f"found must be a bool, got {self.found!r}")
        _require_str(self.case_number, "case_number")
        if self.status is not None and not isinstance(self.status, str):
            raise IvrEventError(f"status must be a string or None, got {self.status!r}")


@dataclass(frozen=True)
class VariablesChanged(Event):
    values: Mapping[str, object]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _frozen_mapping(self.values, "values"))


@dataclass(frozen=True)
class QueueResult(Event):
    outcome: str  # "answered" ends the IVR; anything else follows the enqueue node's map

    def __post_init__(self) -> None:
        _require_str(self.outcome, "outcome")


# --- actions (engine → controller) ------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """Base class of everything `step` asks the controller to do."""


@dataclass(frozen=True)
class Play(Action):
    play_id: str
    prompts: tuple[str, ...]
    barge_in: bool


@dataclass(frozen=True)
class StopPlayback(Action):
    pass


@dataclass(frozen=True)
class StartRecording(Action):
    recording_id: str
    max_s: float
    silence_s: float | None
    stop_digits: str
    beep: bool


@dataclass(frozen=True)
class StopRecording(Action):
    recording_id: str


@dataclass(frozen=True)
class SetTimer(Action):
    timer_id: str
    at: _dt.datetime


@dataclass(frozen=True)
class CancelTimer(Action):
    timer_id: str


@dataclass(frozen=True)
class FileReport(Action):
    channel: str
    recording_id: str | None
    variables: Mapping[str, object]


@dataclass(frozen=True)
class LookupCase(Action):
    case_number: str


@dataclass(frozen=True)
class Enqueue(Action):
    queue: str
    skill: str | None


@dataclass(frozen=True)
class OfferCallback(Action):
    queue: str


@dataclass(frozen=True)
class Transfer(Action):
    target: str


@dataclass(frozen=True)
class RecordSurvey(Action):
    answer: str  # satisfied | basically_satisfied | dissatisfied


@dataclass(frozen=True)
class Hangup(Action):
    reason: str


@dataclass(frozen=True)
class Log(Action):
    message: str


# --- state -------------------------------------------------------------------------------

# Phases of the current node: what the engine is waiting for.
IDLE, PLAYING, WAITING, COLLECTING, PROMPTING, RECORDING, AWAITING = (
    "idle", "playing", "waiting", "collecting", "prompting", "recording", "awaiting",
)


@dataclass(frozen=True)
class IvrState:
    """One call's position in a flow. Replace, never mutate."""

    flow: Flow
    node: str
    variables: Mapping[str, object]
    phase: str = IDLE
    retries: int = 0
    play_id: str | None = None
    recording_id: str | None = None
    timers: tuple[str, ...] = ()  # pending timer ids
    digits: str = ""  # collected so far by a collect node
    seq: int = 0  # source of unique play/timer/recording ids within the call
    visited: frozenset[str] = field(default_factory=frozenset)
    hung_up: bool = False
    finished: bool = False
    end_reason: str | None = None

    @property
    def current(self) -> Node:
        return self.flow.nodes[self.node]


Actions = list[Action]


# --- expressions -------------------------------------------------------------------------

_ORDER_OPS: dict[str, Callable[[object, object], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float))


def evaluate(tree: tuple, variables: Mapping[str, object]) -> object:
    """Evaluate a parsed branch condition; missing variables are None, mismatches False."""
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "var":
        return variables.get(tree[1])
    if kind == "not":
        return not evaluate(tree[1], variables)
    if kind == "and":
        return bool(evaluate(tree[1], variables)) and bool(evaluate(tree[2], variables))
    if kind == "or":
        return bool(evaluate(tree[1], variables)) or bool(evaluate(tree[2], variables))
    if kind == "cmp":
        op, left, right = tree[1], evaluate(tree[2], variables), evaluate(tree[3], variables)
        if op == "==":
            return left == right
        if op == "!=":
            return left != right
        comparable = (_is_number(left) and _is_number(right)) or (
            isinstance(left, str) and isinstance(right, str))
        return comparable and _ORDER_OPS[op](left, right)
    raise ValueError(f"unknown expression node {kind!r}")  # pragma: no cover - loader bug


# --- say: values → prompt names ----------------------------------------------------------

_UNITS = ((1000, "num_thousand"), (100, "num_hundred"), (10, "num_ten"), (1, None))


def _section(n: int, leading: bool) -> list[str]:
    """0 < n < 10000 in Chinese; `leading` drops the 一 of a leading 十 (十五, not 一十五)."""
    out: list[str] = []
    started = zero_pending = False
    for unit_value, unit_name in _UNITS:
        d = n // unit_value % 10
        if d == 0:
            zero_pending = started
            continue
        if zero_pending:
            out.append("num_0")
            zero_pending = False
        if not (leading and not started and unit_name == "num_ten" and d == 1):
            out.append(f"num_{d}")
        if unit_name:
            out.append(unit_name)
        started = True
    return out


def _cardinal(n: int) -> list[str]:
    if n == 0:
        return ["num_0"]
    if n >= 100_000_000:
        return [f"digit_{c}" for c in str(n)]
    high, low = divmod(n, 10_000)
    out: list[str] = []
    if high:
        out += _section(high, leading=True) + ["num_ten_thousand"]
        if 0 < low < 1000:
            out.append("num_0")
    if low:
        out += _section(low, leading=not high)
    return out


def _as_date(value: object) -> _dt.date:
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        return _dt.date.fromisoformat(value[:10])
    raise ValueError(f"not a date: {value!r}")


def say_prompts(kind: str, value: object) -> tuple[str, ...]:
    """Expand a value into prompt names; ValueError if it cannot be said this way."""
    if kind == "digits":
        text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        names = tuple(f"digit_{c}" for c in text if c.isascii() and c.isdigit())
        if not names:
            raise ValueError(f"no digits to say in {value!r}")
        return names
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError(f"not a number: {value!r}")
        try:
            n = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise ValueError(f"not a whole number: {value!r}") from None
        if n < 0:
            raise ValueError(f"negative numbers are not spoken: {value!r}")
        return tuple(_cardinal(n))
    if kind == "date":
        d = _as_date(value)
        year = [f"num_{c}" for c in f"{d.year:04d}"]
        return tuple(year + ["unit_year"] + _cardinal(d.month) + ["unit_month"]
                     + _cardinal(d.day) + ["unit_day"])
    if kind == "case_status":
        return (f"status_{value}" if value in CASE_STATUSES else "status_unknown",)
    raise ValueError(f"unknown say kind {kind!r}")


# --- helpers ----------------------------------------------------------------------------


def _new_id(state: IvrState, kind: str) -> tuple[IvrState, str]:
    seq = state.seq + 1
    return replace(state, seq=seq), f"{kind}:{state.node}:{seq}"


def _play(state: IvrState, prompts: tuple[str, ...], barge_in: bool, out: Actions,
          phase: str = PLAYING) -> IvrState:
    state, play_id = _new_id(state, "play")
    out.append(Play(play_id, tuple(prompts), barge_in))
    return replace(state, phase=phase, play_id=play_id)


def _set_timer(state: IvrState, seconds: float, now: _dt.datetime, out: Actions) -> IvrState:
    state, timer_id = _new_id(state, "timer")
    out.append(SetTimer(timer_id, now + _dt.timedelta(seconds=seconds)))
    return replace(state, timers=state.timers + (timer_id,))


def _quiet(state: IvrState, out: Actions) -> IvrState:
    """Stop what the current node started (prompt, timers) before moving on or retrying."""
    if state.phase in (PLAYING, PROMPTING) and state.play_id is not None:
        out.append(StopPlayback())
    out.extend(CancelTimer(t) for t in state.timers)
    return replace(state, play_id=None, timers=())


def _with_vars(state: IvrState, **values: object) -> IvrState:
    return replace(state, variables=MappingProxyType({**state.variables, **values}))


def _finish(state: IvrState, reason: str, out: Actions) -> IvrState:
    out.extend(CancelTimer(t) for t in state.timers)
    return replace(state, finished=True, end_reason=reason, phase=IDLE, play_id=None,
                   timers=())


def _goto(state: IvrState, target: str, now: _dt.datetime, out: Actions,
          carry_digit: str | None = None) -> IvrState:
    state = _quiet(state, out)
    return _enter(state, target, now, out, carry_digit)


# Node types that do not need the caller on the line: they still run after a hang-up, so a
# recorded message gets filed.
_RUN_AFTER_HANGUP = (BranchNode, SetNode, FileReportNode)
_MAX_HOPS = 200  # instant nodes in a row; the loader rejects instant loops, this is a guard


def _enter(state: IvrState, node_id: str, now: _dt.datetime, out: Actions,
           carry_digit: str | None = None, hops: int = 0) -> IvrState:
    if hops > _MAX_HOPS:
        raise RuntimeError(f"flow {state.flow.name!r} loops without waiting at {node_id!r}")
    node = state.flow.nodes[node_id]
    returning = node_id in state.visited
    state = replace(state, node=node_id, phase=IDLE, retries=0, play_id=None,
                    recording_id=None, digits="", visited=state.visited | {node_id})
    if state.hung_up and not isinstance(node, _RUN_AFTER_HANGUP):
        return _finish(state, "caller_hung_up", out)
    handler = _ENTER[type(node)]
    return handler(state, node, now, out, carry_digit=carry_digit, returning=returning,
                   hops=hops)


# --- per-type behaviour: entering ---------------------------------------------------------


def _enter_play(state, node: PlayNode, now, out, **_):
    return _play(state, node.prompts, node.barge_in, out)


def _enter_input(state, node, now, out, carry_digit=None, returning=False, **_):
    if carry_digit is not None:
        state = replace(state, phase=WAITING)
        return _INPUT_DIGIT[type(node)](state, node, carry_digit, now, out)
    prompts = node.retry_prompts() if returning else node.prompts
    return _play(state, prompts, node.barge_in, out)


def _enter_record(state, node: RecordNode, now, out, **_):
    if node.prompts:
        return _play(state, node.prompts, False, out, phase=PROMPTING)
    return _start_recording(state, node, out)


def _start_recording(state: IvrState, node: RecordNode, out: Actions) -> IvrState:
    state, rec_id = _new_id(state, "rec")
    out.append(StartRecording(rec_id, node.max_s, node.silence_s, node.stop_digits, node.beep))
    return replace(state, phase=RECORDING, recording_id=rec_id, play_id=None)


def _enter_say(state, node: SayNode, now, out, hops=0, **_):
    value = state.variables.get(node.variable)
    try:
        spoken = say_prompts(node.kind, value)
    except ValueError as exc:
        out.append(Log(f"{node.id}: cannot say {node.variable}={value!r} as {node.kind}: {exc}"))
        return _enter(state, node.next, now, out, hops=hops + 1)
    return _play(state, node.before + spoken + node.after, node.barge_in, out)


def _enter_branch(state, node: BranchNode, now, out, hops=0, **_):
    for tree, (_src, target) in zip(node.parsed, node.cases):
        if evaluate(tree, state.variables):
            return _enter(state, target, now, out, hops=hops + 1)
    return _enter(state, node.otherwise, now, out, hops=hops + 1)


def _enter_set(state, node: SetNode, now, out, hops=0, **_):
    state = _with_vars(state, **node.values)
    return _enter(state, node.next, now, out, hops=hops + 1)


def _enter_lookup(state, node: LookupCaseNode, now, out, hops=0, **_):
    number = state.variables.get(node.variable)
    if not isinstance(number, str) or not number:
        out.append(Log(f"{node.id}: no case number in {node.variable!r}"))
        state = _with_vars(state, case_found=False, case_status=None)
        return _enter(state, node.not_found, now, out, hops=hops + 1)
    out.append(LookupCase(number))
    return _set_timer(replace(state, phase=AWAITING), node.timeout_s, now, out)


def _enter_file_report(state, node: FileReportNode, now, out, **_):
    rec = state.variables.get(node.recording_variable)
    out.append(FileReport(node.channel, rec if isinstance(rec, str) else None,
                          MappingProxyType(dict(state.variables))))
    return replace(state, phase=AWAITING)


def _enter_enqueue(state, node: EnqueueNode, now, out, **_):
    out.append(Enqueue(node.queue, node.skill))
    return replace(state, phase=AWAITING)


def _enter_offer_callback(state, node: OfferCallbackNode, now, out, hops=0, **_):
    out.append(OfferCallback(node.queue))
    return _enter(state, node.next, now, out, hops=hops + 1)


def _enter_transfer(state, node: TransferNode, now, out, **_):
    out.append(Transfer(node.target))
    return _finish(state, "transferred", out)


def _enter_hangup(state, node: HangupNode, now, out, **_):
    if node.prompts:
        return _play(state, node.prompts, False, out)
    out.append(Hangup(node.reason))
    return _finish(state, node.reason, out)


_ENTER: dict[type[Node], Callable[..., IvrState]] = {
    PlayNode: _enter_play,
    MenuNode: _enter_input,
    CollectNode: _enter_input,
    SurveyNode: _enter_input,
    RecordNode: _enter_record,
    SayNode: _enter_say,
    BranchNode: _enter_branch,
    SetNode: _enter_set,
    LookupCaseNode: _enter_lookup,
    FileReportNode: _enter_file_report,
    EnqueueNode: _enter_enqueue,
    OfferCallbackNode: _enter_offer_callback,
    TransferNode: _enter_transfer,
    HangupNode: _enter_hangup,
}


# --- per-type behaviour: input nodes (menu, collect, survey) ------------------------------


def _retry(state: IvrState, node, why: str, now, out: Actions) -> IvrState:
    """Invalid or missing input: re-prompt, or go to the fallback after max_retries."""
    state = _quiet(state, out)
    retries = state.retries + 1
    if retries > node.max_retries:
        out.append(Log(f"{node.id}: {retries} failed attempts (last: {why}), "
                       f"going to {node.fallback}"))
        return _enter(state, node.fallback, now, out)
    extra = node.invalid_prompts if why == "invalid" else node.timeout_prompts
    state = replace(state, retries=retries, digits="")
    return _play(state, extra + node.retry_prompts(), node.barge_in, out)


def _menu_digit(state, node: MenuNode, digit, now, out):
    target = node.options.get(digit)
    if target is None:
        return _retry(state, node, "invalid", now, out)
    return _goto(state, target, now, out)


def _survey_digit(state, node: SurveyNode, digit, now, out):
    answer = SURVEY_ANSWERS.get(digit)
    if answer is None:
        return _retry(state, node, "invalid", now, out)
    state = _quiet(state, out)
    out.append(RecordSurvey(answer))
    state = _with_vars(state, **{node.variable: answer})
    return _enter(state, node.on_answer.get(answer, node.next), now, out)


def _collect_digit(state, node: CollectNode, digit, now, out):
    state = _quiet(state, out)
    if node.terminator and digit == node.terminator:
        return _collect_done(state, node, now, out)
    if not digit.isdigit():
        return _retry(state, node, "invalid", now, out)
    digits = state.digits + digit
    state = replace(state, digits=digits, phase=COLLECTING)
    if len(digits) >= node.max_digits:
        return _collect_done(state, node, now, out)
    return _set_timer(state, node.inter_digit_timeout_s, now, out)


def _collect_done(state, node: CollectNode, now, out):
    if len(state.digits) < node.min_digits:
        return _retry(state, node, "invalid", now, out)
    state = _with_vars(state, **{node.variable: state.digits})
    return _goto(state, node.next, now, out)


_INPUT_DIGIT: dict[type[Node], Callable[..., IvrState]] = {
    MenuNode: _menu_digit,
    SurveyNode: _survey_digit,
    CollectNode: _collect_digit,
}


def _input_on_digit(state, node, event: DigitReceived, now, out):
    if state.phase == PLAYING and not node.barge_in:
        return state
    if state.phase not in (PLAYING, WAITING, COLLECTING):
        return state
    return _INPUT_DIGIT[type(node)](state, node, event.digit, now, out)


def _input_on_played(state, node, event: PlaybackFinished, now, out):
    if state.phase != PLAYING or event.play_id != state.play_id:
        return state
    state = replace(state, phase=WAITING, play_id=None)
    return _set_timer(state, node.timeout_s, now, out)


def _input_on_timer(state, node, event: TimerFired, now, out):
    if event.timer_id not in state.timers:
        return state
    state = replace(state, timers=tuple(t for t in state.timers if t != event.timer_id))
    if isinstance(node, CollectNode) and state.phase == COLLECTING:
        return _collect_done(state, node, now, out)
    return _retry(state, node, "timeout", now, out)


# --- per-type behaviour: the other waiting nodes -------------------------------------------


def _played_then_next(state, node, event: PlaybackFinished, now, out):
    if state.phase != PLAYING or event.play_id != state.play_id:
        return state
    state = replace(state, phase=IDLE, play_id=None)
    return _goto(state, node.next, now, out)


def _barge_then_next(state, node, event: DigitReceived, now, out):
    if state.phase != PLAYING or not node.barge_in:
        return state
    return _goto(state, node.next, now, out, carry_digit=event.digit)


def _record_on_played(state, node: RecordNode, event: PlaybackFinished, now, out):
    if state.phase != PROMPTING or event.play_id != state.play_id:
        return state
    return _start_recording(state, node, out)


def _record_on_stopped(state, node: RecordNode, event: RecordingStopped, now, out):
    if state.phase != RECORDING or event.recording_id != state.recording_id:
        return state
    state = _with_vars(state, **{
        node.variable: event.recording_id,
        "recording_duration_s": float(event.duration_s),
        "recording_stop_reason": event.reason,
    })
    state = replace(state, phase=IDLE, recording_id=None)
    if event.reason == "hangup" or state.hung_up:
        state = replace(state, hung_up=True)
        if node.on_hangup is None:
            return _finish(state, "caller_hung_up", out)
        return _goto(state, node.on_hangup, now, out)
    return _goto(state, node.next, now, out)


def _lookup_on_result(state, node: LookupCaseNode, event: CaseLookedUp, now, out):
    if state.phase != AWAITING:
        return state
    state = _with_vars(state, case_found=event.found,
                       case_status=event.status if event.found else None)
    return _goto(state, node.found if event.found else node.not_found, now, out)


def _lookup_on_timer(state, node: LookupCaseNode, event: TimerFired, now, out):
    if state.phase != AWAITING:
        return state
    state = replace(state, timers=tuple(t for t in state.timers if t != event.timer_id))
    out.append(Log(f"{node.id}: no answer to LookupCase within {node.timeout_s:g}s"))
    state = _with_vars(state, case_found=False, case_status=None)
    return _goto(state, node.not_found, now, out)


def _file_report_on_filed(state, node: FileReportNode, event: ReportFiled, now, out):
    if state.phase != AWAITING:
        return state
    state = _with_vars(state, case_number=event.case_number)
    return _goto(state, node.next, now, out)


def _enqueue_on_result(state, node: EnqueueNode, event: QueueResult, now, out):
    if state.phase != AWAITING:
        return state
    state = _with_vars(state, queue_outcome=event.outcome)
    if event.outcome == "answered":
        return _finish(state, "answered", out)
    return _goto(state, node.outcomes.get(event.outcome, node.default), now, out)


def _hangup_on_played(state, node: HangupNode, event: PlaybackFinished, now, out):
    if state.phase != PLAYING or event.play_id != state.play_id:
        return state
    out.append(Hangup(node.reason))
    return _finish(state, node.reason, out)


_ON_EVENT: dict[tuple[type[Node], type[Event]], Callable[..., IvrState]] = {
    (PlayNode, PlaybackFinished): _played_then_next,
    (PlayNode, DigitReceived): _barge_then_next,
    (SayNode, PlaybackFinished): _played_then_next,
    (SayNode, DigitReceived): _barge_then_next,
    (RecordNode, PlaybackFinished): _record_on_played,
    (RecordNode, RecordingStopped): _record_on_stopped,
    (LookupCaseNode, CaseLookedUp): _lookup_on_result,
    (LookupCaseNode, TimerFired): _lookup_on_timer,
    (FileReportNode, ReportFiled): _file_report_on_filed,
    (EnqueueNode, QueueResult): _enqueue_on_result,
    (HangupNode, PlaybackFinished): _hangup_on_played,
    **{(t, DigitReceived): _input_on_digit for t in (MenuNode, CollectNode, SurveyNode)},
    **{(t, PlaybackFinished): _input_on_played for t in (MenuNode, CollectNode, SurveyNode)},
    **{(t, TimerFired): _input_on_timer for t in (MenuNode, CollectNode, SurveyNode)},
}


def _on_caller_hung_up(state: IvrState, out: Actions) -> IvrState:
    node = state.current
    state = replace(state, hung_up=True)
    if isinstance(node, RecordNode) and state.phase == RECORDING:
        # Keep the message: wait for RecordingStopped, then file it via on_hangup.
        out.append(StopRecording(state.recording_id))
        return state
    if isinstance(node, FileReportNode) and state.phase == AWAITING:
        return state
    return _finish(state, "caller_hung_up", out)


# --- public API -------------------------------------------------------------------------


def _check_now(now: object) -> None:
    if not isinstance(now, _dt.datetime):
        raise IvrEventError(f"now must be a datetime, got {now!r}")


def start(flow: Flow, *, now: _dt.datetime,
          variables: Mapping[str, object]) -> tuple[IvrState, list[Action]]:
    """Begin `flow` for a newly answered call; `variables` are caller, did, business_hours…"""
    _check_now(now)
    if not isinstance(flow, Flow):
        raise IvrEventError(f"flow must be a loaded Flow, got {flow!r}")
    state = IvrState(flow=flow, node=flow.start,
                     variables=_frozen_mapping(variables, "variables"))
    out: Actions = []
    state = _enter(state, flow.start, now, out)
    return state, out


def step(state: IvrState, event: Event, now: _dt.datetime) -> tuple[IvrState, list[Action]]:
    """Apply one event; returns the new state and the actions to perform, in order."""
    _check_now(now)
    if not isinstance(event, Event) or type(event) is Event:
        raise IvrEventError(f"not an IVR event: {event!r}")
    if state.finished:
        return state, []
    out: Actions = []
    if isinstance(event, VariablesChanged):
        return _with_vars(state, **event.values), out
    if isinstance(event, CallerHungUp):
        if state.hung_up:
            return state, out
        return _on_caller_hung_up(state, out), out
    if isinstance(event, TimerFired) and event.timer_id not in state.timers:
        return state, out
    node = state.current
    handler = _ON_EVENT.get((type(node), type(event)))
    if handler is None:
        return state, out
    return handler(state, node, event, now, out), out

"""The pure per-call controller: `step(state, event, now) -> (state, actions)`.

Which transition applies comes from `table.TRANSITIONS`; this module holds the guards the
rows name and the effects that build the new fields and the actions. No I/O, no clock: the
driver (call.py) performs the actions and feeds results back as events.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Callable

from callcenter import acd
from callcenter.calls import model as m
from callcenter.calls.table import ANY, SAME, TRANSITIONS, Transition
from ivr_flows import engine as ivr

__all__ = ["step", "new_call", "attempt_outcome", "GUARDS", "EFFECTS"]


_FIRST_PHASE = {"outbound": "dialing", "callback": "callback_preview"}


def new_call(call_id: str, kind: str, *, caller: str | None, has_flow: bool, acd_present: bool,
             urgent: bool = False, agent: str | None = None) -> m.CallState:
    """A new call's state. A callback (kind "callback") starts with the agent's phone ringing;
    `acd_present` then means a kept-place callback reported to the ACD (else the dialer hears
    the attempt's outcome), `agent` is the agent it is for."""
    return m.CallState(call_id=call_id, kind=kind, phase=_FIRST_PHASE.get(kind, "offered"),
                       caller=caller, has_flow=has_flow, acd=acd_present, urgent=urgent, bridged_agent=agent)


def attempt_outcome(status: int | None) -> str:
    """A failed outbound attempt as the callback scheduler counts it."""
    if status in (486, 600):
        return "busy"
    if status in (408, 480, 487) or status is None:
        return "no_answer"
    return "failed"


def step(state: m.CallState, event: m.CallEvent, now: datetime | None = None
         ) -> tuple[m.CallState, list[m.CallAction]]:
    """Apply one event; IllegalCallEvent when no row of the table takes it in this phase."""
    row = lookup(state, event)
    changes, actions = EFFECTS[row.effect](state, event)
    nxt = state.phase if row.next_state == SAME else row.next_state
    return replace(state, phase=nxt, **changes), actions


def lookup(state: m.CallState, event: m.CallEvent) -> Transition:
    name = type(event).__name__
    for row in _ROWS.get(name, ()):
        if row.state != state.phase and not (row.state == ANY and state.phase != "ended"):
            continue
        if row.guard is None or GUARDS[row.guard](state, event):
            return row
    raise m.IllegalCallEvent(f"{name} in phase {state.phase}")


_ROWS: dict[str, list[Transition]] = {}
for _row in TRANSITIONS:
    _ROWS.setdefault(_row.event, []).append(_row)

# -- guards ----------------------------------------------------------------------------------------

GUARDS: dict[str, Callable[[m.CallState, m.CallEvent], bool]] = {
    "direct call to an extension": lambda s, e: e.extension is not None,
    "ring_s > 0": lambda s, e: e.ring_s > 0,
    "ring_s = 0": lambda s, e: e.ring_s <= 0,
    "has IVR flow": lambda s, e: s.has_flow,
    "no IVR flow (extension)": lambda s, e: not s.has_flow,
    "ok": lambda s, e: e.ok,
    "not ok": lambda s, e: not e.ok,
    "sdp_ok": lambda s, e: e.sdp_ok,
    "not sdp_ok": lambda s, e: not e.sdp_ok,
    "queued, callback offered, digit 1": lambda s, e: (
        s.queue is not None and s.callback_offered and e.digit == "1" and not s.callback_requested),
    "a message is recording": lambda s, e: s.message,
    "callback confirmation played": lambda s, e: e.play_id == "callback_confirm",
    "hold tone ended": lambda s, e: e.play_id == "hold",
    "an ACD": lambda s, e: s.acd,
    "no ACD": lambda s, e: not s.acd,
    "ACD agent": lambda s, e: e.acd_agent is not None,
    "ACD agent, had not answered": lambda s, e: e.acd_agent is not None and not e.was_bridged,
    "agent leg up": lambda s, e: s.agent_leg == "up",
    "consulted party answered": lambda s, e: s.consult_up and s.agent_leg == "up",
    "answered": lambda s, e: s.answered,
}

# -- effects: (state, event) -> (changed fields, actions) ---------------------------------------------

_Effect = Callable[[m.CallState, m.CallEvent], tuple[dict, list[m.CallAction]]]
EFFECTS: dict[str, _Effect] = {}


def _effect(fn: _Effect) -> _Effect:
    EFFECTS[fn.__name__] = fn
    return fn


def _finish(s: m.CallState, by: str, reason: str, agent_told: bool = False) -> list[m.CallAction]:
    """The dialog is over (either side): media, legs, recordings, the ACD and the IVR hear it."""
    out: list[m.CallAction] = [m.CancelTimers(), m.CloseMedia(), m.Forget(), m.CloseLiveTranscript()]
    if s.acd:
        if s.bridged_agent is not None:
            if not agent_told:
                out.append(m.TellAcd(acd.CallEnded(s.bridged_agent, s.call_id, hung_up_by="caller")))
        elif s.queue is not None and not s.callback_requested:
            out.append(m.TellAcd(acd.CallerAbandoned(s.call_id)))
        if s.consult_agent is not None:
            out.append(m.ReleaseConsulted(s.consult_agent))
    out += [m.HangupAgentLeg("caller left"), m.HangupConsultLeg("caller left"), m.HangupMonitors("call ended"),
            m.FinishCallRecording()]
    if s.message:
        out.append(m.StopMessage("hangup"))  # CallerHungUp follows once the message is stored
    elif by != "local":
        out.append(m.ToIvr(ivr.CallerHungUp()))
    out.append(m.NotifyEnded(f"{by}:{reason}", " ".join(s.path)))
    return out


def _ended(s: m.CallState, by: str, reason: str, agent_told: bool = False, **changes
           ) -> tuple[dict, list[m.CallAction]]:
    return changes, _finish(replace(s, **changes), by, reason, agent_told)


def _hangup(s: m.CallState, reason: str, agent_told: bool = False, **changes) -> tuple[dict, list[m.CallAction]]:
    """We end it: finish first (with our reason; the UA reports our own BYE back), then BYE."""
    changes, out = _ended(s, "local", reason, agent_told, **changes)
    return changes, out + [m.Hangup()]


@_effect
def noop(s, e):
    return {}, []


@_effect
def ring_extension(s, e):
    return {}, [m.SendRinging(), m.HoldMedia(True), m.DialAgent(e.extension, 30.0, None, f"agent:{e.extension}")]


@_effect
def ring_first(s, e):
    return {}, [m.SendRinging(), m.StartTimer("answer", e.ring_s)]


@_effect
def answer_now(s, e):
    return {}, [m.SendRinging(), m.Answer()]


@_effect
def answer(s, e):
    return {}, [m.Answer()]


@_effect
def answered(s, e):
    return {"answered": True}, [m.MarkAnswered()] + ([m.StartIvr()] if s.has_flow else [])


@_effect
def finish_local(s, e):
    return _ended(s, "local", "answer refused")


@_effect
def extension_unreachable(s, e):
    return _reject_and_end(s, 480, "extension unreachable")


def _reject_and_end(s, status, reason):
    changes, out = _ended(s, "local", reason, agent_leg=None)
    return changes, [m.Reject(status)] + out


@_effect
def extension_answered(s, e):
    return {"agent_leg": "up"}, [m.HoldMedia(False), m.Answer()]


@_effect
def extension_gone(s, e):
    # A direct call to an extension that did not answer: pass the outcome on.
    status = e.status if e.status and 400 <= e.status < 700 else 480
    return _reject_and_end(s, status, f"agent {e.reason}")


@_effect
def outbound_started(s, e):
    return {}, [m.StartTimer("no_answer", e.ring_s)]


@_effect
def outbound_answered(s, e):
    return {"answered": True}, [m.CancelTimers(), m.ReportOutcome("answered"), m.MarkAnswered(), m.StartIvr()]


@_effect
def outbound_bad_sdp(s, e):
    changes, out = _hangup(s, "bad sdp")
    return changes, [m.ReportOutcome("failed")] + out


@_effect
def outbound_failed(s, e):
    changes, out = _ended(s, "remote", f"{e.status} {e.reason}")
    return changes, [m.ReportOutcome(attempt_outcome(e.status))] + out


@_effect
def outbound_no_answer(s, e):
    changes, out = _hangup(s, "no answer")
    return changes, [m.ReportOutcome("no_answer")] + out


@_effect
def keep_place(s, e):
    return {}, [m.KeepPlace(s.caller or "")]


@_effect
def digit_to_message(s, e):
    path = s.path + (e.digit,)
    return {"path": path}, ([m.StopMessage("digit")] if e.digit in s.message_stop_digits else [])


@_effect
def digit_to_ivr(s, e):
    return {"path": s.path + (e.digit,)}, [m.ToIvr(ivr.DigitReceived(e.digit))]


@_effect
def callback_confirmed(s, e):
    return _hangup(s, "callback requested")


@_effect
def hold_tone_again(s, e):
    return {}, ([m.PlayHoldTone()] if s.held else [])


@_effect
def playback_to_ivr(s, e):
    return {}, [m.ToIvr(ivr.PlaybackFinished(e.play_id))]


@_effect
def survey(s, e):
    return {"path": s.path + (f"survey:{e.answer}",)}, [m.ReportSurvey(e.answer)]


@_effect
def message_started(s, e):
    return {"message": True, "message_stop_digits": e.stop_digits}, []


@_effect
def message_stopped(s, e):
    return {"message": False, "message_stop_digits": ""}, []


@_effect
def enqueue(s, e):
    return ({"queue": e.queue, "path": s.path + (f"queue:{e.queue}",)},
            [m.Play(("queue_wait",), f"queue:{e.queue}"), m.JoinQueue(e.queue, e.skill, 1 if s.urgent else 0)])


@_effect
def no_agents(s, e):
    return {}, [m.ToIvr(ivr.QueueResult("no_agents"), later=True)]


@_effect
def join_refused(s, e):
    return {"queue": None}, [m.ToIvr(ivr.QueueResult("no_agents"), later=True)]


@_effect
def ring_agent(s, e):
    # The ACD's own ring timeout decides; the SIP leg's is a safety net behind it.
    return {"ringing_agent": e.agent}, [m.DialAgent(e.extension, e.timeout_s + 10, e.agent, f"agent:{e.extension}")]


@_effect
def agent_dialled(s, e):
    # A ring that could not be placed: the ACD driver hears it from `deliver` and answers
    # AgentNoAnswer itself.
    if not e.ok:
        return {"ringing_agent": None}, []
    return {"agent_leg": "ringing", "path": s.path + (e.path_step,)}, []


@_effect
def stop_ringing(s, e):
    if s.ringing_agent != e.agent:
        return {}, []
    return {"ringing_agent": None, "agent_leg": None}, [m.HangupAgentLeg("stop ringing", e.agent)]


@_effect
def agent_answered_acd(s, e):
    # The ACD bridges (its Bridge comes back as QueueBridged).
    return {"agent_leg": "up"}, [m.TellAcd(acd.AgentAnswered(e.acd_agent, s.call_id))]


@_effect
def agent_no_answer(s, e):
    return {"agent_leg": None, "ringing_agent": None}, [m.TellAcd(acd.AgentNoAnswer(e.acd_agent, s.call_id))]


@_effect
def queue_bridged(s, e):
    return {"bridged_agent": e.agent, "ringing_agent": None}, [m.StopPlayback(), m.ToIvr(ivr.QueueResult("answered"))]


@_effect
def announce(s, e):
    prompts = ["queue_ahead", *ivr.say_prompts("number", e.position), "queue_people"]
    if e.eta_s:
        prompts += ["queue_eta", *ivr.say_prompts("number", max(1, round(e.eta_s / 60))), "unit_minute"]
    return {}, [m.Play(tuple(prompts), f"announce:{e.position}")]


@_effect
def offer_callback(s, e):
    return {"callback_offered": True}, [m.Play(("queue_callback_offer",), "callback_offer")]


@_effect
def callback_kept(s, e):
    return ({"callback_requested": True, "path": s.path + ("callback",)},
            [m.StopPlayback(), m.Play(("queue_callback_confirm",), "callback_confirm")])


@_effect
def overflow(s, e):
    return ({"queue": None, "path": s.path + (f"overflow:{e.reason}",)},
            [m.StopPlayback(), m.ToIvr(ivr.QueueResult(e.target.split(":", 1)[0]))])


@_effect
def dial_number(s, e):
    return {}, [m.DialNumber(e.number, f"transfer:{e.number}")]


@_effect
def transfer_failed(s, e):
    return _hangup(s, "transfer failed", agent_leg=None)


@_effect
def number_answered(s, e):
    return {"agent_leg": "up"}, [m.StopPlayback()]


@_effect
def number_no_answer(s, e):
    return {"agent_leg": None}, [m.ToIvr(ivr.QueueResult("no_answer"))]


@_effect
def unbridge(s, e):
    """A blind transfer: the agent's leg goes, the caller waits for the next party."""
    return ({"bridged_agent": None, "agent_leg": None, "desk_held": False, "far_held": False, "muted": False},
            [m.HangupAgentLeg("transferred"), m.HoldMedia(False), m.Play(("queue_wait",), "transfer")])


@_effect
def agent_hung_up_acd(s, e):
    # bridged_agent stays for the call-ended hook (metrics count the call as the agent's).
    out = [m.TellAcd(acd.CallEnded(e.acd_agent, s.call_id, hung_up_by="agent"))]
    c2, fin = _hangup(s, f"agent hung up ({e.reason})", True, queue=None, agent_leg=None)
    return c2, out + fin


@_effect
def other_agent_no_answer(s, e):
    return {}, [m.TellAcd(acd.AgentNoAnswer(e.acd_agent, s.call_id))]


@_effect
def agent_hung_up(s, e):
    return _hangup(s, f"agent hung up ({e.reason})", agent_leg=None)


@_effect
def far_hold(s, e):
    return {"far_held": e.held}, []


@_effect
def desk_hold(s, e):
    if s.desk_held == e.held:
        return {}, []
    out: list[m.CallAction] = [m.HoldAgent(e.held), m.StopPlayback()] + ([m.PlayHoldTone()] if e.held else [])
    return {"desk_held": e.held, "path": s.path + ("desk:hold" if e.held else "desk:resume",)}, out


@_effect
def desk_mute(s, e):
    return {"muted": e.muted}, [m.MuteAgent(e.muted)]


@_effect
def desk_hangup(s, e):
    """挂断 from the browser: both phones get a BYE; the agent goes to wrap-up."""
    out: list[m.CallAction] = [m.HangupAgentLeg("agent hung up (desk)")]
    changes: dict = {"agent_leg": None}
    if s.bridged_agent is not None:
        out.append(m.TellAcd(acd.CallEnded(s.bridged_agent, s.call_id, hung_up_by="agent")))
        changes["queue"] = None
    c2, fin = _hangup(s, "agent hung up (desk)", s.bridged_agent is not None, **changes)
    return c2, out + fin


@_effect
def consult(s, e):
    return {"consult_agent": e.acd_agent}, [m.DialConsult(e.target, e.number)]


@_effect
def consult_dialled(s, e):
    return {"consult_up": False, "path": s.path + (f"consult:{e.target}",)}, [m.StopPlayback(), m.PlayHoldTone()]


@_effect
def consult_failed(s, e):
    return {"consult_agent": None}, []


@_effect
def consult_gone(s, e):
    return {"consult_up": False}, [m.HangupConsultLeg("consult cancelled"), m.StopPlayback()]


@_effect
def consult_answered(s, e):
    return {"consult_up": True}, []


@_effect
def consult_complete(s, e):
    # From here the call is outside the queue's accounting: the desk ends the agent's part.
    return ({"consult_up": False, "bridged_agent": None, "far_held": False, "desk_held": False, "muted": False,
             "path": s.path + ("consult:complete",)},
            [m.HandOverToConsult("transferred (attended)"), m.StopPlayback()])


@_effect
def consult_cancel(s, e):
    return {"consult_up": False, "consult_agent": None}, [m.HangupConsultLeg("consult cancelled"), m.StopPlayback()]


@_effect
def listen_in(s, e):
    return {}, [m.DialMonitor(e.extension)]


# -- the watchdog ------------------------------------------------------------------------------------

@_effect
def ack_timed_out(s, e):
    return _hangup(s, "no ack")


@_effect
def first_rtp_timed_out(s, e):
    return _hangup(s, "no rtp")


@_effect
def rtp_timed_out(s, e):
    return _hangup(s, "rtp timeout")


@_effect
def message_silent(s, e):
    return {}, [m.StopMessage("silence")]


# -- callbacks: agent preview -> citizen -> bridge ---------------------------------------------------

def _callback_over(reason: str) -> list[m.CallAction]:
    return [m.HangupAgentLeg(reason), m.HangupCitizenLeg(reason), m.Forget(), m.FinishCallRecording()]


@_effect
def callback_dial_citizen(s, e):
    return {"agent_leg": "up"}, [m.DialCitizen()]


@_effect
def callback_failed(s, e):
    """The attempt failed before the citizen answered: only the citizen's final status counts."""
    reason = e.reason
    status = e.status if isinstance(e, m.CitizenGone) else None
    if s.acd:
        out: list[m.CallAction] = [m.TellAcd(acd.CallbackFailed(s.call_id, reason))]
    else:
        out = [m.ReportOutcome(attempt_outcome(status))]
    return {}, out + _callback_over(reason)


@_effect
def callback_answered(s, e):
    told = m.TellAcd(acd.CallbackAnswered(s.call_id)) if s.acd else m.ReportOutcome("answered")
    return {"answered": True}, [m.StartCallbackRecording(), told]


@_effect
def callback_hung_up(s, e):
    out: list[m.CallAction] = []
    if s.acd:
        by = "caller" if isinstance(e, m.CitizenGone) else "agent"
        out.append(m.TellAcd(acd.CallEnded(s.bridged_agent, s.call_id, hung_up_by=by)))
    return {}, out + _callback_over(e.reason)


@_effect
def callback_end(s, e):
    return {}, _callback_over(e.reason)


@_effect
def hangup(s, e):
    return _hangup(s, e.reason)


@_effect
def remote_ended(s, e):
    changes, out = _ended(s, e.by, e.reason)
    return changes, ([m.ReportOutcome("failed")] if not s.answered else []) + out

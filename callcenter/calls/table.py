"""The call's states and transitions as data: one row per (phase, event, guard).

`step` (controller.py) looks every event up here: the first row whose phase and event match
and whose guard holds decides the next phase and which effect runs; an event with no row is
illegal in that phase and refused. `transitions()` hands the rows to the docs
(ARCHITECTURE.md's diagram); `render_table()` prints them as Markdown.

Phase "*" means any phase but "ended"; next phase "=" means the phase does not change.
`actions` names the action classes the effect may emit, in order (a unit test holds every
effect to its row).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Transition", "TRANSITIONS", "transitions", "render_table", "ANY", "SAME"]

ANY = "*"
SAME = "="


@dataclass(frozen=True)
class Transition:
    state: str
    event: str
    next_state: str
    guard: str | None = None
    actions: tuple[str, ...] = ()
    effect: str = ""  # the controller's function that builds the actions and the new fields
    note: str = ""


_T = Transition
_FINISH = ("CancelTimers", "CloseMedia", "Forget", "CloseLiveTranscript", "TellAcd", "ReleaseConsulted",
           "HangupAgentLeg", "HangupConsultLeg", "HangupMonitors", "FinishCallRecording", "StopMessage",
           "ToIvr", "NotifyEnded")
_ANSWERED = ("MarkAnswered", "StartIvr")
_CB_OVER = ("HangupAgentLeg", "HangupCitizenLeg", "Forget", "FinishCallRecording")
_CB_FAILED = ("TellAcd", "ReportOutcome") + _CB_OVER

TRANSITIONS: tuple[Transition, ...] = (
    # -- setting up ------------------------------------------------------------------------------
    _T("offered", "CallStarted", "extension_ringing", "direct call to an extension",
       ("SendRinging", "HoldMedia", "DialAgent"), "ring_extension"),
    _T("offered", "CallStarted", "ringing", "ring_s > 0", ("SendRinging", "StartTimer"), "ring_first"),
    _T("offered", "CallStarted", "answering", "ring_s = 0", ("SendRinging", "Answer"), "answer_now"),
    _T("ringing", "RingElapsed", "answering", None, ("Answer",), "answer"),
    _T("answering", "Answered", "ivr", "has IVR flow", _ANSWERED, "answered"),
    _T("answering", "Answered", "bridged", "no IVR flow (extension)", _ANSWERED, "answered"),
    _T("answering", "AnswerRefused", "ended", None, _FINISH, "finish_local"),
    _T("extension_ringing", "AgentDialled", SAME, "ok", (), "agent_dialled"),
    _T("extension_ringing", "AgentDialled", "ended", "not ok", ("Reject",) + _FINISH, "extension_unreachable"),
    _T("extension_ringing", "AgentLegAnswered", "answering", None, ("HoldMedia", "Answer"), "extension_answered"),
    _T("extension_ringing", "AgentLegGone", "ended", None, ("Reject",) + _FINISH, "extension_gone"),
    # -- outbound (follow-up surveys) -------------------------------------------------------------
    _T("dialing", "CallStarted", SAME, None, ("StartTimer",), "outbound_started"),
    _T("dialing", "FarEndAnswered", "ivr", "sdp_ok", ("CancelTimers", "ReportOutcome") + _ANSWERED,
       "outbound_answered"),
    _T("dialing", "FarEndAnswered", "ended", "not sdp_ok", ("ReportOutcome",) + _FINISH + ("Hangup",),
       "outbound_bad_sdp"),
    _T("dialing", "DialFailed", "ended", None, ("ReportOutcome",) + _FINISH, "outbound_failed"),
    _T("dialing", "RingTimedOut", "ended", None, ("ReportOutcome",) + _FINISH + ("Hangup",), "outbound_no_answer"),
    # -- the IVR leg -----------------------------------------------------------------------------
    _T(ANY, "DigitReceived", SAME, "queued, callback offered, digit 1", ("KeepPlace",), "keep_place"),
    _T(ANY, "DigitReceived", SAME, "a message is recording", ("StopMessage",), "digit_to_message"),
    _T(ANY, "DigitReceived", SAME, None, ("ToIvr",), "digit_to_ivr"),
    _T(ANY, "PlaybackEnded", "ended", "callback confirmation played",
       _FINISH + ("Hangup",), "callback_confirmed"),
    _T(ANY, "PlaybackEnded", SAME, "hold tone ended", ("PlayHoldTone",), "hold_tone_again"),
    _T(ANY, "PlaybackEnded", SAME, None, ("ToIvr",), "playback_to_ivr"),
    _T(ANY, "SurveyAnswered", SAME, None, ("ReportSurvey",), "survey"),
    _T(ANY, "MessageStarted", SAME, None, (), "message_started"),
    _T(ANY, "MessageStopped", SAME, None, (), "message_stopped"),
    _T("ivr", "QueueRequested", "queued", "an ACD", ("Play", "JoinQueue"), "enqueue"),
    _T("ivr", "QueueRequested", SAME, "no ACD", ("ToIvr",), "no_agents"),
    _T("queued", "QueueJoinRefused", "ivr", None, ("ToIvr",), "join_refused"),
    # -- the queue (events from the ACD) --------------------------------------------------------------
    _T("queued", "AgentRingRequested", SAME, None, ("DialAgent",), "ring_agent"),
    _T("queued", "AgentDialled", SAME, None, (), "agent_dialled"),
    _T("queued", "RingStopped", SAME, None, ("HangupAgentLeg",), "stop_ringing"),
    _T("queued", "AgentLegAnswered", SAME, "ACD agent", ("TellAcd",), "agent_answered_acd"),
    _T("queued", "AgentLegGone", SAME, "ACD agent, had not answered", ("TellAcd",), "agent_no_answer"),
    _T("queued", "QueueBridged", "bridged", None, ("StopPlayback", "ToIvr"), "queue_bridged"),
    _T("queued", "PositionAnnounced", SAME, None, ("Play",), "announce"),
    _T("queued", "CallbackOffered", SAME, None, ("Play",), "offer_callback"),
    _T("queued", "CallbackKept", "callback_kept", None, ("StopPlayback", "Play"), "callback_kept"),
    _T("queued", "QueueOverflowed", "ivr", None, ("StopPlayback", "ToIvr"), "overflow"),
    _T("queued", "TransferToNumberRequested", "transferring", None, ("DialNumber",), "dial_number"),
    _T("bridged", "Unbridged", "queued", None, ("HangupAgentLeg", "HoldMedia", "Play"), "unbridge"),
    _T("bridged", "TransferToNumberRequested", "transferring", None, ("DialNumber",), "dial_number"),
    _T("transferring", "AgentDialled", SAME, "ok", (), "agent_dialled"),
    _T("transferring", "AgentDialled", "ended", "not ok", _FINISH + ("Hangup",), "transfer_failed"),
    _T("transferring", "AgentLegAnswered", "bridged", None, ("StopPlayback",), "number_answered"),
    _T("transferring", "AgentLegGone", "ivr", None, ("ToIvr",), "number_no_answer"),
    _T("callback_kept", "QueueBridged", SAME, None, (), "noop"),
    # -- talking to the agent ------------------------------------------------------------------------
    _T("bridged", "QueueBridged", SAME, None, ("StopPlayback", "ToIvr"), "queue_bridged"),
    _T("bridged", "AgentLegGone", SAME, "ACD agent, had not answered", ("TellAcd",), "other_agent_no_answer",
       "ring_all: another agent's phone stopped ringing"),
    _T("bridged", "AgentLegGone", "ended", "ACD agent", ("TellAcd",) + _FINISH + ("Hangup",), "agent_hung_up_acd"),
    _T("bridged", "AgentLegGone", "ended", None, _FINISH + ("Hangup",), "agent_hung_up"),
    _T("bridged", "AgentPhoneHeld", SAME, None, (), "far_hold"),
    _T("bridged", "DeskHoldRequested", SAME, "agent leg up", ("HoldAgent", "StopPlayback", "PlayHoldTone"), "desk_hold"),
    _T("bridged", "DeskMuteRequested", SAME, "agent leg up", ("MuteAgent",), "desk_mute"),
    _T("bridged", "DeskHangupRequested", "ended", "agent leg up",
       ("HangupAgentLeg", "TellAcd") + _FINISH + ("Hangup",), "desk_hangup"),
    _T("bridged", "RingStopped", SAME, None, ("HangupAgentLeg",), "stop_ringing"),
    _T("bridged", "ConsultRequested", SAME, "agent leg up", ("DialConsult",), "consult"),
    _T("bridged", "ConsultDialled", "consulting", "ok", ("StopPlayback", "PlayHoldTone"), "consult_dialled"),
    _T("bridged", "ConsultDialled", SAME, "not ok", (), "consult_failed"),
    # -- attended transfer (咨询转接) ---------------------------------------------------------------
    _T("consulting", "ConsultLegAnswered", SAME, None, (), "consult_answered"),
    _T("consulting", "ConsultCompleted", "bridged", "consulted party answered",
       ("HandOverToConsult", "StopPlayback"), "consult_complete"),
    _T("consulting", "ConsultCancelled", "bridged", None, ("HangupConsultLeg", "StopPlayback"), "consult_cancel"),
    _T("consulting", "ConsultLegGone", "bridged", None, ("HangupConsultLeg", "StopPlayback"), "consult_gone",
       "the consulted agent stays paused until the call ends"),
    _T("consulting", "AgentPhoneHeld", SAME, None, (), "far_hold"),
    _T("consulting", "DeskMuteRequested", SAME, "agent leg up", ("MuteAgent",), "desk_mute"),
    _T("consulting", "DeskHangupRequested", "ended", "agent leg up",
       ("HangupAgentLeg", "TellAcd") + _FINISH + ("Hangup",), "desk_hangup"),
    _T("consulting", "AgentLegGone", SAME, "ACD agent, had not answered", ("TellAcd",), "other_agent_no_answer",
       "ring_all: another agent's phone stopped ringing"),
    _T("consulting", "AgentLegGone", "ended", "ACD agent", ("TellAcd",) + _FINISH + ("Hangup",), "agent_hung_up_acd"),
    _T("consulting", "AgentLegGone", "ended", None, _FINISH + ("Hangup",), "agent_hung_up"),
    # -- callbacks (预约回拨): the agent's phone first (preview), then the citizen's, then bridged --------
    _T("callback_preview", "AgentLegAnswered", "callback_dialing", None, ("DialCitizen",), "callback_dial_citizen"),
    _T("callback_preview", "AgentLegGone", "ended", None, _CB_FAILED, "callback_failed"),
    _T("callback_dialing", "CitizenDialled", SAME, "ok", (), "noop"),
    _T("callback_dialing", "CitizenDialled", "ended", "not ok", _CB_FAILED, "callback_failed"),
    _T("callback_dialing", "CitizenAnswered", "callback_bridged", None,
       ("StartCallbackRecording", "TellAcd", "ReportOutcome"), "callback_answered"),
    _T("callback_dialing", "CitizenGone", "ended", None, _CB_FAILED, "callback_failed"),
    _T("callback_dialing", "AgentLegGone", "ended", None, _CB_FAILED, "callback_failed"),
    _T("callback_bridged", "CitizenGone", "ended", None, ("TellAcd",) + _CB_OVER, "callback_hung_up"),
    _T("callback_bridged", "AgentLegGone", "ended", None, ("TellAcd",) + _CB_OVER, "callback_hung_up"),
    _T("callback_preview", "QueueBridged", SAME, None, (), "noop"),
    _T("callback_dialing", "QueueBridged", SAME, None, (), "noop"),
    _T("callback_bridged", "QueueBridged", SAME, None, (), "noop", "audio flows since the citizen answered"),
    _T("callback_preview", "HangupRequested", "ended", None, _CB_OVER, "callback_end"),
    _T("callback_dialing", "HangupRequested", "ended", None, _CB_OVER, "callback_end"),
    _T("callback_bridged", "HangupRequested", "ended", None, _CB_OVER, "callback_end"),
    _T("callback_preview", "RemoteEnded", "ended", None, _CB_OVER, "callback_end"),
    _T("callback_dialing", "RemoteEnded", "ended", None, _CB_OVER, "callback_end"),
    _T("callback_bridged", "RemoteEnded", "ended", None, _CB_OVER, "callback_end"),
    # -- listen-in (监听) and the end ---------------------------------------------------------------
    _T(ANY, "ListenInRequested", SAME, "answered", ("DialMonitor",), "listen_in"),
    _T(ANY, "HangupRequested", "ended", None, _FINISH + ("Hangup",), "hangup"),
    # -- the watchdog (the router measures, these rows decide) -------------------------------------
    _T(ANY, "AckTimedOut", "ended", None, _FINISH + ("Hangup",), "ack_timed_out"),
    _T(ANY, "FirstRtpTimedOut", "ended", None, _FINISH + ("Hangup",), "first_rtp_timed_out"),
    _T(ANY, "RtpTimedOut", "ended", None, _FINISH + ("Hangup",), "rtp_timed_out"),
    _T(ANY, "MessageSilenceElapsed", SAME, "a message is recording", ("StopMessage",), "message_silent"),
    _T(ANY, "RemoteEnded", "ended", None, ("ReportOutcome",) + _FINISH, "remote_ended"),
    _T("ended", "HangupRequested", SAME, None, (), "noop", "already over"),
    _T("ended", "RemoteEnded", SAME, None, (), "noop", "our own BYE reported back"),
)


def transitions() -> list[Transition]:
    """Every row (state, event, guard, next_state, actions), for diagrams and docs."""
    return list(TRANSITIONS)


def render_table() -> str:
    lines = ["| state | event | guard | next state | actions |", "|---|---|---|---|---|"]
    for t in TRANSITIONS:
        nxt = t.state if t.next_state == SAME else t.next_state
        lines.append(f"| {t.state} | {t.event} | {t.guard or ''} | {nxt} | {', '.join(t.actions)} |")
    return "\n".join(lines) + "\n"

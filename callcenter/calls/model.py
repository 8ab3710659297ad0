"""The call controller's vocabulary: its state, the events it hears and the actions it emits.

All frozen dataclasses, pure values: no legs, sessions, timers or writers (the driver owns
those). Events are past tense (something happened or was asked for), actions imperative
(the driver performs them through its ports: SIP, media, legs, ACD, IVR, recordings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# -- state ---------------------------------------------------------------------------------------

PHASES = (
    "offered",            # INVITE admitted, RTP open, nothing sent yet
    "ringing",            # 180 sent, the ring delay runs before we answer
    "answering",          # our 200 OK is being sent
    "extension_ringing",  # a direct call to an agent's extension: their phone rings
    "dialing",            # outbound: we called the citizen and wait for the answer
    "ivr",                # answered, the DID's IVR flow runs
    "queued",             # waiting in an ACD queue (agents may be ringing)
    "callback_kept",      # the caller keeps their place; the confirmation plays, then we hang up
    "transferring",       # blind transfer to a number: the outside leg rings
    "bridged",            # talking to an agent (or to the outside number / extension)
    "consulting",         # the agent consults a third party; the caller hears the hold tone
    "callback_preview",   # a callback: the agent's phone rings first (they see the case)
    "callback_dialing",   # a callback: the agent answered, the citizen's phone rings
    "callback_bridged",   # a callback: agent and citizen talk
    "ended",
)


@dataclass(frozen=True)
class CallState:
    call_id: str
    kind: str  # "inbound" (a DID), "extension" (a direct call to an agent), "outbound", "callback"
    phase: str = "offered"
    caller: str | None = None
    has_flow: bool = False  # the call runs an IVR flow once answered
    acd: bool = False  # an ACD is configured
    answered: bool = False
    queue: str | None = None  # waiting in (or was connected from) this ACD queue
    ringing_agent: str | None = None  # the ACD agent whose phone rings for this call
    bridged_agent: str | None = None  # the ACD agent connected by the queue
    agent_leg: str | None = None  # None | "ringing" | "up": our leg to the agent / outside party
    callback_offered: bool = False
    callback_requested: bool = False
    consult_up: bool = False  # the consulted party answered
    consult_agent: str | None = None  # the ACD agent consulted (paused while consulted)
    desk_held: bool = False
    far_held: bool = False  # the agent's phone put us on hold
    muted: bool = False
    message: bool = False  # a voice message is being recorded
    message_stop_digits: str = ""
    urgent: bool = False
    path: tuple[str, ...] = ()  # what the caller did, as the CDR's ivr_path

    @property
    def ended(self) -> bool:
        return self.phase == "ended"

    @property
    def held(self) -> bool:
        """The caller hears the hold tone (consultation, desk hold, or the agent's phone holds)."""
        return self.phase == "consulting" or self.desk_held or self.far_held


class IllegalCallEvent(Exception):
    """No transition for this event in this phase: the caller of `step` refuses it."""


# -- events --------------------------------------------------------------------------------------

class CallEvent:
    """Base of everything `step` hears."""


def _event(cls):
    cls = dataclass(frozen=True)(cls)
    return cls


@_event
class CallStarted(CallEvent):
    """The router admitted the call (or placed the outbound one); `ring_s` before answering."""
    ring_s: float = 0.0
    extension: str | None = None


@_event
class RingElapsed(CallEvent):
    """The ring delay is over: time to answer."""


@_event
class Answered(CallEvent):
    """Our 200 OK went out (inbound), or the citizen answered with a usable SDP (outbound)."""


@_event
class AnswerRefused(CallEvent):
    """The SIP side would not send our 200 OK (the dialog is gone)."""


@_event
class FarEndAnswered(CallEvent):
    """Outbound: the citizen answered; `sdp_ok` says whether their SDP answer was usable."""
    sdp_ok: bool = True


@_event
class DialFailed(CallEvent):
    """Outbound: the attempt failed with this final status (None: no answer at all)."""
    status: int | None = None
    reason: str = ""


@_event
class RingTimedOut(CallEvent):
    """Outbound: nobody answered in time."""


@_event
class RemoteEnded(CallEvent):
    """The dialog ended from the SIP side (BYE, CANCEL, error)."""
    by: str = "remote"
    reason: str = ""


@_event
class HangupRequested(CallEvent):
    """We end the call (IVR, watchdog, shutdown, a failed transfer…)."""
    reason: str = ""


# the router's watchdog measures, the table decides
@_event
class AckTimedOut(CallEvent):
    """Our 200 OK was never ACKed (a caller holding a port for nothing: the slow-INVITE attack)."""
    waited_s: float = 0.0


@_event
class FirstRtpTimedOut(CallEvent):
    """Answered, but not one packet of audio came from the caller."""
    waited_s: float = 0.0


@_event
class RtpTimedOut(CallEvent):
    """The caller's audio stopped (no RTP for the configured timeout)."""
    silent_s: float = 0.0


@_event
class MessageSilenceElapsed(CallEvent):
    """A voice message heard no voice for its flow's silence limit (end-on-silence)."""


@_event
class DigitReceived(CallEvent):
    digit: str = ""


@_event
class PlaybackEnded(CallEvent):
    play_id: str = ""


@_event
class SurveyAnswered(CallEvent):
    answer: str = ""


@_event
class MessageStarted(CallEvent):
    """The IVR started a voice message that these digits stop."""
    stop_digits: str = ""


@_event
class MessageStopped(CallEvent):
    reason: str = ""


@_event
class QueueRequested(CallEvent):
    """The IVR asks for an agent: join this ACD queue."""
    queue: str = ""
    skill: str | None = None


@_event
class QueueJoinRefused(CallEvent):
    """The ACD would not take the caller."""


@_event
class AgentRingRequested(CallEvent):
    """ACD: ring this agent's phone for the call."""
    agent: str = ""
    extension: str = ""
    timeout_s: float = 20.0


@_event
class AgentDialled(CallEvent):
    """The driver's answer to DialAgent / DialNumber: was the leg placed (`path_step` echoed)."""
    ok: bool = True
    path_step: str = ""


@_event
class RingStopped(CallEvent):
    """ACD: stop ringing this agent (another answered, timeout, caller gone)."""
    agent: str = ""


@_event
class AgentLegAnswered(CallEvent):
    """Our leg to the agent (or outside number, or extension) was answered."""
    acd_agent: str | None = None


@_event
class AgentLegGone(CallEvent):
    """Our leg to the agent ended; `was_bridged` if it had answered."""
    acd_agent: str | None = None
    reason: str = ""
    status: int | None = None
    was_bridged: bool = False


@_event
class CitizenDialled(CallEvent):
    """A callback's leg to the citizen was sent (ok) or could not be (no route, dial failed)."""
    ok: bool = True
    reason: str = ""


@_event
class CitizenAnswered(CallEvent):
    """A callback's citizen answered: agent and citizen are bridged by their legs."""


@_event
class CitizenGone(CallEvent):
    """A callback's leg to the citizen ended (`status`: the final answer if it never answered)."""
    reason: str = ""
    status: int | None = None


@_event
class AgentPhoneHeld(CallEvent):
    """The agent's phone put the call on hold (re-INVITE sendonly/inactive) or took it off."""
    held: bool = True


@_event
class QueueBridged(CallEvent):
    """ACD: the agent answered; the caller is now theirs."""
    agent: str = ""


@_event
class PositionAnnounced(CallEvent):
    """ACD: tell the caller their place in line (and the expected wait)."""
    position: int = 1
    eta_s: int | None = None


@_event
class QueueOverflowed(CallEvent):
    """ACD: the queue gives up on the caller (`target` like "voicemail")."""
    target: str = ""
    reason: str = ""


@_event
class Unbridged(CallEvent):
    """ACD: blind transfer; the agent's leg goes, the caller waits for the next party."""
    agent: str = ""


@_event
class TransferToNumberRequested(CallEvent):
    """ACD: blind transfer to an outside number."""
    number: str = ""


@_event
class CallbackOffered(CallEvent):
    """ACD: offer the caller to keep their place (press 1)."""


@_event
class CallbackKept(CallEvent):
    """The ACD accepted the caller's request to keep their place."""


@_event
class DeskHoldRequested(CallEvent):
    held: bool = True


@_event
class DeskMuteRequested(CallEvent):
    muted: bool = True


@_event
class DeskHangupRequested(CallEvent):
    """挂断 from the agent's desk."""


@_event
class ConsultRequested(CallEvent):
    """咨询转接: call `target` (an extension, or an outside number) while the caller holds."""
    target: str = ""
    number: bool = False
    acd_agent: str | None = None


@_event
class ConsultDialled(CallEvent):
    ok: bool = True
    target: str = ""


@_event
class ConsultLegAnswered(CallEvent):
    pass


@_event
class ConsultLegGone(CallEvent):
    pass


@_event
class ConsultCompleted(CallEvent):
    """The agent hands the caller to the consulted party."""


@_event
class ConsultCancelled(CallEvent):
    """Back to the caller; the consulted party is hung up."""


@_event
class ListenInRequested(CallEvent):
    extension: str = ""


# -- actions -------------------------------------------------------------------------------------

class CallAction:
    """Base of everything `step` emits."""


def _action(cls):
    return dataclass(frozen=True)(cls)


# SIP port
@_action
class SendRinging(CallAction):
    pass


@_action
class Answer(CallAction):
    """Send our 200 OK with the SDP answer negotiated at the offer."""


@_action
class Reject(CallAction):
    status: int = 480


@_action
class Hangup(CallAction):
    """BYE (or CANCEL) on the caller's dialog."""


# media port
@_action
class Play(CallAction):
    prompts: tuple[str, ...] = ()
    play_id: str = ""


@_action
class PlayHoldTone(CallAction):
    pass


@_action
class StopPlayback(CallAction):
    pass


@_action
class HoldMedia(CallAction):
    """Send no media to the caller (before our 200 OK) or resume."""
    held: bool = True


@_action
class CloseMedia(CallAction):
    pass


# legs (we are the B2BUA)
@_action
class DialAgent(CallAction):
    """Ring an agent's registered phone; answers with AgentDialled."""
    extension: str = ""
    timeout_s: float = 30.0
    acd_agent: str | None = None
    path_step: str = ""


@_action
class DialNumber(CallAction):
    """Call an outside number through the trunk for the caller; answers with AgentDialled."""
    number: str = ""
    path_step: str = ""


@_action
class DialConsult(CallAction):
    target: str = ""
    number: bool = False


@_action
class DialMonitor(CallAction):
    extension: str = ""


@_action
class HangupAgentLeg(CallAction):
    reason: str = ""
    acd_agent: str | None = None  # only the leg ringing for this agent (None: any)


@_action
class HangupConsultLeg(CallAction):
    reason: str = ""


@_action
class HangupMonitors(CallAction):
    reason: str = ""


@_action
class HandOverToConsult(CallAction):
    """The consulted party becomes the caller's agent leg; the agent's own leg is hung up."""
    reason: str = ""


@_action
class HoldAgent(CallAction):
    """Desk hold: the caller and the agent stop hearing each other."""
    held: bool = True


@_action
class MuteAgent(CallAction):
    muted: bool = True


# callbacks
@_action
class DialCitizen(CallAction):
    """A callback: dial the citizen through the trunk; CitizenDialled says whether it went out."""


@_action
class HangupCitizenLeg(CallAction):
    reason: str = ""


@_action
class StartCallbackRecording(CallAction):
    """Stereo recording of a callback once the citizen answered."""


# the ACD port
@_action
class TellAcd(CallAction):
    event: Any = None
    later: bool = False  # on the next turn of the loop (not inside the ACD's own step)


@_action
class JoinQueue(CallAction):
    """CallerJoined to the ACD; a refusal comes back as QueueJoinRefused."""
    queue: str = ""
    skill: str | None = None
    priority: int = 0


@_action
class KeepPlace(CallAction):
    """CallbackRequested to the ACD; acceptance comes back as CallbackKept."""
    number: str = ""


@_action
class ReleaseConsulted(CallAction):
    agent: str = ""


# the IVR leg
@_action
class StartIvr(CallAction):
    pass


@_action
class ToIvr(CallAction):
    event: Any = None
    later: bool = False


# recordings and records
@_action
class MarkAnswered(CallAction):
    """Answer time noted; stereo call recording, live transcript and the CDR's answer start."""


@_action
class FinishCallRecording(CallAction):
    pass


@_action
class StopMessage(CallAction):
    reason: str = ""


@_action
class ReportOutcome(CallAction):
    """Outbound: tell the dialer how the attempt went (answered, busy, no_answer, failed)."""
    outcome: str = ""


@_action
class ReportSurvey(CallAction):
    answer: str = ""


@_action
class StartTimer(CallAction):
    name: str = ""
    delay_s: float = 0.0


@_action
class CancelTimers(CallAction):
    pass


@_action
class Forget(CallAction):
    """Out of the router's live calls and admission book; the call-ended hook hears it."""


@_action
class CloseLiveTranscript(CallAction):
    pass


@_action
class NotifyEnded(CallAction):
    """The CDR's end: `reason` as "by:reason", the path as one string."""
    reason: str = ""
    path: str = ""

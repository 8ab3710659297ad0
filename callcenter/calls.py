"""Call control: one controller per call, joining the SIP dialog, its RTP leg and its IVR flow.

The router receives SIP user-agent events, answers calls on a known DID, and runs the DID's IVR
flow: it performs the flow's actions (play, record, file a report, look up a case, hang up)
with the media engine and the case service, and feeds the results back to the pure engine.
Everything here runs on the event loop; database work is awaited in tasks, file writes go
to a worker thread.
"""

from __future__ import annotations

import logging
import random
import re
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

import numpy as np

from callcenter import acd
from callcenter.admission import AdmissionPolicy, CallBook
from callcenter.dialplan import DialPlan
from callcenter.media import events as media
from callcenter.media.recorder import StereoMixer
from callcenter.media.session import MediaSession
from callcenter.media.wav import WavWriter
from callcenter.prompts import MissingPrompt, PromptLibrary
from callcenter.sip import events as sip_events
from callcenter.sip.sdp import SdpError, build_offer, negotiate, read_answer
from ivr_flows import engine as ivr

log = logging.getLogger(__name__)

# Received audio louder than this RMS counts as speech for "end on silence" (about -36 dBFS).
SPEECH_RMS = 500.0
# Flush recordings to disk about once a second so a crash loses at most that much.
FLUSH_EVERY_FRAMES = 50
# ... and force them onto the disk (fdatasync) this often: a power cut loses at most that much.
SYNC_EVERY_S = 5.0


class CallServices(Protocol):
    """What call control needs from the rest of the system (implemented by case_core.service)."""

    async def call_started(self, *, call_id: str, direction: str, did: str | None, caller: str | None, now: datetime) -> None: ...
    async def call_answered(self, call_id: str, now: datetime) -> None: ...
    async def call_ended(self, call_id: str, now: datetime, reason: str, ivr_path: str) -> None: ...
    async def recording_started(self, *, call_id: str, kind: str, path: str, channels: int, now: datetime) -> int: ...
    async def recording_finished(self, recording_id: int, duration_s: float) -> None: ...
    async def file_report(self, *, channel: str, reporter_phone: str | None, call_id: str, recording_ids: tuple[int, ...], variables: dict, now: datetime) -> str: ...
    async def lookup_case(self, number: str) -> tuple[bool, str | None]: ...


@dataclass
class _Recording:
    """A WAV being written; bytes are handed to the writer thread in chunks."""

    recording_id: int | None
    writer: WavWriter
    pending: bytearray
    frames: int = 0
    ivr_id: str | None = None
    stop_digits: str = ""
    silence_s: float | None = None
    last_voice_at: float = 0.0
    max_timer: Any = None


def _safe_name(call_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", call_id)[:80]


class Call:
    """One call with a citizen: inbound (they called a DID) or outbound (a follow-up survey)."""

    def __init__(self, router: "CallRouter", call_id: str, caller: str | None, did: str, flow):
        self.router = router
        self.call_id = call_id
        self.caller = caller
        self.did = did
        self.flow = flow
        self.leg = None
        # Outbound calls: extra IVR variables, and who hears how the attempt and survey went.
        self.variables: dict = {}
        self.on_outcome: Callable[[str], None] | None = None
        self.on_survey: Callable[[str], None] | None = None
        self.ivr_state = None
        self.ended = False
        self.ivr_path: list[str] = []
        self.timers: dict[str, Any] = {}
        self.call_rec: _Recording | None = None
        self.msg_rec: _Recording | None = None
        self.ivr_recording_ids: dict[str, int] = {}
        self.answered_at: float | None = None
        self.ring_timer: Any = None
        self.mixer = StereoMixer()
        self.agent: AgentLeg | None = None
        # Supervisors listening in (监听): legs that hear both sides and are never heard.
        self.monitors: list[AgentLeg] = []
        # Attended transfer (咨询转接): the agent's call to the transfer target, while the
        # caller waits on hold.
        self.consult: AgentLeg | None = None
        self.consult_agent: str | None = None  # the ACD agent consulted, if any
        self.queue: str | None = None  # waiting in this ACD queue
        self.bridged_agent: str | None = None  # ACD agent id once connected
        self.urgent = False
        self.live = None  # live transcript stream of the caller's audio
        self.transcript_lines: list[str] = []
        self.callback_offered = False
        self.callback_requested = False
        # SDP answer kept while the caller waits for an agent to pick up (direct extension calls).
        self.pending_answer: bytes | None = None
        # Inbound calls: our 200 OK must be ACKed within [admission] ack_timeout_s.
        self.inbound = False
        self.acked = False
        self._rec_tasks: list[Any] = []

    # -- media events ------------------------------------------------------------------
    def media_events(self, events) -> None:
        for ev in events:
            if isinstance(ev, media.AudioSent):
                self._sent(ev.pcm)
            elif isinstance(ev, media.AudioReceived):
                self._audio(ev.pcm)
            elif isinstance(ev, media.DtmfReceived):
                self.digit(ev.digit)
            elif isinstance(ev, media.PlaybackFinished):
                if ev.play_id == "callback_confirm":
                    self.hangup("callback requested")
                elif ev.play_id == "hold":
                    agent = self.agent
                    held = self.consult is not None or (agent is not None and (agent.holding or agent.desk_held))
                    if held and self.leg is not None:
                        hold = self.router.prompts.sequence(("hold_tone",)) + bytes(8000 * 2 * 3)
                        self.leg.session.play(hold, "hold")
                else:
                    self.ivr_event(ivr.PlaybackFinished(ev.play_id))

    def _sent(self, pcm: bytes) -> None:
        """Once per tick: what the caller heard (prompts, then the agent) is the right channel."""
        rec = self.call_rec
        if rec is None:
            return
        self.mixer.add_agent(pcm)
        # Paired now, interleaved once per flush (StereoMixer.take): cheaper than per frame.
        caller, heard = self.mixer.advance()
        rec.frames += 1
        if self.monitors:
            # Listen-in: both sides, mixed to mono, to each supervisor's phone.
            both = np.frombuffer(caller, dtype="<i2").astype(np.int32) + np.frombuffer(heard, dtype="<i2")
            mono = np.clip(both, -32768, 32767).astype("<i2").tobytes()
            for monitor in self.monitors:
                if monitor.bridged and monitor.leg is not None:
                    monitor.leg.session.feed_bridge(mono)
        if rec.frames % FLUSH_EVERY_FRAMES == 0:
            rec.pending += self.mixer.take()
            self.router.flush(rec)

    def _audio(self, pcm: bytes) -> None:
        now = self.router.clock.seconds()
        if self.call_rec is not None:
            self.mixer.add_caller(pcm)
        if self.live is not None:
            self.live.feed(pcm)
        agent = self.agent
        if agent is not None and agent.bridged and agent.leg is not None and self.consult is None \
                and not agent.desk_held:
            agent.leg.session.feed_bridge(pcm)
        rec = self.msg_rec
        if rec is not None:
            rec.pending += pcm
            rec.frames += 1
            if rec.frames % FLUSH_EVERY_FRAMES == 0:
                self.router.flush(rec)
        msg = self.msg_rec
        if msg is not None and msg.silence_s:
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
            if samples.size and float(np.sqrt(np.mean(samples * samples))) >= SPEECH_RMS:
                msg.last_voice_at = now

    def digit(self, digit: str) -> None:
        if self.ended:
            return
        if self.queue is not None and self.callback_offered and digit == "1" and not self.callback_requested:
            self.request_callback()
            return
        self.ivr_path.append(digit)
        msg = self.msg_rec
        if msg is not None:
            if digit in msg.stop_digits:
                self.stop_message("digit")
            return
        self.ivr_event(ivr.DigitReceived(digit))

    # -- the IVR ------------------------------------------------------------------------
    def start_ivr(self) -> None:
        now = self.router.now_dt()
        variables = {**self.router.call_variables(self), **self.variables}
        self.ivr_state, actions = ivr.start(self.flow, now=now, variables=variables)
        self.run(actions)

    def ivr_event(self, event) -> None:
        if self.ivr_state is None:
            return
        try:
            self.ivr_state, actions = ivr.step(self.ivr_state, event, self.router.now_dt())
        except Exception:
            log.exception("IVR step failed on %r in call %s; hanging up", event, self.call_id)
            actions = [] if self.ended else [ivr.Hangup("ivr error")]
        self.run(actions)

    def run(self, actions) -> None:
        for action in actions:
            try:
                self._perform(action)
            except MissingPrompt as exc:
                log.error("call %s: %s", self.call_id, exc)
            except Exception:
                log.exception("call %s: action %r failed", self.call_id, action)

    def _perform(self, a) -> None:
        r = self.router
        if isinstance(a, ivr.Play):
            if not self.ended and self.leg is not None:
                self.leg.session.play(r.prompts.sequence(a.prompts), a.play_id)
        elif isinstance(a, ivr.StopPlayback):
            if self.leg is not None:
                self.leg.session.stop_playback()
        elif isinstance(a, ivr.StartRecording):
            self.start_message(a)
        elif isinstance(a, ivr.StopRecording):
            self.stop_message("digit")
        elif isinstance(a, ivr.SetTimer):
            self._set_timer(a.timer_id, a.at)
        elif isinstance(a, ivr.CancelTimer):
            t = self.timers.pop(a.timer_id, None)
            if t is not None and t.active():
                t.cancel()
        elif isinstance(a, ivr.FileReport):
            ids = tuple(i for i in (self.ivr_recording_ids.get(a.recording_id or ""),) if i)
            r.spawn(self._file_report(a.channel, ids, dict(a.variables)))
        elif isinstance(a, ivr.LookupCase):
            r.spawn(self._lookup(a.case_number))
        elif isinstance(a, ivr.Enqueue):
            self.enqueue(a.queue, a.skill)
        elif isinstance(a, ivr.RecordSurvey):
            self.ivr_path.append(f"survey:{a.answer}")
            if self.on_survey is not None:
                self.on_survey(a.answer)
        elif isinstance(a, ivr.Hangup):
            self.hangup(a.reason)
        elif isinstance(a, ivr.Log):
            log.info("call %s: %s", self.call_id, a.message)
        else:
            log.info("call %s: action %s not supported yet", self.call_id, type(a).__name__)

    def _set_timer(self, timer_id: str, at: datetime) -> None:
        old = self.timers.pop(timer_id, None)
        if old is not None and old.active():
            old.cancel()
        delay = max(0.0, (at - self.router.now_dt()).total_seconds())

        def fire() -> None:
            self.timers.pop(timer_id, None)
            self.ivr_event(ivr.TimerFired(timer_id))

        self.timers[timer_id] = self.router.clock.callLater(delay, fire)

    async def _file_report(self, channel: str, recording_ids: tuple[int, ...], variables: dict) -> None:
        number = await self.router.services.file_report(
            channel=channel,
            reporter_phone=self.caller,
            call_id=self.call_id,
            recording_ids=recording_ids,
            variables=variables,
            now=self.router.now_dt(),
        )
        log.info("call %s: report filed as case %s", self.call_id, number)
        self.ivr_event(ivr.ReportFiled(number))

    async def _lookup(self, number: str) -> None:
        found, status = await self.router.services.lookup_case(number)
        self.ivr_event(ivr.CaseLookedUp(found=found, case_number=number, status=status))

    # -- recordings -----------------------------------------------------------------------
    def start_message(self, a) -> None:
        if self.ended or self.msg_rec is not None:
            return
        r = self.router
        if a.beep and self.leg is not None:
            self.leg.session.play(r.prompts.pcm("beep"), f"beep:{a.recording_id}")
        path = r.recording_path(self.call_id, f"msg-{_safe_name(a.recording_id)}")
        rec = _Recording(
            recording_id=None,
            writer=WavWriter(path, channels=1),
            pending=bytearray(),
            ivr_id=a.recording_id,
            stop_digits=a.stop_digits or "",
            silence_s=a.silence_s,
            last_voice_at=r.clock.seconds(),
        )
        self.msg_rec = rec
        rec.max_timer = r.clock.callLater(a.max_s, self._max_reached, rec)
        r.spawn(self._register_recording(rec, "message", path))

    def _max_reached(self, rec: _Recording) -> None:
        rec.max_timer = None
        if self.msg_rec is rec:
            self.stop_message("max_length")

    def check_silence(self, now: float) -> None:
        rec = self.msg_rec
        if rec is not None and rec.silence_s and now - rec.last_voice_at >= rec.silence_s:
            self.stop_message("silence")

    async def _register_recording(self, rec: _Recording, kind: str, path: Path, channels: int = 1) -> None:
        rec.recording_id = await self.router.services.recording_started(
            call_id=self.call_id, kind=kind, path=str(path), channels=channels, now=self.router.now_dt()
        )
        if rec.ivr_id is not None:
            self.ivr_recording_ids[rec.ivr_id] = rec.recording_id

    def stop_message(self, reason: str) -> None:
        rec = self.msg_rec
        if rec is None:
            return
        self.msg_rec = None
        if rec.max_timer is not None and rec.max_timer.active():
            rec.max_timer.cancel()
        self.router.spawn(self._finish_message(rec, reason))

    async def _finish_message(self, rec: _Recording, reason: str) -> None:
        duration = await self.router.close_recording(rec)
        # The row may still be being inserted if the caller was very quick.
        for _ in range(100):
            if rec.recording_id is not None:
                break
            await self.router.sleep(0.01)
        if rec.recording_id is not None:
            await self.router.services.recording_finished(rec.recording_id, duration)
        self.ivr_event(ivr.RecordingStopped(recording_id=rec.ivr_id or "", reason=reason, duration_s=duration))
        if self.ended:
            self.ivr_event(ivr.CallerHungUp())

    # -- lifecycle ------------------------------------------------------------------------
    def answered(self) -> None:
        r = self.router
        self.answered_at = r.clock.seconds()
        path = r.recording_path(self.call_id, "call")
        # Stereo from the answer on: caller left, what the caller heard (IVR, then agent) right.
        self.call_rec = _Recording(recording_id=None, writer=WavWriter(path, channels=2), pending=bytearray())
        r.spawn(self._register_recording(self.call_rec, "call", path, channels=2))
        r.spawn(r.services.call_answered(self.call_id, r.now_dt()))
        if r.live_stt is not None:
            try:
                self.live = r.live_stt.open(self.call_id, 0)
            except Exception:
                log.exception("call %s: no live transcript", self.call_id)
        if self.flow is not None:
            self.start_ivr()

    def hangup(self, reason: str) -> None:
        if self.ended:
            return
        # Finish first (with our reason): the UA reports our own BYE back as CallEnded.
        self.finish("local", reason)
        self.router.sip.command("hangup", self.call_id)

    # -- outbound (we called the citizen) ------------------------------------------------------
    def outbound_answered(self, sdp: bytes) -> None:
        if self.ring_timer is not None and self.ring_timer.active():
            self.ring_timer.cancel()
        self.ring_timer = None
        try:
            n = read_answer(sdp)
        except SdpError as exc:
            log.warning("outbound call %s: unusable SDP answer (%s)", self.call_id, exc)
            self._outcome("failed")
            self.hangup("bad sdp")
            return
        use_answer(self.leg.session, n)
        self._outcome("answered")
        self.answered()

    def outbound_failed(self, status: int | None, reason: str) -> None:
        self._outcome(attempt_outcome(status))
        self.finish("remote", f"{status} {reason}")

    def outbound_ring_timeout(self) -> None:
        self.ring_timer = None
        if self.answered_at is None and not self.ended:
            self._outcome("no_answer")
            self.hangup("no answer")

    def _outcome(self, outcome: str) -> None:
        callback, self.on_outcome = self.on_outcome, None
        if callback is not None:
            callback(outcome)

    # -- agent legs -------------------------------------------------------------------------
    def connect_agent(self, extension: str, timeout_s: float = 30.0, acd_agent: str | None = None) -> bool:
        """Ring an agent's registered phone(s); the caller is bridged when it answers."""
        r = self.router
        bindings = r.bindings_for(extension)
        if not bindings or self.ended:
            return False
        binding = bindings[0]
        agent = AgentLeg(r, self, extension, acd_agent=acd_agent)
        if not agent.dial(binding.contact, binding.source, timeout_s):
            return False
        self.agent = agent
        self.ivr_path.append(f"agent:{extension}")
        return True

    def listen_in(self, extension: str) -> bool:
        """Ring a supervisor's phone; once answered it hears the call and is not heard."""
        r = self.router
        bindings = r.bindings_for(extension)
        if not bindings or self.ended or self.call_rec is None:
            return False
        monitor = AgentLeg(r, self, extension, monitor=True)
        if not monitor.dial(bindings[0].contact, bindings[0].source, 30.0, from_user=self.caller):
            return False
        self.monitors.append(monitor)
        return True

    def agent_answered(self, agent: "AgentLeg") -> None:
        if agent.monitor or agent is self.consult:
            return
        if self.ended:
            agent.hangup("caller left")
            return
        if agent.acd_agent is not None:
            # The ACD bridges (its Bridge action calls queue_answered).
            self.router.acd.handle(acd.AgentAnswered(agent.acd_agent, self.call_id))
            return
        if self.pending_answer is not None:
            sdp, self.pending_answer = self.pending_answer, None
            self.leg.session.hold(False)
            self.router._answer(self, sdp)
        elif self.leg is not None:
            self.leg.session.stop_playback()
        log.info("call %s bridged to agent %s", self.call_id, agent.extension)

    def agent_gone(self, agent: "AgentLeg", reason: str, status: int | None, was_bridged: bool) -> None:
        if agent is self.consult:
            self.cancel_consult()
            return
        if agent.monitor:
            if agent in self.monitors:
                self.monitors.remove(agent)
            return
        if self.agent is agent:
            self.agent = None
        if agent.acd_agent is not None and self.router.acd is not None:
            if was_bridged:
                self.router.acd.handle(acd.CallEnded(agent.acd_agent, self.call_id, hung_up_by="agent"))
                self.queue = None
                self.hangup(f"agent hung up ({reason})")
            elif not self.ended:
                self.router.acd.handle(acd.AgentNoAnswer(agent.acd_agent, self.call_id))
            return
        if self.ended:
            return
        if was_bridged:
            self.hangup(f"agent hung up ({reason})")
        elif self.pending_answer is not None:
            # A direct call to an extension that did not answer: pass the outcome on.
            self.pending_answer = None
            self.router.sip.command("reject", self.call_id, status if status and 400 <= status < 700 else 480)
            self.finish("local", f"agent {reason}")
        else:
            self.ivr_event(ivr.QueueResult("no_answer"))

    # -- queue (ACD) ----------------------------------------------------------------------------
    def enqueue(self, queue: str, skill: str | None) -> None:
        r = self.router
        if r.acd is None or self.ended:
            r.clock.callLater(0, self.ivr_event, ivr.QueueResult("no_agents"))
            return
        self.queue = queue
        self.ivr_path.append(f"queue:{queue}")
        if self.leg is not None:
            self.leg.session.play(r.prompts.sequence(("queue_wait",)), f"queue:{queue}")
        priority = 1 if self.urgent else 0
        if not r.acd.handle(acd.CallerJoined(queue, self.call_id, self.caller or "", priority, skill)):
            self.queue = None
            r.clock.callLater(0, self.ivr_event, ivr.QueueResult("no_agents"))

    def offer_callback(self) -> None:
        if self.leg is None or self.ended or self.queue is None:
            return
        self.callback_offered = True
        self.leg.session.play(self.router.prompts.sequence(("queue_callback_offer",)), "callback_offer")

    def request_callback(self) -> None:
        """The caller keeps their place and hangs up; the ACD calls them back when it is their turn."""
        r = self.router
        if not self.caller or not r.acd.handle(acd.CallbackRequested(self.call_id, self.caller)):
            return
        self.callback_requested = True
        self.ivr_path.append("callback")
        if self.leg is not None:
            self.leg.session.stop_playback()
            self.leg.session.play(r.prompts.sequence(("queue_callback_confirm",)), "callback_confirm")

    def unbridge(self, agent_id: str) -> None:
        """A blind transfer: the agent's leg goes, the caller waits for the next party."""
        agent, self.agent = self.agent, None
        self.bridged_agent = None
        if agent is not None:
            agent.hangup("transferred")
        if self.leg is not None and not self.ended:
            self.leg.session.hold(False)
            self.leg.session.play(self.router.prompts.sequence(("queue_wait",)), "transfer")

    # -- call control from the agent's desk (the hotline is the B2BUA) ---------------------------
    def desk_hold(self, held: bool) -> bool:
        """保持 from the browser: the caller hears the hold tone and the agent and caller stop
        hearing each other; False when there is no bridged agent (or a consultation runs)."""
        agent = self.agent
        if agent is None or not agent.bridged or self.ended or self.leg is None or self.consult is not None:
            return False
        if agent.desk_held != held:
            agent.desk_held = held
            self.leg.session.stop_playback()
            if held:
                self.leg.session.play(self.router.prompts.sequence(("hold_tone",)) + bytes(8000 * 2 * 3), "hold")
            self.ivr_path.append("desk:hold" if held else "desk:resume")
        return True

    def desk_mute(self, muted: bool) -> bool:
        """静音: the caller stops hearing the agent; the agent still hears the caller."""
        agent = self.agent
        if agent is None or not agent.bridged or self.ended:
            return False
        agent.muted = muted
        return True

    def desk_hangup(self) -> bool:
        """挂断 from the browser: both the agent's phone and the caller get a BYE; the agent
        goes to wrap-up as if they had hung up on the phone."""
        agent = self.agent
        if agent is None or not agent.bridged or self.ended:
            return False
        agent.hangup("agent hung up (desk)")
        self.agent_gone(agent, "desk", None, True)
        return True

    def start_consult(self, target: str, *, number: bool) -> bool:
        """咨询转接: hold the caller (hold tone) and call the target; the agent talks to it."""
        r = self.router
        agent = self.agent
        if agent is None or not agent.bridged or self.consult is not None or self.ended:
            return False
        if number:
            route = r.outbound_route(target)
            if route is None:
                return False
            contact, remote, creds = route
        else:
            bindings = r.bindings_for(target)
            if not bindings:
                return False
            contact, remote, creds = bindings[0].contact, bindings[0].source, None
        consult = AgentLeg(r, self, target, peer=agent)
        if not consult.dial(contact, remote, 30.0, from_user=self.caller, credentials=creds):
            return False
        self.consult = consult
        agent.peer = consult  # the agent now hears the target
        if self.leg is not None:
            self.leg.session.stop_playback()
            self.leg.session.play(r.prompts.sequence(("hold_tone",)) + bytes(8000 * 2 * 3), "hold")
        self.ivr_path.append(f"consult:{target}")
        return True

    def complete_consult(self) -> bool:
        """The agent hands the caller to the consulted party and leaves the call."""
        consult, agent = self.consult, self.agent
        if consult is None or not consult.bridged or agent is None:
            return False
        self.consult = None
        consult.peer = None  # the target now hears the caller
        self.agent = consult
        if self.leg is not None:
            self.leg.session.stop_playback()
        agent.hangup("transferred (attended)")
        self.ivr_path.append("consult:complete")
        return True

    def cancel_consult(self) -> None:
        """Back to the caller: the consulted party is hung up (or hung up itself)."""
        consult, self.consult = self.consult, None
        if consult is not None:
            consult.hangup("consult cancelled")
        if self.agent is not None:
            self.agent.peer = None
        if self.leg is not None and not self.ended:
            self.leg.session.stop_playback()

    def _release_consulted_agent(self) -> None:
        """The colleague consulted for an attended transfer was paused ("consult") so the queue
        would not offer them a call; once this call is over they are ready again (unless they
        changed their state themselves meanwhile)."""
        target, self.consult_agent = self.consult_agent, None
        agent = self.router.acd.state.agents.get(target) if target else None
        if agent is not None and agent.status == "paused" and agent.pause_reason == "consult":
            self.router.acd.handle(acd.AgentReady(target))

    def connect_number(self, number: str) -> bool:
        """Bridge the caller to an outside number through the trunk (transfer to a number)."""
        r = self.router
        route = r.outbound_route(number)
        if route is None or self.ended:
            return False
        leg = AgentLeg(r, self, number)
        if not leg.dial(route[0], route[1], 40.0, from_user=self.caller, credentials=route[2]):
            return False
        self.agent = leg
        self.ivr_path.append(f"transfer:{number}")
        return True

    def queue_answered(self, agent_id: str) -> None:
        if self.leg is not None:
            self.leg.session.stop_playback()
        self.bridged_agent = agent_id
        self.ivr_event(ivr.QueueResult("answered"))

    def announce_position(self, position: int, eta_s: int | None) -> None:
        if self.leg is None or self.ended:
            return
        prompts = ["queue_ahead", *ivr.say_prompts("number", position), "queue_people"]
        if eta_s:
            prompts += ["queue_eta", *ivr.say_prompts("number", max(1, round(eta_s / 60))), "unit_minute"]
        self.leg.session.play(self.router.prompts.sequence(prompts), f"announce:{position}")

    def queue_overflow(self, target: str, reason: str) -> None:
        self.queue = None
        if self.leg is not None:
            self.leg.session.stop_playback()
        self.ivr_path.append(f"overflow:{reason}")
        self.ivr_event(ivr.QueueResult(target.split(":", 1)[0]))

    def finish(self, by: str, reason: str) -> None:
        """The dialog is over (either side): stop media, close recordings, tell the IVR."""
        if self.ended:
            return
        self.ended = True
        r = self.router
        for t in [*self.timers.values(), self.ring_timer]:
            if t is not None and t.active():
                t.cancel()
        self.timers.clear()
        if self.leg is not None:
            self.leg.close()
        r.calls.pop(self.call_id, None)
        r.book.remove(self.call_id)
        if r.on_call_ended is not None:
            try:
                r.on_call_ended(self)
            except Exception:
                log.exception("call-ended hook failed on %s", self.call_id)
        if self.live is not None:
            self.live.close()
            self.live = None
        if r.acd is not None:
            if self.bridged_agent is not None:
                r.acd.handle(acd.CallEnded(self.bridged_agent, self.call_id, hung_up_by="caller"))
            elif self.queue is not None and not self.callback_requested:
                r.acd.handle(acd.CallerAbandoned(self.call_id))
            self._release_consulted_agent()
        self.queue = None
        if self.agent is not None:
            agent, self.agent = self.agent, None
            agent.hangup("caller left")
        if self.consult is not None:
            consult, self.consult = self.consult, None
            consult.hangup("caller left")
        for monitor in list(self.monitors):
            monitor.hangup("call ended")
        self.monitors.clear()
        if self.call_rec is not None:
            self.call_rec.pending += self.mixer.drain()
            r.spawn(self._finish_call_recording(self.call_rec))
        if self.msg_rec is not None:
            self.stop_message("hangup")  # CallerHungUp follows once the message is stored
        elif by != "local":
            self.ivr_event(ivr.CallerHungUp())
        r.spawn(r.services.call_ended(self.call_id, r.now_dt(), f"{by}:{reason}", " ".join(self.ivr_path)))

    async def _finish_call_recording(self, rec: _Recording) -> None:
        duration = await self.router.close_recording(rec)
        for _ in range(100):
            if rec.recording_id is not None:
                break
            await self.router.sleep(0.01)
        if rec.recording_id is not None:
            await self.router.services.recording_finished(rec.recording_id, duration)


class AgentLeg:
    """Our call to an agent's phone (we are the UAC), bridged to a caller once answered.

    Audio is bridged frame by frame through each session's `feed_bridge`; both legs keep
    their own codec, so PCMA on one side and PCMU on the other just works (each session
    encodes what it sends).
    """

    def __init__(self, router: "CallRouter", call, extension: str, acd_agent: str | None = None, peer=None,
                 monitor: bool = False):
        self.router = router
        # A listen-in leg: fed by the call's mixer, its own audio goes nowhere.
        self.monitor = monitor
        self.call = call  # the owner: an inbound Call, or a CallbackCall
        self.extension = extension  # an agent's extension, or the citizen's number
        self.acd_agent = acd_agent
        # The leg our audio goes to; None = the owner's own (inbound) leg.
        self.peer: AgentLeg | None = peer
        self.call_id: str | None = None
        self.leg = None
        self.bridged = False
        self.ended = False
        self.ring_timer: Any = None
        self.holding = False  # the far phone has us on hold
        self.desk_held = False  # the agent holds the caller from the desk
        self.muted = False  # the agent muted themselves from the desk

    def peer_session(self):
        if self.monitor:
            return None
        leg = self.peer.leg if self.peer is not None else self.call.leg
        return leg.session if leg is not None else None

    def dial(self, contact: str, remote: tuple[str, int], timeout_s: float, *, from_user: str | None = None,
             credentials=None, record_sent: bool = False) -> bool:
        r = self.router
        placed = r.dial_out(contact, remote, from_user=from_user or self.call.caller or "anonymous",
                            credentials=credentials, listener=self.media_events, record_sent=record_sent)
        if placed is None:
            return False
        self.leg, self.call_id = placed
        r.agent_legs[self.call_id] = self
        self.ring_timer = r.clock.callLater(timeout_s, self._no_answer)
        return True

    def media_events(self, events) -> None:
        hook = getattr(self.call, "leg_media", None)
        for ev in events:
            if isinstance(ev, media.AudioReceived) and self.bridged and not (self.muted or self.desk_held):
                peer = self.peer_session()
                if peer is not None:
                    peer.feed_bridge(ev.pcm)
        if hook is not None:
            hook(self, events)

    def sip_event(self, ev) -> None:
        if isinstance(ev, sip_events.ReofferReceived):
            self._reoffer(ev.sdp)
        elif isinstance(ev, sip_events.CallAnswered):
            self._answered(ev.sdp)
        elif isinstance(ev, (sip_events.CallFailed, sip_events.CallEnded, sip_events.CallCancelled)):
            reason = getattr(ev, "reason", "cancelled")
            status = getattr(ev, "status", None)
            self._gone(f"{status} {reason}" if status else reason, status)

    def _answered(self, sdp: bytes) -> None:
        self._cancel_ring()
        try:
            n = read_answer(sdp)
        except SdpError as exc:
            log.warning("agent %s answered with unusable SDP (%s); hanging up", self.extension, exc)
            self.hangup("bad sdp")
            self._gone("bad sdp", None)
            return
        use_answer(self.leg.session, n)
        self.bridged = True
        self.call.agent_answered(self)

    def _reoffer(self, sdp: bytes) -> None:
        """The far phone put the call on hold (or took it off): answer, and play the caller a
        hold tone meanwhile instead of silence."""
        r = self.router
        if self.leg is None:
            return
        try:
            n = negotiate(sdp, local_host=r.rtp_host, local_port=self.leg.port, session_id=r.rng.getrandbits(31))
        except SdpError:
            r.sip.command("reject", self.call_id, 488)
            return
        self.leg.session.set_remote(n.remote)
        held = n.direction in ("recvonly", "inactive")
        self.leg.session.hold(held)
        r.sip.command("answer_reoffer", self.call_id, n.answer)
        peer = self.peer_session()
        if peer is not None and self.bridged:
            if held:
                peer.play(r.prompts.sequence(("hold_tone",)) + bytes(8000 * 2 * 3), "hold")
                self.holding = True
            else:
                peer.stop_playback()
                self.holding = False

    def _no_answer(self) -> None:
        self.ring_timer = None
        if not self.bridged and not self.ended:
            self.hangup("no answer")
            self._gone("no answer", 408)

    def _cancel_ring(self) -> None:
        if self.ring_timer is not None and self.ring_timer.active():
            self.ring_timer.cancel()
        self.ring_timer = None

    def hangup(self, reason: str) -> None:
        if self.ended:
            return
        # Finish first: the UA reports our own BYE back as CallEnded, which must not count
        # as the far end hanging up.
        self._finish()
        if self.call_id is not None:
            self.router.sip.command("hangup", self.call_id)

    def _gone(self, reason: str, status: int | None) -> None:
        was_bridged = self.bridged
        self._finish()
        self.call.agent_gone(self, reason, status, was_bridged)

    def _finish(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.bridged = False
        self._cancel_ring()
        self.router.agent_legs.pop(self.call_id, None)
        self._close_media()

    def _close_media(self) -> None:
        if self.leg is not None:
            self.leg.close()
            self.leg = None


class CallbackCall:
    """A kept-place callback (预约回拨): ring the agent first, so they see the case before the
    citizen's phone rings (preview), then dial the citizen through the trunk, then bridge.

    It stands in `router.calls` under the original caller's call id, which is the ACD's key.
    Recorded like an inbound call: the citizen left, what the citizen heard right.
    """

    def __init__(self, router: "CallRouter", call_id: str, number: str, agent_id: str, queue: str | None,
                 on_outcome: Callable[[str], None] | None = None):
        self.router = router
        # None: a queue callback, reported to the ACD; else an agent's scheduled callback,
        # whose attempt outcome (answered, busy, no_answer, failed) goes to the dialer.
        self.on_outcome = on_outcome
        self.call_id = call_id
        self.caller = number
        self.did = "callback"
        self.agent_id = agent_id
        self.queue = queue
        self.ivr_path = ["callback"]
        self.agent_leg: AgentLeg | None = None
        self.citizen: AgentLeg | None = None
        self.bridged = False
        self.ended = False
        self.mixer = StereoMixer()
        self.rec: _Recording | None = None

    @property
    def leg(self):
        return self.citizen.leg if self.citizen is not None else None

    def start(self, extension: str, ring_timeout_s: float) -> bool:
        r = self.router
        bindings = r.bindings_for(extension)
        if not bindings:
            return False
        self.agent_leg = AgentLeg(r, self, extension)
        b = bindings[0]
        if not self.agent_leg.dial(b.contact, b.source, ring_timeout_s, from_user=self.caller):
            return False
        r.callbacks[self.call_id] = self
        return True

    # legs report here (same interface an inbound Call offers its agent leg)
    def agent_answered(self, leg: AgentLeg) -> None:
        r = self.router
        if leg is self.agent_leg:
            route = r.outbound_route(self.caller)
            self.citizen = AgentLeg(r, self, self.caller, peer=self.agent_leg)
            self.agent_leg.peer = self.citizen
            ok = route is not None and self.citizen.dial(
                route[0], route[1], 40.0, from_user=r.callback_from, credentials=route[2], record_sent=True
            )
            if not ok:
                self._failed("no route to the citizen" if route is None else "dial failed")
        elif leg is self.citizen:
            self.bridged = True
            self._start_recording()
            if self.on_outcome is not None:
                self.on_outcome("answered")
            else:
                r.acd.handle(acd.CallbackAnswered(self.call_id))

    def agent_gone(self, leg: AgentLeg, reason: str, status: int | None, was_bridged: bool) -> None:
        if self.ended:
            return
        if self.bridged:
            if self.on_outcome is None:
                by = "caller" if leg is self.citizen else "agent"
                self.router.acd.handle(acd.CallEnded(self.agent_id, self.call_id, hung_up_by=by))
            self._end(reason)
        else:
            self._failed(reason, status if leg is self.citizen else None)

    def queue_answered(self, agent_id: str) -> None:
        """The ACD's Bridge: audio already flows both ways since the citizen answered."""

    def hangup(self, reason: str) -> None:
        self._end(reason)

    def leg_media(self, leg: AgentLeg, events) -> None:
        rec = self.rec
        if leg is not self.citizen or rec is None:
            return
        for ev in events:
            if isinstance(ev, media.AudioReceived):
                self.mixer.add_caller(ev.pcm)
            elif isinstance(ev, media.AudioSent):
                self.mixer.add_agent(ev.pcm)
                rec.pending += self.mixer.tick()
                rec.frames += 1
                if rec.frames % FLUSH_EVERY_FRAMES == 0:
                    self.router.flush(rec)

    def _start_recording(self) -> None:
        r = self.router
        path = r.recording_path(self.call_id, "callback")
        self.rec = _Recording(recording_id=None, writer=WavWriter(path, channels=2), pending=bytearray())
        r.spawn(self._register(path))

    async def _register(self, path: Path) -> None:
        self.rec.recording_id = await self.router.services.recording_started(
            call_id=self.call_id, kind="call", path=str(path), channels=2, now=self.router.now_dt()
        )

    def _failed(self, reason: str, status: int | None = None) -> None:
        log.info("callback %s to %s failed: %s", self.call_id, self.caller, reason)
        if self.on_outcome is not None:
            self.on_outcome(attempt_outcome(status))
        else:
            self.router.acd.handle(acd.CallbackFailed(self.call_id, reason))
        self._end(reason)

    def _end(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        for leg in (self.agent_leg, self.citizen):
            if leg is not None:
                leg.hangup(reason)
        if self.router.callbacks.get(self.call_id) is self:
            self.router.callbacks.pop(self.call_id)
        rec = self.rec
        if rec is not None:
            rec.pending += self.mixer.drain()
            self.router.spawn(self._close(rec))

    async def _close(self, rec: _Recording) -> None:
        duration = await self.router.close_recording(rec)
        if rec.recording_id is not None:
            await self.router.services.recording_finished(rec.recording_id, duration)


class CallRouter:
    """Receives SIP events, owns the live calls, and offers them the shared services."""

    def __init__(
        self,
        *,
        sip,
        rtp,
        flows_by_did: dict[str, Any],
        prompts: PromptLibrary,
        services: CallServices,
        clock,
        spawn: Callable[[Awaitable[Any]], Any],
        sleep: Callable[[float], Awaitable[None]],
        executor: Executor,
        storage_dir: Path,
        rtp_host: str,
        now_dt: Callable[[], datetime],
        call_variables: Callable[["Call"], dict] | None = None,
        rtp_timeout_s: float = 30.0,
        ring_s: float = 0.0,
        trunks: tuple = (),
        callback_from: str = "12319",
        flows_by_name: dict[str, Any] | None = None,
        outbound_ring_s: float = 40.0,
        live_stt=None,
        publish: Callable[..., None] | None = None,
        rng: random.Random | None = None,
        admission: AdmissionPolicy | None = None,
        dialplan: DialPlan | None = None,
    ):
        self.sip = sip
        self.rtp = rtp
        self.flows_by_did = flows_by_did
        self.prompts = prompts
        self.services = services
        self.clock = clock
        self.spawn = spawn
        self.sleep = sleep
        self.executor = executor
        self._flushes: list[tuple[WavWriter, bytes]] = []
        # When each open recording was last forced to disk (fdatasync, every SYNC_EVERY_S).
        self._synced_at: dict[WavWriter, float] = {}
        self.storage_dir = Path(storage_dir)
        self.rtp_host = rtp_host
        self.now_dt = now_dt
        self._call_variables = call_variables
        self.rtp_timeout_s = rtp_timeout_s
        # Ringing time before answering (a CANCEL in this window gets 487).
        self.ring_s = ring_s
        # Outbound calls (callbacks, follow-ups) leave through the first trunk with a host.
        self.trunks = trunks
        self.callback_from = callback_from
        self.flows_by_name = flows_by_name or {}
        self.outbound_ring_s = outbound_ring_s
        # Live transcripts (vosk in worker processes) of the caller, shown on the agent's desk.
        self.live_stt = live_stt
        self.publish = publish or (lambda kind, data, to_user=None: None)
        self.rng = rng or random.SystemRandom()
        self.calls: dict[str, Call] = {}
        self.agent_legs: dict[str, AgentLeg] = {}
        self.acd = None  # AcdDriver, set by the bootstrap when queues are configured
        # Kept-place callbacks in progress, under the original caller's call id (the ACD's key).
        self.callbacks: dict[str, CallbackCall] = {}
        self.rejected = 0
        # Call admission (callcenter.admission): None admits every call to a DID or a
        # registered extension, as before admission existed (unit tests' routers).
        self.admission = admission
        self.dialplan = dialplan or DialPlan()
        self.book = CallBook()  # live inbound calls by source, for the limits
        # Database writes waiting in the single writer (callcenter.write_queue), for admission.
        self.write_backlog: Callable[[], int] = lambda: 0
        # Hears (source, user, reason) when an INVITE's digest answer failed (for bans).
        self.on_digest_failed: Callable[[tuple[str, int], str, str], None] | None = None
        self._refused: dict[int, int] = {}
        self._refused_logged_at = float("-inf")
        # Hears every call with a citizen that ends (callcenter.metrics counts the outcomes).
        self.on_call_ended: Callable[[Call], None] | None = None
        self._watchdog = None

    def call_variables(self, call: Call) -> dict:
        # The flows' `agents_ready` means "someone will answer if I queue": agents at work,
        # busy ones included (a caller waits in line for them); paused agents do not count.
        staffed = self.acd.agents_staffed() if self.acd is not None else 0
        base = {"caller": call.caller or "", "did": call.did, "agents_ready": staffed}
        if self._call_variables is not None:
            base.update(self._call_variables(call))
        return base

    # -- SIP events -----------------------------------------------------------------------
    def sip_event(self, ev) -> None:
        if isinstance(ev, sip_events.CallOffered):
            self._offered(ev)
            return
        if isinstance(ev, sip_events.ContactsChanged):
            log.info("registrations of %s: %s", ev.aor, ", ".join(ev.contacts) or "none")
            return
        if isinstance(ev, sip_events.CallAcked):
            acked = self.calls.get(ev.call_id)
            if acked is not None:
                acked.acked = True
            return
        if isinstance(ev, sip_events.MessageRejected):
            log.warning("SIP message from %s rejected (%s): %s", ev.source, ev.status, ev.reason)
            return
        call_id = getattr(ev, "call_id", None)
        agent = self.agent_legs.get(call_id)
        if agent is not None:
            agent.sip_event(ev)
            return
        call = self.calls.get(call_id)
        if call is None:
            return
        if isinstance(ev, sip_events.CallAnswered):
            call.outbound_answered(ev.sdp)
        elif isinstance(ev, sip_events.CallFailed):
            call.outbound_failed(ev.status, ev.reason)
        elif isinstance(ev, sip_events.CallEnded):
            if call.answered_at is None:
                call._outcome("failed")
            call.finish(ev.by, ev.reason)
        elif isinstance(ev, sip_events.CallCancelled):
            call.finish("remote", "cancelled")
        elif isinstance(ev, sip_events.DtmfInfoReceived):
            call.digit(ev.digit)
        elif isinstance(ev, sip_events.ReofferReceived):
            self._reoffer(call, ev)

    def _did_for(self, ev) -> str | None:
        for user in (ev.to_user, _uri_user(ev.request_uri)):
            if user and user in self.flows_by_did:
                return user
        return None

    def live_transcript(self, call_id: str, channel: int, event) -> None:
        """A partial or final result for a live call: to the agent on (or ringing for) it."""
        call = self.calls.get(call_id)
        if call is None:
            return
        agent = call.bridged_agent or (call.agent.acd_agent if call.agent is not None else None)
        final = type(event).__name__ == "FinalTranscript"
        data = {"call_id": call_id, "channel": channel, "text": event.text, "final": final}
        if final:
            call.transcript_lines.append(event.text)
        if agent is not None:
            self.publish("live_transcript", data, to_user=agent)

    def listen_in(self, call_id: str, extension: str) -> bool:
        call = self.calls.get(call_id)
        return call is not None and call.listen_in(extension)

    def find(self, call_id: str):
        """The live call or callback the ACD means by `call_id`."""
        return self.calls.get(call_id) or self.callbacks.get(call_id)

    def outbound_route(self, number: str):
        """(target URI, address, credentials) to call a citizen's number through the first trunk;
        None when there is no trunk or the dial plan refuses the number."""
        from callcenter.sip.ua import Credentials

        checked = self.dialplan.check(number)
        if not checked.allowed:
            log.warning("not calling %r: %s", number, checked.reason)
            return None
        number = checked.number
        for trunk in self.trunks:
            if trunk.host:
                creds = Credentials(trunk.username, trunk.password) if trunk.username else None
                return f"sip:{number}@{trunk.host}:{trunk.port}", (trunk.host, trunk.port), creds
        return None

    def new_session(self, **kwargs) -> MediaSession:
        """A media session with fresh random SSRC, sequence and timestamp (RFC 3550 §5.1)."""
        return MediaSession(
            ssrc=self.rng.getrandbits(32),
            initial_sequence=self.rng.getrandbits(16),
            initial_timestamp=self.rng.getrandbits(32),
            **kwargs,
        )

    def dial_out(self, contact: str, remote: tuple[str, int], *, from_user: str, credentials,
                 listener, record_sent: bool):
        """Open an RTP leg, offer it, and send the INVITE: (leg, call id), or None.

        The leg sends nothing until the answer says where (`hold`); whoever receives
        CallAnswered sets the codec and remote and takes it off hold.
        """
        session = self.new_session(codec="PCMA", payload_type=8, dtmf_payload_type=101, remote=None,
                                   record_sent=record_sent)
        session.hold(True)
        try:
            leg = self.rtp.open(session, listener)
        except Exception as exc:
            log.error("cannot call %s: no RTP port (%s)", contact, exc)
            return None
        offer = build_offer(local_host=self.rtp_host, local_port=leg.port, session_id=self.rng.getrandbits(31))
        call_id = self.sip.command(
            "invite", target_uri=contact, remote=remote, from_user=from_user, sdp=offer, credentials=credentials
        )
        if not call_id:
            leg.close()
            return None
        return leg, call_id

    def place_ivr_call(
        self,
        *,
        number: str,
        flow_name: str,
        variables: dict,
        on_outcome: Callable[[str], None],
        on_survey: Callable[[str], None] | None = None,
        ring_timeout_s: float | None = None,
    ) -> "Call | None":
        """Call a citizen through the trunk and run an IVR flow (the satisfaction survey) when
        they answer. `on_outcome` hears once: answered, busy, no_answer or failed."""
        route = self.outbound_route(number)
        flow = self.flows_by_name.get(flow_name)
        if route is None or flow is None:
            log.warning("cannot call %s: %s", number, "no trunk with a host" if route is None else f"no flow {flow_name}")
            return None
        placed = self.dial_out(route[0], route[1], from_user=self.callback_from, credentials=route[2],
                               listener=None, record_sent=True)
        if placed is None:
            return None
        leg, call_id = placed
        call = Call(self, call_id, number, f"outbound:{flow_name}", flow)
        call.leg = leg
        leg.listener = call.media_events
        call.variables = dict(variables)
        call.on_outcome, call.on_survey = on_outcome, on_survey
        call.ring_timer = self.clock.callLater(ring_timeout_s or self.outbound_ring_s, call.outbound_ring_timeout)
        self.calls[call_id] = call
        self.spawn(self.services.call_started(
            call_id=call_id, direction="outbound", did=call.did, caller=number, now=self.now_dt()))
        self._ensure_watchdog()
        return call

    def place_agent_callback(self, callback_id: str, number: str, agent_id: str | None,
                             on_outcome: Callable[[str], None]) -> bool:
        """An agent's scheduled callback: their phone rings first (preview), then the citizen's."""
        if not self._may_dial(number):
            return False
        extension = None
        if agent_id and self.acd is not None and agent_id in self.acd.state.agents:
            extension = self.acd.state.agents[agent_id].extension
        elif agent_id is None and self.acd is not None:
            # No agent of its own (a kept place that expired before any try): the agent who
            # has been ready longest takes it, as the queue would have.
            ready = [a for a in self.acd.state.agents.values()
                     if a.status == "ready" and self.bindings_for(a.extension)]
            if ready:
                chosen = min(ready, key=lambda a: (a.since is None, a.since or 0, a.id))
                agent_id, extension = chosen.id, chosen.extension
        if extension is None:
            log.warning("callback %s: agent %s has no extension", callback_id, agent_id)
            return False
        cb = CallbackCall(self, callback_id, number, agent_id, None, on_outcome=on_outcome)
        return cb.start(extension, 30.0)

    def place_callback(self, call_id: str, number: str, agent_id: str, extension: str, queue: str,
                       ring_timeout_s: float) -> bool:
        if not self._may_dial(number):
            return False
        cb = CallbackCall(self, call_id, number, agent_id, queue)
        return cb.start(extension, ring_timeout_s)

    def _may_dial(self, number: str) -> bool:
        """The [dialplan] allows calling `number` back (checked before an agent's phone rings)."""
        checked = self.dialplan.check(number)
        if not checked.allowed:
            log.warning("callback to %r not placed: %s", number, checked.reason)
        return checked.allowed

    def bindings_for(self, extension: str) -> list:
        registrar = getattr(self.sip.ua, "registrar", None)
        if registrar is None:
            return []
        return registrar.bindings_for_user(extension, self.clock.seconds())

    def _admit(self, ev) -> bool:
        """Call admission's verdict on a new INVITE: False when it was refused (already answered)."""
        if self.admission is None:
            return True
        now = self.clock.seconds()
        verdict, _, headers, auth = self.admission.assess(
            source=ev.source, numbers=(ev.to_user, _uri_user(ev.request_uri)),
            is_extension=lambda n: n not in self.flows_by_did and bool(self.bindings_for(n)),
            proxy_authorization=getattr(ev, "proxy_authorization", None),
            calls_total=len(self.book), calls_from_source=self.book.from_ip(ev.source[0]),
            backlog=self.write_backlog(), now=now)
        if auth.kind in ("bad", "forged") and self.on_digest_failed is not None:
            self.on_digest_failed(ev.source, ev.from_user or "", f"INVITE digest {auth.kind}")
        if verdict.action == "admit":
            return True
        self.rejected += 1
        self.sip.command("reject", ev.call_id, verdict.status, headers=headers)
        if verdict.status != 407:
            # Refusals come in floods: one summary line every 10 s, not one per INVITE.
            self._refused[verdict.status] = self._refused.get(verdict.status, 0) + 1
            if now - self._refused_logged_at >= 10.0:
                counts = ", ".join(f"{n} × {s}" for s, n in sorted(self._refused.items()))
                log.warning("calls refused: %s (latest from %s:%s: %s)", counts, *ev.source[:2], verdict.why)
                self._refused.clear()
                self._refused_logged_at = now
        return False

    def _offered(self, ev) -> None:
        if not self._admit(ev):
            return
        did = self._did_for(ev)
        extension = None
        if did is None and ev.to_user and self.bindings_for(ev.to_user):
            extension = ev.to_user
        if did is None and extension is None:
            self.rejected += 1
            self.sip.command("reject", ev.call_id, 404)
            return
        try:
            probe = negotiate(ev.sdp, local_host=self.rtp_host, local_port=9, session_id=1)
        except SdpError as exc:
            log.info("call %s: no usable SDP (%s): 488", ev.call_id, exc)
            self.rejected += 1
            self.sip.command("reject", ev.call_id, 488)
            return
        call = Call(self, ev.call_id, ev.from_user, did or extension, self.flows_by_did.get(did))
        session = self.new_session(
            codec=probe.codec,
            payload_type=probe.payload_type,
            dtmf_payload_type=probe.dtmf_payload_type,
            remote=probe.remote,
            inband_dtmf=probe.dtmf_payload_type is None,
            record_sent=True,
        )
        try:
            call.leg = self.rtp.open(session, call.media_events)
        except Exception as exc:
            log.error("call %s: cannot open RTP (%s): 503", ev.call_id, exc)
            self.sip.command("reject", ev.call_id, 503)
            return
        answer = negotiate(
            ev.sdp,
            local_host=self.rtp_host,
            local_port=call.leg.port,
            session_id=self.rng.getrandbits(31),
        )
        self.calls[call.call_id] = call
        call.inbound = True
        self.book.add(call.call_id, ev.source[0])
        self.spawn(
            self.services.call_started(
                call_id=call.call_id, direction="inbound", did=did or extension, caller=call.caller, now=self.now_dt()
            )
        )
        self.sip.command("ringing", call.call_id)
        if extension is not None:
            # A direct call to an agent's extension: answer only when the agent does.
            call.pending_answer = answer.answer
            session.hold(True)  # no media towards the caller before our 200 OK
            if not call.connect_agent(extension):
                self.sip.command("reject", call.call_id, 480)
                call.finish("local", "extension unreachable")
            self._ensure_watchdog()
            return
        if self.ring_s > 0:
            call.ring_timer = self.clock.callLater(self.ring_s, self._answer, call, answer.answer)
        else:
            self._answer(call, answer.answer)
        self._ensure_watchdog()

    def _answer(self, call: Call, sdp: bytes) -> None:
        call.ring_timer = None
        if call.ended or call.call_id not in self.calls:
            return
        if self.sip.command("answer", call.call_id, sdp) is False:
            call.finish("local", "answer refused")
            return
        call.answered()

    def _reoffer(self, call: Call, ev) -> None:
        try:
            n = negotiate(ev.sdp, local_host=self.rtp_host, local_port=call.leg.port, session_id=1)
        except SdpError:
            # While a re-INVITE is pending, reject answers only it; the call stays up.
            self.sip.command("reject", call.call_id, 488)
            return
        call.leg.session.set_remote(n.remote)
        call.leg.session.hold(n.direction in ("recvonly", "inactive"))
        self.sip.command("answer_reoffer", call.call_id, n.answer)

    # -- watchdog: RTP timeout and end-on-silence -----------------------------------------
    def _ensure_watchdog(self) -> None:
        if self._watchdog is None:
            self._watch_due = self.clock.seconds() + 0.25
            self._watchdog = self.clock.callLater(0.25, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        now = self.clock.seconds()
        policy = self.admission
        # A watchdog a second late means the loop itself stalled (overload): ACKs and RTP may be
        # waiting unread in the sockets, so no caller is blamed for them this round.
        stalled = now - getattr(self, "_watch_due", now) > 1.0
        for call in list(self.calls.values()):
            call.check_silence(now)
            last = getattr(call.leg.session, "last_received_at", None) if call.leg else None
            if policy is not None and call.answered_at is not None and not call.ended and not stalled:
                # A caller that never ACKs our 200 OK, or never sends a packet of audio, holds
                # a port for nothing (the slow-INVITE attack): end it within seconds.
                since = now - call.answered_at
                if call.inbound and not call.acked and since > policy.ack_timeout_s:
                    log.info("call %s: no ACK after %.0f s, hanging up", call.call_id, since)
                    call.hangup("no ack")
                    continue
                if last is None and since > policy.first_rtp_timeout_s:
                    log.info("call %s: no RTP from the caller after %.0f s, hanging up", call.call_id, since)
                    call.hangup("no rtp")
                    continue
            started = call.answered_at or now
            if now - (last if last is not None else started) > self.rtp_timeout_s:
                log.warning("call %s: no RTP for %.0f s, hanging up", call.call_id, self.rtp_timeout_s)
                call.hangup("rtp timeout")
        if self.calls:
            self._ensure_watchdog()

    # -- recordings ------------------------------------------------------------------------
    def recording_path(self, call_id: str, kind: str) -> Path:
        day = self.now_dt().strftime("%Y/%m/%d")
        path = self.storage_dir / day / f"{_safe_name(call_id)}-{kind}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def flush(self, rec: _Recording) -> None:
        # Every recording due in this tick goes to the writer thread in one job: a job per
        # recording cost a thread hand-off each (1,000 a second at 1,000 calls).
        self._flushes.append((rec.writer, bytes(rec.pending)))
        rec.pending.clear()
        if len(self._flushes) == 1:
            self.clock.callLater(0, self._write_flushes)

    def _write_flushes(self) -> None:
        batch, self._flushes = self._flushes, []
        if not batch:
            return

        now = self.clock.seconds()
        due = [w for w, _ in batch if now - self._synced_at.get(w, float("-inf")) >= SYNC_EVERY_S]
        for w in due:
            self._synced_at[w] = now

        def write() -> None:
            for writer, chunk in batch:
                try:
                    writer.write(chunk)
                    writer.flush()
                except Exception:  # one bad file must not cost the others their audio
                    log.exception("recording %s: write failed", writer.path)
            for writer in due:  # to the disk itself every few seconds: a power cut keeps it
                try:
                    writer.sync()
                except (OSError, ValueError):
                    log.exception("recording %s: sync failed", writer.path)

        self.executor.submit(write)

    async def close_recording(self, rec: _Recording) -> float:
        import asyncio

        self._write_flushes()  # queued chunks reach the file before it is closed
        chunk = bytes(rec.pending)
        rec.pending.clear()
        writer = rec.writer

        self._synced_at.pop(writer, None)

        def close() -> float:
            writer.write(chunk)
            writer.flush()
            writer.sync()
            return writer.close()

        return await asyncio.wrap_future(self.executor.submit(close))

    def stop(self) -> None:
        for call in [*self.calls.values(), *self.callbacks.values()]:
            call.hangup("shutdown")
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None


def use_answer(session: MediaSession, n) -> None:
    """Send to where, and in the codec, the far end's SDP answer says (legs we dialled)."""
    session.set_codec(n.codec, n.payload_type, n.dtmf_payload_type)
    session.set_remote(n.remote)
    session.hold(False)


def attempt_outcome(status: int | None) -> str:
    """A failed outbound attempt as the callback scheduler counts it."""
    if status in (486, 600):
        return "busy"
    if status in (408, 480, 487) or status is None:
        return "no_answer"
    return "failed"


def _uri_user(uri: str) -> str | None:
    m = re.match(r"^\s*<?sips?:([^@;>]+)@", uri or "")
    return m.group(1) if m else None

"""The call driver on fakes (task.Clock, a recording SIP port, fake RTP legs and registrar):
the controller's actions become typed SIP commands in the right order, and ACD events reach
calls only through the router's `deliver`."""

from __future__ import annotations

import random
from datetime import datetime
from types import SimpleNamespace

from twisted.internet.task import Clock

from callcenter import acd
from callcenter.calls import model as m
from callcenter.calls.call import Call
from callcenter.calls.router import CallRouter
from callcenter.sip import events as sip_events
from callcenter.sip.sdp import build_offer, negotiate

PHONE = ("127.0.0.5", 5062)


class FakeSip:
    """The SipPort, recording each command as (name, call id, detail)."""

    def __init__(self, bindings):
        self.sent: list[tuple] = []
        self.registrar = SimpleNamespace(bindings_for_user=lambda user, now: bindings.get(user, []))
        self._n = 0

    def ringing(self, call_id):
        self.sent.append(("ringing", call_id))

    def answer(self, call_id, sdp):
        self.sent.append(("answer", call_id))
        return True

    def reject(self, call_id, status, headers=()):
        self.sent.append(("reject", call_id, status))

    def hangup(self, call_id):
        self.sent.append(("hangup", call_id))

    def answer_reoffer(self, call_id, sdp):
        self.sent.append(("answer_reoffer", call_id))

    def invite(self, *, target_uri, remote, from_user, sdp, credentials=None):
        self._n += 1
        self.sent.append(("invite", target_uri, from_user))
        self.offer = sdp
        return f"leg-{self._n}"


class FakeLeg:
    def __init__(self, session, listener, port):
        self.session, self.listener, self.port, self.closed = session, listener, port, False

    def close(self):
        self.closed = True


class FakeRtp:
    def __init__(self):
        self.legs: list[FakeLeg] = []

    def open(self, session, listener):
        leg = FakeLeg(session, listener, 40000 + 2 * len(self.legs))
        self.legs.append(leg)
        return leg


class FakeAcd:
    """The AcdPort: takes every event and records it."""

    def __init__(self):
        self.events: list = []

    def handle(self, event) -> bool:
        self.events.append(event)
        return True

    def agents_staffed(self) -> int:
        return 1

    def release_consulted(self, agent_id) -> None:
        self.events.append(("release", agent_id))


def _router(tmp_path, bindings, flows=None):
    tasks: list = []
    services = SimpleNamespace(call_started=_noop, call_answered=_noop, call_ended=_noop,
                               recording_started=_noop, recording_finished=_noop)
    router = CallRouter(sip=FakeSip(bindings), rtp=FakeRtp(), flows_by_did=flows or {}, prompts=None,
                        services=services, clock=Clock(), spawn=lambda coro: (coro.close(), tasks.append(coro)),
                        sleep=None, executor=None, storage_dir=tmp_path, rtp_host="127.0.0.1",
                        now_dt=lambda: datetime(2026, 12, 8, 9, 0), rng=random.Random(1))
    router.start_recording = lambda **kw: None  # no files in these tests
    return router


async def _noop(*a, **k):
    return None


def _offer(call_id="c1", to="1001"):
    sdp = build_offer(local_host="127.0.0.5", local_port=30000, session_id=7)
    return sip_events.CallOffered(call_id=call_id, from_uri="sip:1002@127.0.0.5", from_user="1002",
                                  from_display=None, to_user=to, request_uri=f"sip:{to}@127.0.0.1", sdp=sdp,
                                  source=PHONE, received_at=0.0)


def _phone_answer(router):
    return negotiate(router.sip.offer, local_host="127.0.0.5", local_port=30002, session_id=9).answer


def test_a_direct_extension_call_is_answered_only_when_the_agent_answers(tmp_path):
    """180 at once, the agent's phone is invited, our 200 OK goes out when it answers, and
    the caller gets a BYE when the agent hangs up."""
    binding = SimpleNamespace(contact="sip:1001@127.0.0.6:5062", source=("127.0.0.6", 5062))
    router = _router(tmp_path, {"1001": [binding]})
    router.sip_event(_offer())
    call = router.calls["c1"]
    assert call.state.phase == "extension_ringing"
    assert router.sip.sent == [("ringing", "c1"), ("invite", "sip:1001@127.0.0.6:5062", "1002")]
    router.sip_event(sip_events.CallAnswered("leg-1", _phone_answer(router)))
    assert router.sip.sent[-1] == ("answer", "c1")
    assert call.state.phase == "bridged" and call.answered_at is not None
    router.sip_event(sip_events.CallEnded("leg-1", "remote", "bye"))
    assert router.sip.sent[-1] == ("hangup", "c1")
    assert call.ended and "c1" not in router.calls and router.rtp.legs[0].closed


def test_an_unregistered_extension_is_404_and_a_busy_one_passes_486_on(tmp_path):
    """No binding: 404 before any port opens. A busy phone: the caller gets its 486."""
    binding = SimpleNamespace(contact="sip:1001@127.0.0.6:5062", source=("127.0.0.6", 5062))
    router = _router(tmp_path, {"1001": [binding]})
    router.sip_event(_offer("c0", to="1009"))
    assert router.sip.sent == [("reject", "c0", 404)] and not router.rtp.legs
    router.sip_event(_offer())
    router.sip_event(sip_events.CallFailed("leg-1", 486, "Busy Here"))
    assert router.sip.sent[-1] == ("reject", "c1", 486)
    assert "c1" not in router.calls


def test_acd_events_reach_a_queued_call_through_deliver(tmp_path):
    """The ACD rings an agent via `deliver`; a refused ring is False (the ACD answers
    AgentNoAnswer itself); the bridge and the caller's hang-up come back as ACD events."""
    binding = SimpleNamespace(contact="sip:1001@127.0.0.6:5062", source=("127.0.0.6", 5062))
    router = _router(tmp_path, {"1001": [binding]}, flows={"12319": None})
    router.acd = FakeAcd()
    call = router.calls["q1"] = Call(router, "q1", "13800000001", "12319", None)
    call.state = m.CallState(call_id="q1", kind="inbound", phase="queued", caller="13800000001", acd=True,
                             answered=True, queue="report")
    assert not router.deliver("q1", m.AgentRingRequested("agent9", "1009", 15))  # no phone registered
    assert not router.deliver("nobody", m.AgentRingRequested("agent1", "1001", 15))
    assert router.deliver("q1", m.AgentRingRequested("agent1", "1001", 15))
    assert call.ivr_path == ["agent:1001"]
    router.sip_event(sip_events.CallAnswered("leg-1", _phone_answer(router)))
    assert router.acd.events == [acd.AgentAnswered("agent1", "q1")]
    assert router.deliver("q1", m.QueueBridged("agent1")) and call.bridged_agent == "agent1"
    assert router.describe("q1").ivr_path == ("agent:1001",)
    call.remote_ended("remote", "bye")
    assert router.acd.events[-1] == acd.CallEnded("agent1", "q1", hung_up_by="caller")
    assert router.sip.sent[-1] == ("hangup", "leg-1")  # the agent's leg goes too

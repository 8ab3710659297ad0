"""A caller reaches an agent: queue, agent's phone rings, screen pop, bridged audio, wrap-up, case."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import contextmanager

import aiohttp
import pytest

from tests.e2e.audio import best_correlation, heard_correlation, report_pcap, wav_pcm
from tests.e2e.conftest import DATABASES, carrier_trunk, query, server_db_url, start_server, stop_server
from tests.e2e.peers.pcap import speech_pcm
from tests.e2e.peers.runner import Baresip, run_sipp

pytestmark = pytest.mark.e2e

ALWAYS_OPEN = '[ivr]\nopen = "00:00"\nclose = "24:00"\nopen_days = "everyday"\n'


@pytest.fixture
def open_hotline(request, tmp_path, prompts_dir):
    """A hotline that is always within business hours (so option 1 goes to the queue); SQLite unless
    parametrized indirectly with the database."""
    server = start_server(tmp_path, prompts_dir, db_url=server_db_url(request, tmp_path), extra=ALWAYS_OPEN)
    try:
        yield server
    finally:
        stop_server(server)


class EventListener:
    """A WebSocket client on /ws as one user, collecting events in a thread."""

    def __init__(self, url: str, token: str):
        self.url, self.token, self.events = url, token, []
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"}) as session:
            async with session.ws_connect(self.url) as ws:
                self._ready.set()
                while not self._stop.is_set():
                    try:
                        msg = await ws.receive(timeout=0.2)
                    except asyncio.TimeoutError:
                        continue
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        self.events.append((time.monotonic(), json.loads(msg.data)))
                    elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(10), "WebSocket did not connect"
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def of(self, kind: str) -> list[dict]:
        return [e for _, e in self.events if e.get("type") == kind]


@pytest.mark.parametrize("open_hotline", DATABASES, indirect=True)
def test_queue_call_rings_the_ready_agent_pops_the_form_and_bridges_audio(open_hotline, prompts_dir, tmp_path):
    """Caller presses 1 → agent1's baresip rings and answers → screen pop to agent1 only → audio bridged → case saved."""
    server = open_hotline
    agent_token, other_token = server.token_for("agent1"), server.token_for("agent2")
    speech = speech_pcm("aishell1_BAC009S0764W0121.wav")
    pcap = report_pcap(tmp_path, prompts_dir, speech, press_hash=False, tail_s=2.0)
    caller = "13612345678"
    with Baresip(user="1001", registrar=server.sip_target, password="hotline12319", answer_auto=True) as phone:
        phone.wait_log(r"200 OK|registered", timeout=10)
        status, body = server.post("/api/desk/state", {"state": "ready"}, token=agent_token)
        assert status == 200 and body["status"] == "ready", body
        ws_url = server.web_url.replace("http", "ws") + "ws"
        with EventListener(ws_url, agent_token) as agent_ws, EventListener(ws_url, other_token) as other_ws:
            result = run_sipp("call_report", target=server.sip_target, caller=caller, pcap=pcap, timeout=60)
            assert result.returncode == 0, result.log_text[-2000:] + server.log()
            time.sleep(1.0)
        pops = agent_ws.of("screen_pop")
        assert pops, f"no screen pop; events: {agent_ws.events}\n{server.log()}\n{phone.log_text()[-3000:]}"
        assert pops[0]["caller"] == caller and pops[0]["queue"] == "report" and "1" in pops[0]["ivr_path"]
        assert other_ws.of("screen_pop") == []  # only the agent concerned
        [history] = agent_ws.of("screen_pop_history")  # the caller's history follows the pop
        assert history["call_id"] == pops[0]["call_id"] and "earlier_cases" in history
        assert agent_ws.of("wallboard") == []  # wallboard notices go to supervisors only
        heard = phone.received_wav()
        assert heard is not None, phone.log_text()[-2000:]
    assert heard_correlation(heard, speech) > 0.6

    status, body = server.api("/api/desk/status", token=agent_token)
    assert body["status"] == "wrap_up"
    status, saved = server.post(
        "/api/desk/cases",
        {"call_id": pops[0]["call_id"], "reporter_phone": caller, "description": "幸福路井盖缺失", "kind": "report"},
        token=agent_token,
    )
    assert status == 201, saved
    [case] = server.wait_for_cases(reporter_phone=caller)
    assert case["number"] == saved["number"] and case["description"] == "幸福路井盖缺失"
    assert any(r["kind"] == "call" and r["channels"] == 2 for r in case["recordings"])
    assert query(server.db_url, "select number from cases where reporter_phone = :p", p=caller) == [(saved["number"],)]
    assert server.api("/api/desk/status", token=agent_token)[1]["status"] == "ready"
    board = server.api("/api/wallboard")[1]
    report = next(q for q in board["queues"] if q["queue"] == "report")
    assert report["answered"] == 1
    # The day's CDR and queue log export as CSV for the supervisor (admin here).
    status, cdr = server.api("/api/cdr.csv")
    assert status == 200 and caller in cdr.decode("utf-8-sig") and saved["number"] in cdr.decode("utf-8-sig")
    status, qlog = server.api("/api/queue-log.csv")
    kinds = [line.split(",")[1] for line in qlog.decode("utf-8-sig").splitlines()[1:]]
    assert status == 200 and {"join", "ring", "connect", "complete"} <= set(kinds), kinds
    assert server.api("/api/cdr.csv", token=agent_token)[0] == 403


def test_desk_form_errors_are_clear(open_hotline):
    """An empty description or a bad phone number gets 422 with a message per field, in Chinese."""
    token = open_hotline.token_for("agent1")
    status, body = open_hotline.post("/api/desk/cases", {"description": "", "reporter_phone": "12ab"}, token=token)
    assert status == 422
    assert body["fields"]["description"] == "请填写问题描述" and "数字" in body["fields"]["reporter_phone"]
    status, body = open_hotline.post("/api/desk/state", {"state": "dancing"}, token=token)
    assert status == 409 and body["message"]


def _wait_status(server, token: str, wanted: str, timeout: float = 30.0) -> dict:
    body: dict = {}
    for _poll in range(round(timeout / 0.2)):
        status, body = server.api("/api/desk/status", token=token)
        if status == 200 and body["status"] == wanted:
            return body
        time.sleep(0.2)
    raise AssertionError(f"agent never became {wanted}: {body}\n{server.log()}")


@contextmanager
def _caller_on_agent1_with_agent2_by(server, tmp_path, clip: str, caller: str):
    """agent1 (1001) and agent2 (1002) on baresip phones, agent1 ready; a sipp caller says
    ``clip`` twice after choosing 1 and is answered by agent1. Yields (agent1's phone,
    agent2's phone, call id, the clip's PCM, join) — join() waits for the caller's sipp
    and checks it succeeded."""
    from tests.e2e.peers.pcap import build_rtp_pcap

    speech = speech_pcm(clip)
    pcap = tmp_path / f"{caller}.pcap"
    build_rtp_pcap(pcap, pcm_8k_mono=bytes(8000 * 2 * 12) + speech + speech + bytes(8000 * 2),
                   dtmf=[(0.5, "1")])
    with Baresip(user="1001", registrar=server.sip_target, password="hotline12319", answer_auto=True) as one, \
            Baresip(user="1002", registrar=server.sip_target, password="hotline12319", answer_auto=True) as two:
        one.wait_log(r"200 OK|registered", timeout=10)
        two.wait_log(r"200 OK|registered", timeout=10)
        assert server.post("/api/desk/state", {"state": "ready"}, token=server.token_for("agent1"))[0] == 200
        results = {}
        thread = threading.Thread(target=lambda: results.update(
            r=run_sipp("call_report", target=server.sip_target, caller=caller, pcap=pcap, timeout=60)))
        thread.start()

        def join() -> None:
            thread.join(timeout=60)
            assert results["r"].returncode == 0, results["r"].log_text[-2000:]

        call_id = _wait_status(server, server.token_for("agent1"), "on_call")["call"]
        yield one, two, call_id, speech, join


def _caller_heard_the_hold_tone(server, prompts_dir) -> bool:
    """What the caller heard (right channel of the call recording) includes the hold tone."""
    [case_wav] = list((server.dir / "recordings").rglob("*-call.wav"))
    right = wav_pcm(case_wav.read_bytes())[0][1::2]
    tone = wav_pcm((prompts_dir / "hold_tone.wav").read_bytes())[0]
    return best_correlation(right, tone) > 0.9


def test_second_caller_takes_the_callback_offer_and_is_called_back_when_the_agent_is_free(tmp_path, prompts_dir):
    """Two callers, one agent: the second keeps its place by pressing 1, hangs up, and is called back via the trunk."""
    from tests.e2e.peers.pcap import build_rtp_pcap
    from tests.e2e.peers.ports import free_udp_port
    from tests.e2e.peers.runner import SippUas

    with SippUas("uas_sink", keys={"sink_port": str(free_udp_port())}, timeout=90) as citizen:
        extra = ALWAYS_OPEN + (
            "[acd]\ncallback_offer_after_s = 2.0\nwrap_up_s = 1.0\nring_timeout_s = 10.0\n"
            + carrier_trunk(citizen.port)
        )
        server = start_server(tmp_path, prompts_dir, extra=extra)
        try:
            token = server.token_for("agent1")
            silence = bytes(8000 * 2)
            first = tmp_path / "first.pcap"
            build_rtp_pcap(first, pcm_8k_mono=silence * 24, dtmf=[(0.5, "1")])
            second = tmp_path / "second.pcap"
            build_rtp_pcap(second, pcm_8k_mono=silence * 30, dtmf=[(0.5, "1"), (9.0, "1")])
            with Baresip(user="1001", registrar=server.sip_target, password="hotline12319", answer_auto=True) as phone:
                phone.wait_log(r"200 OK|registered", timeout=10)
                assert server.post("/api/desk/state", {"state": "ready"}, token=token)[0] == 200
                results = {}
                a = threading.Thread(target=lambda: results.update(
                    a=run_sipp("call_report", target=server.sip_target, caller="13600000001", pcap=first, timeout=60)))
                a.start()
                _wait_status(server, token, "on_call")
                b = run_sipp("call_server_bye", target=server.sip_target, caller="13600000002", pcap=second, timeout=40)
                assert b.returncode == 0, b.log_text[-2000:] + server.log()  # the hotline hung up after the offer
                board = server.api("/api/wallboard")[1]
                report = next(q for q in board["queues"] if q["queue"] == "report")
                assert report["callbacks_waiting"] == 1, f"{board}\n{server.log()}"
                a.join(timeout=60)
                assert results["a"].returncode == 0
                # The agent is free again: the hotline rings the agent, then calls the citizen back.
                body = _wait_status(server, token, "on_call", timeout=30)
                assert body["call"]
                time.sleep(1.0)
                phone.hangup()
            result = citizen.wait(20)
            assert result.ok, result.log_text[-2000:]
            invite = next(m for m in result.messages("INVITE") if m.startswith("INVITE"))
            assert "13600000002@" in invite.splitlines()[0] and "12319" in invite
            board = server.api("/api/wallboard")[1]
            report = next(q for q in board["queues"] if q["queue"] == "report")
            assert report["answered"] == 2 and report["callbacks_waiting"] == 0, board
        finally:
            stop_server(server)


def test_supervisor_listens_in_silently_to_a_live_call(open_hotline, prompts_dir, tmp_path):
    """监听: the supervisor's phone rings into a bridged call and hears the caller's speech."""
    server = open_hotline
    agent_token, boss_token = server.token_for("agent1"), server.token_for("supervisor1")
    speech = speech_pcm("aishell3_SSB15670405.wav")
    # Digit 1 at 0.5 s, then 6 s of quiet (queue + answer + listen-in set-up), then the speech twice.
    pcm = bytes(8000 * 2 * 7) + speech + speech + bytes(8000 * 2)
    from tests.e2e.peers.pcap import build_rtp_pcap

    pcap = tmp_path / "long.pcap"
    build_rtp_pcap(pcap, pcm_8k_mono=pcm, dtmf=[(0.5, "1")])
    with Baresip(user="1001", registrar=server.sip_target, password="hotline12319", answer_auto=True) as agent, \
            Baresip(user="1900", registrar=server.sip_target, password="hotline12319", answer_auto=True) as boss:
        agent.wait_log(r"200 OK|registered", timeout=10)
        boss.wait_log(r"200 OK|registered", timeout=10)
        assert server.post("/api/desk/state", {"state": "ready"}, token=agent_token)[0] == 200
        results = {}
        caller = threading.Thread(target=lambda: results.update(
            r=run_sipp("call_report", target=server.sip_target, caller="13633334444", pcap=pcap, timeout=60)))
        caller.start()
        body = _wait_status(server, agent_token, "on_call")
        assert server.post("/api/wallboard/listen", {"call_id": body["call"]}, token=agent_token)[0] == 403
        status, reply = server.post("/api/wallboard/listen", {"call_id": body["call"]}, token=boss_token)
        assert status == 202, reply
        caller.join(timeout=60)
        assert results["r"].returncode == 0
        heard = boss.received_wav()
        assert heard is not None, boss.log_text()[-2000:]
    assert heard_correlation(heard, speech) > 0.6


def test_agent_holds_then_transfers_the_caller_to_another_agent(open_hotline, prompts_dir, tmp_path):
    """Hold on agent1's phone plays the caller a hold tone; 转接 to agent2 bridges the caller to agent2's phone."""
    server = open_hotline
    token1, token2 = server.token_for("agent1"), server.token_for("agent2")
    with _caller_on_agent1_with_agent2_by(server, tmp_path, "aishell3_SSB19560155.wav", "13644445555") as (
            one, two, call_id, speech, join):
        one.command("hold")
        time.sleep(2.5)
        one.command("resume")
        time.sleep(0.5)
        assert server.post("/api/desk/state", {"state": "ready"}, token=token2)[0] == 200
        status, body = server.post("/api/desk/transfer", {"call_id": call_id, "kind": "agent", "target": "nobody"},
                                   token=token1)
        assert status == 409 and body["message"]
        status, body = server.post("/api/desk/transfer", {"call_id": call_id, "kind": "agent", "target": "agent2"},
                                   token=token1)
        assert status == 202, body
        _wait_status(server, token2, "on_call", timeout=15)
        join()
        heard = two.received_wav()
        assert heard is not None, two.log_text()[-2000:]
    assert heard_correlation(heard, speech) > 0.6
    assert _caller_heard_the_hold_tone(server, prompts_dir)


def test_attended_transfer_consults_agent2_then_hands_the_caller_over(open_hotline, prompts_dir, tmp_path):
    """咨询转接: agent1 holds the caller, talks to agent2, completes; agent2 then hears the caller."""
    server = open_hotline
    token1, token2 = server.token_for("agent1"), server.token_for("agent2")
    with _caller_on_agent1_with_agent2_by(server, tmp_path, "aishell1_BAC009S0002W0124.wav", "13655556666") as (
            one, two, call_id, speech, join):
        # agent2 is not ready yet: refused with a reason.
        status, body = server.post("/api/desk/consult", {"call_id": call_id, "action": "start", "kind": "agent",
                                                         "target": "agent2"}, token=token1)
        assert status == 409 and body["message"]
        assert server.post("/api/desk/state", {"state": "ready"}, token=token2)[0] == 200
        status, body = server.post("/api/desk/consult", {"call_id": call_id, "action": "start", "kind": "agent",
                                                         "target": "agent2"}, token=token1)
        assert status == 202, body
        two.wait_event("CALL_ESTABLISHED", timeout=10)
        assert server.api("/api/desk/status", token=token2)[1]["status"] == "paused"  # no queue call meanwhile
        time.sleep(1.0)
        status, body = server.post("/api/desk/consult", {"call_id": call_id, "action": "complete"}, token=token1)
        assert status == 202, body
        assert server.api("/api/desk/status", token=token1)[1]["status"] == "wrap_up"
        assert server.api("/api/desk/status", token=token2)[1]["status"] == "paused"  # on the call now
        join()
        heard = two.received_wav()
        assert heard is not None
        # the call is over: the consulted colleague is offered queue calls again
        _wait_status(server, token2, "ready")
    assert heard_correlation(heard, speech) > 0.6
    assert _caller_heard_the_hold_tone(server, prompts_dir)  # the caller was on hold meanwhile

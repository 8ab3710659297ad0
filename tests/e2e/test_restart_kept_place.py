"""SIGTERM with a caller bridged to an agent and another who kept their place in the queue:
both ends of the bridged call get a BYE and its recording is complete; after the restart the
kept place is back in its queue and is called back exactly once when an agent is ready."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.audio import wav_pcm
from tests.e2e.conftest import carrier_trunk, query, restart_server, start_server, stop_server
from tests.e2e.peers.pcap import build_rtp_pcap
from tests.e2e.peers.runner import Baresip, run_sipp

pytestmark = pytest.mark.e2e

ALWAYS_OPEN = '[ivr]\nopen = "00:00"\nclose = "24:00"\nopen_days = "everyday"\n'
FIRST, SECOND = "13600000001", "13600000002"


def _until(check, what: str, server, timeout: float = 30.0):
    value = None
    for _poll in range(round(timeout / 0.2)):
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: last {value!r}\n{server.log()}")


def _agent_status(server, token: str) -> str:
    status, body = server.api("/api/desk/status", token=token)
    return body["status"] if status == 200 else f"http {status}"


def _callbacks_waiting(server) -> int | None:
    status, board = server.api("/api/wallboard")
    if status != 200:
        return None
    return next(q for q in board["queues"] if q["queue"] == "report")["callbacks_waiting"]


def _ready_phone(server) -> Baresip:
    phone = Baresip(user="1001", registrar=server.sip_target, password="hotline12319", answer_auto=True)
    phone.start()
    try:
        phone.wait_log(r"200 OK|registered", timeout=10)
        token = server.token_for("agent1")
        status, body = server.post("/api/desk/state", {"state": "ready"}, token=token)
        assert status == 200, body
    except BaseException:
        phone.stop()
        raise
    return phone


def test_sigterm_hangs_up_the_bridged_call_and_the_kept_place_is_called_back_once_after_restart(
        db_url, tmp_path, prompts_dir):
    """caller 1 talks to agent1 (baresip); caller 2 presses 1 to keep their place and hangs up;
    SIGTERM: caller 1 and agent1 get BYE, the call recording and its row are complete, the kept
    place is in the database. Restart: the place is back in the queue; agent1 becomes ready and
    the citizen is called back once; a second restart calls nobody again."""
    with Baresip(user=SECOND, answer_auto=True) as citizen:
        extra = ALWAYS_OPEN + (
            "[acd]\ncallback_offer_after_s = 2.0\nwrap_up_s = 1.0\nring_timeout_s = 10.0\n"
            + carrier_trunk(citizen.sip_port)
        )
        server = start_server(tmp_path, prompts_dir, db_url=db_url, extra=extra)
        phone = None
        try:
            token = server.token_for("agent1")
            silence = bytes(8000 * 2)
            first = tmp_path / "first.pcap"
            build_rtp_pcap(first, pcm_8k_mono=silence * 50, dtmf=[(0.5, "1")])
            second = tmp_path / "second.pcap"
            build_rtp_pcap(second, pcm_8k_mono=silence * 30, dtmf=[(0.5, "1"), (9.0, "1")])
            phone = _ready_phone(server)
            results: dict = {}
            a = threading.Thread(target=lambda: results.update(
                a=run_sipp("call_server_bye", target=server.sip_target, caller=FIRST, pcap=first, timeout=70)))
            a.start()
            try:
                _until(lambda: _agent_status(server, token) == "on_call", "agent1 never on the call", server)
                b = run_sipp("call_server_bye", target=server.sip_target, caller=SECOND, pcap=second, timeout=40)
                assert b.returncode == 0, b.log_text[-2000:] + server.log()  # hung up after the callback offer
                kept = _until(lambda: query(db_url, "select queue, number, state, tries from kept_callbacks"),
                              "kept place not stored", server)
                assert kept == [("report", SECOND, "pending", 0)]
                assert _agent_status(server, token) == "on_call"  # caller 1 still talking to agent1

                os.killpg(server.proc.pid, signal.SIGTERM)
                assert server.proc.wait(timeout=30) == 0, server.log()
            finally:
                a.join(timeout=80)
            assert results["a"].returncode == 0, results["a"].log_text[-2000:]  # the hotline's BYE reached caller 1
            phone.wait_event("CALL_CLOSED", timeout=10)  # and agent1's phone
            assert "Traceback" not in server.log(), server.log()
            [(call_id, end_reason)] = query(db_url, "select call_id, end_reason from calls where caller = :p", p=FIRST)
            assert end_reason
            recs = query(db_url, "select kind, path, channels, duration_s from recordings where call_id = :c", c=call_id)
            assert [r[0] for r in recs] == ["call"], recs
            _, path, channels, duration_s = recs[0]
            samples, got_channels, rate = wav_pcm(Path(path).read_bytes())  # a complete WAV header
            assert (got_channels, rate) == (channels, 8000) and duration_s > 1.0
            assert abs(len(samples) / channels / 8000 - duration_s) < 0.5, (len(samples), duration_s)
            assert query(db_url, "select state from kept_callbacks") == [("pending",)]
            phone.stop()
            phone = None

            # Restart: the kept place is back; agent1 becomes ready and the citizen is called back.
            server = restart_server(server)
            _until(lambda: _callbacks_waiting(server) == 1, "kept place not restored", server)
            assert not [e for e in citizen.events if e.get("type") == "CALL_ESTABLISHED"]  # nobody free yet
            phone = _ready_phone(server)
            citizen.wait_event("CALL_ESTABLISHED", timeout=40)
            _until(lambda: query(db_url, "select state, outcome from kept_callbacks") == [("done", "answered")],
                   "kept place not marked done", server)
            time.sleep(1.0)
            phone.hangup()
            citizen.wait_event("CALL_CLOSED", timeout=15)
            phone.stop()
            phone = None

            # A second restart restores nothing: nobody is called back twice.
            server = restart_server(server)
            phone = _ready_phone(server)
            _until(lambda: _agent_status(server, server.token_for("agent1")) == "ready", "agent1 not ready", server)
            assert _callbacks_waiting(server) == 0
            time.sleep(3.0)  # room for a duplicate to show
            assert len([e for e in citizen.events if e.get("type") == "CALL_ESTABLISHED"]) == 1
            assert query(db_url, "select count(*) from kept_callbacks") == [(1,)]
            assert query(db_url, "select count(*) from callbacks") == [(0,)]
        finally:
            if phone is not None:
                phone.stop()
            stop_server(server)

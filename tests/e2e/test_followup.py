"""Follow-up (回访): a closed case's reporter is called back, presses 2, and the case shows 基本满意."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.e2e.conftest import answer_consultation, carrier_trunk, start_server, stop_server
from tests.e2e.peers.runner import Baresip

pytestmark = pytest.mark.e2e

REPORTER = "13900001111"


def test_reporter_answers_the_follow_up_call_and_presses_2(db_url, tmp_path, prompts_dir):
    """A consultation answered directly triggers a survey call through the trunk; '2' is stored as 基本满意."""
    with Baresip(user=REPORTER, answer_auto=True) as citizen:
        extra = (
            carrier_trunk(citizen.sip_port) +
            '[followup]\ndelay_s = 0.5\ncalling_hours = "00:00-23:59"\nworkdays_only = false\nring_timeout_s = 15.0\n'
        )
        server = start_server(tmp_path, prompts_dir, db_url=db_url, extra=extra)
        try:
            case = answer_consultation(server, REPORTER, "咨询：垃圾分类投放时间", "每天早7点至9点、晚6点至8点",
                                       channel="12319")
            try:
                citizen.wait_event("CALL_ESTABLISHED", timeout=30)
            except Exception as exc:
                raise AssertionError(f"no follow-up call reached the reporter:\n{server.log()}") from exc
            time.sleep(1.0)
            citizen.send_dtmf("2")
            detail: dict = {}
            for _poll in range(67):
                detail = server.api(f"/api/cases/{case['id']}")[1]
                if detail["status"] == "followed_up":
                    break
                time.sleep(0.3)
            assert detail["status"] == "followed_up", f"{detail}\n{server.log()}"
            follow = [h for h in detail["history"] if h["action"] == "follow_up"]
            assert follow and follow[0]["fields"]["satisfaction"] == "basically_satisfied"
            heard = citizen.received_wav()
            assert heard is not None and heard.stat().st_size > 8000  # the survey prompt reached the phone
        finally:
            stop_server(server)


def test_busy_reporter_is_retried_after_the_configured_spacing(tmp_path, prompts_dir):
    """First follow-up call gets 486 Busy; after busy_retry_s the second is answered and '3' stores 不满意."""
    from tests.e2e.peers.pcap import build_rtp_pcap
    from tests.e2e.peers.runner import SippUas

    pcap = tmp_path / "press3.pcap"
    build_rtp_pcap(pcap, pcm_8k_mono=bytes(8000 * 2 * 12), dtmf=[(2.0, "3"), (9.0, "2")])
    with SippUas("citizen_busy_then_survey", calls=2, timeout=60, keys={"pcap": str(pcap)}) as citizen:
        extra = (
            carrier_trunk(citizen.port) +
            '[followup]\ndelay_s = 0.5\ncalling_hours = "00:00-23:59"\nworkdays_only = false\n'
            'busy_retry_s = 3.0\nmax_attempts = 3\n'
        )
        server = start_server(tmp_path, prompts_dir, extra=extra)
        try:
            created = answer_consultation(server, "13977778888", "咨询：门前三包", "请联系街道办")
            detail: dict = {}
            for _poll in range(90):
                detail = server.api(f"/api/cases/{created['id']}")[1]
                if detail["status"] == "followed_up":
                    break
                time.sleep(0.5)
            assert detail["status"] == "followed_up", server.log()
            follow = [h for h in detail["history"] if h["action"] == "follow_up"]
            assert follow[0]["fields"]["satisfaction"] == "dissatisfied"
            status, callbacks = server.api("/api/callbacks")
            [cb] = [c for c in (callbacks.get("callbacks", callbacks) if isinstance(callbacks, dict) else callbacks)
                    if c.get("case_number") == created["number"]]
            outcomes = [a["outcome"] for a in cb["attempts"]]
            assert outcomes == ["busy", "answered"], cb
            first, second = (datetime.fromisoformat(a["started_at"]) for a in cb["attempts"])
            assert (second - first).total_seconds() >= 3.0  # the configured spacing
        finally:
            stop_server(server)
        assert citizen.wait(20).ok

"""Kill the server with an SMS and a follow-up call pending; after the restart each goes out exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from tests.e2e.conftest import restart_server, start_server, stop_server
from tests.e2e.peers.runner import Baresip

pytestmark = pytest.mark.e2e

REPORTER = "13922223333"


def _rows(db, sql):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_pending_sms_and_follow_up_survive_a_kill_and_go_out_once(tmp_path, prompts_dir):
    """SMS held by quiet hours and a follow-up outside calling hours survive kill -9; after restart: one SMS, one call."""
    with Baresip(user=REPORTER, answer_auto=True) as citizen:
        trunk = f'[[trunks]]\nname = "carrier"\nhost = "127.0.0.1"\nport = {citizen.sip_port}\nallow = ["127.0.0.1"]\n'
        # Closed for everything now: SMS quiet all day, follow-ups only in a minute that never comes.
        closed = (trunk + '[sms]\nquiet_start = "00:00"\nquiet_end = "23:59"\npoll_s = 0.5\n'
                  '[followup]\ndelay_s = 0.0\nworkdays_only = false\ncalling_hours = "03:00-03:01"\n')
        server = start_server(tmp_path, prompts_dir, extra=closed)
        db = tmp_path / "hotline.db"
        agent = server.token_for("agent1")
        status, created = server.post(
            "/api/cases", {"description": "咨询：办理占道许可", "kind": "consultation", "reporter_phone": REPORTER},
            token=agent)
        assert status == 201, created
        status, body = server.post(f"/api/cases/{created['id']}/actions/direct_answer",
                                   {"fields": {"answer": "请到政务中心办理"}, "expected_version": created["version"]},
                                   token=agent)
        assert status == 200, body
        time.sleep(2.0)
        assert _rows(db, f"select status from sms_outbox where to_number = '{REPORTER}'") == [("queued",)]
        [(cb_status,)] = _rows(db, "select status from callbacks")
        assert cb_status in ("new", "pending")
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)

        # Open again, restart on the same database.
        text = server.config.read_text(encoding="utf-8")
        text = text.replace('quiet_end = "23:59"', 'quiet_end = "00:01"').replace('"03:00-03:01"', '"00:00-23:59"')
        text = text.replace('quiet_start = "00:00"', 'quiet_start = "23:59"')
        server.config.write_text(text, encoding="utf-8")
        server = restart_server(server)
        try:
            citizen.wait_event("CALL_ESTABLISHED", timeout=30)
            time.sleep(1.0)
            citizen.send_dtmf("1")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                sms = _rows(db, f"select status from sms_outbox where to_number = '{REPORTER}'")
                results = _rows(db, "select status, result from callbacks")
                if sms == [("sent",)] and results and results[0][1] == "satisfied":
                    break
                time.sleep(0.3)
            assert sms == [("sent",)], sms
            assert results == [("answered", "satisfied")], results
            time.sleep(2.0)  # nothing more goes out
            established = [e for e in citizen.events if e.get("type") == "CALL_ESTABLISHED"]
            assert len(established) == 1
            assert len(_rows(db, f"select id from sms_outbox where to_number = '{REPORTER}'")) == 1
        finally:
            stop_server(server)

"""Kill the server with an SMS and a follow-up call pending; after the restart each goes out exactly once."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.audio import best_correlation, decode_ulaw, report_pcap, wav_pcm
from tests.e2e.conftest import (
    answer_consultation,
    carrier_trunk,
    query,
    restart_server,
    start_server,
    stop_server,
)
from tests.e2e.peers.pcap import encode_g711, speech_pcm
from tests.e2e.peers.runner import Baresip, run_sipp

pytestmark = pytest.mark.e2e

REPORTER = "13922223333"


@contextmanager
def _stop_on_error(server):
    """Leave no server behind when a check fails before the test stops it itself."""
    try:
        yield
    except BaseException:
        stop_server(server)
        raise


def _wait_until_scheduled(db_url: str, server) -> None:
    """Wait until the dialer has taken the survey request up (status pending, due in the closed window)."""
    for _poll in range(75):
        if query(db_url, "select status from callbacks") == [("pending",)]:
            return
        time.sleep(0.2)
    raise AssertionError(f"survey not scheduled: {query(db_url, 'select status from callbacks')}\n{server.log()}")


def _call_the_survey_now(server) -> None:
    """After the restart the one survey is still pending, keeping its due time (the next 03:00):
    a supervisor calls it now (立即回拨)."""
    status, body = server.api("/api/callbacks")
    assert status == 200, body
    listed = body["callbacks"]
    assert [(c["number"], c["status"]) for c in listed] == [(REPORTER, "pending")], listed
    status, body = server.post(f"/api/callbacks/{listed[0]['id']}/call-now", {})
    assert status == 200, body


def _closed_config(citizen) -> str:
    """A carrier trunk to the citizen's phone; closed for everything now: SMS quiet all day,
    follow-ups only in a minute that never comes."""
    return (carrier_trunk(citizen.sip_port) + '[sms]\nquiet_start = "00:00"\nquiet_end = "23:59"\npoll_s = 0.5\n'
            '[followup]\ndelay_s = 0.0\nworkdays_only = false\ncalling_hours = "03:00-03:01"\n')


def _answer_a_consultation(server, db_url: str) -> None:
    """An agent answers a consultation directly: its SMS and its survey call are due, held by the closed hours."""
    answer_consultation(server, REPORTER, "咨询：办理占道许可", "请到政务中心办理")
    _wait_until_scheduled(db_url, server)


def _reopen_and_restart(server):
    """Open SMS and follow-ups at every hour in the stopped server's config, then restart it."""
    text = server.config.read_text(encoding="utf-8")
    text = text.replace('quiet_end = "23:59"', 'quiet_end = "00:01"').replace('"03:00-03:01"', '"00:00-23:59"')
    server.config.write_text(text.replace('quiet_start = "00:00"', 'quiet_start = "23:59"'), encoding="utf-8")
    return restart_server(server)


def _answer_the_survey(server, citizen) -> None:
    """Call the pending survey now; the citizen answers and presses 1 (satisfied)."""
    _call_the_survey_now(server)
    citizen.wait_event("CALL_ESTABLISHED", timeout=30)
    time.sleep(1.0)
    citizen.send_dtmf("1")


def test_pending_sms_and_follow_up_survive_a_kill_and_go_out_once(db_url, tmp_path, prompts_dir):
    """SMS held by quiet hours and a follow-up outside calling hours survive kill -9; after restart: one SMS, one call."""
    with Baresip(user=REPORTER, answer_auto=True) as citizen:
        server = start_server(tmp_path, prompts_dir, db_url=db_url, extra=_closed_config(citizen))
        with _stop_on_error(server):
            db = db_url
            _answer_a_consultation(server, db_url)
            assert query(db, f"select status from sms_outbox where to_number = '{REPORTER}'") == [("queued",)]
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=10)

        # Open again, restart on the same database.
        server = _reopen_and_restart(server)
        try:
            _answer_the_survey(server, citizen)
            for _poll in range(67):
                sms = query(db, f"select status from sms_outbox where to_number = '{REPORTER}'")
                results = query(db, "select status, result from callbacks")
                if sms == [("sent",)] and results and results[0][1] == "satisfied":
                    break
                time.sleep(0.3)
            assert sms == [("sent",)], sms
            assert results == [("answered", "satisfied")], results
            time.sleep(2.0)  # nothing more goes out
            established = [e for e in citizen.events if e.get("type") == "CALL_ESTABLISHED"]
            assert len(established) == 1
            assert len(query(db, f"select id from sms_outbox where to_number = '{REPORTER}'")) == 1
        finally:
            stop_server(server)


CALLER = "13711112222"
SPEECH = "aishell1_BAC009S0002W0122.wav"


def _wait_for_file(folder: Path, pattern: str, timeout: float, log) -> Path:
    for _poll in range(round(timeout / 0.1)):
        found = list(folder.rglob(pattern)) if folder.exists() else []
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {pattern} under {folder} within {timeout}s\n{log()}")


def test_sigterm_mid_message_hangs_up_cleanly_and_a_restart_loses_and_repeats_nothing(db_url, tmp_path, prompts_dir):
    """SIGTERM while a caller leaves a message and an SMS and a survey call wait: the caller gets a BYE, the message
    is one case with both recordings closed; after a restart each SMS and the survey call go out once, nothing doubles."""
    with Baresip(user=REPORTER, answer_auto=True) as citizen:
        server = start_server(tmp_path, prompts_dir, db_url=db_url, extra=_closed_config(citizen))
        with _stop_on_error(server):
            _answer_a_consultation(server, db_url)

            # A citizen calls, presses 1 and is still speaking when the hotline is stopped.
            speech = speech_pcm(SPEECH)
            pcap = report_pcap(tmp_path, prompts_dir, speech, press_hash=False, tail_s=4.0)
            outcome: dict = {}
            caller = threading.Thread(target=lambda: outcome.update(sipp=run_sipp(
                "call_server_bye", target=server.sip_target, caller=CALLER, pcap=pcap, timeout=60)))
            caller.start()
            try:
                _wait_for_file(server.dir / "recordings", "*-msg-*.wav", 30, server.log)
                time.sleep(1.3 + 3.0)  # the beep and 1 s of silence, then 3 s of the 6 s of speech
                os.killpg(server.proc.pid, signal.SIGTERM)
                assert server.proc.wait(timeout=30) == 0, server.log()
            finally:
                caller.join(timeout=70)
            assert outcome["sipp"].returncode == 0, outcome["sipp"].log_text[-2000:]  # the hotline's BYE reached it
            assert "Traceback" not in server.log(), server.log()

            # Everything the stop left behind is stored once and closed.
            [(case_id, number, status)] = query(db_url, "select id, number, status from cases where reporter_phone = :p",
                                                p=CALLER)
            assert status == "accepted"
            recs = query(db_url, "select kind, path, channels, duration_s from recordings where case_id = :c order by kind",
                         c=case_id)
            assert [r[0] for r in recs] == ["call", "message"], recs
            for kind, path, channels, duration_s in recs:
                samples, got_channels, rate = wav_pcm(Path(path).read_bytes())  # a complete WAV header
                assert (got_channels, rate) == (channels, 8000) and duration_s > 1.0
                assert abs(len(samples) / channels / 8000 - duration_s) < 0.5, (kind, len(samples), duration_s)
            message = wav_pcm(Path(recs[1][1]).read_bytes())[0]
            sent = decode_ulaw(encode_g711(speech, "PCMU"))
            assert best_correlation(message, sent[: 8000 * 3 // 2]) > 0.8  # what was said before the stop is kept
            assert query(db_url, "select end_reason is not null, ended_at is not null from calls where caller = :p",
                         p=CALLER) == [(True, True)]
            assert query(db_url, "select to_number, status from sms_outbox order by to_number") == [
                (CALLER, "queued"), (REPORTER, "queued")]
            assert query(db_url, "select status from callbacks") == [("pending",)]

        # Open again and restart on the same database and recordings.
        server = _reopen_and_restart(server)
        try:
            _answer_the_survey(server, citizen)
            for _poll in range(67):
                sms = query(db_url, "select to_number, status from sms_outbox order by to_number")
                results = query(db_url, "select status, result from callbacks")
                if sms == [(CALLER, "sent"), (REPORTER, "sent")] and results == [("answered", "satisfied")]:
                    break
                time.sleep(0.3)
            assert sms == [(CALLER, "sent"), (REPORTER, "sent")], sms
            assert results == [("answered", "satisfied")], results
            time.sleep(2.0)  # nothing more goes out
            assert len([e for e in citizen.events if e.get("type") == "CALL_ESTABLISHED"]) == 1
            assert query(db_url, "select count(*) from sms_outbox") == [(2,)]
            assert query(db_url, "select number from cases where reporter_phone = :p", p=CALLER) == [(number,)]
            assert query(db_url, "select count(*) from recordings where case_id = :c", c=case_id) == [(2,)]
            status, listed = server.api(f"/api/cases?reporter_phone={CALLER}")
            assert status == 200 and [c["number"] for c in listed] == [number]
        finally:
            stop_server(server)

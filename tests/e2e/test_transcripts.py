"""A voice message is transcribed after the call and the transcript is attached to its case."""

from __future__ import annotations

import time

import pytest

from callcenter.stt.quality import cer
from tests.e2e.audio import report_pcap
from tests.e2e.conftest import start_server, stop_server
from tests.e2e.peers.pcap import SPEECH_DIR, speech_pcm
from tests.e2e.peers.runner import run_sipp

pytestmark = pytest.mark.e2e

SPEECH = "aishell1_BAC009S0002W0122.wav"


def test_voice_message_transcript_is_attached_to_the_case(tmp_path, prompts_dir):
    """Whisper transcribes the message in a worker process; /api/cases/{id}/transcript has the caller's words."""
    server = start_server(tmp_path, prompts_dir, extra="[stt]\nenabled = true\n")
    try:
        speech = speech_pcm(SPEECH)
        pcap = report_pcap(tmp_path, prompts_dir, speech)
        result = run_sipp("call_report", target=server.sip_target, caller="13711110000", pcap=pcap, timeout=60)
        assert result.returncode == 0, result.log_text[-2000:]
        [case] = server.wait_for_cases(reporter_phone="13711110000")
        body: object = None
        for _poll in range(120):
            status, body = server.api(f"/api/cases/{case['id']}/transcript")
            if status == 200 and isinstance(body, dict) and _text(body, channel=0):
                break
            time.sleep(1.0)
        text = _text(body, channel=0)
        reference = _reference(SPEECH)
        assert text, f"no transcript: {body}\n{server.log()}"
        assert cer(reference, text) < 0.5, (reference, text)
        # The transcript became the voice-message case's description, and a line in its history.
        detail: dict = {}
        for _ in range(20):
            detail = server.api(f"/api/cases/{case['id']}")[1]
            if detail["description"].startswith("【留言转写】"):
                break
            time.sleep(0.5)
        assert detail["description"].startswith("【留言转写】"), detail["description"]
        assert any(h["action"] == "note" and "留言转写" in h["comment"] for h in detail["history"])
        from urllib.parse import quote

        status, found = server.api("/api/transcripts?q=" + quote(text[2:6]))
        assert status == 200 and any(case["number"] in str(hit) for hit in found.get("results", found)), found
        # The pool's figures for operators: one job done, not paused now (no calls), and the
        # recognition worker kept apart from the media tick where the machine allows it.
        status, pool = server.api("/api/stt/status")
        assert status == 200 and pool["enabled"] is True, pool
        assert pool["completed"] >= 1 and pool["paused"] is False and pool["yield_above"] == 0.5, pool
        assert pool["cpu_placement"].startswith("CPU placement:"), pool
        import os

        if len(os.sched_getaffinity(0)) >= 2:
            assert "speech recognition on" in pool["cpu_placement"], pool
    finally:
        stop_server(server)


def _text(body, *, channel: int) -> str:
    if not isinstance(body, dict):
        return ""
    parts = []
    for rec in body.get("recordings", []):
        for seg in rec.get("segments", []):
            if seg.get("channel", 0) == channel:
                parts.append(seg["text"])
    return "".join(parts).replace(" ", "")


def _reference(name: str) -> str:
    from pathlib import Path

    for line in (SPEECH_DIR / "transcripts.tsv").read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if cols and cols[0] == name:
            return cols[1].replace(" ", "")
    raise AssertionError(f"{name} not in transcripts.tsv")

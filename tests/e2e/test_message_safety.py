"""A caller's voice message is never lost: not on hang-up, not when the server is killed."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.e2e.audio import best_correlation, decode_ulaw, report_pcap, wav_pcm
from tests.e2e.conftest import restart_server
from tests.e2e.peers.pcap import encode_g711, speech_pcm
from tests.e2e.peers.runner import run_sipp

pytestmark = pytest.mark.e2e

SPEECH = "aishell3_SSB06710128.wav"


def test_hanging_up_instead_of_pressing_hash_still_files_the_report(hotline, prompts_dir, tmp_path):
    """The caller speaks and hangs up without #: the message is still recorded and becomes a case."""
    speech = speech_pcm(SPEECH)
    pcap = report_pcap(tmp_path, prompts_dir, speech, press_hash=False, tail_s=0.5)
    result = run_sipp("call_report", target=hotline.sip_target, caller="13711112222", pcap=pcap, timeout=60)
    assert result.returncode == 0, result.log_text[-2000:]
    [case] = hotline.wait_for_cases(reporter_phone="13711112222")
    message = next(r for r in case["recordings"] if r["kind"] == "message")
    samples, _, _ = wav_pcm(hotline.api(message["url"])[1])
    assert best_correlation(samples, decode_ulaw(encode_g711(speech, "PCMU"))[: 8000 * 2]) > 0.9


def test_killed_server_keeps_the_message_and_files_it_on_restart(hotline, prompts_dir, tmp_path):
    """kill -9 during a voice message: after restart the message is a case with a playable WAV of the speech."""
    speech = speech_pcm(SPEECH)
    pcap = report_pcap(tmp_path, prompts_dir, speech, press_hash=False, tail_s=30)
    caller = "13755556666"
    sipp = threading.Thread(
        target=run_sipp, args=("call_report",),
        kwargs={"target": hotline.sip_target, "caller": caller, "pcap": pcap, "timeout": 20},
        daemon=True,
    )
    sipp.start()
    recordings = hotline.dir / "recordings"
    needed = len(speech) + 8000 * 2  # the speech plus a second of what came before it, in bytes
    for _poll in range(200):
        messages = list(recordings.rglob("*msg-*.wav"))
        if messages and messages[0].stat().st_size > needed:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no message recording grew on disk:\n{hotline.log()}")
    os.killpg(hotline.proc.pid, signal.SIGKILL)
    hotline.proc.wait(timeout=10)
    sipp.join(timeout=30)

    server = restart_server(hotline)
    try:
        [case] = server.wait_for_cases(reporter_phone=caller)
        assert case["status"] == "accepted"
        message = next(r for r in case["recordings"] if r["kind"] == "message")
        assert message["duration_s"] >= len(speech) / 16000 - 1.5
        samples, _, _ = wav_pcm(server.api(message["url"])[1])
        assert best_correlation(samples, decode_ulaw(encode_g711(speech, "PCMU"))[: 8000 * 2]) > 0.9
    finally:
        hotline.proc = server.proc  # the fixture stops whatever runs now

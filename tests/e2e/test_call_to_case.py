"""Walking skeleton end to end: a real phone calls 12319, presses 1, speaks, and a case appears."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from tests.e2e.audio import best_correlation, decode_ulaw, report_pcap, wav_pcm
from tests.e2e.conftest import BOTH_DATABASES, query
from tests.e2e.peers.pcap import encode_g711, speech_pcm
from tests.e2e.peers.runner import run_sipp

pytestmark = pytest.mark.e2e

SPEECH = "aishell1_BAC009S0002W0122.wav"
CALLER = "13812345678"


@BOTH_DATABASES
def test_sipp_report_becomes_a_case_with_the_callers_audio(hotline, prompts_dir, tmp_path):
    """sipp presses 1, speaks, presses #: an accepted 12319 case with a recording of that speech appears."""
    speech = speech_pcm(SPEECH)
    pcap = report_pcap(tmp_path, prompts_dir, speech)
    result = run_sipp("call_report", target=hotline.sip_target, caller=CALLER, pcap=pcap, timeout=60)
    assert result.returncode == 0, f"sipp failed:\n{result.stdout[-2000:]}\n{result.log_text[-3000:]}\n{hotline.log()}"

    [case] = hotline.wait_for_cases(reporter_phone=CALLER)
    assert case["channel"] == "12319"
    assert case["status"] == "accepted"
    assert re.fullmatch(r"\d{8}-\d{4,}", case["number"])
    kinds = {r["kind"]: r for r in case["recordings"]}
    assert set(kinds) == {"call", "message"}
    # Stored in the configured database (SQLite or PostgreSQL), once.
    assert query(hotline.db_url, "select number from cases where reporter_phone = :p", p=CALLER) == [(case["number"],)]

    status, wav = hotline.api(kinds["message"]["url"])
    assert status == 200
    samples, channels, rate = wav_pcm(wav)
    assert (channels, rate) == (1, 8000)
    # What the caller sent, as it sounds after G.711: the recording must contain it.
    sent = decode_ulaw(encode_g711(speech, "PCMU"))
    assert best_correlation(samples, sent[: 8000 * 3]) > 0.9
    # Negative control: another utterance does not match, so the check above can fail.
    other = decode_ulaw(encode_g711(speech_pcm("thchs30_D4_750.wav"), "PCMU"))
    assert best_correlation(samples, other[: 8000 * 3]) < 0.5
    assert kinds["message"]["duration_s"] >= len(speech) / 16000 - 0.5

    # The whole call is stereo: the caller on the left, what the caller heard (the IVR) on the right.
    status, call_wav = hotline.api(kinds["call"]["url"])
    stereo, channels, _ = wav_pcm(call_wav)
    assert channels == 2
    left, right = stereo[0::2], stereo[1::2]
    assert best_correlation(left, sent[: 8000 * 3]) > 0.9
    intro = wav_pcm((prompts_dir / "report_intro.wav").read_bytes())[0]
    assert best_correlation(right[: 8000 * 12], intro[2000:10000]) > 0.9
    assert best_correlation(left[: 8000 * 12], intro[2000:10000]) < 0.5

    # The reporter gets an SMS with the case number, queued with the case (log driver here).
    from tests.e2e.conftest import run_hotline

    sms = run_hotline("sms", "list", "--config", str(hotline.config)).stdout
    assert CALLER in sms and case["number"] in sms, sms

    # Without a token the API refuses; the web page lists the case for a logged-in user.
    assert hotline.api("/api/cases", token="wrong")[0] == 401
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    opener.open(hotline.web_url + "login", data=b"username=admin&password=hotline12319", timeout=10)
    page = opener.open(hotline.web_url + "cases", timeout=10).read().decode()
    assert case["number"] in page and CALLER in page and "<audio" in page and "已受理" in page


def test_baresip_report_becomes_a_case_too(hotline, prompts_dir, tmp_path):
    """The same report from baresip (another SIP stack, RTP events via its own DTMF) makes a case."""
    import time
    import wave

    from tests.e2e.peers.runner import Baresip

    speech = speech_pcm(SPEECH)
    intro = len((prompts_dir / "report_intro.wav").read_bytes()) / 16000 + 0.3
    lead = 0.5 + intro + 1.5
    mic = tmp_path / "mic.wav"
    with wave.open(str(mic), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(bytes(int(lead * 8000) * 2) + speech + bytes(8000 * 20))
    caller = "13987654321"
    with Baresip(audio_wav=mic, user=caller) as phone:
        phone.dial(f"sip:12319@127.0.0.1:{hotline.sip_port}")
        phone.wait_event("CALL_ESTABLISHED", timeout=10)
        time.sleep(0.5)
        phone.send_dtmf("1")
        time.sleep(lead - 0.5 + len(speech) / 16000 + 0.5)
        phone.send_dtmf("#")
        time.sleep(1.0)
        phone.hangup()
    [case] = hotline.wait_for_cases(reporter_phone=caller)
    assert case["channel"] == "12319" and case["status"] == "accepted"
    message = next(r for r in case["recordings"] if r["kind"] == "message")
    status, wav = hotline.api(message["url"])
    samples, _, _ = wav_pcm(wav)
    sent = decode_ulaw(encode_g711(speech, "PCMU"))
    assert best_correlation(samples, sent[8000: 8000 * 3]) > 0.8


def test_status_lookup_by_case_number_reads_the_status(hotline, prompts_dir, tmp_path):
    """Press 2, key a real case number and #: the IVR says 已受理 (heard in the call recording's right channel)."""
    from tests.e2e.peers.pcap import build_rtp_pcap

    status, cases = hotline.api("/api/cases")
    number = cases[-1]["number"]
    digits = number.replace("-", "")
    # 2 at 0.5 s (barge-in), the number from 2 s (barge-in into the prompt), then #, then listen.
    dtmf = [(0.5, "2")] + [(2.0 + 0.3 * i, d) for i, d in enumerate(digits)] + [(2.0 + 0.3 * len(digits), "#")]
    pcap = tmp_path / "status.pcap"
    build_rtp_pcap(pcap, pcm_8k_mono=bytes(8000 * 2 * 16), dtmf=dtmf)
    # The IVR says the status, thanks the caller and hangs up itself.
    result = run_sipp("call_server_bye", target=hotline.sip_target, caller="13500001234", pcap=pcap, timeout=60)
    assert result.returncode == 0, result.log_text[-2000:]
    time.sleep(1.0)  # the recording is closed just after the BYE
    [wav] = list((hotline.dir / "recordings").rglob("*-call.wav"))
    stereo, channels, _ = wav_pcm(wav.read_bytes())
    right = stereo[1::2]
    # Said as one phrase (ivr_flows/phrases.py): 您查询的案件目前的办理状态是已受理. The two
    # phrases share their lead-in, so the control compares their last 0.8 s (the status).
    said = wav_pcm((prompts_dir / "case_status_is_accepted.wav").read_bytes())[0]
    other = wav_pcm((prompts_dir / "case_status_is_closed.wav").read_bytes())[0]
    assert best_correlation(right, said) > 0.9
    assert best_correlation(right, other[-6400:]) < best_correlation(right, said[-6400:])

"""A caller hears a welcome they can understand: the IVR's own recording of what the caller
heard, transcribed by the product's Whisper, says the welcome's words."""

from __future__ import annotations

import pytest

from callcenter.stt.quality import cer
from ivr_flows.prompts_build import default_manifest_path, load_manifest
from tests.e2e.audio import wav_pcm
from tests.e2e.peers.pcap import build_rtp_pcap, speech_pcm
from tests.e2e.peers.runner import run_sipp

pytestmark = pytest.mark.e2e

SPEECH = "aishell3_SSB02410161.wav"
CALLER = "13912319000"
# Loose floor: the neural welcome measured 7–27 % through the telephone channel over four
# builds (bench/README.md: the voice is not deterministic, each build is a new take),
# espeak-ng's 60–85 %; RTP, jitter and the recorder's mixing must not push it past this.
MAX_CER = 0.45


def _seconds(wav: bytes) -> float:
    samples, channels, rate = wav_pcm(wav)
    return len(samples) / channels / rate


def listening_caller_pcap(tmp, prompts_dir, speech: bytes):
    """A caller who listens to the whole welcome, presses 1 during the menu, speaks after
    the intro and beep, and presses #."""
    press_at = _seconds((prompts_dir / "welcome.wav").read_bytes()) + 1.0
    speech_at = press_at + 0.2 + _seconds((prompts_dir / "report_intro.wav").read_bytes()) + 0.3 + 1.0
    pcm = bytes(int(speech_at * 8000) * 2) + speech + bytes(8000 * 2)
    path = tmp / "listen.pcap"
    build_rtp_pcap(path, pcm_8k_mono=pcm, codec="PCMU", payload_type=0,
                   dtmf=[(press_at, "1"), (len(pcm) / 16000 + 0.2, "#")])
    return path


def test_caller_hears_an_intelligible_welcome(hotline, prompts_dir, tmp_path):
    """The call recording's caller-heard channel, first seconds, transcribes to the welcome."""
    from callcenter.stt.whisper_stt import WhisperRecognizer, resample

    pcap = listening_caller_pcap(tmp_path, prompts_dir, speech_pcm(SPEECH))
    result = run_sipp("call_report", target=hotline.sip_target, caller=CALLER, pcap=pcap, timeout=90)
    assert result.returncode == 0, f"sipp failed:\n{result.log_text[-3000:]}\n{hotline.log()}"
    [case] = hotline.wait_for_cases(reporter_phone=CALLER)
    [call] = [r for r in case["recordings"] if r["kind"] == "call"]
    status, wav = hotline.api(call["url"])
    assert status == 200
    stereo, channels, rate = wav_pcm(wav)
    assert (channels, rate) == (2, 8000)
    welcome_s = _seconds((prompts_dir / "welcome.wav").read_bytes())
    end = int((welcome_s + 0.15) * rate)
    heard, sent = stereo[1::2][:end], stereo[0::2][:end]

    whisper = WhisperRecognizer()
    welcome = load_manifest(default_manifest_path())["welcome"].text

    def transcribe(samples) -> str:
        return "".join(s.text for s in whisper.transcribe_array(resample(samples / 32768.0, rate)))

    heard_text = transcribe(heard)
    assert cer(welcome, heard_text, numbers=True) < MAX_CER, (welcome, heard_text)
    # Control: the caller's own channel over the same seconds (silence) is not the welcome.
    sent_text = transcribe(sent)
    assert cer(welcome, sent_text, numbers=True) > 0.8, sent_text

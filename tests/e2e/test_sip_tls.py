"""SIP over TCP and TLS against a real `hotline serve` with a certificate the test makes: sipp
calls the IVR over TCP (`-t t1`) and over TLS (socat in front: Debian's sipp has no OpenSSL),
the connection carrying the whole dialog; baresip registers and calls over TLS with SRTP."""

from __future__ import annotations

import re
import socket
import sqlite3
import subprocess
import time
import wave
from pathlib import Path

import pytest

from tests.e2e.audio import best_correlation, decode_ulaw, heard_correlation, report_pcap, wav_pcm
from tests.e2e.conftest import Server, start_server, stop_server
from tests.e2e.peers.certs import make_test_certificate
from tests.e2e.peers.pcap import build_rtp_pcap, encode_g711, speech_pcm
from tests.e2e.peers.ports import free_tcp_port
from tests.e2e.peers.runner import Baresip, BaresipError, kill_group, run_sipp

pytestmark = pytest.mark.e2e

SPEECH = "aishell1_BAC009S0002W0122.wav"
# Within business hours whenever the test runs, so option 1 reaches the agents' queue.
ALWAYS_OPEN = '[ivr]\nopen = "00:00"\nclose = "24:00"\nopen_days = "everyday"\n'


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, prompts_dir):
    """One hotline with SIP over UDP, TCP (same port) and TLS on a port of its own, always open."""
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = make_test_certificate(tmp)
    tls_port = free_tcp_port()
    s = start_server(tmp, prompts_dir, extra=(
        f'[sip]\ntls_port = {tls_port}\ntls_cert = "{cert}"\ntls_key = "{key}"\n' + ALWAYS_OPEN))
    s.tls_port, s.cert, s.key = tls_port, cert, key
    try:
        yield s
    finally:
        stop_server(s)


def _call_ended(server: Server, call_id: str, timeout: float = 5.0) -> bool:
    for _poll in range(round(timeout / 0.2)):
        with sqlite3.connect(f"file:{server.dir / 'hotline.db'}?mode=ro", uri=True) as db:
            rows = db.execute("select ended_at from calls where call_id = ?", (call_id,)).fetchall()
        if rows and rows[0][0]:
            return True
        time.sleep(0.2)
    return False


def _check_call(server: Server, result, transport: str) -> None:
    diagnose = f"sipp {result.returncode}:\n{result.stdout[-1500:]}\n{result.log_text[-4000:]}\n--- server\n{server.log()[-3000:]}"
    assert result.ok, diagnose
    [answer] = [m for m in result.messages("SIP/2.0 200") if re.search(r"^CSeq:\s*1 INVITE", m, re.M)]
    assert re.search(rf"^Contact:.*;transport={transport.lower()}>", answer, re.M | re.I), answer
    assert re.search(r"^m=audio \d+ RTP/AVP 8", answer, re.M), answer
    [bye_ok] = [m for m in result.messages("SIP/2.0 200") if re.search(r"^CSeq:\s*2 BYE", m, re.M)]
    call_id = re.search(r"^Call-ID:\s*(\S+)", bye_ok, re.M).group(1)
    assert _call_ended(server, call_id), f"call {call_id} has no end time\n{server.log()[-3000:]}"


def test_sipp_calls_the_ivr_over_tcp(tls_server, tmp_path):
    """sipp -t t1 on the UDP port number: 200 with a transport=tcp Contact, BYE answered, call stored."""
    pcap = tmp_path / "pcma.pcap"
    build_rtp_pcap(pcap, pcm_8k_mono=bytes(8000 * 2), codec="PCMA", payload_type=8)
    result = run_sipp("call_pcma_only", target=tls_server.sip_target, pcap=pcap, caller="13800000031",
                      timeout=20, extra=["-t", "t1"])
    _check_call(tls_server, result, "TCP")


def test_sipp_calls_the_ivr_over_tls(tls_server, tmp_path):
    """sipp over TLS to tls_port, verifying the test certificate: the whole dialog runs over TLS.

    Debian's sipp is built without OpenSSL (`-t l1` refuses), so socat is its TLS layer:
    sipp speaks `-t t1` to socat, which opens the TLS connection and checks our certificate.
    """
    pcap = tmp_path / "pcma.pcap"
    build_rtp_pcap(pcap, pcm_8k_mono=bytes(8000 * 2), codec="PCMA", payload_type=8)
    with TlsFront(("127.0.0.1", tls_server.tls_port), tls_server.cert) as front:
        result = run_sipp("call_pcma_only", target=("127.0.0.1", front.port), pcap=pcap,
                          caller="13800000032", timeout=20, extra=["-t", "t1"])
    _check_call(tls_server, result, "TLS")


class TlsFront:
    """socat: a plain TCP port on 127.0.0.1 relayed over TLS (certificate checked) to `target`."""

    def __init__(self, target: tuple[str, int], cafile: Path):
        self.port = free_tcp_port()
        self._cmd = ["socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork",
                     f"OPENSSL:{target[0]}:{target[1]},cafile={cafile},verify=1,commonname=localhost"]
        self._proc = None

    def __enter__(self) -> "TlsFront":
        self._proc = subprocess.Popen(self._cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
        for _poll in range(100):  # ready once it accepts (fork: a probe costs nothing)
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"socat did not listen on {self.port}")

    def __exit__(self, *exc) -> None:
        kill_group(self._proc, grace=0.5)


class TlsSrtpBaresip(Baresip):
    """baresip whose account speaks SIP over TLS (checking our test certificate) and insists
    on SRTP with SDES keys (`mediaenc=srtp-mand`)."""

    def __init__(self, *, cafile: Path, tls_port: int, **kwargs):
        super().__init__(**kwargs)
        self.cafile = cafile
        self.tls_port = tls_port

    def _account_line(self) -> str:
        line = super()._account_line()
        # The AOR names the TLS port and transport; the registrar and outbound calls follow it.
        line = line.replace(f"@127.0.0.1:{self.registrar[1]}>", f"@127.0.0.1:{self.tls_port};transport=tls>")
        return line.rstrip("\n") + ";mediaenc=srtp-mand\n"

    def _write_config(self) -> None:
        super()._write_config()
        with open(self.config_dir / "config", "a") as config:
            config.write(f"sip_cafile\t\t{self.cafile}\nmodule\t\t\tsrtp.so\n")


def test_baresip_registers_and_calls_over_tls_with_srtp(tls_server, tmp_path, prompts_dir):
    """baresip (TLS, srtp-mand) registers as 1001 and calls 12319: the answer carries RTP/SAVP and
    our key, the hotline's recording holds the caller's speech, and the caller hears the welcome."""
    speech = speech_pcm(SPEECH)
    mic = tmp_path / "speech.wav"
    with wave.open(str(mic), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(speech)
    with TlsSrtpBaresip(cafile=tls_server.cert, tls_port=tls_server.tls_port, audio_wav=mic, user="1001",
                        registrar=tls_server.sip_target, password="hotline12319") as phone:
        try:
            phone.wait_log(r"1001@127\.0\.0\.1.*200 OK", timeout=15)
        except BaresipError as exc:
            raise AssertionError(f"{exc}\n--- server\n{tls_server.log()[-3000:]}") from None
        phone.dial(f"sip:12319@127.0.0.1:{tls_server.tls_port};transport=tls")
        established = phone.wait_event("CALL_ESTABLISHED", timeout=15)
        time.sleep(len(speech) / 16000 + 1.0)
        phone.hangup()
        time.sleep(1.0)
        trace = phone.log_text()
        heard = phone.received_wav()
    registered = re.search(r"registrations of sip:1001@127\.0\.0\.1: (\S+)", tls_server.log())
    assert registered and "transport=tls" in registered.group(1), tls_server.log()[-3000:]
    answer = re.search(r"SIP/2\.0 200 OK.*?CSeq: \d+ INVITE.*?(v=0.*?)(?:\n\n|\Z)", trace, re.S)
    assert answer, trace[-4000:]
    assert re.search(r"m=audio \d+ RTP/SAVP", answer.group(1)), answer.group(1)
    assert "a=crypto:" in answer.group(1) and "AES_CM_128_HMAC_SHA1_80" in answer.group(1)

    call_id = established.get("id")
    path = _call_recording(tls_server, call_id)
    stereo, channels, _ = wav_pcm(path.read_bytes())
    left = stereo[0::channels]
    # Best of 1 s slices: on a loaded machine the phone's sending has gaps that spoil longer ones.
    assert _likeness(left, speech) > 0.8
    assert _likeness(left, speech_pcm("thchs30_D4_750.wav")) < 0.5  # negative control
    # Our SRTP reached the phone too: it decrypted the welcome prompt.
    assert heard is not None, trace[-3000:]
    samples, ch, rate = wav_pcm(heard.read_bytes())
    mono = samples[0::ch][:: max(1, rate // 8000)]
    welcome = wav_pcm((prompts_dir / "welcome.wav").read_bytes())[0]
    assert max(best_correlation(mono, welcome[a: a + 8000]) for a in range(0, 24000, 4000)) > 0.8
    goodbye = wav_pcm((prompts_dir / "goodbye.wav").read_bytes())[0]
    assert max(best_correlation(mono, goodbye[a: a + 8000]) for a in range(0, 8000, 4000)) < 0.6  # ~0.37


def _likeness(recorded, speech: bytes) -> float:
    """How well `recorded` holds `speech` as it sounds after G.711: the best of 1 s slices."""
    sent = decode_ulaw(encode_g711(speech, "PCMU"))
    return max(best_correlation(recorded, sent[a: a + 8000]) for a in range(0, 8000 * 4, 4000))


def _call_recording(server: Server, call_id: str | None, timeout: float = 10.0) -> Path:
    """The whole-call recording of `call_id` (the newest one if baresip gave no id)."""
    for _poll in range(round(timeout / 0.3)):
        with sqlite3.connect(f"file:{server.dir / 'hotline.db'}?mode=ro", uri=True) as db:
            rows = db.execute("select r.path, r.duration_s from recordings r join calls c on c.call_id = r.call_id "
                              "where r.kind = 'call' and (? is null or r.call_id = ?) and c.ended_at is not null "
                              "order by r.id desc", (call_id, call_id)).fetchall()
        if rows and rows[0][1] > 0:
            path = Path(rows[0][0])
            return path if path.is_absolute() else server.dir / path
        time.sleep(0.3)
    raise AssertionError(f"no finished call recording for {call_id}\n{server.log()[-3000:]}")


def test_queued_caller_reaches_an_agent_phone_on_tls_with_srtp(tls_server, tmp_path, prompts_dir):
    """agent2's baresip is registered over TLS with srtp-mand: a caller who presses 1 rings it on
    its TLS connection with an SRTP offer, it answers, and it hears the caller through SRTP."""
    speech = speech_pcm("aishell1_BAC009S0764W0121.wav")
    pcap = report_pcap(tmp_path, prompts_dir, speech, press_hash=False, tail_s=2.0)
    token = tls_server.token_for("agent2")
    with TlsSrtpBaresip(cafile=tls_server.cert, tls_port=tls_server.tls_port, user="1002",
                        registrar=tls_server.sip_target, password="hotline12319", answer_auto=True) as phone:
        phone.wait_log(r"1002@127\.0\.0\.1.*200 OK", timeout=15)
        status, body = tls_server.post("/api/desk/state", {"state": "ready"}, token=token)
        assert status == 200 and body["status"] == "ready", body
        result = run_sipp("call_report", target=tls_server.sip_target, caller="13612340033", pcap=pcap, timeout=60)
        assert result.returncode == 0, result.log_text[-2000:] + tls_server.log()[-3000:]
        time.sleep(1.0)
        trace = phone.log_text()
        heard = phone.received_wav()
    offer = re.search(r"INVITE sip:1002\S* SIP/2\.0.*?(v=0.*?)(?:\n\n|\Z)", trace, re.S)
    assert offer, trace[-4000:]
    assert re.search(r"^Via: SIP/2\.0/TLS ", trace[offer.start():offer.start(1)], re.M), trace[offer.start():][:1500]
    assert re.search(r"m=audio \d+ RTP/SAVP", offer.group(1)) and "a=crypto:" in offer.group(1), offer.group(1)
    assert heard is not None, trace[-2000:]
    assert heard_correlation(heard, speech) > 0.6
    tls_server.post("/api/desk/state", {"state": "paused"}, token=token)

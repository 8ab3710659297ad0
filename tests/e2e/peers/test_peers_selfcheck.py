"""Self-checks of the e2e peer tooling: pcap builder, sipp scenarios and runners, baresip
and pyVoIP helpers, and the CI set-up scripts. Peers talk to each other here (never to
the hotline), only over 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from .pcap import DTMF_EVENTS, build_rtp_pcap, encode_g711, read_pcap_udp, speech_pcm
from .runner import Baresip, PyVoipPhone, SippUas, run_sipp

REPO = Path(__file__).resolve().parents[3]
needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
needs_baresip = pytest.mark.skipif(shutil.which("baresip") is None,
                                   reason="baresip not installed")
needs_tts = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                               reason="espeak-ng/sox not installed")

pytestmark = pytest.mark.e2e


def _tone(seconds: float, hz: float = 440.0, amplitude: int = 8000) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def _rtp_fields(packet: bytes) -> tuple[bool, int, int, int, bytes]:
    b0, b1, seq, ts, _ = struct.unpack("!BBHII", packet[:12])
    assert b0 >> 6 == 2
    return bool(b1 & 0x80), b1 & 0x7F, seq, ts, packet[12:]


# --------------------------------------------------------------------- pcap / G.711


def test_g711_encoder_matches_reference_tables():
    """Our G.711 encoder agrees with known code points of the µ-law and A-law tables."""
    pcm = np.array([0, -1, 32767, -32768, 1000, -1000], dtype="<i2").tobytes()
    assert encode_g711(pcm, "PCMU") == bytes([0xFF, 0x7E, 0x80, 0x00, 0xCE, 0x4E])
    assert encode_g711(pcm, "PCMA") == bytes([0xD5, 0x55, 0xAA, 0x2A, 0xFA, 0x7A])


def test_g711_encoder_matches_audioop_on_every_sample():
    """All 65536 sample values encode exactly as the stdlib audioop reference does."""
    audioop = pytest.importorskip("audioop")  # gone in Python 3.13
    pcm = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert encode_g711(pcm, "PCMU") == audioop.lin2ulaw(pcm, 2)
    assert encode_g711(pcm, "PCMA") == audioop.lin2alaw(pcm, 2)


def test_pcap_has_paced_audio_and_rfc4733_events(tmp_path):
    """build_rtp_pcap writes 20 ms RTP audio with a digit as marker+updates+3 end packets."""
    path = tmp_path / "a.pcap"
    build_rtp_pcap(path, pcm_8k_mono=_tone(1.0), codec="PCMA", payload_type=8,
                   dtmf=[(0.4, "#")])
    packets = list(read_pcap_udp(path))
    times = [t for t, _ in packets]
    assert np.allclose(np.diff(times), 0.02, atol=1e-5)
    fields = [_rtp_fields(p) for _, p in packets]
    seqs = [f[2] for f in fields]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    events = [f for f in fields if f[1] == 101]
    assert len(events) == 8 + 3  # 160 ms of updates, then three end packets
    assert events[0][0] and not any(f[0] for f in events[1:])
    assert {f[3] for f in events} == {20 * 160}  # one timestamp: the event's start
    codes, flags, durations = zip(*(struct.unpack("!BBH", f[4]) for f in events))
    assert set(codes) == {DTMF_EVENTS["#"]}
    assert [bool(x & 0x80) for x in flags] == [False] * 8 + [True] * 3
    assert list(durations) == [160 * (i + 1) for i in range(8)] + [1280] * 3
    audio = [f for f in fields if f[1] == 8]
    assert len(audio) == 50 - 11 and all(len(f[4]) == 160 for f in audio)
    assert all(f[3] == i * 160 for i, f in enumerate(fields) if f[1] == 8)


def test_pcap_pads_silence_until_a_late_digit(tmp_path):
    """A digit after the end of the audio still gets sent, after encoded silence."""
    path = tmp_path / "late.pcap"
    build_rtp_pcap(path, pcm_8k_mono=_tone(0.1), dtmf=[(0.5, "1")])
    fields = [_rtp_fields(p) for _, p in read_pcap_udp(path)]
    assert [f[1] for f in fields].count(101) == 11
    assert fields[10][4] == b"\xff" * 160  # µ-law silence before the digit


@needs_tts
def test_speech_pcm_from_pinyin_and_from_wav(tmp_path):
    """speech_pcm gives 8 kHz 16-bit speech from espeak-ng pinyin and from a 16 kHz WAV."""
    pcm = speech_pcm("ni3 hao3")
    assert 0.3 < len(pcm) / 16000 < 5
    assert np.abs(np.frombuffer(pcm, "<i2")).max() > 1000
    wav = tmp_path / "x.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(_tone(2.0))  # 32000 samples at 16 kHz: 1 s
    assert abs(len(speech_pcm(wav)) - 16000) < 100  # 1 s at 8 kHz, 2 bytes a sample


# --------------------------------------------------------------------------- sipp


@needs_sipp
def test_sipp_call_report_plays_pcap_rtp_to_the_sdp_answer(tmp_path):
    """call_report.xml completes against a sipp UAS and its pcap's RTP reaches the
    address of the UAS's SDP answer, with the caller's number in From."""
    pcap = tmp_path / "call.pcap"
    build_rtp_pcap(pcap, pcm_8k_mono=_tone(0.6), dtmf=[(0.2, "1")])
    expected = [p for _, p in read_pcap_udp(pcap)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(0.5)
        with SippUas("uas_sink", keys={"sink_port": sink.getsockname()[1]}) as uas:
            result = run_sipp("call_report", target=("127.0.0.1", uas.port), pcap=pcap,
                              caller="13912345678", timeout=15)
            uas_result = uas.wait(5)
        received = []
        try:
            while True:
                received.append(sink.recv(2048))
        except socket.timeout:
            pass
    assert result.ok, result.stderr + result.log_text
    assert uas_result.ok, uas_result.stderr + uas_result.log_text
    assert "From: <sip:13912345678@" in result.messages("INVITE")[0]
    assert [m.splitlines()[0].split()[0] for m in result.messages()][-2:] == ["BYE", "SIP/2.0"]
    assert received == expected


@needs_sipp
def test_run_sipp_fails_and_returns_when_nobody_answers():
    """run_sipp returns a failed call (sipp's own failure code, or -9 when its timeout killed it)
    when no server listens, with nothing answered in its trace."""
    result = run_sipp("options", target=("127.0.0.1", 9), timeout=2)
    assert not result.ok and result.returncode in (1, 255, -9), result.returncode
    assert result.messages("SIP/2.0") == []


def test_run_sipp_requires_a_pcap_for_media_scenarios():
    """A scenario that plays a pcap refuses to run without one."""
    with pytest.raises(ValueError):
        run_sipp("call_report", target=("127.0.0.1", 9))


@needs_sipp
@needs_baresip
def test_sipp_signalling_scenarios_against_baresip():
    """options, call_cancel and call_no_common_codec succeed against baresip as the UAS."""
    with Baresip(user="12319") as phone:
        target = ("127.0.0.1", phone.sip_port)
        for name, last in [("options", "SIP/2.0 200"), ("call_cancel", "ACK"),
                           ("call_no_common_codec", "ACK")]:
            result = run_sipp(name, target=target, timeout=10)
            assert result.ok, (name, result.log_text)
            assert result.messages()[-1].startswith(last), name
        assert result.messages("SIP/2.0 488")


@needs_sipp
@needs_baresip
@needs_tts
def test_sipp_pcma_only_and_server_bye_against_baresip(tmp_path):
    """call_pcma_only gets a PCMA answer and call_server_bye answers the callee's BYE;
    baresip hears the pcap's digit."""
    pcap = tmp_path / "pcma.pcap"
    build_rtp_pcap(pcap, pcm_8k_mono=_tone(0.8), codec="PCMA", payload_type=8,
                   dtmf=[(0.2, "5")])
    with Baresip(user="12319", answer_auto=True) as phone:
        target = ("127.0.0.1", phone.sip_port)
        result = run_sipp("call_pcma_only", target=target, pcap=pcap, timeout=10)
        assert result.ok, result.log_text
        assert "RTP/AVP 8" in result.messages("SIP/2.0 200")[0]
        assert any(e.get("type") == "CALL_DTMF_START" for e in phone.events), phone.events
        hang = threading.Timer(2.0, phone.hangup)
        hang.start()
        try:
            result = run_sipp("call_server_bye", target=target, pcap=pcap, timeout=10)
        finally:
            hang.cancel()
        assert result.ok, result.log_text
        assert result.messages("BYE")


# ------------------------------------------------------------------------ baresip


@needs_baresip
def test_baresip_starts_answers_control_and_stops():
    """Baresip starts with our config, answers on ctrl_tcp, and its process is gone after."""
    with Baresip() as phone:
        response = phone.command("reginfo")
        assert response["ok"] is True
        proc = phone._proc
        assert "127.0.0.1" in phone.log_text()
    assert proc.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", phone.ctrl_port), 0.5).close()


@needs_baresip
def test_baresip_call_dtmf_audio_and_hangup(tmp_path):
    """A baresip caller reaches an auto-answering baresip, sends DTMF and audio, hangs up."""
    tone = tmp_path / "tone.wav"
    with wave.open(str(tone), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(_tone(3.0))
    with Baresip(user="1001", answer_auto=True) as agent, Baresip(audio_wav=tone) as caller:
        caller.dial(f"sip:1001@127.0.0.1:{agent.sip_port}")
        caller.wait_event("CALL_ESTABLISHED")
        agent.wait_event("CALL_ESTABLISHED")
        caller.send_dtmf("1#", gap_s=0.3)
        time.sleep(0.5)
        caller.hangup()
        agent.wait_event("CALL_CLOSED")
        digits = [e.get("param") for e in agent.events if e.get("type") == "CALL_DTMF_START"]
        assert digits == ["1", "#"]
        heard = agent.received_wav()
        assert heard is not None
        with wave.open(str(heard)) as w:
            samples = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float)
        assert np.sqrt(np.mean(samples ** 2)) > 1000  # the 440 Hz tone, not silence


# ------------------------------------------------------------------------- pyVoIP


def _fake_registrar(sock: socket.socket, status: str, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(4096)
        except (socket.timeout, OSError):
            continue
        lines = data.decode(errors="replace").split("\r\n")
        if not lines[0].startswith("REGISTER"):
            continue
        keep = [h for h in lines if h.split(":")[0].lower() in ("via", "from", "to", "call-id",
                                                                 "cseq")]
        sock.sendto(("SIP/2.0 " + status + "\r\n" + "\r\n".join(keep)
                     + "\r\nContent-Length: 0\r\n\r\n").encode(), addr)


@needs_baresip
def test_baresip_agent_registers_and_shows_a_refused_register():
    """A Baresip agent phone REGISTERs to its registrar; a 501 answer shows in its log."""
    stop = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        thread = threading.Thread(target=_fake_registrar,
                                  args=(sock, "501 Not Implemented", stop), daemon=True)
        thread.start()
        try:
            with Baresip(user="1001", registrar=sock.getsockname(), password="pw",
                         answer_auto=True) as agent:
                agent.wait_log(r"reg: sip:1001@127\.0\.0\.1:\d+: 501", timeout=5)
        finally:
            stop.set()
            thread.join(2)


def test_pyvoip_gives_up_when_register_is_answered_501():
    """pyVoIP 1.6.8 stops for good (status FAILED) when REGISTER gets 501 three times."""
    from pyVoIP.VoIP import PhoneStatus

    stop = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        thread = threading.Thread(target=_fake_registrar,
                                  args=(sock, "501 Not Implemented", stop), daemon=True)
        thread.start()
        phone = PyVoipPhone(server=sock.getsockname())
        try:
            phone.start()
            assert phone.wait_status(PhoneStatus.FAILED, timeout=5) == PhoneStatus.FAILED
        finally:
            phone.stop()
            stop.set()
            thread.join(2)


@needs_sipp
def test_pyvoip_calls_without_registering():
    """PyVoipPhone(register=False) INVITEs a sipp UAS, gets answered and hangs up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        with SippUas("uas_sink", keys={"sink_port": sink.getsockname()[1]}) as uas:
            with PyVoipPhone(server=("127.0.0.1", uas.port), register=False) as phone:
                call = phone.call("12319", timeout=10)
                call.hangup()
            result = uas.wait(5)
    assert result.ok, result.stderr + result.log_text
    assert result.messages("BYE")


# ------------------------------------------------------------------- CI scripts


def test_install_system_is_a_fast_noop_when_everything_is_installed():
    """install-system.sh exits 0 without running apt when all packages are present."""
    script = REPO / ".ci" / "install-system.sh"
    probe = subprocess.run(["dpkg-query", "-W", "-f=${Status}\n", "sip-tester", "baresip",
                            "espeak-ng", "sox", "chromium", "fonts-wqy-microhei",
                            "kannel", "kannel-extras"], capture_output=True, text=True)
    if probe.stdout.count("install ok installed") != 8:
        pytest.skip("not every system package is installed here")
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "all present" in done.stdout
    assert "Reading package lists" not in done.stdout + done.stderr  # apt-get never ran


def test_setup_venv_installs_only_when_pyproject_changes(tmp_path):
    """setup-venv.sh runs pip only when pyproject.toml's hash differs from the stamp (the RTP
    helper's build step runs each time; it rebuilds only when its source is newer)."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "setup-venv.sh", tmp_path / ".ci")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    calls = tmp_path / "calls.log"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)

    def run() -> str:
        done = subprocess.run(["bash", str(tmp_path / ".ci" / "setup-venv.sh")],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "installed" in run()
    assert "-m pip install -q -e .[test]" in calls.read_text()
    calls.unlink()
    assert "up to date" in run()
    # Up to date: no pip at all; only the RTP helper's (itself incremental) build step runs.
    second = calls.read_text().splitlines() if calls.exists() else []
    assert not any("pip" in line for line in second), second
    assert [line for line in second if "rtpio_build.py" in line], second
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    run()
    assert "-e .[test]" in calls.read_text()


def test_scenarios_are_wellformed_xml_using_the_caller_key():
    """Every sipp UAC scenario parses as XML and puts [caller] in its From header."""
    import xml.dom.minidom

    scenario_dir = Path(__file__).with_name("sipp")
    names = sorted(p.name for p in scenario_dir.glob("*.xml"))
    assert {"call_report.xml", "call_cancel.xml", "options.xml", "call_pcma_only.xml",
            "call_no_common_codec.xml", "call_server_bye.xml"} <= set(names)
    for name in names:
        text = (scenario_dir / name).read_text(encoding="latin-1")
        doc = xml.dom.minidom.parseString(text.encode("latin-1"))
        first = next(n for n in doc.documentElement.childNodes if n.nodeType == n.ELEMENT_NODE)
        if first.tagName == "send":  # a UAC (a UAS starts by receiving)
            assert "From: <sip:[caller]@" in text, name
    assert os.access(REPO / ".ci" / "install-system.sh", os.X_OK)

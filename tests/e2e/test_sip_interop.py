"""SIP interop against a real `hotline serve`: sipp, baresip and pyVoIP as callers and as agent
phones registering with digest, IP-allow-listed trunks, and malformed datagrams."""

from __future__ import annotations

import re
import socket
import sqlite3
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import Server, run_hotline, start_server, stop_server
from tests.e2e.peers.pcap import build_rtp_pcap
from tests.e2e.peers.runner import Baresip, PyVoipPhone, run_sipp, u8_to_pcm16

pytestmark = pytest.mark.e2e

LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def server(tmp_path_factory, prompts_dir):
    """One hotline for the calls below: it rings 1 s before answering (CANCEL needs the 180 alone)."""
    s = start_server(tmp_path_factory.mktemp("interop"), prompts_dir, extra="[sip]\nring_s = 1.0\n"
                     # pyVoIP 1.6 answers digest challenges without qop (RFC 2069).
                     "digest_qop_required = false\n")
    try:
        yield s
    finally:
        stop_server(s)


def _diagnose(result, server: Server) -> str:
    return f"sipp {result.returncode}:\n{result.stdout[-1500:]}\n{result.log_text[-4000:]}\n--- server\n{server.log()[-3000:]}"


def _silence_pcap(tmp: Path, seconds: float, codec: str = "PCMU", payload_type: int = 0, dtmf=()) -> Path:
    path = tmp / f"{codec}-{seconds}.pcap"
    build_rtp_pcap(path, pcm_8k_mono=bytes(int(seconds * 8000) * 2), codec=codec, payload_type=payload_type,
                   dtmf=list(dtmf))
    return path


def _calls_in_db(server: Server, call_id_part: str = "") -> list[tuple]:
    """Rows of the calls table (read-only peek at the server's SQLite file)."""
    with sqlite3.connect(f"file:{server.dir / 'hotline.db'}?mode=ro", uri=True) as db:
        return db.execute("select call_id, ended_at from calls where call_id like ?",
                          (f"%{call_id_part}%",)).fetchall()


# --------------------------------------------------------------------------- raw UDP


class Udp:
    """A bare UDP socket on 127.0.0.1 for hand-made SIP datagrams."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes, target) -> None:
        self.sock.sendto(data, target)

    def replies(self, wait: float = 1.0, until_final: bool = False) -> list[str]:
        out, deadline = [], time.monotonic() + wait
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = self.sock.recvfrom(65535)
            except (TimeoutError, socket.timeout):
                break
            text = data.decode("utf-8", "replace")
            out.append(text)
            if until_final and re.match(r"SIP/2.0 [2-6]\d\d", text):
                break
        return out


def _options(udp: Udp, target, branch: str) -> bytes:
    return (
        f"OPTIONS sip:12319@{LOOPBACK}:{target[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{udp.port};branch=z9hG4bK{branch};rport\r\n"
        f"From: <sip:probe@{LOOPBACK}>;tag={branch}\r\n"
        f"To: <sip:12319@{LOOPBACK}>\r\n"
        f"Call-ID: {branch}@{LOOPBACK}\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _invite(udp: Udp, target, number: str, call_id: str, extra: str = "", media_port: int | None = None) -> bytes:
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
           f"m=audio {media_port or udp.port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
           "a=rtpmap:101 telephone-event/8000\r\n").encode()
    head = (
        f"INVITE sip:{number}@{LOOPBACK}:{target[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{udp.port};branch=z9hG4bK{call_id};rport\r\n"
        f"From: <sip:13800000000@{LOOPBACK}>;tag=t{call_id}\r\n"
        f"To: <sip:{number}@{LOOPBACK}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:13800000000@{LOOPBACK}:{udp.port}>\r\nMax-Forwards: 70\r\n{extra}"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
    ).encode()
    return head + sdp


def _status(reply: str) -> int:
    return int(reply.split(" ", 2)[1])


def _final_to_invite(udp: Udp, target, number: str) -> int:
    """Send an INVITE to `number`, return the final status (ACKing it if it is a failure)."""
    call_id = uuid.uuid4().hex[:12]
    udp.send(_invite(udp, target, number, call_id), target)
    finals = [r for r in udp.replies(5.0, until_final=True) if re.match(r"SIP/2.0 [2-6]\d\d", r)]
    assert finals, f"no final response to an INVITE to {number}"
    reply = finals[0]
    to = re.search(r"^To: (.*)$", reply, re.M).group(1).strip()
    ack = (f"ACK sip:{number}@{LOOPBACK}:{target[1]} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP {LOOPBACK}:{udp.port};branch=z9hG4bK{call_id};rport\r\n"
           f"From: <sip:13800000000@{LOOPBACK}>;tag=t{call_id}\r\nTo: {to}\r\n"
           f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    if _status(reply) >= 300:
        udp.send(ack.encode(), target)
    return _status(reply)


# ------------------------------------------------------------------------ sipp calls


def test_options_is_answered(server):
    """sipp OPTIONS (a trunk's keep-alive) gets 200 with our Allow list."""
    result = run_sipp("options", target=server.sip_target, timeout=10)
    assert result.ok, _diagnose(result, server)
    [ok] = result.messages("SIP/2.0 200")
    assert re.search(r"^Allow:.*INVITE.*BYE.*OPTIONS", ok, re.M)


def test_cancel_while_ringing_gets_200_and_487(server):
    """INVITE, 180, CANCEL: the CANCEL gets 200, the INVITE 487 (ACKed), and no call is answered."""
    result = run_sipp("call_cancel", target=server.sip_target, timeout=15)
    assert result.ok, _diagnose(result, server)
    finals = [m.splitlines()[0].strip() for m in result.messages("SIP/2.0") if not m.startswith("SIP/2.0 1")]
    assert finals == ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated"], finals
    assert re.search(r"^CSeq:\s*1 CANCEL", result.messages("SIP/2.0 200")[0], re.M | re.I)


def test_pcma_only_offer_is_answered_with_pcma_and_caller_bye_ends_it(server, tmp_path):
    """An A-law-only offer is answered with PCMA alone; the caller's BYE gets 200 and ends the call."""
    pcap = _silence_pcap(tmp_path, 2.0, codec="PCMA", payload_type=8)
    result = run_sipp("call_pcma_only", target=server.sip_target, pcap=pcap, caller="13800000001", timeout=20)
    assert result.ok, _diagnose(result, server)
    [answer] = [m for m in result.messages("SIP/2.0 200") if "INVITE" in m]
    media = re.search(r"^m=audio \d+ RTP/AVP ([\d ]+)$", answer, re.M).group(1).split()
    assert media[0] == "8" and "0" not in media
    assert "a=rtpmap:8 PCMA/8000" in answer
    [bye_ok] = [m for m in result.messages("SIP/2.0 200") if re.search(r"^CSeq:\s*2 BYE", m, re.M)]
    call_id = re.search(r"^Call-ID:\s*(\S+)", bye_ok, re.M).group(1)
    for _poll in range(25):  # the call row is written by the database writer: poll, then judge the row
        if [r for r in _calls_in_db(server, call_id) if r[1]]:
            break
        time.sleep(0.2)
    assert [r for r in _calls_in_db(server, call_id) if r[1]], "the call has no end time after the caller's BYE"


def test_offer_without_a_common_codec_gets_488(server):
    """A G.729-only offer is refused with 488 (and ACKed by sipp on the INVITE's branch)."""
    result = run_sipp("call_no_common_codec", target=server.sip_target, timeout=10)
    assert result.ok, _diagnose(result, server)
    assert result.messages("SIP/2.0 488")


def test_server_hangs_up_when_the_ivr_ends(server, tmp_path):
    """Four invalid menu keys: the IVR says goodbye and the hotline sends BYE (sipp answers 200)."""
    pcap = _silence_pcap(tmp_path, 20.0, dtmf=[(1.0, "7"), (2.0, "7"), (3.0, "7"), (4.0, "7")])
    result = run_sipp("call_server_bye", target=server.sip_target, pcap=pcap, caller="13800000002", timeout=40)
    assert result.ok, _diagnose(result, server)
    [bye] = result.messages("BYE")
    call_id = re.search(r"^Call-ID:\s*(\S+)", bye, re.M).group(1)
    for _poll in range(25):
        with sqlite3.connect(f"file:{server.dir / 'hotline.db'}?mode=ro", uri=True) as db:
            row = db.execute("select end_reason, ivr_path from calls where call_id = ?", (call_id,)).fetchone()
        if row and row[0]:
            break
        time.sleep(0.2)
    # The hangup is ours; the IVR's reason (no_input) is lost on the way (reported to the lead).
    assert row and row[0].startswith("local:") and row[1] == "7 7 7 7", row


def test_retransmitted_invite_is_absorbed(server):
    """The same INVITE twice (same branch) while ringing: the copy gets the 180 again, then one 200;
    after the ACK nothing more is retransmitted, and BYE ends the one call."""
    udp, media = Udp(), Udp()  # RTP goes to `media`, so `udp` sees SIP only
    call_id = f"dup-{uuid.uuid4().hex[:10]}"
    target = server.sip_target
    try:
        invite = _invite(udp, target, "12319", call_id, media_port=media.port)
        udp.send(invite, target)
        udp.send(invite, target)
        replies = udp.replies(5.0, until_final=True)
        assert [_status(r) for r in replies] == [100, 180, 180, 200], replies
        ok = replies[-1]
        to = re.search(r"^To: (.*)$", ok, re.M).group(1).strip()
        contact = re.search(r"^Contact:\s*<([^>]+)>", ok, re.M).group(1)

        def in_dialog(method: str, cseq: int) -> bytes:
            return (f"{method} {contact} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {LOOPBACK}:{udp.port};branch=z9hG4bK{method}{call_id};rport\r\n"
                    f"From: <sip:13800000000@{LOOPBACK}>;tag=t{call_id}\r\nTo: {to}\r\n"
                    f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n").encode()

        udp.send(in_dialog("ACK", 1), target)
        assert udp.replies(1.5) == []  # an unACKed 200 would come again after 0.5 s and 1 s
        udp.send(in_dialog("BYE", 2), target)
        assert [_status(r) for r in udp.replies(2.0, until_final=True)] == [200]
    finally:
        udp.close()
        media.close()
    for _poll in range(25):  # the call row is written by the database writer: poll, then judge the row
        if [r for r in _calls_in_db(server, call_id) if r[1]]:
            break
        time.sleep(0.2)
    assert [r[0] for r in _calls_in_db(server, call_id) if r[1]] == [call_id]


def test_reinvite_hold_and_unhold(server):
    """re-INVITE a=sendonly is answered a=recvonly, the next a=sendrecv again a=sendrecv; the dialog survives to BYE."""
    result = run_sipp("reinvite_hold", target=server.sip_target, caller="13800000004", timeout=20)
    assert result.ok, _diagnose(result, server)
    answers = [m for m in result.messages("SIP/2.0 200") if "INVITE" in m.split("\n\n")[0]]
    directions = [re.search(r"^a=(sendrecv|sendonly|recvonly|inactive)", m, re.M).group(1) for m in answers]
    assert directions == ["sendrecv", "recvonly", "sendrecv"], directions


# ------------------------------------------------------------------------ bad input


def test_malformed_datagrams_are_refused_or_dropped_and_the_server_keeps_serving(server):
    """Garbage, truncated INVITEs, a lying Content-Length: 400 or nothing; OPTIONS afterwards gets 200."""
    udp = Udp()
    try:
        target = server.sip_target
        full = _invite(udp, target, "12319", "trunc1")
        bad = {
            "garbage": bytes(range(256)) * 8,
            "truncated": full[: full.index(b"CSeq")] + b"CSeq: 1 INV",
            "no blank line": full.split(b"\r\n\r\n")[0],
            "bad content-length": _invite(udp, target, "12319", "clen1").replace(
                b"Content-Length: ", b"Content-Length: 9"),
        }
        for name, data in bad.items():
            udp.send(data, target)
            replies = udp.replies(0.7)
            statuses = [_status(r) for r in replies if r.startswith("SIP/2.0 ")]
            assert set(statuses) <= {400, 513}, f"{name}: got {statuses}"
        udp.send(_options(udp, target, "after1"), target)
        assert [_status(r) for r in udp.replies(2.0)] == [200]
    finally:
        udp.close()
    assert server.alive()
    result = run_sipp("options", target=server.sip_target, timeout=10)
    assert result.ok, _diagnose(result, server)


def test_datagram_larger_than_8_kb_is_refused_not_truncated(server):
    """An INVITE with a 60 kB header is one UDP datagram: it gets 400/513 or nothing, never a call attempt."""
    udp = Udp()
    try:
        udp.send(_invite(udp, server.sip_target, "12319", "huge2", extra="X-Huge: " + "a" * 60000 + "\r\n"),
                 server.sip_target)
        statuses = [_status(r) for r in udp.replies(1.0) if r.startswith("SIP/2.0 ")]
        assert statuses == [513], statuses
    finally:
        udp.close()


# ------------------------------------------------------------------------ pyVoIP caller


def test_pyvoip_caller_hears_the_welcome_prompt(server, prompts_dir):
    """pyVoIP (no registration) calls 12319, is answered, and receives the welcome prompt's audio."""
    phone = PyVoipPhone(server=server.sip_target, register=False)
    phone.start()
    try:
        call = phone.call("12319", timeout=15)
        received = bytearray()
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            received += call.read_audio(160, blocking=True)
        call.hangup()
    finally:
        phone.stop()
    pcm = np.frombuffer(u8_to_pcm16(bytes(received)), dtype="<i2").astype(np.float64)
    assert len(pcm) >= 8000 * 3
    rms = float(np.sqrt(np.mean(pcm * pcm)))
    assert rms > 300, f"pyVoIP heard near silence (RMS {rms:.0f})"
    from tests.e2e.audio import best_correlation, wav_pcm

    def likeness(prompt: str) -> float:
        """Median match of the prompt's first 2 s, in 0.25 s pieces (pyVoIP's playout has gaps)."""
        wav, _, _ = wav_pcm((prompts_dir / f"{prompt}.wav").read_bytes())
        pieces = [wav[i: i + 2000].astype(np.float64) for i in range(0, 16000, 2000)]
        return float(np.median([best_correlation(pcm, piece) for piece in pieces]))

    assert likeness("welcome") > 0.9
    assert likeness("goodbye") < 0.75  # negative control: another prompt does not match
    assert server.alive()


# ------------------------------------------------------------------ agent phones register


def _add_account(server: Server, extension: str, password: str) -> None:
    run_hotline("sip", "account", "add", extension, "--password", password, "--config", str(server.config))


def _wait_for_account(server: Server, extension: str, password: str) -> None:
    """The server reloads accounts every 3 s: wait until an authenticated REGISTER (Expires: 0,
    so it binds nothing) is accepted."""
    udp = Udp()
    try:
        deadline, cseq = time.monotonic() + 15, 1
        while True:
            _, final = _register_by_hand(udp, server.sip_target, extension, password, "MD5", cseq, expires=0)
            if (final and _status(final) == 200) or time.monotonic() > deadline:
                return
            cseq += 2
            time.sleep(0.5)
    finally:
        udp.close()


def test_sipp_registers_with_md5_digest_and_a_wrong_password_gets_403(server):
    """A stored account: sipp's MD5 digest REGISTER gets 200; the same with a wrong password gets 403."""
    _add_account(server, "2101", "sipp-pass-1101")
    _wait_for_account(server, "2101", "sipp-pass-1101")
    result = run_sipp("register_digest", target=server.sip_target, caller="2101", timeout=10,
                      extra=["-au", "2101", "-ap", "sipp-pass-1101"])
    assert result.ok, _diagnose(result, server)
    [second] = [m for m in result.messages("REGISTER") if "Authorization" in m]
    assert re.search(r"algorithm=\"?MD5", second, re.I)
    wrong = run_sipp("register_digest", target=server.sip_target, caller="2101", timeout=10,
                     extra=["-au", "2101", "-ap", "not-the-password"])
    assert not wrong.ok
    assert wrong.messages("SIP/2.0 403")


def test_baresip_agent_phone_registers_and_a_wrong_password_is_refused(server):
    """`hotline sip account add` then baresip registers as that extension; with a wrong password it is refused."""
    _add_account(server, "2001", "baresip-pass-1")
    _wait_for_account(server, "2001", "baresip-pass-1")
    with Baresip(user="2001", registrar=server.sip_target, password="baresip-pass-1", answer_auto=True) as phone:
        phone.wait_log(r"2001@127\.0\.0\.1: \{0/UDP/v4\} 200 OK", timeout=10)
    with Baresip(user="2001", registrar=server.sip_target, password="wrong-pass-1", answer_auto=True) as phone:
        phone.wait_log(r"2001@127\.0\.0\.1.*403 Forbidden", timeout=10)
    assert re.search(r"registrations of sip:2001@127\.0\.0\.1: sip:2001-\S+@127\.0\.0\.1:\d+", server.log())


def test_pyvoip_agent_phone_registers(server):
    """A pyVoIP phone with a stored account reaches REGISTERED; with a wrong password it does not."""
    from pyVoIP.VoIP import PhoneStatus

    _add_account(server, "2002", "pyvoip-pass-1")
    _wait_for_account(server, "2002", "pyvoip-pass-1")
    phone = PyVoipPhone(server=server.sip_target, user="2002", password="pyvoip-pass-1", auto_answer=True)
    try:
        phone.start()
        assert phone.wait_status(PhoneStatus.REGISTERED, timeout=10) == PhoneStatus.REGISTERED
    finally:
        phone.stop()
    bad = PyVoipPhone(server=server.sip_target, user="2002", password="wrong-password")
    try:
        bad.start()  # registers in the background: refused (403) three times, it gives up
        assert bad.wait_status(PhoneStatus.FAILED, timeout=15) == PhoneStatus.FAILED
    finally:
        bad.stop()


def _register_by_hand(udp: Udp, target, extension: str, password: str, algorithm: str, cseq: int,
                      expires: int = 120) -> tuple[str, str]:
    """REGISTER, answer the challenge for `algorithm`; returns (the 401, the final response)."""
    from callcenter.sip.digest import build_authorization, parse_challenge

    def register(n: int, auth: str = "") -> str:
        msg = (f"REGISTER sip:{LOOPBACK}:{target[1]} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {LOOPBACK}:{udp.port};branch=z9hG4bKreg{n}{uuid.uuid4().hex[:6]};rport\r\n"
               f"From: <sip:{extension}@{LOOPBACK}>;tag=hand\r\nTo: <sip:{extension}@{LOOPBACK}>\r\n"
               f"Call-ID: hand-{extension}@{LOOPBACK}\r\nCSeq: {n} REGISTER\r\n"
               f"Contact: <sip:{extension}@{LOOPBACK}:{udp.port}>\r\nExpires: {expires}\r\n{auth}"
               "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        udp.send(msg.encode(), target)
        [reply] = udp.replies(2.0, until_final=True)
        return reply

    challenge = register(cseq)
    offers = re.findall(r"^WWW-Authenticate:\s*(.*?)\s*$", challenge, re.M)
    chosen = [parse_challenge(o) for o in offers if parse_challenge(o).algorithm == algorithm]
    if not chosen:
        return challenge, ""
    value = build_authorization(chosen[0], username=extension, password=password, method="REGISTER",
                                uri=f"sip:{LOOPBACK}:{target[1]}", cnonce="e2e")
    return challenge, register(cseq + 1, f"Authorization: {value}\r\n")


def test_sha256_digest_when_configured(tmp_path, prompts_dir):
    """With digest_algorithms = ["SHA-256", "MD5"], the 401 offers SHA-256 first; a SHA-256 digest
    REGISTER gets 200 and a wrong password 403; pyVoIP still registers (it answers the MD5 one)."""
    from pyVoIP.VoIP import PhoneStatus

    s = start_server(tmp_path, prompts_dir, extra='[sip]\ndigest_algorithms = ["SHA-256", "MD5"]\n'
                     'digest_qop_required = false\n')  # pyVoIP 1.6: no qop
    udp = Udp()
    try:
        _add_account(s, "2201", "sha-pass-2201")
        _add_account(s, "2202", "pyvoip-pass-2")
        _wait_for_account(s, "2201", "sha-pass-2201")
        _wait_for_account(s, "2202", "pyvoip-pass-2")
        challenge, ok = _register_by_hand(udp, s.sip_target, "2201", "sha-pass-2201", "SHA-256", 1)
        algorithms = re.findall(r"^WWW-Authenticate:.*algorithm=([\w-]+)", challenge, re.M)
        assert algorithms == ["SHA-256", "MD5"]
        assert _status(ok) == 200, ok
        assert f"<sip:2201@{LOOPBACK}:{udp.port}>;expires=120" in ok
        _, refused = _register_by_hand(udp, s.sip_target, "2201", "wrong-password", "SHA-256", 3)
        assert _status(refused) == 403
        phone = PyVoipPhone(server=s.sip_target, user="2202", password="pyvoip-pass-2")
        try:
            phone.start()
            assert phone.wait_status(PhoneStatus.REGISTERED, timeout=10) == PhoneStatus.REGISTERED
        finally:
            phone.stop()
    finally:
        udp.close()
        stop_server(s)


def test_default_offers_md5_only(server):
    """The default challenge is MD5 alone (baresip 1.x and sipp 3.6 give up when SHA-256 is offered)."""
    udp = Udp()
    try:
        challenge, final = _register_by_hand(udp, server.sip_target, "2999", "whatever-1", "SHA-256", 1)
    finally:
        udp.close()
    assert re.findall(r"^WWW-Authenticate:.*algorithm=([\w-]+)", challenge, re.M) == ["MD5"]
    assert final == ""


# ------------------------------------------------------------------------ trunks


def test_allow_listed_trunk_reaches_its_did_and_nothing_else(tmp_path, prompts_dir):
    """A trunk allowing 127.0.0.1 for 12319: that DID is answered, 96310 (not its DID) and 99999 get 404."""
    trunk = '[[trunks]]\nname = "carrier"\nallow = ["127.0.0.1"]\ndids = ["12319"]\n'
    s = start_server(tmp_path, prompts_dir, extra=trunk)
    udp = Udp()
    try:
        assert _final_to_invite(udp, s.sip_target, "12319") == 200
        assert _final_to_invite(udp, s.sip_target, "96310") == 404
        assert _final_to_invite(udp, s.sip_target, "99999") == 404
    finally:
        udp.close()
        stop_server(s)


def test_unlisted_source_gets_407_but_a_registered_agent_phone_may_call(tmp_path, prompts_dir):
    """Allow lists name another network: sipp from 127.0.0.1 is challenged (407); baresip answers with its account."""
    trunk = '[[trunks]]\nname = "carrier"\nallow = ["192.0.2.0/24"]\n'
    s = start_server(tmp_path, prompts_dir, extra=trunk)
    udp = Udp()
    try:
        assert _final_to_invite(udp, s.sip_target, "12319") == 407
        _add_account(s, "2001", "baresip-pass-1")
        _wait_for_account(s, "2001", "baresip-pass-1")
        with Baresip(user="2001", registrar=s.sip_target, password="baresip-pass-1") as phone:
            phone.wait_log(r"2001@127\.0\.0\.1: \{0/UDP/v4\} 200 OK", timeout=10)
            phone.dial(f"sip:12319@{LOOPBACK}:{s.sip_port}")
            phone.wait_event("CALL_ESTABLISHED", timeout=10)
            phone.hangup()
    finally:
        udp.close()
        stop_server(s)

"""Call admission against the real server: the slow-INVITE attack (no ACK, no RTP) from
127.0.0.2 is torn down and its ports freed while a real call from 127.0.0.3 is answered; the
per-source limit answers 503 Retry-After; an unauthenticated INVITE to an agent's extension
never reaches the agent's phone and looks exactly like one to a number that does not exist."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import query, start_server, stop_server
from tests.e2e.peers.pcap import build_rtp_pcap
from tests.e2e.peers.ports import free_udp_port, free_udp_port_block
from tests.e2e.peers.runner import SCENARIO_DIR, kill_group

ATTACKER, CITIZEN = "127.0.0.2", "127.0.0.3"
LIMITS = ("[admission]\nmax_calls = 6\nmax_calls_per_source = 3\nack_timeout_s = 2.0\n"
          "first_rtp_timeout_s = 3.0\nretry_after_s = 17\n")


def sipp(scenario: str, server, ip: str, caller: str, calls: int, *, pcap: Path | None = None,
         pause_ms: int = 1000, timeout_s: int = 40, rate: int | None = None) -> subprocess.Popen:
    """Start sipp with `calls` calls from `ip` (any 127.0.0.x is ours on loopback), `rate` a
    second (default: all at once)."""
    cmd = ["sipp", f"{server.sip_target[0]}:{server.sip_target[1]}", "-sf", str(SCENARIO_DIR / f"{scenario}.xml"),
           "-s", "12319", "-key", "caller", caller, "-i", ip, "-mi", ip,
           "-p", str(free_udp_port()), "-mp", str(free_udp_port_block(4 * calls)),
           "-m", str(calls), "-l", str(calls), "-r", str(rate or calls), "-nostdin", "-aa", "-d", str(pause_ms),
           "-timeout", f"{timeout_s}s", "-timeout_error"]
    if pcap is not None:
        cmd += ["-key", "pcap", str(pcap)]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, text=True, errors="replace")


def finish(proc: subprocess.Popen, timeout: float = 60) -> int:
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        kill_group(proc, grace=0.5)
    return proc.returncode


def rows(server, caller: str) -> list[tuple]:
    return query(server.db_url, "select call_id, answered_at, ended_at, end_reason from calls "
                                "where caller = :c order by started_at", c=caller)


def wait_rows(server, caller: str, n: int, *, ended: bool, timeout: float = 30) -> list[tuple]:
    found: list[tuple] = []
    for _poll in range(round(timeout / 0.25)):  # poll a bounded number of times, then judge the rows
        found = rows(server, caller)
        if len(found) >= n and (not ended or all(r[2] is not None for r in found)):
            return found
        time.sleep(0.25)
    raise AssertionError(f"calls from {caller}: {found}\n" + "".join(server.output[-40:]))


class Udp:
    """A bare UDP socket on a chosen loopback address for hand-made SIP."""

    def __init__(self, ip: str):
        self.ip = ip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def request(self, target, method: str, uri: str, *, to_user: str, from_user: str, call_id: str,
                cseq: int = 1, extra: str = "", body: bytes = b"") -> None:
        head = (f"{method} {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
                f"From: <sip:{from_user}@{self.ip}>;tag=t{call_id[:8]}\r\nTo: <sip:{to_user}@{target[0]}>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:{from_user}@{self.ip}:{self.port}>\r\nMax-Forwards: 70\r\n{extra}"
                + ("Content-Type: application/sdp\r\n" if body else "")
                + f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.sock.sendto(head + body, target)

    def final(self, wait: float = 5.0) -> str:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = self.sock.recvfrom(65535)
            except (TimeoutError, socket.timeout):
                break
            text = data.decode("utf-8", "replace")
            if re.match(r"SIP/2.0 [2-6]\d\d", text):
                return text
        raise AssertionError("no final response")

    def received(self, wait: float) -> list[str]:
        out, deadline = [], time.monotonic() + wait
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = self.sock.recvfrom(65535)
            except (TimeoutError, socket.timeout):
                break
            out.append(data.decode("utf-8", "replace"))
        return out


def sdp(ip: str, port: int) -> bytes:
    return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n").encode()


def invite_status(udp: Udp, target, number: str) -> str:
    """INVITE `number`, return the final response (a failure is ACKed)."""
    call_id = uuid.uuid4().hex
    udp.request(target, "INVITE", f"sip:{number}@{target[0]}:{target[1]}", to_user=number,
                from_user="13900009999", call_id=call_id, body=sdp(udp.ip, udp.port))
    reply = udp.final()
    to = re.search(r"^To: (.*)$", reply, re.M).group(1).strip()
    if int(reply.split(" ", 2)[1]) >= 300:
        ack = (f"ACK sip:{number}@{target[0]}:{target[1]} SIP/2.0\r\n"
               + re.search(r"^Via: .*\r\n", reply, re.M).group(0)
               + f"From: <sip:13900009999@{udp.ip}>;tag=t{call_id[:8]}\r\nTo: {to}\r\n"
               f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        udp.sock.sendto(ack.encode(), target)
    return reply


@pytest.fixture
def server(tmp_path, prompts_dir):
    s = start_server(tmp_path, prompts_dir, extra=LIMITS)
    yield s
    stop_server(s)


def test_slow_invite_attack_is_torn_down_and_a_real_call_still_answered(server, tmp_path):
    """Three INVITEs from 127.0.0.2 (sipp) that never ACK are hung up (reason "no ack") while a
    real call from 127.0.0.3 is answered; a source holding its limit of unACKed calls gets 503
    Retry-After for the next; calls that ACK but send no RTP are hung up ("no rtp")."""
    attack = sipp("attack_no_ack", server, ATTACKER, "13900000002", 3, timeout_s=40)
    try:
        # A citizen from elsewhere is answered all the same.
        pcap = tmp_path / "tone.pcap"
        t = np.arange(8000) / 8000.0
        build_rtp_pcap(pcap, pcm_8k_mono=(np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
        citizen = sipp("call_short", server, CITIZEN, "13900000003", 1, pcap=pcap, pause_ms=1500, timeout_s=30)
        assert finish(citizen) == 0
    finally:
        finish(attack)
    [real] = wait_rows(server, "13900000003", 1, ended=True)
    assert real[1] is not None and real[3].startswith("remote:"), real
    attacked = wait_rows(server, "13900000002", 3, ended=True)
    assert [r[1] is not None for r in attacked] == [True] * 3  # answered: each held an RTP port
    assert [r[3] for r in attacked] == ["local:no ack"] * 3, attacked

    # The limit, by hand so that the 4th INVITE surely comes while the 3 are held: each 200 OK
    # is read (never ACKed), then one more INVITE from the same source.
    probe = Udp(ATTACKER)
    try:
        for n in range(3):
            probe.request(server.sip_target, "INVITE", f"sip:12319@{server.sip_target[0]}:{server.sip_target[1]}",
                          to_user="12319", from_user="13900000007", call_id=f"held-{n}-{uuid.uuid4().hex[:8]}",
                          body=sdp(probe.ip, probe.port))
            assert probe.final().startswith("SIP/2.0 200")
        refused = invite_status(probe, server.sip_target, "12319")
    finally:
        probe.close()
    assert refused.startswith("SIP/2.0 503") and re.search(r"^Retry-After: 17\r?$", refused, re.M), refused
    held = wait_rows(server, "13900000007", 3, ended=True)  # and they too are torn down, freeing the limit
    assert [r[3] for r in held] == ["local:no ack"] * 3, held

    silent = sipp("attack_no_rtp", server, ATTACKER, "13900000004", 2, timeout_s=40)
    assert finish(silent) == 0  # each call got the hotline's BYE and answered it
    dumb = wait_rows(server, "13900000004", 2, ended=True)
    assert [r[3] for r in dumb] == ["local:no rtp"] * 2, dumb
    # Every port came back: as many calls as the limit are admitted again from the attacker.
    again = sipp("attack_no_rtp", server, ATTACKER, "13900000005", 3, timeout_s=40)
    assert finish(again) == 0
    assert len(wait_rows(server, "13900000005", 3, ended=True)) == 3


def test_unauthenticated_invite_to_an_extension_never_reaches_the_agent(server):
    """Extension 1001 is registered (its phone is a socket here): an INVITE to it without
    credentials gets 407, exactly like one to 1999 which does not exist, and 1001's phone
    never rings; a wrong digest answer gets 403."""
    from callcenter.sip.digest import build_authorization, parse_challenge

    phone = Udp("127.0.0.1")
    outsider = Udp(ATTACKER)
    target = server.sip_target
    try:
        def register(cseq: int, auth: str = "") -> str:
            phone.request(target, "REGISTER", f"sip:{target[0]}:{target[1]}", to_user="1001", from_user="1001",
                          call_id="reg-1001", cseq=cseq, extra=f"Expires: 300\r\n{auth}")
            return phone.final()

        challenge = re.search(r"^WWW-Authenticate: (.*?)\r?$", register(1), re.M).group(1)
        value = build_authorization(parse_challenge(challenge), username="1001", password="hotline12319",
                                    method="REGISTER", uri=f"sip:{target[0]}:{target[1]}", cnonce="e2e")
        assert register(2, f"Authorization: {value}\r\n").startswith("SIP/2.0 200")

        to_agent = invite_status(outsider, target, "1001")
        to_nobody = invite_status(outsider, target, "1999")

        def shape(reply: str) -> tuple:
            lines = reply.split("\r\n")
            names = sorted(line.split(":", 1)[0] for line in lines[1:] if ":" in line)
            return lines[0], names

        assert to_agent.startswith("SIP/2.0 407"), to_agent
        assert shape(to_agent) == shape(to_nobody)
        # Guessing the password: the answer is 403, never a call.
        ch = parse_challenge(re.search(r"^Proxy-Authenticate: (.*?)\r?$", to_agent, re.M).group(1))
        guess = build_authorization(ch, username="1001", password="12345678", method="INVITE",
                                    uri=f"sip:1001@{target[0]}:{target[1]}", cnonce="guess")
        call_id = uuid.uuid4().hex
        outsider.request(target, "INVITE", f"sip:1001@{target[0]}:{target[1]}", to_user="1001",
                         from_user="13900009999", call_id=call_id, extra=f"Proxy-Authorization: {guess}\r\n",
                         body=sdp(outsider.ip, outsider.port))
        assert outsider.final().startswith("SIP/2.0 403")
        assert [m for m in phone.received(2.0) if m.startswith("INVITE")] == []
    finally:
        phone.close()
        outsider.close()
    assert rows(server, "13900009999") == []


def test_a_burst_of_short_calls_leaves_every_wav_with_its_row(tmp_path, prompts_dir):
    """30 short calls at 15 calls/s: after the server stops, every call has its row (ended) and
    every WAV on disk its recording row — the single writer drops nothing."""
    rtp = free_udp_port_block(80)
    extra = (f"[rtp]\nport_min = {rtp}\nport_max = {rtp + 79}\n"
             "[admission]\nmax_calls = 60\nmax_calls_per_source = 60\n")
    s = start_server(tmp_path, prompts_dir, extra=extra)
    try:
        pcap = tmp_path / "tone.pcap"
        t = np.arange(8000) / 8000.0
        build_rtp_pcap(pcap, pcm_8k_mono=(np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
        burst = sipp("call_short", s, CITIZEN, "13900000006", 30, pcap=pcap, pause_ms=1000, timeout_s=60,
                     rate=15)
        assert finish(burst, timeout=90) == 0
    finally:
        stop_server(s)
    calls = rows(s, "13900000006")
    assert len(calls) == 30 and all(r[1] is not None and r[2] is not None for r in calls), calls
    stored = {Path(p).resolve() for (p,) in query(s.db_url, "select path from recordings")}
    on_disk = {p.resolve() for p in (tmp_path / "recordings").rglob("*.wav")}
    assert len(on_disk) >= 30 and on_disk <= stored

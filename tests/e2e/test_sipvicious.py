"""sipvicious (Debian's svmap, svwar, svcrack) against a real `hotline serve`, each tool from its
own 127.0.0.x source: nothing is found, no extension enumerated, no password guessed, every
attacking source banned, and real requests from 127.0.0.1 still answered: OPTIONS, the agent's
REGISTER and a real call to 12319.

The stock tools say `User-Agent: friendly-scanner` and are dropped at their first datagram.
To show the digest-failure ban too, svcrack and svwar also run "disguised": the same tools
with a phone's User-Agent (their request builder's default patched in a wrapper).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, query, run_hotline, start_server, stop_server
from tests.e2e.peers.pcap import build_rtp_pcap, speech_pcm
from tests.e2e.peers.ports import free_udp_port
from tests.e2e.peers.runner import run_sipp

PASSWORD = "hotline12319"  # extension 1001's demo password (hotline demo seed)
SPEECH = "aishell1_BAC009S0002W0122.wav"  # a real caller after the attacks speaks this
REAL_CALLER = "13900000014"
# The real password comes after more wrong guesses than auth_max_failures allows.
WORDS = ["123456", "password", "1001", "12345678", "admin", "qwerty", "letmein", "hotline",
         PASSWORD, "zzz"]
SIPVICIOUS = "/usr/share/sipvicious"
# Runs a sipvicious tool from source address SRC: svwar and svcrack 0.3.3 parse -b but bind
# to any address (so the kernel would pick 127.0.0.1), hence the bind patch; UA, when set,
# replaces the friendly-scanner User-Agent of every request the tool builds.
WRAPPER = """
import socket, sys
sys.path.insert(0, {path!r})
SRC, UA = {source!r}, {ua!r}
_bind = socket.socket.bind
socket.socket.bind = lambda self, addr: _bind(self, (SRC, addr[1]) if addr[0] in ("", "0.0.0.0") else addr)
from sipvicious.libs import svhelper
if UA:
    defaults = list(svhelper.makeRequest.__defaults__)
    defaults[-2] = UA
    svhelper.makeRequest.__defaults__ = tuple(defaults)
from sipvicious import {tool}
sys.argv = [{tool!r}] + sys.argv[1:]
sys.exit({tool}.main())
"""
PHONE_UA = "Linphone/5.2.0 (belle-sip/5.2.0)"


@pytest.fixture(scope="module")
def server(tmp_path_factory, prompts_dir):
    s = start_server(tmp_path_factory.mktemp("sipvicious"), prompts_dir,
                     extra="[sip]\nauth_max_failures = 5\nban_s = 120\nallow = []\n")
    yield s
    stop_server(s)


def _tool(tool: str, source: str, server: Server, *args: str, disguised: bool = False) -> str:
    code = WRAPPER.format(path=SIPVICIOUS, source=source, ua=PHONE_UA if disguised else "", tool=tool)
    cmd = ["python3", "-c", code, "-b", source, "-P", str(free_udp_port()), "-p", str(server.sip_port),
           *args, "127.0.0.1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return result.stdout + result.stderr


def _metrics(server: Server) -> str:
    with urllib.request.urlopen(server.web_url + "metrics", timeout=5) as resp:
        return resp.read().decode()


def test_sipvicious_finds_nothing_and_is_banned(server, tmp_path):
    """svmap/svwar/svcrack (stock and disguised) find no device, extension or password; each
    source is banned (scanner or digest), and real requests from another source still work."""
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    extensions = ["-e", "1000-1003", "--maximumtime", "2"]

    assert Path(SIPVICIOUS, "sipvicious", "svcrack.py").exists(), ".ci/install-system.sh installs sipvicious"
    svmap = _tool("svmap", "127.0.0.2", server)
    assert "hotline" not in svmap.lower() and "found nothing" in svmap.lower(), svmap
    svwar = _tool("svwar", "127.0.0.3", server, *extensions)
    assert not re.search(r"\|\s*1001\s*\|", svwar), svwar
    svcrack = _tool("svcrack", "127.0.0.4", server, "-u", "1001", "-d", str(words), "--maximumtime", "2")
    assert PASSWORD not in svcrack, svcrack

    cracked = _tool("svcrack", "127.0.0.5", server, "-u", "1001", "-d", str(words), "--maximumtime", "2",
                    disguised=True)
    assert PASSWORD not in cracked, cracked
    # --force: scan although every extension, unknown ones included, is challenged alike.
    enumerated = _tool("svwar", "127.0.0.6", server, *extensions, "--force", disguised=True)
    rows = dict(re.findall(r"\|\s*(100\d)\s*\|\s*([^|]*?)\s*\|", enumerated))
    assert len(set(rows.values())) <= 1 and (not rows or len(rows) == 4), enumerated
    invited = _tool("svwar", "127.0.0.7", server, *extensions, "--force", "-m", "INVITE", disguised=True)
    rows = dict(re.findall(r"\|\s*(100\d)\s*\|\s*([^|]*?)\s*\|", invited))
    assert len(set(rows.values())) <= 1 and (not rows or len(rows) == 4), invited

    log = server.log()
    for source, reason in (("127.0.0.2", "scanner"), ("127.0.0.3", "scanner"), ("127.0.0.4", "scanner"),
                           ("127.0.0.5", "digest")):
        assert re.search(rf"SIP source {re.escape(source)} banned for \d+ s \({reason}", log), (source, log[-3000:])
    metrics = _metrics(server)
    assert re.search(r'hotline_sip_bans_total\{reason="scanner"\} 3\.0', metrics), metrics
    assert re.search(r'hotline_sip_bans_total\{reason="digest"\} 1\.0', metrics), metrics
    assert "1001" not in re.findall(r"registrations of sip:(\d+)@", log)
    admin = run_hotline("token", "create", "admin", "--scope", "admin", "--config", str(server.config)).stdout.strip()
    status, audit = server.api("/api/audit?action=sip_ban", token=admin)
    assert status == 200, audit
    assert {e["target"] for e in audit["entries"]} >= {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}, audit

    # Real traffic from 127.0.0.1: OPTIONS answered, the agent phone registers with its password.
    assert run_sipp("options", target=server.sip_target, timeout=10).ok
    registered = run_sipp("register_digest", target=server.sip_target, caller="1001", timeout=10,
                          extra=["-au", "1001", "-ap", PASSWORD])
    assert registered.ok, server.log()[-2000:]

    # ... and a real call to 12319 (1.5 s of Mandarin speech, then BYE) is answered and ends cleanly.
    pcap = tmp_path / "speech.pcap"
    build_rtp_pcap(pcap, pcm_8k_mono=speech_pcm(SPEECH)[:8000 * 2 * 3 // 2])
    call = run_sipp("call_short", target=server.sip_target, caller=REAL_CALLER, pcap=pcap, timeout=30)
    assert call.ok, f"{call.stdout[-1500:]}\n{call.log_text[-2000:]}\n{server.log()[-2000:]}"
    assert [m for m in call.messages("SIP/2.0 200") if re.search(r"^CSeq:\s*1 INVITE", m, re.M | re.I)], \
        call.log_text[-2000:]
    for _poll in range(80):   # the call row is written by the database writer: poll, then judge the row
        rows = query(server.db_url, "select answered_at, ended_at, end_reason from calls where caller = :c",
                     c=REAL_CALLER)
        if rows and rows[0][1] is not None:
            break
        time.sleep(0.25)
    assert rows and rows[0][1] is not None, (rows, server.log()[-2000:])
    [(answered, ended, reason)] = rows
    assert answered is not None and reason.startswith("remote:"), rows


def _options(sock: socket.socket, port: int, n: int) -> bytes:
    host, me = sock.getsockname()
    return (f"OPTIONS sip:12319@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{me};branch=z9hG4bKfl{n};rport\r\n"
            f"From: <sip:x@{host}>;tag=f\r\nTo: <sip:12319@127.0.0.1>\r\nCall-ID: fl{n}@{host}\r\n"
            f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def _answers(sock: socket.socket, wait: float) -> int:
    sock.settimeout(wait)
    n = 0
    try:
        while True:
            if sock.recv(65535).startswith(b"SIP/2.0 200"):
                n += 1
    except socket.timeout:
        return n


def test_flood_from_one_source_is_cut_off_and_others_answered(server):
    """2,000 OPTIONS within 0.5 s from 127.0.0.9: at most flood_max_requests (400) are answered, the
    source is banned; 20 OPTIONS from 127.0.0.10 right after are all answered."""
    target = ("127.0.0.1", server.sip_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        flood.bind(("127.0.0.9", 0))
        other.bind(("127.0.0.10", 0))
        for n in range(2000):  # in 0.5 s, paced so the socket buffer does not drop most of it
            flood.sendto(_options(flood, server.sip_port, n), target)
            if n % 20 == 19:
                time.sleep(0.005)
        flooded = _answers(flood, 2.0)
        for n in range(20):
            other.sendto(_options(other, server.sip_port, n), target)
        answered = _answers(other, 2.0)
    assert 0 < flooded <= 400
    assert answered == 20
    assert re.search(r"SIP source 127\.0\.0\.9 banned for \d+ s \(flood", server.log()), server.log()[-2000:]
    assert re.search(r'hotline_sip_bans_total\{reason="flood"\} 1\.0', _metrics(server))


def test_svcrack_invite_is_banned_and_an_admin_lifts_the_ban(server, tmp_path):
    """svcrack -m INVITE guesses through the call admission's 407: each wrong guess (403) counts
    as a digest failure, the source is banned before the right password (9th in the list) and
    hears nothing after; GET /api/sip/bans lists it, DELETE lifts it (audited, admin as actor)
    and the source is answered again."""
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    source = "127.0.0.11"
    out = _tool("svcrack", source, server, "-u", "1001", "-d", str(words), "--maximumtime", "2", "-m", "INVITE",
                disguised=True)
    assert PASSWORD not in out and "unknown response" not in out, out
    log = server.log()
    assert re.search(rf"SIP source {re.escape(source)} banned for \d+ s \(digest", log), log[-3000:]
    assert re.search(rf"SIP digest failure from {re.escape(source)}:\d+ for '1001': INVITE digest", log), log[-3000:]

    admin = run_hotline("token", "create", "admin", "--scope", "admin", "--config", str(server.config)).stdout.strip()
    status, listed = server.api("/api/sip/bans", token=admin)
    assert status == 200 and {"source": source, "reason": "digest"}.items() <= next(
        b for b in listed["bans"] if b["source"] == source).items(), listed
    assert server.api("/api/sip/bans", token=server.token)[0] == 403  # a write-scope token
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.sendto(_options(sock, server.sip_port, 1), server.sip_target)
        assert _answers(sock, 1.0) == 0  # banned
        req = urllib.request.Request(f"{server.web_url.rstrip('/')}/api/sip/bans/{source}", method="DELETE",
                                     headers={"Authorization": f"Bearer {admin}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read())["unbanned"] is True
        sock.sendto(_options(sock, server.sip_port, 2), server.sip_target)
        assert _answers(sock, 2.0) == 1
    status, audit = server.api("/api/audit?action=sip_unban", token=admin)
    assert any(e["actor"] == "admin" and e["target"] == source for e in audit["entries"]), audit

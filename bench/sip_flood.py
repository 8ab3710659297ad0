"""SIP flood from one source vs the rest: share of legitimate requests answered, media jitter of
a call in progress, server memory — with the defence on and off, baseline in the same run.

    .venv/bin/python bench/sip_flood.py [--rates 5000,10000,20000,40000] [--seconds 20]
        [--prompts DIR] [--no-off] [--fresh] [--settle 5,30]
    .venv/bin/python bench/sip_flood.py --issue14     # = --rates 20000 --seconds 60 --fresh --settle 5,30

`--issue14` runs exactly the phase issue 14 point 3 asks for: 20,000 datagrams/s from one source
for 60 s, on a fresh server (the flooding source has never been seen, so it is not banned before
the phase starts), after a 60 s baseline phase on the same server, with a call in progress and a
legitimate OPTIONS prober in both; RSS right after start, after the baseline, and 5 s and 30 s
after the flood. `--fresh` starts a new server (with its own baseline) for every rate.

For each server (`defence`: the [sip] defaults; `off`: flood_max_requests so high nothing is
ever banned) a fresh `hotline serve` on 127.0.0.1, then phases of `--seconds` each: a baseline
without flood, then one per rate. In every phase, each in its own process:
- the flood: OPTIONS datagrams (each with a new branch) from 127.0.0.2 at the rate;
- the prober: 50 OPTIONS/s from 127.0.0.3; answered = a 200 within 2 s;
- a call: INVITE to 12319 from 127.0.0.4, ACK (again for every retransmitted 200, as a phone
  does), PCMU silence sent every 20 ms; the arrival time
  of every RTP packet the hotline sends (its IVR prompts) is taken; jitter = |gap - 20 ms|
  between consecutive packets (p50, p99), plus the longest gap.
RSS of the server after the baseline and `--settle` seconds after the last flood. Prints one JSON
document.
Not a test; 127.0.0.x only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FLOOD_SRC, PROBE_SRC, CALL_SRC = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def _options(port: int, src: str, src_port: int, n: int, tag: str) -> bytes:
    return (f"OPTIONS sip:12319@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {src}:{src_port};branch=z9hG4bK{tag}{n};rport\r\n"
            f"From: <sip:probe@{src}>;tag={tag}\r\nTo: <sip:12319@127.0.0.1>\r\n"
            f"Call-ID: {tag}-{n}@{src}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: bench\r\n"
            f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


# ------------------------------------------------------------------------------ child roles

def role_flood(port: int, rate: int, seconds: float) -> dict:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((FLOOD_SRC, 0))
    s.setblocking(False)
    me = s.getsockname()[1]
    head = _options(port, FLOOD_SRC, me, 0, "flood").replace(b"flood0", b"flood%d")
    target = ("127.0.0.1", port)
    sent = dropped = 0
    t0 = time.monotonic()
    while True:
        elapsed = time.monotonic() - t0
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        while sent < due:
            try:
                s.sendto(head % sent, target)
            except (BlockingIOError, OSError):
                dropped += 1
            sent += 1
        time.sleep(0.0005)
    return {"sent": sent, "send_errors": dropped, "rate_achieved": round(sent / (time.monotonic() - t0))}


def role_probe(port: int, seconds: float, per_s: int = 50) -> dict:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((PROBE_SRC, 0))
    me = s.getsockname()[1]
    sent_at: dict[int, float] = {}
    answered: dict[int, float] = {}
    stop = threading.Event()

    def receive():
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                data = s.recv(65535)
            except socket.timeout:
                continue
            m = re.search(rb"branch=z9hG4bKprobe(\d+)", data)
            if m and data.startswith(b"SIP/2.0 200"):
                answered.setdefault(int(m.group(1)), time.monotonic())

    th = threading.Thread(target=receive, daemon=True)
    th.start()
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        n += 1
        sent_at[n] = time.monotonic()
        s.sendto(_options(port, PROBE_SRC, me, n, "probe"), ("127.0.0.1", port))
        time.sleep(max(0.0, t0 + n / per_s - time.monotonic()))
    time.sleep(2.0)
    stop.set()
    th.join()
    ok = [answered[i] - sent_at[i] for i in sent_at if i in answered and answered[i] - sent_at[i] <= 2.0]
    ok.sort()
    return {"sent": len(sent_at), "answered": len(ok), "share": round(len(ok) / max(1, len(sent_at)), 4),
            "rtt_ms_p50": round(ok[len(ok) // 2] * 1000, 2) if ok else None,
            "rtt_ms_p99": round(ok[int(len(ok) * 0.99)] * 1000, 2) if ok else None}


def role_call(port: int, seconds: float) -> dict:
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind((CALL_SRC, 0))
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind((CALL_SRC, 0))
    me, media = sip.getsockname()[1], rtp.getsockname()[1]
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {CALL_SRC}\r\ns=-\r\nc=IN IP4 {CALL_SRC}\r\nt=0 0\r\n"
           f"m=audio {media} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
           "a=sendrecv\r\n").encode()
    call_id = f"flood-call-{time.time_ns()}@{CALL_SRC}"
    base = (f"Via: SIP/2.0/UDP {CALL_SRC}:{me};branch=z9hG4bK{{b}};rport\r\nMax-Forwards: 70\r\n"
            f"From: <sip:13800138000@{CALL_SRC}>;tag=fc\r\nTo: <sip:12319@127.0.0.1>{{to_tag}}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {{cseq}}\r\nContact: <sip:13800138000@{CALL_SRC}:{me}>\r\n")
    target = ("127.0.0.1", port)
    invite = (f"INVITE sip:12319@127.0.0.1:{port} SIP/2.0\r\n"
              + base.format(b="inv1", to_tag="", cseq="1 INVITE")
              + f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n").encode() + sdp
    sip.settimeout(0.5)
    answer = None
    deadline = time.monotonic() + 10
    while answer is None and time.monotonic() < deadline:
        sip.sendto(invite, target)
        t_end = time.monotonic() + 0.5
        while time.monotonic() < t_end:
            try:
                data = sip.recv(65535)
            except socket.timeout:
                break
            if data.startswith(b"SIP/2.0 200") and b"INVITE" in data:
                answer = data.decode("utf-8", "replace")
                break
            if re.match(rb"SIP/2.0 [3-6]", data):
                return {"error": data.split(b"\r\n", 1)[0].decode()}
    if answer is None:
        return {"error": "no 200 to the INVITE"}
    to_tag = re.search(r"^To:.*?(;tag=[^;\s]+)", answer, re.M | re.I).group(1)
    server_rtp = int(re.search(r"^m=audio (\d+)", answer, re.M).group(1))
    ack = (f"ACK sip:12319@127.0.0.1:{port} SIP/2.0\r\n"
           + base.format(b="ack1", to_tag=to_tag, cseq="1 ACK") + "Content-Length: 0\r\n\r\n").encode()
    sip.sendto(ack, target)
    arrivals: list[tuple[int, float]] = []
    stop = threading.Event()
    re_acks = [0]

    def re_ack():
        # As a phone does (RFC 3261 §13.2.2.4): every retransmitted 200 gets the ACK again (a
        # flood can overflow the server's socket buffer and lose the first one).
        sip.settimeout(0.2)
        while not stop.is_set():
            try:
                data = sip.recv(65535)
            except socket.timeout:
                continue
            if data.startswith(b"SIP/2.0 200") and re.search(rb"^CSeq:\s*1 INVITE", data, re.M | re.I):
                sip.sendto(ack, target)
                re_acks[0] += 1

    acker = threading.Thread(target=re_ack, daemon=True)
    acker.start()

    def send_silence():
        seq, ts, t0 = 0, 0, time.monotonic()
        while not stop.is_set():
            pkt = bytes([0x80, 0, seq >> 8 & 255, seq & 255]) + ts.to_bytes(4, "big") + b"\x12\x34\x56\x78" + b"\xff" * 160
            rtp.sendto(pkt, ("127.0.0.1", server_rtp))
            seq = (seq + 1) & 0xFFFF
            ts = (ts + 160) & 0xFFFFFFFF
            time.sleep(max(0.0, t0 + (seq or 65536) * 0.02 - time.monotonic()))

    th = threading.Thread(target=send_silence, daemon=True)
    th.start()
    rtp.settimeout(0.2)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            data = rtp.recv(2048)
        except socket.timeout:
            continue
        if len(data) >= 12:
            arrivals.append((int.from_bytes(data[2:4], "big"), time.monotonic()))
    stop.set()
    th.join()
    acker.join()
    sip.sendto((f"BYE sip:12319@127.0.0.1:{port} SIP/2.0\r\n"
                + base.format(b="bye1", to_tag=to_tag, cseq="2 BYE") + "Content-Length: 0\r\n\r\n").encode(), target)
    # Skip the first second (set-up), then gaps between packets in arrival order.
    arrivals = [a for a in arrivals if a[1] - t0 >= 1.0]
    gaps = [(b[1] - a[1]) * 1000 for a, b in zip(arrivals, arrivals[1:])]
    jitter = sorted(abs(g - 20.0) for g in gaps)
    if not jitter:
        return {"error": "no RTP from the hotline", "packets": len(arrivals)}
    expected = (arrivals[-1][1] - arrivals[0][1]) / 0.02 + 1
    return {"packets": len(arrivals), "re_acks": re_acks[0], "loss_pct": round(max(0.0, 1 - len(arrivals) / expected) * 100, 2),
            "jitter_ms_p50": round(jitter[len(jitter) // 2], 2),
            "jitter_ms_p99": round(jitter[int(len(jitter) * 0.99)], 2),
            "max_gap_ms": round(max(gaps), 1)}


# ------------------------------------------------------------------------------ orchestration

def _child(role: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--role", role, *map(str, args)],
                            stdout=subprocess.PIPE, text=True)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _scrape(web_port: int) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for name in ("hotline_sip_dropped_total", "hotline_sip_bans_total"):
        for labels, value in re.findall(rf"^{name}\{{(.*?)\}} (\S+)$", text, re.M):
            out[f"{name}{{{labels}}}"] = float(value)
    return out


def phase(sip_port: int, rate: int, seconds: float) -> dict:
    flood = _child("flood", sip_port, rate, seconds) if rate else None
    time.sleep(0.3 if rate else 0)
    probe = _child("probe", sip_port, seconds)
    call = _child("call", sip_port, seconds)
    out = {"rate": rate}
    for name, proc in (("probe", probe), ("call", call), ("flood", flood)):
        if proc is not None:
            stdout, _ = proc.communicate(timeout=seconds + 60)
            out[name] = json.loads(stdout or "{}")
    return out


def run_server(label: str, extra: str, args, prompts: Path, rates: list[int]) -> dict:
    from sip_load import start, stop, wait_sip
    from tests.e2e.peers.ports import free_tcp_port, free_udp_port, free_udp_port_block

    work = Path(tempfile.mkdtemp(prefix=f"sip-flood-{label}-"))
    sip_port, web_port, rtp = free_udp_port(), free_tcp_port(), free_udp_port_block(8)
    cfg = work / "hotline.toml"
    cfg.write_text(f"""[sip]
host = "127.0.0.1"
port = {sip_port}
{extra}
[rtp]
host = "127.0.0.1"
port_min = {rtp}
port_max = {rtp + 7}
[web]
host = "127.0.0.1"
port = {web_port}
[database]
url = "sqlite:///{work}/hotline.db"
[storage]
dir = "{work}/recordings"
[prompts]
dir = "{prompts}"
[stt]
enabled = false
""")
    hotline = [sys.executable, "-m", "callcenter.cli"]
    subprocess.run([*hotline, "demo", "seed", "--config", str(cfg)], cwd=ROOT, check=True, capture_output=True)
    server = start([*hotline, "serve", "--config", str(cfg)], cwd=ROOT, log=work / "serve.log")
    try:
        wait_sip(sip_port, 60)
        result = {"label": label, "config": extra.strip().replace("\n", "; ")}
        result["rss_mb_at_start"] = _rss_mb(server.pid)
        phases = [phase(sip_port, 0, args.seconds)]
        print(f"{label} baseline: {json.dumps(phases[-1])}", file=sys.stderr)
        result["rss_mb_after_baseline"] = _rss_mb(server.pid)
        for rate in rates:
            phases.append(phase(sip_port, rate, args.seconds))
            print(f"{label} {rate}/s: {json.dumps(phases[-1])}", file=sys.stderr)
        waited = 0
        for settle in args.settle:
            time.sleep(settle - waited)
            waited = settle
            result[f"rss_mb_{settle}s_after_floods"] = _rss_mb(server.pid)
        result["metrics"] = _scrape(web_port)
        result["phases"] = phases
        log = (work / "serve.log").read_text(errors="replace")
        result["log_lines"] = log.count("\n")
        result["log_bytes"] = len(log)
        return result
    finally:
        stop(server)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role")
    ap.add_argument("rest", nargs="*")
    ap.add_argument("--rates", default="5000,10000,20000,40000")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--prompts", default="/tmp/hotline-bench-prompts")
    ap.add_argument("--no-off", action="store_true", help="skip the server with the defence off")
    ap.add_argument("--fresh", action="store_true", help="a fresh server (and baseline) for every rate")
    ap.add_argument("--settle", default="5", help="RSS taken these many seconds after the last flood")
    ap.add_argument("--issue14", action="store_true",
                    help="issue 14's phase: --rates 20000 --seconds 60 --fresh --settle 5,30")
    args = ap.parse_args(argv)
    if args.issue14:
        args.rates, args.seconds, args.fresh, args.settle = "20000", 60.0, True, "5,30"
    if args.role:
        r = args.rest
        fn = {"flood": lambda: role_flood(int(r[0]), int(r[1]), float(r[2])),
              "probe": lambda: role_probe(int(r[0]), float(r[1])),
              "call": lambda: role_call(int(r[0]), float(r[1]))}[args.role]
        print(json.dumps(fn()))
        return 0
    args.rates = [int(x) for x in args.rates.split(",") if x]
    args.settle = sorted(int(x) for x in str(args.settle).split(",") if x)
    prompts = Path(args.prompts)
    if not (prompts / "welcome.wav").exists() and not any(prompts.glob("*.wav")):
        prompts.mkdir(parents=True, exist_ok=True)
        cfg = prompts / "prompts.toml"
        cfg.write_text(f'[prompts]\ndir = "{prompts}"\nengine = "espeak"\n')
        subprocess.run([sys.executable, "-m", "callcenter.cli", "prompts", "build", "--config", str(cfg)],
                       cwd=ROOT, check=True, capture_output=True)
    from sip_load import machine

    out = {"bench": "sip_flood", "seconds_per_phase": args.seconds, "fresh_server_per_rate": args.fresh,
           "machine": machine(),
           "uptime_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
           "servers": []}
    groups = [[r] for r in args.rates] if args.fresh else [args.rates]
    for rates in groups:
        out["servers"].append(run_server("defence", "", args, prompts, rates))
        if not args.no_off:
            out["servers"].append(run_server("off", "flood_max_requests = 1000000000\ndrop_scanners = false",
                                             args, prompts, rates))
    out["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

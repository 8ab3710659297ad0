"""Screen-pop latency under queue load: 50 registered agent phones, 200 concurrent callers.

One `hotline serve` (its own SQLite database, seeded here with agent1..agentN, extensions
1001.., SIP accounts and API tokens), N agent phones in one sipp UAS (registered with
digest by bench/sipp/register_agents.xml from an injection CSV, then answering every
INVITE at once: bench/sipp/agent_uas.xml), every agent set ready through
`POST /api/desk/state`, one WebSocket client per agent token on `/ws` (a child process,
this script in `--ws-clients` mode), and sipp callers (bench/sipp/load_call.xml, a pcap
with RFC 4733 digit 1 at 0.5 s, then speech) at a fixed rate, each hanging up after
`--hold` seconds; `rate x hold = callers`, so that many calls are up at once.

Per answered call: the time from the agent leg's INVITE leaving the server (kernel
timestamp on a loopback tap, as bench/rtp_probe.py does, filtered on the agent phones'
SIP port) to the `screen_pop` message arriving at that agent's WebSocket client
(CLOCK_REALTIME in the client on receipt), paired by call through the server's `ring`
log line. Also the same from sipp's own receive time (fallback without root), the event
loop's lag (/healthz), and queue decisions per second from the server's queue log.

    sudo .venv/bin/python bench/screenpop_bench.py [--agents 50] [--callers 200] [--rate 10]
        [--calls 1000] [--wrap-up 1] [--pin] [--keep] [--py-spy PATH]
    .venv/bin/python bench/screenpop_bench.py --analyze WORK_DIR   # figures of a kept run

Prints one JSON document on stdout, a summary on stderr. 127.0.0.1 only; not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import rtp_probe  # noqa: E402
import sip_load  # noqa: E402
from sip_load import (  # noqa: E402
    HOTLINE, PYTHON, Sampler, _cpu_ticks, machine, pct, pinned, sipp_stats, start, stop, stop_all,
    wait_line, wait_sip, write_hotline_config,
)
from tests.e2e.peers.pcap import SPEECH_DIR, build_rtp_pcap, speech_pcm  # noqa: E402
from tests.e2e.peers.ports import free_tcp_port, free_udp_port, free_udp_port_block  # noqa: E402

SIPP_DIR = ROOT / "bench" / "sipp"
CALLER_SCENARIO = SIPP_DIR / "load_call.xml"  # sip_load's caller: INVITE, pcap, pause, BYE
REGISTER_SCENARIO = SIPP_DIR / "register_agents.xml"
AGENT_SCENARIO = SIPP_DIR / "agent_uas.xml"
RTP_RANGE = sip_load.RTP_RANGES["hotline"]
AGENT_PASSWORD = "hotline12319"  # as `hotline demo seed` (cli.DEMO_PASSWORD)
CALLER = "13800138000"
TARGET_P95_MS = 150.0
TAP_SNAP = 2048


# ------------------------------------------------------------------------- setup


def write_config(work: Path, sip_port: int, web_port: int, wrap_up_s: float) -> Path:
    """sip_load's server config plus: always open, short wrap-up, no callback offer, no
    speech recognition or follow-up dialling (they would compete for the 2 cores)."""
    cfg = write_hotline_config(work, sip_port, web_port, RTP_RANGE, stt=False)
    with open(cfg, "a") as f:
        f.write(f"""\
[ivr]
open = "00:00"
close = "24:00"
open_days = "everyday"
[acd]
ring_timeout_s = 20.0
wrap_up_s = {wrap_up_s}
callback_offer_after_s = 0
[followup]
enabled = false
""")
    return cfg


def agent_list(n: int) -> list[tuple[str, str]]:
    return [(f"agent{i}", str(1000 + i)) for i in range(1, n + 1)]


def seed_agents(cfg: Path, agents: list[tuple[str, str]]) -> dict[str, str]:
    """Users, agent profiles (extension, skills) and SIP accounts for every agent, as
    `hotline demo seed` does for agent1/agent2 (cli._seed_demo_agents), and one API token
    each. Runs on the bench's own database before the server starts."""
    from callcenter import cli
    from callcenter import config as config_mod
    from callcenter.acd_store import AcdStore
    from callcenter.sip_store import SipAccountStore

    settings = config_mod.load(cfg)

    async def seed() -> dict[str, str]:
        repo = cli._repo(settings)
        try:
            now = cli._now(settings)
            store = AcdStore(repo.engine)
            accounts = SipAccountStore(repo.engine)
            have = {a.extension for a in await accounts.list()}
            tokens = {}
            for i, (username, extension) in enumerate(agents, start=1):
                await repo.create_user(username=username, password=AGENT_PASSWORD, role="agent",
                                       display_name=f"受理员{i}", now=now)
                await store.set_profile(username, extension, {"report": 2, "consult": 1}, now)
                if extension not in have:
                    await accounts.add(extension, AGENT_PASSWORD, realm=settings.sip.realm, now=now,
                                       display_name=username)
                tokens[username] = await repo.create_token(username, now)
            return tokens
        finally:
            await repo.close()

    return asyncio.run(seed())


def write_agents_csv(path: Path, agents: list[tuple[str, str]], realm_password: str) -> None:
    """sipp injection file: one line per agent phone, read in order (SEQUENTIAL)."""
    lines = ["SEQUENTIAL"]
    lines += [f"{ext};[authentication username={ext} password={realm_password}]" for _, ext in agents]
    path.write_text("\n".join(lines) + "\n")


def build_caller_pcap(path: Path, seconds: float) -> float:
    """Caller audio: RFC 4733 digit 1 at 0.5 s (barge-in into the welcome: "report a
    problem", which queues when agents are staffed), then Mandarin speech for the rest of
    the call (tests/e2e/audio.py report_pcap does the same for one call)."""
    clips = sorted(SPEECH_DIR.glob("*.wav"))[:6]
    pieces = [speech_pcm(str(c)) for c in clips] or [speech_pcm("ni hao wo yao fan ying wen ti")]
    pcm, i = bytes(2 * 8000), 0  # 1 s of silence around the digit
    while len(pcm) < seconds * 16000:
        pcm += pieces[i % len(pieces)] + bytes(2 * 4000)
        i += 1
    build_rtp_pcap(path, pcm_8k_mono=pcm, codec="PCMU", payload_type=0, dtmf=[(0.5, "1")])
    return len(pcm) / 16000


def http_post(url: str, body: dict, token: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode(errors="replace")[:300]}


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


# ------------------------------------------------------------------------- SIP tap


def sip_tap_program(port: int) -> list[tuple[int, int, int, int]]:
    """Classic BPF: IPv4/UDP packets to destination `port` (the agent phones), the copy lo
    delivers (PACKET_HOST), kept up to TAP_SNAP bytes. rtp_probe's opcodes."""
    r = rtp_probe
    return [
        (r._LD_W_ABS, 0, 0, r.SKF_AD_PKTTYPE),  # 0 A = pkttype
        (r._JEQ_K, 0, 5, r.PACKET_HOST),         # 1 -> 7 drop
        (r._LD_B_ABS, 0, 0, 9),                  # 2 A = IP protocol
        (r._JEQ_K, 0, 3, 17),                    # 3 UDP, else -> 7
        (r._LDX_B_MSH, 0, 0, 0),                 # 4 X = IP header length
        (r._LD_H_IND, 0, 0, 2),                  # 5 A = UDP destination port
        (r._JEQ_K, 1, 0, port),                  # 6 -> 8 keep
        (r._RET_K, 0, 0, 0),                     # 7 drop
        (r._RET_K, 0, 0, TAP_SNAP),              # 8 keep
    ]


class SipTap(threading.Thread):
    """Kernel send times (SO_TIMESTAMPNS, CLOCK_REALTIME) of the SIP requests the server
    sends to the agent phones' port; keeps INVITEs: (t_ns, extension, Call-ID)."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(rtp_probe.ETH_P_IP))
        sock.setsockopt(socket.SOL_SOCKET, rtp_probe.SO_RCVBUFFORCE, 16 * 1024 * 1024)
        rtp_probe._attach(sock, sip_tap_program(port))
        sock.setsockopt(socket.SOL_SOCKET, rtp_probe.SO_TIMESTAMPNS, 1)
        sock.bind(("lo", rtp_probe.ETH_P_IP))
        sock.settimeout(0.2)
        self.sock = sock
        self.invites: list[tuple[int, str, str]] = []
        self.counts: Counter = Counter()
        self.drops = 0
        self._halt = threading.Event()

    def run(self) -> None:
        anc = socket.CMSG_SPACE(16)
        while not self._halt.is_set():
            try:
                data, ancdata, _, _ = self.sock.recvmsg(TAP_SNAP, anc)
            except (socket.timeout, InterruptedError):
                continue
            except OSError:
                break
            if not ancdata:
                continue
            sec, nsec = struct.unpack("qq", ancdata[0][2][:16])
            ihl = (data[0] & 0x0F) * 4
            payload = data[ihl + 8:]
            method = payload.split(b" ", 1)[0].decode("ascii", "replace")
            self.counts[method] += 1
            if method != "INVITE":
                continue
            head = payload.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
            ruri = head[0].split(" ")[1]
            ext = ruri.split(":", 1)[1].split("@", 1)[0]
            call_id = next((h.split(":", 1)[1].strip() for h in head[1:]
                            if h.lower().startswith(("call-id:", "i:"))), "")
            self.invites.append((sec * 1_000_000_000 + nsec, ext, call_id))

    def halt(self) -> None:
        self._halt.set()
        self.join(2)
        try:
            self.drops = rtp_probe._stats(self.sock)[1]
        except OSError:
            pass
        self.sock.close()


class HealthProbe(threading.Thread):
    """GET /healthz every 0.5 s: its response time is the web/SIP event loop's lag (the
    handler touches no database), so a starved loop shows apart from a busy database."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.rows: list[tuple[float, float | None]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            t = time.time()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as resp:
                    resp.read()
                self.rows.append((t, (time.time() - t) * 1000))
            except (urllib.error.URLError, ConnectionError, OSError):
                self.rows.append((t, None))
            self._halt.wait(max(0.0, 0.5 - (time.time() - t)))

    def halt(self) -> None:
        self._halt.set()
        self.join(12)


def sipp_invite_log(path: Path) -> list[tuple[int, str, str]]:
    """agent_uas.xml's log lines: sipp's own receive time of each INVITE."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] == "invite":
            try:
                out.append((int(float(parts[2])) * 1_000_000_000 + int(float(parts[3])) * 1000,
                            parts[1], parts[4]))
            except ValueError:
                pass
    return out


# ------------------------------------------------------------------------- WebSocket clients


async def _ws_clients(url: str, tokens: dict[str, str], out: Path) -> None:
    """One WebSocket per agent; on each message the receive time (CLOCK_REALTIME ns)."""
    import aiohttp

    pops: list[tuple[int, str, str, str | None, str | None]] = []
    counts: Counter = Counter()
    wrong_agent = 0
    halt = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, halt.set)

    async def reader(user: str, ws) -> None:
        nonlocal wrong_agent
        async for msg in ws:
            t = time.time_ns()
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            kind = data.get("type", "?")
            counts[kind] += 1
            if kind in ("screen_pop", "screen_pop_cancelled", "screen_pop_history"):
                pops.append((t, user, kind, data.get("call_id"), data.get("caller")))
                if kind == "screen_pop" and data.get("agent") != user:
                    wrong_agent += 1

    async with aiohttp.ClientSession() as session:
        sockets = {}
        for user, token in tokens.items():
            sockets[user] = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
        tasks = [asyncio.create_task(reader(u, ws)) for u, ws in sockets.items()]
        print("ready", flush=True)
        await halt.wait()
        for ws in sockets.values():
            await ws.close()
        for t in tasks:
            t.cancel()
    out.write_text(json.dumps({"pops": pops, "counts": counts, "wrong_agent": wrong_agent,
                               "clients": len(tokens)}))


# ------------------------------------------------------------------------- analysis


def ring_log(path: Path) -> list[tuple[int, str, str]]:
    """(time ns, agent, caller-leg call id) of every `ring` decision in the server log. The
    driver logs it right after `connect_agent` sent the INVITE (same synchronous code path);
    the log's clock has 1 ms resolution, local time, as this process reads it."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        if " ring call=" not in line or "acd_driver" not in line:
            continue
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            call = line.split(" ring call=", 1)[1].split()[0]
            agent = line.split(" agent=", 1)[1].split()[0]
        except (ValueError, IndexError):
            continue
        out.append((int(stamp.timestamp() * 1e9), agent, call))
    return out


def pair_by_call(invites: list[tuple[int, str, str]], rings: list[tuple[int, str, str]], pops: list,
                 agent_to_ext: dict[str, str], slack_ms: float = 1000.0,
                 kind_wanted: str = "screen_pop") -> tuple[list, dict]:
    """Per ring decision (agent, caller's call id): its INVITE is the first transmission to
    that agent's extension closest to the log line (the line follows the send by < 1 ms
    when the server is not starved; `slack_ms` bounds the search); its pop is the
    `screen_pop` for that agent whose call_id is the caller's. Returns
    [(invite t_ns, latency ms or None if no pop arrived)] and counts."""
    first: dict[str, tuple[int, str]] = {}
    for t, ext, cid in invites:
        if cid not in first or t < first[cid][0]:
            first[cid] = (t, ext)
    by_ext: dict[str, list[int]] = defaultdict(list)
    for t, ext in first.values():
        by_ext[ext].append(t)
    for ts in by_ext.values():
        ts.sort()
    pop_at: dict[tuple[str, str], int] = {}
    for t, user, kind, cid, _caller in pops:
        if kind == kind_wanted and (user, cid) not in pop_at:
            pop_at[(user, cid)] = t
    used: set[tuple[str, int]] = set()
    out, no_invite, log_after_invite = [], 0, []
    for t_log, agent, call in sorted(rings):
        ext = agent_to_ext.get(agent, agent)
        ts = by_ext.get(ext, [])
        i = bisect.bisect_right(ts, t_log + 2_000_000)  # log clock: 1 ms steps
        cands = [j for j in (i - 1, i) if 0 <= j < len(ts) and (ext, j) not in used
                 and abs(ts[j] - t_log) <= slack_ms * 1e6]
        if not cands:
            no_invite += 1
            continue
        j = min(cands, key=lambda k: abs(ts[k] - t_log))
        used.add((ext, j))
        log_after_invite.append((t_log - ts[j]) / 1e6)
        t_pop = pop_at.get((agent, call))
        out.append((ts[j], None if t_pop is None else (t_pop - ts[j]) / 1e6))
    counts = {"rings_logged": len(rings), "rings_without_invite": no_invite,
              "log_line_after_invite_ms": latency_stats(log_after_invite)}
    return out, counts


def by_window(pairs: list, wall0: float, health: list = (), step_s: float = 10.0) -> list[dict]:
    """Per window of INVITE time (seconds since the callers started): INVITEs, pops that
    arrived, their latency, and the /healthz response time (loop lag) in the window."""
    rows: dict[int, list] = defaultdict(list)
    for t, ms in pairs:
        rows[int((t / 1e9 - wall0) // step_s)].append(ms)
    lag: dict[int, list] = defaultdict(list)
    for t, ms in health:
        if ms is not None:
            lag[int((t - wall0) // step_s)].append(ms)
    out = []
    for k in sorted(rows):
        got = [ms for ms in rows[k] if ms is not None]
        out.append({"from_s": k * step_s, "invites": len(rows[k]), "pops": len(got),
                    "p50": pct(got, 50), "p95": pct(got, 95),
                    "healthz_p95": pct(lag.get(k, []), 95)})
    return out


def latency_stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99),
            "max": round(max(values), 1), "min": round(min(values), 1)}


def queue_log(db: Path, tz: str) -> list[tuple[float, str]]:
    """(unix time, kind) of every queue event the server logged."""
    if not db.exists():
        return []
    zone = ZoneInfo(tz)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT at, kind FROM queue_events ORDER BY id").fetchall()
    out = []
    for at, kind in rows:
        dt = datetime.fromisoformat(str(at)).replace(tzinfo=zone)
        out.append((dt.timestamp(), kind))
    return out


def decision_rates(events: list[tuple[float, str]], t0: float, t1: float) -> dict:
    """Queue decisions (ring an agent, overflow, place a callback) and all queue events per
    second over [t0, t1]."""
    dt = max(1e-9, t1 - t0)
    inside = [k for t, k in events if t0 <= t <= t1]
    kinds = Counter(inside)
    decisions = kinds["ring"] + kinds["overflow"] + kinds["callback_placed"]
    return {"seconds": round(dt, 1), "decisions_per_s": round(decisions / dt, 2),
            "queue_events_per_s": round(len(inside) / dt, 2), "by_kind": dict(kinds)}


# ------------------------------------------------------------------------- main run


def run(args, work: Path) -> dict:
    agents = agent_list(args.agents)
    ext_to_agent = {ext: user for user, ext in agents}
    hold = args.hold if args.hold else args.callers / args.rate
    sip_port, web_port = free_udp_port(), free_tcp_port()
    agent_port, agent_media = free_udp_port(), free_udp_port_block(4)
    caller_port, caller_media = free_udp_port(), free_udp_port_block(4)
    cfg = write_config(work, sip_port, web_port, args.wrap_up)
    (work / "recordings").mkdir(exist_ok=True)
    doc: dict = {"params": {"agents": args.agents, "callers": args.callers, "rate_cps": args.rate,
                            "calls": args.calls, "caller_hold_s": hold, "wrap_up_s": args.wrap_up,
                            "server_cpus": args.server_cpus, "load_cpus": args.load_cpus}}
    t = time.monotonic()
    for step in (["prompts", "build"], ["demo", "seed"]):
        subprocess.run([HOTLINE, *step, "--config", str(cfg)], cwd=work, check=True,
                       capture_output=True, timeout=600)
    tokens = seed_agents(cfg, agents)
    write_agents_csv(work / "agents.csv", agents, AGENT_PASSWORD)
    pcap = work / "caller.pcap"
    build_caller_pcap(pcap, hold + 3)
    doc["setup_s"] = round(time.monotonic() - t, 1)

    server = start(pinned([HOTLINE, "serve", "--config", str(cfg)], args.server_cpus),
                   cwd=work, log=work / "server.log")
    wait_sip(sip_port, 90)
    base = f"http://127.0.0.1:{web_port}"
    wait_http(base + "/healthz")

    # agent phones: register every extension from one port, then answer on it
    reg = subprocess.run(
        ["sipp", f"127.0.0.1:{sip_port}", "-sf", str(REGISTER_SCENARIO), "-inf", str(work / "agents.csv"),
         "-i", "127.0.0.1", "-p", str(agent_port), "-m", str(len(agents)), "-r", "25",
         "-nostdin", "-timeout", "60s", "-trace_err", "-error_file", "register_errors.log"],
        cwd=work, capture_output=True, text=True, timeout=90)
    if reg.returncode != 0:
        raise RuntimeError(f"agent registration failed (sipp exit {reg.returncode}): "
                           f"{(work / 'register_errors.log').read_text(errors='replace')[-1500:] if (work / 'register_errors.log').exists() else reg.stdout[-1500:]}")
    tap = None
    if os.geteuid() == 0:
        tap = SipTap(agent_port)
        tap.start()
    uas = start(pinned(["sipp", "-sf", str(AGENT_SCENARIO), "-i", "127.0.0.1", "-mi", "127.0.0.1",
                        "-p", str(agent_port), "-mp", str(agent_media), "-nostdin", "-aa",
                        "-trace_logs", "-log_file", str(work / "agent_invites.log"),
                        "-trace_stat", "-stf", str(work / "agent_stats.csv"), "-fd", "1",
                        "-trace_err", "-error_file", str(work / "agent_errors.log")], args.load_cpus),
                cwd=work, log=work / "agent_sipp.log")
    time.sleep(1.0)
    if uas.poll() is not None:
        raise RuntimeError(f"agent sipp exited with {uas.returncode}: "
                           f"{(work / 'agent_sipp.log').read_text(errors='replace')[-1500:]}")

    # desks: every agent ready, one WebSocket each
    not_ready = {}
    for user, _ in agents:
        status, body = http_post(base + "/api/desk/state", {"state": "ready"}, tokens[user])
        if status != 200 or body.get("status") != "ready":
            not_ready[user] = [status, body]
    if not_ready:
        raise RuntimeError(f"agents not ready: {dict(list(not_ready.items())[:3])}")
    (work / "tokens.json").write_text(json.dumps(tokens))
    ws = start(pinned([PYTHON, str(Path(__file__).resolve()), "--ws-clients", str(work / "tokens.json"),
                       "--ws-url", f"ws://127.0.0.1:{web_port}/ws", "--ws-out", str(work / "ws.json")],
                      args.load_cpus),
               cwd=work, log=work / "ws.log", stdout=subprocess.PIPE, text=True)
    wait_line(ws, "ready", 60)

    # callers
    sampler = Sampler(server.pid)
    sampler.start()
    time.sleep(1.0)
    ws_cpu0, uas_cpu0 = _cpu_ticks(ws.pid), _cpu_ticks(uas.pid)
    load_before = os.getloadavg()[0]
    cmd = ["sipp", f"127.0.0.1:{sip_port}", "-sf", str(CALLER_SCENARIO), "-s", "12319",
           "-key", "caller", CALLER, "-key", "pcap", str(pcap),
           "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(caller_port), "-mp", str(caller_media),
           "-r", str(args.rate), "-m", str(args.calls), "-l", str(args.callers),
           "-d", str(int(hold * 1000)), "-nostdin", "-aa", "-recv_timeout", "15000",
           "-timeout", f"{int(args.calls / args.rate + hold + 120)}s",
           "-trace_stat", "-stf", "stats.csv", "-fd", "1",
           "-trace_err", "-error_file", "errors.log"]
    health = HealthProbe(base + "/healthz")
    health.start()
    wall0, t0 = time.time(), time.monotonic()
    sipp = start(pinned(cmd, args.load_cpus), cwd=work, log=work / "sipp.log")
    sampler.sipp_pid = sipp.pid
    if args.py_spy:  # sample the server's stacks on the plateau (sip_load's --profile)
        time.sleep(hold + 2)
        subprocess.run([args.py_spy, "record", "--pid", str(server.pid), "--duration",
                        str(args.profile_s), "--format", "raw", "--nonblocking",
                        "--output", str(work / "profile.txt")],
                       capture_output=True, text=True, timeout=args.profile_s + 30)
    try:
        code = sipp.wait(timeout=args.calls / args.rate + hold + 180)
    except subprocess.TimeoutExpired:
        code = -9
        stop(sipp)
    t_end = time.monotonic()
    time.sleep(2.0)  # last pops and BYEs
    elapsed = time.monotonic() - t0
    ws_cpu = (_cpu_ticks(ws.pid) - ws_cpu0) / sip_load.CLK_TCK / elapsed * 100
    uas_cpu = (_cpu_ticks(uas.pid) - uas_cpu0) / sip_load.CLK_TCK / elapsed * 100
    plateau = (t0 + hold + 1.0, t0 + args.calls / args.rate)
    cpu_plateau = sampler.window(*plateau)
    cpu_whole = sampler.window(t0, t_end)
    sampler.halt()
    health.halt()
    (work / "healthz.json").write_text(json.dumps(health.rows))
    stop(ws, grace=10)
    if tap is not None:
        tap.halt()
    stop(uas)
    stop(server, grace=15)

    # -- figures
    if tap is not None:
        (work / "tap_invites.json").write_text(json.dumps(tap.invites))
    meta = {"wall0": wall0, "hold": hold, "calls": args.calls, "rate": args.rate,
            "agents": args.agents, "tap": tap is not None}
    (work / "meta.json").write_text(json.dumps(meta))
    doc.update(analyze(work, meta))
    log_text = (work / "server.log").read_text(errors="replace")
    doc.update({
        "callers_sipp": {"exit": code, **sipp_stats(work)},
        "agents_sipp": _stats_file(work / "agent_stats.csv"),
        "tap": ({"packets": dict(tap.counts), "drops": tap.drops} if tap is not None else None),
        "cpu_plateau": cpu_plateau, "cpu_whole_run": cpu_whole,
        "ws_clients_cpu_pct": round(ws_cpu, 1), "agent_sipp_cpu_pct": round(uas_cpu, 1),
        "server_rss_mb": round(sampler.peak_rss()[0], 1),
        "loadavg1_before": round(load_before, 2),
    })
    if args.py_spy:
        doc["profile"] = sip_load.summarize_profile(work / "profile.txt", top=15)
    return doc


def analyze(work: Path, meta: dict) -> dict:
    """Latency, delivery and queue figures from a run's files (also `--analyze DIR`)."""
    agent_to_ext = {user: ext for user, ext in agent_list(meta["agents"])}
    wsdata = json.loads((work / "ws.json").read_text()) if (work / "ws.json").exists() else {}
    pops = [tuple(p) for p in wsdata.get("pops", [])]
    sipp_invites = sipp_invite_log(work / "agent_invites.log")
    tap_file = work / "tap_invites.json"
    invites = [tuple(x) for x in json.loads(tap_file.read_text())] if tap_file.exists() else sipp_invites
    rings = ring_log(work / "server.log")
    pairs, counts = pair_by_call(invites, rings, pops, agent_to_ext)
    sipp_pairs, _ = pair_by_call(sipp_invites, rings, pops, agent_to_ext)
    # The second stage: the caller's history (earlier calls with outcome, duration, case,
    # recording and message transcript; earlier cases). Every bench call comes from one
    # number, so after ten calls each pop carries a full history.
    history_pairs, _ = pair_by_call(invites, rings, pops, agent_to_ext, kind_wanted="screen_pop_history")
    history = [ms for _, ms in history_pairs if ms is not None]
    wall0, hold = meta["wall0"], meta["hold"]
    plateau_wall = (wall0 + hold + 1.0, wall0 + meta["calls"] / meta["rate"])
    got = [ms for _, ms in pairs if ms is not None]
    got_plateau = [ms for t, ms in pairs if ms is not None and plateau_wall[0] <= t / 1e9 <= plateau_wall[1]]
    # every rung call counts: a pop that never came is later than any that did
    all_rings = sorted(float("inf") if ms is None else ms for _, ms in pairs)
    p95_all = all_rings[max(0, -(-95 * len(all_rings) // 100) - 1)] if all_rings else None  # nearest rank
    hz_file = work / "healthz.json"
    health = [tuple(r) for r in json.loads(hz_file.read_text())] if hz_file.exists() else []
    events = queue_log(work / "hotline.db", "Asia/Shanghai")
    kinds = Counter(k for _, k in events)
    first_t = min((t for t, _ in events), default=wall0)
    last_t = max((t for t, _ in events), default=wall0)
    log_text = (work / "server.log").read_text(errors="replace")
    return {
        "clock": "tap: kernel time of the INVITE on lo (server's sendto)" if tap_file.exists()
                 else "sipp: agent sipp's receive time of the INVITE (no tap)",
        "screen_pop_ms": latency_stats(got),
        "screen_pop_ms_plateau": latency_stats(got_plateau),
        "screen_pop_history_ms": latency_stats(history),
        "history_delivered_pct": round(100 * len(history) / len(history_pairs), 1) if history_pairs else None,
        "screen_pop_ms_from_sipp_receive": latency_stats([ms for _, ms in sipp_pairs if ms is not None]),
        "p95_all_rings_ms": None if p95_all is None else (round(p95_all, 1) if p95_all != float("inf")
                                                           else "no pop (over 5 % never arrived)"),
        "pops_delivered_pct": round(100 * len(got) / len(pairs), 1) if pairs else None,
        "by_10s": by_window(pairs, wall0, health),
        "loop_lag_ms": {**latency_stats([ms for _, ms in health if ms is not None]),
                        "failed": sum(1 for _, ms in health if ms is None),
                        "how": "GET /healthz every 0.5 s during the callers"},
        "target_p95_ms": TARGET_P95_MS,
        "target_met": p95_all is not None and p95_all <= TARGET_P95_MS,
        "calls_answered": kinds["connect"],
        "agent_invites": len({cid for _, _, cid in invites}),
        "pairing": counts,
        "screen_pops": sum(1 for p in pops if p[2] == "screen_pop"),
        "screen_pops_cancelled": sum(1 for p in pops if p[2] == "screen_pop_cancelled"),
        "pops_to_wrong_agent": wsdata.get("wrong_agent"),
        "ws_messages": wsdata.get("counts"),
        "queue": {
            "events": dict(kinds),
            "whole_run": decision_rates(events, first_t, last_t),
            "plateau": decision_rates(events, *plateau_wall),
        },
        "server_log_errors": log_text.count("ERROR") + log_text.count("Traceback"),
        "server_db_pool_timeouts": log_text.count("QueuePool limit"),
        "screen_pop_tasks_failed": log_text.count("in _pop\n"),
        "acd_refused": log_text.count("ACD refused"),
    }


def _stats_file(path: Path) -> dict:
    """sipp's -trace_stat CSV (last row) for a UAS whose file name is given."""
    if not path.exists():
        return {}
    tmp = path.parent / "_uas"
    tmp.mkdir(exist_ok=True)
    shutil.copy(path, tmp / "stats.csv")
    return sipp_stats(tmp)


def summary(doc: dict) -> str:
    s = doc.get("screen_pop_ms", {})
    q = doc.get("queue", {}).get("plateau", {})
    cpu = doc.get("cpu_plateau", {})
    return (f"\n== screen pop: {doc.get('params', {}).get('agents')} agents, "
            f"{doc.get('params', {}).get('callers')} callers ==\n"
            f"INVITE->screen_pop p50/p95/p99 {s.get('p50')}/{s.get('p95')}/{s.get('p99')} ms "
            f"(n={s.get('n')}, {doc.get('pops_delivered_pct')} % of rung calls got a pop; p95 over all "
            f"rung calls {doc.get('p95_all_rings_ms')}; target p95 <= {TARGET_P95_MS:g}: {doc.get('target_met')}); "
            f"history p50/p95 {doc.get('screen_pop_history_ms', {}).get('p50')}/"
            f"{doc.get('screen_pop_history_ms', {}).get('p95')} ms; "
            f"answered {doc.get('calls_answered')}; decisions/s on the plateau "
            f"{q.get('decisions_per_s')}; server CPU {cpu.get('server_cpu_pct')} %, "
            f"CPU pressure {cpu.get('cpu_pressure_pct')} %")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--callers", type=int, default=200, help="concurrent callers (sipp -l)")
    ap.add_argument("--rate", type=float, default=10.0, help="new calls per second (fixed)")
    ap.add_argument("--hold", type=float, default=None,
                    help="seconds each caller stays on the line (default callers/rate)")
    ap.add_argument("--calls", type=int, default=1000, help="calls in all")
    ap.add_argument("--wrap-up", type=float, default=1.0, help="[acd] wrap_up_s")
    ap.add_argument("--pin", action="store_true",
                    help="taskset: server on CPU 1; sipp, WebSocket clients on CPU 0")
    ap.add_argument("--server-cpus", default=None)
    ap.add_argument("--load-cpus", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, database)")
    ap.add_argument("--py-spy", default="", help="py-spy binary: profile the server on the plateau")
    ap.add_argument("--profile-s", type=int, default=20, help="seconds of py-spy sampling")
    ap.add_argument("--analyze", metavar="WORK_DIR",
                    help="recompute the figures from a run kept with --keep")
    ap.add_argument("--ws-clients", help=argparse.SUPPRESS)
    ap.add_argument("--ws-url", help=argparse.SUPPRESS)
    ap.add_argument("--ws-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ws_clients:
        tokens = json.loads(Path(args.ws_clients).read_text())
        asyncio.run(_ws_clients(args.ws_url, tokens, Path(args.ws_out)))
        return 0
    if args.analyze:
        work = Path(args.analyze)
        doc = analyze(work, json.loads((work / "meta.json").read_text()))
        print(json.dumps(doc, indent=1, ensure_ascii=False))
        print(summary(doc), file=sys.stderr)
        return 0
    if args.pin:
        args.server_cpus = args.server_cpus or "1"
        args.load_cpus = args.load_cpus or "0"
    if shutil.which("sipp") is None:
        print("sipp is not installed (Debian: sip-tester)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("not root: no loopback tap; INVITE times are sipp's receive times", file=sys.stderr)

    def _on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    work = Path(tempfile.mkdtemp(prefix="hotline-screenpop-"))
    doc: dict = {"machine": machine()}
    try:
        doc.update(run(args, work))
    except KeyboardInterrupt as exc:
        doc["interrupted"] = str(exc) or "Ctrl-C"
    except Exception as exc:  # report what broke, with the JSON, after stopping everything
        doc["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop_all()
        if args.keep or "error" in doc:
            doc["work_dir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(doc, indent=1, ensure_ascii=False))
    print(summary(doc), file=sys.stderr)
    return 0 if "interrupted" not in doc and "error" not in doc else 1


if __name__ == "__main__":
    sys.exit(main())

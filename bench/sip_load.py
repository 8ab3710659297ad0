"""SIP/RTP load benchmark: N concurrent sipp calls against `hotline serve` and against a
minimal pyVoIP IVR (bench/pyvoip_server.py), in the same run, same load, same machine.

Each call: sipp INVITEs at --rate calls/s, talks (plays a speech pcap) from the answer on,
the server plays its prompts (hotline: the 12319 welcome + menu, recording on; pyVoIP: a
prompt WAV in a loop), and sipp hangs up after the hold. The server's RTP is timestamped
by bench/rtp_probe.py, a loopback tap in its own process (see there why a tap). Prints
one JSON document on stdout and a short summary on stderr. Not a test; 127.0.0.1 only.

    .venv/bin/python bench/sip_load.py [--n 50,100,200,400,600] [--hold 20] [--rate 50]
        [--targets hotline,pyvoip] [--sample-calls 50] [--profile]

See bench/README.md for what each figure means. Needs root (the tap) and sipp.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tests.e2e.peers.pcap import SPEECH_DIR, build_rtp_pcap, speech_pcm  # noqa: E402
from tests.e2e.peers.ports import free_udp_port, free_udp_port_block, free_tcp_port  # noqa: E402
import rtp_probe  # noqa: E402

SCENARIO = ROOT / "bench" / "sipp" / "load_call.xml"
PYTHON = sys.executable
HOTLINE = str(Path(PYTHON).with_name("hotline"))
# Below the kernel's ephemeral range (32768-60999), so other processes' sockets are not
# in them; >= 2 x 600 ports each.
RTP_RANGES = {"hotline": (24000, 25999), "base": (24000, 25999), "hotline_stt": (24000, 25999),
              "hotline_stt_flat": (24000, 25999), "pyvoip": (26000, 27999)}
# base: `hotline serve` from another source tree; hotline_stt: the same hotline with a
# transcription queue that keeps its worker busy the whole round, as configured by default
# (it yields while the media loop is busy: [stt] yield_above); hotline_stt_flat: the same
# with yielding off, recognition flat out (issue 5: transcription must not worsen the
# media timing).
STT_TARGETS = ("hotline_stt", "hotline_stt_flat")
HOTLINE_TARGETS = ("hotline", "base", *STT_TARGETS)
CLK_TCK = os.sysconf("SC_CLK_TCK")

_children: list[subprocess.Popen] = []


# ------------------------------------------------------------------------- processes


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start(cmd, *, cwd, log: Path, **kw) -> subprocess.Popen:
    """A child in its own process group (stopped with stop()), output to log."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=kw.pop("stdout", out), stderr=out,
                                start_new_session=True, preexec_fn=_raise_nofile, **kw)
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    if proc in _children:
        _children.remove(proc)


def stop_all() -> None:
    for proc in list(_children):
        stop(proc, grace=2.0)


def wait_line(proc: subprocess.Popen, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if text in line:
            return
    raise RuntimeError(f"{proc.args[:3]} did not print {text!r} (exit {proc.poll()})")


def wait_sip(port: int, timeout: float = 30.0) -> float:
    """Wait until a SIP server answers OPTIONS on 127.0.0.1:port; seconds waited."""
    t0 = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.5)
        me = s.getsockname()[1]
        n = 0
        while time.monotonic() - t0 < timeout:
            n += 1
            msg = (f"OPTIONS sip:12319@127.0.0.1:{port} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKbench{n}\r\n"
                   f"From: <sip:bench@127.0.0.1:{me}>;tag=b{n}\r\nTo: <sip:12319@127.0.0.1>\r\n"
                   f"Call-ID: bench-probe-{n}@127.0.0.1\r\nCSeq: {n} OPTIONS\r\n"
                   f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), ("127.0.0.1", port))
            try:
                if s.recv(4096).startswith(b"SIP/2.0"):
                    return time.monotonic() - t0
            except socket.timeout:
                continue
    raise RuntimeError(f"no SIP answer on 127.0.0.1:{port} within {timeout}s")


# ------------------------------------------------------------------------- /proc sampling


def _tree(pid: int) -> list[int]:
    """pid and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError):
        return 0


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def _cpu_pressure_us() -> int:
    """PSI: total microseconds in which some runnable task waited for a CPU."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return 0


class Sampler(threading.Thread):
    """Every 0.5 s: CPU time and RSS of the server (main process; its descendants
    apart), of sipp, the machine's busy/total jiffies (/proc/stat: tick-sampled, so it
    undercounts work that wakes in step with the tick, like a 20 ms media loop) and CPU
    pressure (PSI "some": share of time a runnable task waited for a core)."""

    def __init__(self, server_pid: int):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.sipp_pid: int | None = None
        self.rows: list[tuple] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            pids = _tree(self.server_pid)
            main = _cpu_ticks(self.server_pid)
            kids = sum(_cpu_ticks(p) for p in pids[1:])
            rss = _rss_mb(self.server_pid)
            kids_rss = sum(_rss_mb(p) for p in pids[1:])
            sipp = _cpu_ticks(self.sipp_pid) if self.sipp_pid else 0
            busy, total = _machine_busy()
            self.rows.append((time.monotonic(), main, kids, rss, kids_rss, sipp, busy, total,
                              _cpu_pressure_us()))
            self._halt.wait(0.5)

    def halt(self) -> None:
        self._halt.set()
        self.join(2)

    def window(self, t0: float, t1: float) -> dict:
        rows = [r for r in self.rows if t0 <= r[0] <= t1]
        if len(rows) < 2:
            return {}
        a, b = rows[0], rows[-1]
        dt = b[0] - a[0]
        pct = lambda i: round(100.0 * (b[i] - a[i]) / CLK_TCK / dt, 1)  # noqa: E731
        return {"seconds": round(dt, 1), "server_cpu_pct": pct(1),
                "server_children_cpu_pct": pct(2), "sipp_cpu_pct": pct(5),
                "machine_busy_pct": round(100.0 * (b[6] - a[6]) / max(1, b[7] - a[7]), 1),
                "cpu_pressure_pct": round((b[8] - a[8]) / 1e4 / dt, 1)}

    def peak_rss(self) -> tuple[float, float]:
        return (max((r[3] for r in self.rows), default=0.0),
                max((r[4] for r in self.rows), default=0.0))


class OptionsProbe(threading.Thread):
    """SIP OPTIONS to the server every `interval` s from its own UDP port; the time to its
    response per request (issue 18: the SIP side stays responsive while the calls run).
    A request unanswered after `timeout` s counts as lost."""

    def __init__(self, sip_port: int, interval: float = 0.1, timeout: float = 2.0):
        super().__init__(daemon=True)
        self.sip_port = sip_port
        self.interval = interval
        self.timeout = timeout
        self.samples: list[tuple[float, float | None]] = []  # (sent at, rtt s or None)
        self._halt = threading.Event()

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        k = 0
        try:
            while not self._halt.is_set():
                k += 1
                call_id = f"probe-{port}-{k}"
                msg = (f"OPTIONS sip:12319@127.0.0.1:{self.sip_port} SIP/2.0\r\n"
                       f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-opt{k}-{port};rport\r\n"
                       f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p{port}\r\n"
                       f"To: <sip:12319@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: {k} OPTIONS\r\n"
                       f"Content-Length: 0\r\n\r\n").encode()
                sent = time.monotonic()
                sock.sendto(msg, ("127.0.0.1", self.sip_port))
                rtt = None
                deadline = sent + self.timeout
                while (left := deadline - time.monotonic()) > 0:
                    sock.settimeout(left)
                    try:
                        data = sock.recv(65535)
                    except OSError:
                        break
                    if call_id.encode() in data and data.startswith(b"SIP/2.0 "):
                        rtt = time.monotonic() - sent
                        break
                self.samples.append((sent, rtt))
                self._halt.wait(max(0.0, sent + self.interval - time.monotonic()))
        finally:
            sock.close()

    def halt(self) -> None:
        self._halt.set()
        self.join(self.timeout + 1)

    def window(self, t0: float, t1: float) -> dict:
        rows = [rtt for sent, rtt in self.samples if t0 <= sent <= t1]
        ok = sorted(1000 * r for r in rows if r is not None)
        return {"requests": len(rows), "unanswered": len(rows) - len(ok),
                "p50": pct(ok, 50), "p99": pct(ok, 99), "max": round(max(ok), 1) if ok else None}


# ------------------------------------------------------------------------- inputs


def _knows(code_root: str | Path | None, key: str) -> bool:
    """Whether that tree's config has this key (older trees refuse keys they do not know)."""
    cfg = Path(code_root or ROOT) / "callcenter" / "config.py"
    return cfg.is_file() and key in cfg.read_text()


def db_name(code_root: str | Path | None) -> str:
    """One database per source tree: trees with different migration chains cannot share one
    (an older tree's `serve` stops at a revision it does not know)."""
    if not code_root:
        return "hotline.db"
    import hashlib

    return f"hotline-{hashlib.sha1(str(Path(code_root).resolve()).encode()).hexdigest()[:8]}.db"


def hotline_cmd(code_root: str | Path | None) -> tuple[list[str], dict | None]:
    """The `hotline` command of a source tree (this one's console script, or the same
    interpreter with that tree first on sys.path) and its environment."""
    if not code_root:
        return [HOTLINE], None
    return ([PYTHON, "-c", "import sys; from callcenter.cli import main; sys.exit(main())"],
            {**os.environ, "PYTHONPATH": str(code_root)})


def write_hotline_config(work: Path, sip_port: int, web_port: int, rtp: tuple[int, int], *,
                         stt: bool = False, yield_above: float | None = None,
                         code_root: str | Path | None = None) -> Path:
    cfg = work / "hotline.toml"
    # sipp is one source placing every call: the per-source and total limits sized for the load
    # (as high as the RTP range allows: the config refuses limits beyond it, less a reserve).
    calls = (rtp[1] - rtp[0] + 1) * 9 // 10
    admission = (f"[admission]\nmax_calls = {calls}\nmax_calls_per_source = {calls}\n"
                 if _knows(code_root, "max_calls_per_source") else "")
    # ... and the SIP flood defence must not ban the load generator (it did at 750 calls).
    defence = 'allow = ["127.0.0.1"]\n' if _knows(code_root, "flood_max_requests") else ""
    cfg.write_text(f"""\
# Written by bench/sip_load.py: one hotline node for the load benchmark.
[sip]
host = "127.0.0.1"
port = {sip_port}
ring_s = 0.0
{defence}[rtp]
host = "127.0.0.1"
port_min = {rtp[0]}
port_max = {rtp[1]}
timeout_s = 30.0
[web]
host = "127.0.0.1"
port = {web_port}
[database]
url = "sqlite:///{work}/{db_name(code_root)}"
{admission}[storage]
dir = "{work}/recordings"
[prompts]
dir = "{work}/prompts"
[stt]
enabled = {"true" if stt else "false"}
workers = 1
models_dir = "{ROOT}/var/models"
""" + (f"yield_above = {yield_above}\n" if yield_above is not None else ""))
    return cfg


def queue_transcriptions(cfg: Path, work: Path, minutes: float = 20.0, code_root=None) -> int:
    """Fill the transcription queue before the server starts (it resumes queued jobs), so
    the worker is busy the whole round: `minutes` of real speech as voice messages."""
    import sqlite3
    from datetime import datetime

    cmd, env = hotline_cmd(code_root)
    subprocess.run([*cmd, "db", "upgrade", "--config", str(cfg)], check=True, capture_output=True, env=env)
    clips = sorted(SPEECH_DIR.glob("*.wav"))
    pcm = b"".join(speech_pcm(str(c)) for c in clips) or speech_pcm("ni hao")
    wav_path = work / "stt-load.wav"
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(pcm)
    seconds = len(pcm) / 16000
    count = max(1, int(minutes * 60 / seconds))
    now = datetime.now().isoformat(sep=" ")
    with sqlite3.connect(work / db_name(code_root)) as db:
        # Rounds share the database: what earlier rounds left queued (their calls' recordings
        # too) would make every round's backlog longer than the last. Start from this one's.
        db.execute("UPDATE transcript_jobs SET status = 'failed', error = 'bench: earlier round' "
                   "WHERE status = 'queued'")
        for i in range(count):
            cur = db.execute(
                "INSERT INTO recordings (call_id, kind, path, channels, duration_s, created_at) VALUES (?,?,?,?,?,?)",
                (f"stt-load-{i}", "message", str(wav_path), 1, seconds, now))
            db.execute(
                "INSERT INTO transcript_jobs (recording_id, status, engine, norm_text, queued_at) VALUES (?,?,?,?,?)",
                (cur.lastrowid, "queued", "whisper", "", now))
    return count


def build_speech_pcap(path: Path, seconds: float) -> float:
    """A PCMU speech pcap at least `seconds` long, from the shared Mandarin clips (or
    espeak-ng when they are missing); returns its length."""
    clips = sorted(SPEECH_DIR.glob("*.wav"))[:6]
    pieces = [speech_pcm(str(c)) for c in clips] or [speech_pcm("ni hao wo yao fan ying wen ti")]
    gap = bytes(2 * 4000)  # 0.5 s
    pcm, i = b"", 0
    while len(pcm) < seconds * 16000:
        pcm += pieces[i % len(pieces)] + gap
        i += 1
    build_rtp_pcap(path, pcm_8k_mono=pcm, codec="PCMU", payload_type=0)
    return len(pcm) / 16000


def wav_seconds(directory: Path) -> tuple[int, float]:
    n, total = 0, 0.0
    for p in directory.rglob("*.wav"):
        try:
            with wave.open(str(p), "rb") as w:
                total += w.getnframes() / w.getframerate()
            n += 1
        except (wave.Error, EOFError, OSError):
            n += 1
    return n, total


# ------------------------------------------------------------------------- sipp output


def sipp_stats(work: Path) -> dict:
    files = sorted(work.glob("*_.csv")) + sorted(work.glob("stats.csv"))
    if not files:
        return {}
    with open(files[-1], newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    if len(rows) < 2:
        return {}
    head, last = rows[0], rows[-1]
    row = dict(zip(head, last))
    pick = lambda k: int(row.get(k, "0") or 0)  # noqa: E731
    return {"created": pick("TotalCallCreated"), "successful": pick("SuccessfulCall(C)"),
            "failed": pick("FailedCall(C)"), "retransmissions": pick("Retransmissions(C)"),
            "failed_max_udp_retrans": pick("FailedMaxUDPRetrans(C)"),
            "failed_unexpected_msg": pick("FailedUnexpectedMessage(C)"),
            "failed_call_rejected": pick("FailedCallRejected(C)"),
            "failed_timeout": pick("FailedCmdNotSent(C)") + pick("FailedRegexpDoesntMatch(C)")
            + pick("FailedOutboundCongestion(C)") + pick("FailedTimeoutOnRecv(C)"),
            "dead_call_msgs": pick("DeadCallMsgs(C)"),
            "out_of_call_msgs": pick("OutOfCallMsgs(C)")}


def sipp_setup_times(work: Path) -> list[float]:
    out = []
    for p in work.glob("*_rtt.csv"):
        with open(p) as f:
            for line in f:
                parts = line.strip().split(";")
                if len(parts) >= 3 and parts[2] == "setup":
                    try:
                        out.append(float(parts[1]))
                    except ValueError:
                        pass
    return out


def pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


# ------------------------------------------------------------------------- one round


def pinned(cmd: list, cpus: str | None) -> list:
    """Run cmd on the given CPUs (taskset -c) when pinning is on."""
    return ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)


def run_round(target: str, n: int, args, work: Path, pcap: Path, wav: Path) -> dict:
    rnd = work / f"{target}-{n}"
    k = 1
    while rnd.exists():  # --repeat
        k += 1
        rnd = work / f"{target}-{n}-{k}"
    rnd.mkdir()
    is_hotline = target in HOTLINE_TARGETS
    lo, hi = RTP_RANGES[target]
    sample = max(1, math.ceil(n / args.sample_calls))
    ramp = n / args.rate
    call_s = ramp + args.hold
    sipp_port, media_port = free_udp_port(), free_udp_port_block(4)
    server = probe = sipp = None
    sampler = None
    options = None
    result: dict = {"calls": n, "call_seconds": round(call_s, 1)}
    try:
        # -- server
        if is_hotline:
            sip_port = free_udp_port()
            code_root = args.base_root if target == "base" else args.hotline_root
            cfg = write_hotline_config(work, sip_port, free_tcp_port(), (lo, hi), stt=target in STT_TARGETS,
                                       yield_above=0 if target == "hotline_stt_flat" else None,
                                       code_root=code_root)
            if target in STT_TARGETS:
                result["stt_jobs_queued"] = queue_transcriptions(cfg, work, code_root=code_root)
            rec_before = wav_seconds(work / "recordings")
            # Same interpreter and venv; another tree's code first on sys.path.
            cmd, env = hotline_cmd(code_root)
            cmd = [*cmd, "serve", "--config", str(cfg)]
            if target == "base" and args.base_env:
                env = {**(env or os.environ), **dict(kv.split("=", 1) for kv in args.base_env)}
            server = start(pinned(cmd, args.server_cpus), cwd=rnd, log=rnd / "server.log", env=env)
        else:
            sip_port = free_udp_port()
            server = start(pinned([PYTHON, str(ROOT / "bench" / "pyvoip_server.py"),
                                   "--sip-port", str(sip_port), "--peer", f"127.0.0.1:{sipp_port}",
                                   "--rtp", f"{lo}-{hi}", "--wav", str(wav)], args.server_cpus),
                           cwd=rnd, log=rnd / "server.log", stdout=subprocess.PIPE, text=True)
            wait_line(server, "ready", 20)
            time.sleep(1.5)  # pyVoIP starts its SIP receive loop on a 1 s Timer
        if is_hotline:
            result["startup_s"] = round(wait_sip(sip_port, 60), 2)
        # -- probe
        probe = start(pinned([PYTHON, str(ROOT / "bench" / "rtp_probe.py"), "--ports", f"{lo}-{hi}",
                              "--sample", str(sample), "--out", str(rnd / "tap.npz")], args.load_cpus),
                      cwd=rnd, log=rnd / "probe.log", stdout=subprocess.PIPE, text=True)
        wait_line(probe, "ready", 20)
        sampler = Sampler(server.pid)
        sampler.start()
        load_before = os.getloadavg()[0]
        time.sleep(1.0)
        idle = sampler.window(time.monotonic() - 1.2, time.monotonic())
        rss_idle = _rss_mb(server.pid)
        options = OptionsProbe(sip_port) if is_hotline else None
        if options is not None:
            options.start()
        # -- sipp
        cmd = ["sipp", f"127.0.0.1:{sip_port}", "-sf", str(SCENARIO), "-s", "12319",
               "-key", "caller", "13800138000", "-key", "pcap", str(pcap),
               "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(sipp_port),
               "-mp", str(media_port), "-r", str(args.rate), "-m", str(n), "-l", str(n),
               "-d", str(int(call_s * 1000)), "-nostdin", "-aa",
               "-recv_timeout", "15000", "-timeout", f"{int(call_s + ramp + 60)}s",
               "-trace_stat", "-stf", "stats.csv", "-fd", "1",
               "-trace_rtt", "-rtt_freq", "1", "-trace_err", "-error_file", "errors.log"]
        t0 = time.monotonic()
        sipp = start(pinned(cmd, args.load_cpus), cwd=rnd, log=rnd / "sipp.log")
        sampler.sipp_pid = sipp.pid
        profile = None
        if args.profile and is_hotline and args.py_spy:
            time.sleep(ramp + 1)
            profile = subprocess.run(
                [args.py_spy, "record", "--pid", str(server.pid), "--threads", "--rate", "250", "--duration",
                 str(max(3, int(args.hold / 2))), "--format", "raw", "--nonblocking",
                 "--output", str(rnd / "profile.txt")],
                capture_output=True, text=True, timeout=args.hold + 30)
        try:
            code = sipp.wait(timeout=call_s + ramp + 120)
        except subprocess.TimeoutExpired:
            code = -9
            stop(sipp)
        t_end = time.monotonic()
        time.sleep(1.0)
        if options is not None:
            options.halt()
        # Memory once the calls are gone (recordings closed, sessions released).
        time.sleep(2.0)
        rss_after = _rss_mb(server.pid)
        # steady state: every call up (the last one answered; pyVoIP answers after 1 s)
        plateau = sampler.window(t0 + ramp + (1.5 if target == "pyvoip" else 0.5),
                                 t0 + call_s - 0.5)
        whole = sampler.window(t0, t_end)
        stop(probe, grace=20)
        probe = None
        sampler.halt()
        rss, kids_rss = sampler.peak_rss()
        stats = sipp_stats(rnd)
        setup = sipp_setup_times(rnd)
        result.update({
            "sipp_exit": code,
            "completed": stats.get("successful"),
            "failed": stats.get("failed"),
            "sipp": stats,
            "invite_200_ms": {"rate_cps": args.rate, "calls": len(setup),
                              "p50": pct(setup, 50), "p95": pct(setup, 95),
                              "max": round(max(setup), 1) if setup else None},
            "rtp_sent": rtp_probe.analyze(str(rnd / "tap.npz")),
            "cpu_plateau": plateau, "cpu_whole_run": whole, "cpu_idle_before": idle,
            "server_rss_mb": round(rss, 1), "server_children_rss_mb": round(kids_rss, 1),
            "server_rss_idle_mb": round(rss_idle, 1), "server_rss_after_mb": round(rss_after, 1),
            "rss_mb_per_call": round((rss - rss_idle) / n, 3),
            "loadavg1_before": round(load_before, 2),
            "pinning": {"server_cpus": args.server_cpus, "load_cpus": args.load_cpus},
        })
        if options is not None:
            result["options_ms"] = options.window(t0 + ramp, t0 + call_s - 0.5)
        if is_hotline:
            n_rec, sec_rec = wav_seconds(work / "recordings")
            result["recordings"] = {"files": n_rec - rec_before[0],
                                    "seconds": round(sec_rec - rec_before[1], 1)}
        if profile is not None:
            result["profile"] = summarize_profile(rnd / "profile.txt")
        return result
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.halt()
        if options is not None and options.is_alive():
            options.halt()
        stop(sipp)
        stop(probe, grace=20)
        stop(server, grace=10)
        if server is not None and is_hotline:
            log = (rnd / "server.log").read_text(errors="replace")
            result["server_log_errors"] = log.count("ERROR") + log.count("Traceback")
        if server is not None and target == "pyvoip":
            log = (rnd / "server.log").read_text(errors="replace")
            result["server_log_errors"] = log.count("Traceback") + log.count("Error")


def summarize_profile(path: Path, top: int = 12) -> dict:
    """py-spy raw (collapsed) stacks: share of samples per leaf function and per
    function anywhere on the stack (inclusive)."""
    if not path.exists():
        return {}
    leaf, incl, total = {}, {}, 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        total += c
        # "func (file:line)" -> "func (file)": one entry per function, whatever the line
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    share = lambda d: {k: round(100 * v / total, 1)  # noqa: E731
                       for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]}
    return {"samples": total, "leaf_pct": share(leaf), "inclusive_pct": share(incl)} if total else {}


def collapsed(r: dict, jitter_ms: float) -> bool:
    """Clearly past it: calls failing, or send timing far off."""
    rtp = r.get("rtp_sent", {})
    j = rtp.get("jitter_ms", {}).get("p99")
    return (r.get("completed") or 0) < 0.9 * r["calls"] or j is None or j > 4 * jitter_ms \
        or abs(rtp.get("drift_pct", 0)) > 5


def meets(r: dict, jitter_ms: float) -> bool:
    """Every call completed, p99 jitter <= jitter_ms, no loss, |drift| < 0.1 %."""
    rtp = r.get("rtp_sent", {})
    j = rtp.get("jitter_ms", {}).get("p99")
    return (r.get("completed") == r["calls"] and j is not None and j <= jitter_ms
            and rtp.get("loss_pct", 1) == 0 and abs(rtp.get("drift_pct", 1)) < 0.1)


def machine() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    sipp_v = subprocess.run(["sipp", "-v"], capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cores": os.cpu_count(), "mem_mb": mem,
            "kernel": platform.release(), "python": platform.python_version(),
            "sipp": sipp_v.splitlines()[0].strip() if sipp_v else None,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "shared": "2 cores shared with other engineers' test runs; "
                      "see loadavg1_before / machine_busy_pct per round"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="50,100,200,400,600", help="concurrent calls, comma list")
    ap.add_argument("--hold", type=float, default=20.0,
                    help="seconds all N calls are up at once (each call lasts N/rate + hold)")
    ap.add_argument("--rate", type=float, default=50.0, help="new calls per second")
    ap.add_argument("--targets", default="hotline,pyvoip")
    ap.add_argument("--sample-calls", type=int, default=50,
                    help="follow about this many calls' RTP per round (every k-th port)")
    ap.add_argument("--jitter", type=float, default=5.0, help="p99 jitter target, ms")
    ap.add_argument("--pyvoip-n", default="50,75,100,150,200,400",
                    help="N list for pyVoIP (finer where it breaks; stops once collapsed)")
    ap.add_argument("--hotline-root", default=None,
                    help="run the hotline targets from this source tree (e.g. a `git worktree` of "
                         "the commit under test, so the working tree can change meanwhile)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the hotline targets' rounds this many times, interleaved; report "
                         "the median (figures of every run under 'runs')")
    ap.add_argument("--profile", action="store_true", help="py-spy the hotline on the plateau")
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or "", help="py-spy binary")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, captures)")
    ap.add_argument("--pin", action="store_true",
                    help="taskset: the server on CPU 1, sipp and the probe on CPU 0 (so the figures "
                         "measure the server, not its contention with the load generator)")
    ap.add_argument("--server-cpus", default=None, help="taskset CPU list for the server")
    ap.add_argument("--load-cpus", default=None, help="taskset CPU list for sipp and the probe")
    ap.add_argument("--prompts", default=None, metavar="DIR",
                    help="copy the prompts from DIR (an earlier --keep run's prompts/) instead of building "
                         "them (the neural voice takes minutes on a loaded machine)")
    ap.add_argument("--base-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment of the base server only (e.g. HOTLINE_RTPIO=pure with "
                         "--base-root = the hotline's tree: the same code without the C helper)")
    ap.add_argument("--base-root", default=None,
                    help="source tree of a baseline hotline (target 'base'), e.g. an export of "
                         "the previous commit: run in the same rounds, interleaved per N")
    args = ap.parse_args(argv)
    if args.pin:
        args.server_cpus = args.server_cpus or "1"
        args.load_cpus = args.load_cpus or "0"
    ns = [int(x) for x in args.n.split(",") if x.strip()]
    pyvoip_ns = [int(x) for x in args.pyvoip_n.split(",") if x.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if "base" in targets and not args.base_root:
        print("target 'base' needs --base-root", file=sys.stderr)
        return 2
    if args.base_root and "base" not in targets:
        targets.insert(0, "base")
    if os.geteuid() != 0:
        print("bench/sip_load.py needs root for the loopback tap (rtp_probe)", file=sys.stderr)
        return 2
    if shutil.which("sipp") is None:
        print("sipp is not installed (Debian: sip-tester)", file=sys.stderr)
        return 2

    def _on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    work = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    doc: dict = {"machine": machine(), "params": {
        "n": ns, "pyvoip_n": pyvoip_ns, "hold_s": args.hold, "rate_cps": args.rate, "sample_calls": args.sample_calls,
        "jitter_target_ms": args.jitter, "server_cpus": args.server_cpus,
        "load_cpus": args.load_cpus, "base_root": args.base_root, "repeat": args.repeat},
        "hotline": {}, "pyvoip": {}, "ratio": {}}
    for extra_target in ("base", *STT_TARGETS):
        if extra_target in targets:
            doc[extra_target] = {}
    try:
        # prompts, demo data and the caller's speech, once
        (work / "recordings").mkdir()
        # Each tree seeds its own database (see db_name); the prompts are built once.
        roots = [args.hotline_root] + ([args.base_root] if "base" in targets else [])
        for i, code_root in enumerate(dict.fromkeys(roots)):
            cfg = write_hotline_config(work, free_udp_port(), free_tcp_port(), RTP_RANGES["hotline"],
                                       code_root=code_root)
            cmd, env = hotline_cmd(code_root)
            build = i == 0 and not args.prompts
            if i == 0 and args.prompts:  # built by an earlier run (its --keep work dir's prompts/)
                shutil.copytree(args.prompts, work / "prompts")
            for step in ((["prompts", "build"],) if build else ()) + (["demo", "seed"],):
                subprocess.run([*cmd, *step, "--config", str(cfg)], cwd=work, check=True,
                               capture_output=True, timeout=600, env=env)
        longest = max(ns + pyvoip_ns) / args.rate + args.hold + 2
        pcap = work / "speech.pcap"
        doc["params"]["caller_speech_s"] = round(build_speech_pcap(pcap, longest), 1)
        wav = work / "prompts" / "welcome.wav"
        # hotline and base alternate per N (same conditions for both); pyVoIP after.
        # --repeat: the hotline targets' rounds again, interleaved, so a comparison rests on
        # medians, not on the handful of loop stalls that decide one round's p99.
        rounds = [(t, n) for _ in range(args.repeat) for n in ns for t in targets
                  if t in HOTLINE_TARGETS]
        rounds += [("pyvoip", n) for n in pyvoip_ns for _ in range(args.repeat) if "pyvoip" in targets]
        collapsed_at = None
        for target, n in rounds:
            if target == "pyvoip" and collapsed_at is not None and n > collapsed_at:
                doc[target][str(n)] = {"skipped": f"collapsed at N={collapsed_at}"}
                continue
            print(f"[bench] {target} N={n} ...", file=sys.stderr, flush=True)
            r = run_round(target, n, args, work, pcap, wav)
            if str(n) in doc[target]:
                runs = doc.setdefault("repeats", {}).setdefault(target, {}).setdefault(
                    str(n), [doc[target][str(n)]])
                runs.append(r)
                doc[target][str(n)] = median_run(runs)
            else:
                doc[target][str(n)] = r
            print(f"[bench] {target} N={n}: {one_line(r)}", file=sys.stderr, flush=True)
            if target == "pyvoip" and collapsed(r, args.jitter) and collapsed_at is None:
                collapsed_at = n
        doc["ratio"] = ratio(doc, args)
        if any(t in doc for t in STT_TARGETS):
            doc["stt_effect"] = stt_effect(doc)
    except KeyboardInterrupt as exc:
        doc["interrupted"] = str(exc) or "Ctrl-C"
    finally:
        stop_all()
        if args.keep:
            doc["work_dir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(doc, indent=1, ensure_ascii=False))
    print(summary(doc), file=sys.stderr)
    return 0 if "interrupted" not in doc else 130


def one_line(r: dict) -> str:
    rtp = r.get("rtp_sent", {})
    j = rtp.get("jitter_ms", {})
    inv = r.get("invite_200_ms", {})
    cpu = r.get("cpu_plateau", {})
    return (f"completed {r.get('completed')}/{r['calls']}, jitter p50/p99 "
            f"{j.get('p50')}/{j.get('p99')} ms, loss {rtp.get('loss_pct')} %, drift "
            f"{rtp.get('drift_pct')} %, INVITE->200 p50/p95 {inv.get('p50')}/{inv.get('p95')} ms, "
            f"CPU {cpu.get('server_cpu_pct')} % (machine {cpu.get('machine_busy_pct')} % of "
            f"{os.cpu_count()} cores), RSS {r.get('server_rss_mb')} MB "
            f"({r.get('rss_mb_per_call')} MB/call, after {r.get('server_rss_after_mb')} MB, idle "
            f"{r.get('server_rss_idle_mb')} MB)"
            + (f", OPTIONS p99 {r['options_ms'].get('p99')} ms" if r.get("options_ms") else ""))


def _jitter(r: dict, key: str) -> float | None:
    return r.get("rtp_sent", {}).get("jitter_ms", {}).get(key)


def median_run(runs: list[dict]) -> dict:
    """The run with the median p99 jitter, carrying every run's p50/p99 and their medians
    (a failed run has no p99 and sorts last)."""
    ranked = sorted(runs, key=lambda r: (_jitter(r, "p99") is None, _jitter(r, "p99") or 0.0))
    out = dict(ranked[(len(ranked) - 1) // 2])
    p99s = [_jitter(r, "p99") for r in runs]
    p50s = [_jitter(r, "p50") for r in runs]
    ok = [v for v in p99s if v is not None]
    out["runs"] = {"p99_ms": p99s, "p50_ms": p50s,
                   "p99_median_ms": round(float(np.median(ok)), 3) if ok else None,
                   "p50_median_ms": round(float(np.median([v for v in p50s if v is not None])), 3)
                   if ok else None,
                   "server_cpu_pct": [r.get("cpu_plateau", {}).get("server_cpu_pct") for r in runs],
                   "stt_worker_cpu_pct": [r.get("cpu_plateau", {}).get("server_children_cpu_pct")
                                          for r in runs]}
    return out


def stt_effect(doc: dict) -> dict:
    """Issue 5's check: media timing with the transcription worker busy vs without, per N,
    from the same run (medians over --repeat rounds)."""
    out = {}
    for target, n, with_stt in [(t, n, r) for t in STT_TARGETS for n, r in doc.get(t, {}).items()]:
        without = doc["hotline"].get(n)
        if not without or "calls" not in with_stt:
            continue
        def fig(r, key):
            runs = r.get("runs")
            return runs[f"{key}_median_ms"] if runs else _jitter(r, key)
        a99, b99 = fig(without, "p99"), fig(with_stt, "p99")
        a50, b50 = fig(without, "p50"), fig(with_stt, "p50")
        out[f"{target} N={n}"] = {"p99_without_ms": a99, "p99_with_ms": b99,
                  "p99_ratio": round(b99 / a99, 2) if a99 and b99 else None,
                  "p50_without_ms": a50, "p50_with_ms": b50,
                  "p50_ratio": round(b50 / a50, 2) if a50 and b50 else None,
                  "rounds": len(with_stt.get("runs", {}).get("p99_ms", [1])),
                  "stt_worker_cpu_pct": with_stt.get("cpu_plateau", {}).get("server_children_cpu_pct"),
                  "stt_worker_cpu_pct_runs": with_stt.get("runs", {}).get("stt_worker_cpu_pct"),
                  "stt_jobs_queued": with_stt.get("stt_jobs_queued")}
    return out


def ratio(doc: dict, args) -> dict:
    """Largest tried N meeting the criterion, per server, at the target jitter and at
    looser ones (so the comparison still says something when neither meets the target)."""
    out = {"criterion": "all calls completed, p99 jitter <= J ms, zero loss, |drift| < 0.1 %",
           "note": "only the listed N are tried: true limits lie between them"}
    for j in sorted({args.jitter, 10.0, 20.0}):
        best = {}
        for target in ("hotline", "base", "pyvoip"):
            if target not in doc:
                continue
            ok = [int(n) for n, r in doc[target].items() if "calls" in r and meets(r, j)]
            best[target] = max(ok) if ok else 0
        h, p = best["hotline"], best["pyvoip"]
        out[f"J={j:g}ms"] = {"hotline_max_n": h, "pyvoip_max_n": p,
                             "hotline_over_pyvoip": round(h / p, 2) if p else None}
        if "base" in best:
            out[f"J={j:g}ms"]["base_max_n"] = best["base"]
    return out


def summary(doc: dict) -> str:
    lines = ["", "== SIP load benchmark (machine shared with other test runs) =="]
    for target in ("hotline", "base", *STT_TARGETS, "pyvoip"):
        for n, r in doc.get(target, {}).items():
            lines.append(f"{target:8} N={n:>4}: " + (one_line(r) if "calls" in r else r.get("skipped", "")))
    for n, e in doc.get("stt_effect", {}).items():
        lines.append(f"STT effect {n} ({e['rounds']} round(s), medians): p99 {e['p99_without_ms']} -> "
                     f"{e['p99_with_ms']} ms (x{e['p99_ratio']}), p50 {e['p50_without_ms']} -> "
                     f"{e['p50_with_ms']} ms (x{e['p50_ratio']}), worker CPU {e['stt_worker_cpu_pct']} %")
    for key, v in doc.get("ratio", {}).items():
        if key.startswith("J="):
            lines.append(f"largest N with all calls, p99 jitter <= {key[2:]}, no loss/drift: "
                         f"hotline {v['hotline_max_n']}, pyVoIP {v['pyvoip_max_n']} "
                         f"(x{v['hotline_over_pyvoip']})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

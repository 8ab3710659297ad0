"""Flood of short calls on SQLite: does every call get its row and every WAV its recording row?
And how fast are slow-INVITE attackers (no ACK, no RTP) torn down?

    .venv/bin/python bench/call_flood.py --rate 200 --seconds 20 --base-root /tmp/hotline_base

For each tree (this one, and `--base-root DIR` — e.g. `git archive <commit> | tar -x -C DIR` —
run by the same interpreter with PYTHONPATH=DIR, in the same run): a fresh `hotline serve`
(SQLite, recording on, sipp's address allow-listed as a carrier trunk so the per-source limit
does not apply), sipp places `rate` calls/s for `seconds` s, each talking for `--hold` s and
hanging up; the server is stopped with SIGTERM (it drains what it still has to write), then
rows and files are counted: calls answered by sipp vs call rows, WAV files vs recording rows
(a WAV without a row is a lost row). This tree then gets the attack: `--attackers` INVITEs from
127.0.0.2 that never ACK and as many that ACK but send no RTP; the seconds from answer to the
server's hang-up are read from the call rows. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sip_load import build_speech_pcap, machine, start, stop, stop_all, wait_sip  # noqa: E402
from tests.e2e.peers.ports import free_tcp_port, free_udp_port  # noqa: E402

SCENARIOS = ROOT / "tests" / "e2e" / "peers" / "sipp"
LOAD_CALL = ROOT / "bench" / "sipp" / "load_call.xml"


def write_config(work: Path, sip_port: int, web_port: int, *, new_keys: bool) -> Path:
    cfg = work / "hotline.toml"
    text = f"""\
[sip]
host = "127.0.0.1"
port = {sip_port}
[rtp]
host = "127.0.0.1"
port_min = 24000
port_max = 25999
[web]
host = "127.0.0.1"
port = {web_port}
[database]
url = "sqlite:///{work}/hotline.db"
[storage]
dir = "{work}/recordings"
[prompts]
dir = "{work}/prompts"
[stt]
enabled = false
[[trunks]]
name = "bench-carrier"
allow = ["127.0.0.1"]
"""
    if new_keys:
        # The flood measures storage: sipp playing ~1,000 pcaps at once on a small machine ACKs
        # seconds late, which the default ack_timeout_s would (rightly) count as a bad caller.
        # attack() sets the real timeouts.
        text += "[admission]\nmax_calls = 1000\nack_timeout_s = 60.0\nfirst_rtp_timeout_s = 60.0\n"
    cfg.write_text(text)
    return cfg


def hotline(root: Path) -> tuple[list[str], dict]:
    env = dict(os.environ, PYTHONPATH=str(root))
    return [sys.executable, "-m", "callcenter.cli"], env


def sipp(scenario: Path, port: int, ip: str, *, calls: int, rate: float, hold_ms: int, work: Path,
         pcap: Path | None = None, timeout_s: int = 120) -> subprocess.Popen:
    cmd = ["sipp", f"127.0.0.1:{port}", "-sf", str(scenario), "-s", "12319", "-key", "caller", "13800000000",
           "-i", ip, "-mi", ip, "-p", str(free_udp_port()), "-m", str(calls), "-r", str(rate),
           "-l", str(max(1, calls)), "-d", str(hold_ms), "-nostdin", "-aa", "-timeout", f"{timeout_s}s",
           "-trace_stat", "-stf", str(work / f"sipp-{scenario.stem}-{ip}.csv")]
    if pcap is not None:
        cmd += ["-key", "pcap", str(pcap)]
    return start(cmd, cwd=work, log=work / f"sipp-{scenario.stem}.log")


def sipp_counts(csv: Path) -> dict:
    lines = [ln for ln in csv.read_text().splitlines() if ln.strip()]
    head, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(head, last))
    return {"created": int(row.get("TotalCallCreated", 0)), "successful": int(row.get("SuccessfulCall(C)", 0)),
            "failed": int(row.get("FailedCall(C)", 0))}


def count_rows(db: Path, storage: Path) -> dict:
    con = sqlite3.connect(db)
    try:
        calls = con.execute("select count(*), count(answered_at), count(ended_at) from calls").fetchone()
        paths = {Path(p).resolve() for (p,) in con.execute("select path from recordings")}
        reasons = dict(con.execute("select coalesce(end_reason, '(none)'), count(*) from calls group by 1"))
    finally:
        con.close()
    wavs = {p.resolve() for p in storage.rglob("*.wav")}
    return {"call_rows": calls[0], "answered_rows": calls[1], "ended_rows": calls[2],
            "recording_rows": len(paths), "wav_files": len(wavs), "wavs_without_row": len(wavs - paths),
            "rows_without_wav": len(paths - wavs), "end_reasons": reasons}


def flood(root: Path, work: Path, args, pcap: Path, *, new_keys: bool) -> dict:
    sip_port, web_port = free_udp_port(), free_tcp_port()
    cfg = write_config(work, sip_port, web_port, new_keys=new_keys)
    (work / "recordings").mkdir(exist_ok=True)
    cmd, env = hotline(root)
    for step in (["db", "upgrade"], ["demo", "seed"]):
        subprocess.run([*cmd, *step, "--config", str(cfg)], cwd=work, env=env, check=True, capture_output=True,
                       timeout=300)
    (work / "prompts").symlink_to(args.prompts)
    server = start([*cmd, "serve", "--config", str(cfg)], cwd=work, log=work / "server.log", env=env)
    try:
        wait_sip(sip_port, timeout=60)
        calls = int(args.rate * args.seconds)
        t0 = time.monotonic()
        load = sipp(LOAD_CALL, sip_port, "127.0.0.1", calls=calls, rate=args.rate, hold_ms=int(args.hold * 1000),
                    work=work, pcap=pcap, timeout_s=int(args.seconds + 120))
        load.wait(timeout=args.seconds + 180)
        flood_s = time.monotonic() - t0
        stop(load)
    finally:
        t1 = time.monotonic()
        stop(server, grace=120.0)
        stop_s = time.monotonic() - t1
    log = (work / "server.log").read_text(errors="replace")
    result = {"sipp": sipp_counts(work / f"sipp-{LOAD_CALL.stem}-127.0.0.1.csv"), "flood_s": round(flood_s, 1),
              "stop_s": round(stop_s, 1), **count_rows(work / "hotline.db", work / "recordings"),
              "pool_timeouts_logged": log.count("QueuePool limit") + log.count("TimeoutError"),
              "background_task_failures_logged": log.count("background task failed")}
    result["answered_calls_without_row"] = max(0, result["sipp"]["successful"] - result["answered_rows"])
    return result


def attack(root: Path, work: Path, args, pcap: Path, *, new_keys: bool) -> dict:
    """No-ACK and no-RTP callers from 127.0.0.2; seconds from answer to hang-up."""
    sip_port, web_port = free_udp_port(), free_tcp_port()
    cfg = write_config(work, sip_port, web_port, new_keys=new_keys)
    # No trunk here: the DIDs are open to anyone, as in the default configuration.
    text = cfg.read_text().replace('[[trunks]]\nname = "bench-carrier"\nallow = ["127.0.0.1"]\n', "")
    text = text.replace("ack_timeout_s = 60.0\nfirst_rtp_timeout_s = 60.0", "ack_timeout_s = 5.0\nfirst_rtp_timeout_s = 8.0")
    cfg.write_text(text.replace("max_calls = 1000", f"max_calls = 1000\nmax_calls_per_source = {args.attackers}"))
    (work / "recordings").mkdir(exist_ok=True)
    cmd, env = hotline(root)
    for step in (["db", "upgrade"], ["demo", "seed"]):
        subprocess.run([*cmd, *step, "--config", str(cfg)], cwd=work, env=env, check=True, capture_output=True,
                       timeout=300)
    (work / "prompts").symlink_to(args.prompts)
    server = start([*cmd, "serve", "--config", str(cfg)], cwd=work, log=work / "server.log", env=env)
    out: dict = {}
    try:
        wait_sip(sip_port, timeout=60)
        for name in ("attack_no_ack", "attack_no_rtp"):
            proc = sipp(SCENARIOS / f"{name}.xml", sip_port, "127.0.0.2", calls=args.attackers, rate=args.attackers,
                        hold_ms=1000, work=work, timeout_s=90)
            proc.wait(timeout=120)
            stop(proc)
        # A real caller from elsewhere meanwhile.
        real = sipp(SCENARIOS / "call_short.xml", sip_port, "127.0.0.3", calls=1, rate=1, hold_ms=1000, work=work,
                    pcap=pcap, timeout_s=30)
        real.wait(timeout=60)
        stop(real)
        time.sleep(1.0)
    finally:
        stop(server, grace=30.0)
    con = sqlite3.connect(work / "hotline.db")
    try:
        rows = con.execute("select end_reason, answered_at, ended_at from calls where answered_at is not null").fetchall()
    finally:
        con.close()

    def secs(a: str, b: str) -> float:
        from datetime import datetime
        return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()

    for reason in sorted({r for r, a, b in rows}):
        times = sorted(secs(a, b) for r, a, b in rows if r == reason and b)
        out[reason] = {"calls": len(times), "median_s": times[len(times) // 2] if times else None,
                       "max_s": times[-1] if times else None}
    out["sipp_real"] = sipp_counts(work / "sipp-call_short-127.0.0.3.csv")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--hold", type=float, default=1.0, help="seconds each flood call talks")
    p.add_argument("--base-root", type=Path, help="an older tree to measure in the same run")
    p.add_argument("--attackers", type=int, default=8)
    p.add_argument("--prompts", type=Path, help="a built prompts folder (else built once here)")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *a: (stop_all(), sys.exit(143)))
    top = Path(tempfile.mkdtemp(prefix="hotline-flood-"))
    doc: dict = {"machine": machine(), "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
                 "params": {"rate_cps": args.rate, "seconds": args.seconds, "hold_s": args.hold,
                            "attackers": args.attackers, "base_root": str(args.base_root or "")}}
    try:
        if args.prompts is None:
            args.prompts = top / "prompts"
            cfg = top / "prompts.toml"
            cfg.write_text(f'[prompts]\ndir = "{args.prompts}"\nengine = "espeak"\n')
            subprocess.run([sys.executable, "-m", "callcenter.cli", "prompts", "build", "--config", str(cfg)],
                           cwd=ROOT, check=True, capture_output=True, timeout=600)
        pcap = top / "speech.pcap"
        build_speech_pcap(pcap, args.hold + 1.0)
        trees = [("hotline", ROOT, True)] + ([("base", args.base_root, False)] if args.base_root else [])
        for name, root, new_keys in trees:
            work = top / name
            work.mkdir()
            doc[name] = flood(root, work, args, pcap, new_keys=new_keys)
            print(f"{name}: {json.dumps(doc[name])}", file=sys.stderr)
        for name, root, new_keys in trees:
            work = top / f"attack-{name}"
            work.mkdir()
            doc[f"attack_{name}"] = attack(root, work, args, pcap, new_keys=new_keys)
            print(f"attack {name}: {json.dumps(doc[f'attack_{name}'])}", file=sys.stderr)
    finally:
        stop_all()
        if not args.keep:
            import shutil
            shutil.rmtree(top, ignore_errors=True)
        else:
            print(f"kept {top}", file=sys.stderr)
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""User-space instructions of the whole `hotline serve` per call-second, tree against tree.

On a shared machine the latency figures of `sip_load.py` say more about the neighbours than
about the code, and even CPU time swells with contention. The instructions a process
executes do not: this runs `hotline serve` under valgrind's callgrind with instrumentation
off during start-up, switches it on (`callgrind_control -i on`) once SIP answers, places N
sipp calls exactly as `sip_load.py` does (speech both ways, the 12319 IVR's prompts, every
call recorded), and dumps the count when sipp is done. A second window of the same length
with no calls measures the idle server (timers, GC pacer, watchdogs), subtracted. Trees
alternate; the result is instructions per call-second of each and their ratio.

Under callgrind the server runs ~50x slower, so N must stay small (default 4: the media of
4 calls is ~0.3 s of callgrind time per second); the count of the calls' work does not
depend on how fast it ran, as long as the server keeps up (check `frames_skipped`/drift is
not what this measures: keep N small).

    .venv/bin/python bench/media_server_instr.py --tree NEW --tree OLD [--n 8 --hold 40 --repeat 3 --settle 60]

On the loaded machine of issue 18's third session (N = 4, no settling) the idle server's own
rate varied 4–31 M instructions/s between rounds, more than the calls' ~1.5 M per
call-second: the result was noise. Settle first, and use a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import sip_load as sl  # noqa: E402


def _count(out_dir: Path, pid: int) -> int:
    """Sum of the Ir events over the dump files callgrind wrote for this pid."""
    total = 0
    for f in out_dir.glob(f"cg.{pid}*"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):  # ("summary:" stays 0 after a zeroing)
                total += int(line.split()[1])
                break
    return total


def _ctl(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def one(tree: str, n: int, hold: float, rate: float, work: Path, pcap: Path, extra_env: dict,
        settle: float = 60.0) -> dict:
    rnd = Path(tempfile.mkdtemp(prefix="round-", dir=work))
    sip_port = sl.free_udp_port()
    cfg = sl.write_hotline_config(work, sip_port, sl.free_tcp_port(), sl.RTP_RANGES["hotline"], code_root=tree)
    cmd, env = sl.hotline_cmd(tree)
    env = {**(env or os.environ), **extra_env}
    vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={rnd}/cg.%p"]
    server = sl.start([*vg, *cmd, "serve", "--config", str(cfg)], cwd=rnd, log=rnd / "server.log", env=env)
    try:
        startup = sl.wait_sip(sip_port, 900)
        # Work the start-up leaves running (models loading, first heartbeats) must be over
        # before the idle window, or it is counted as idle and the difference means nothing.
        time.sleep(settle)
        pid = server.pid
        ramp = n / rate
        call_s = ramp + hold
        out: dict = {"tree": tree, "n": n, "startup_s": round(startup, 1)}
        for phase in ("idle", "calls"):
            _ctl("-z", str(pid))  # zero the counters
            _ctl("-i", "on", str(pid))
            t0 = time.monotonic()
            if phase == "calls":
                sipp_port, media_port = sl.free_udp_port(), sl.free_udp_port_block(4)
                sipp = sl.start(["sipp", f"127.0.0.1:{sip_port}", "-sf", str(sl.SCENARIO), "-s", "12319",
                                 "-key", "caller", "13800138000", "-key", "pcap", str(pcap),
                                 "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(sipp_port),
                                 "-mp", str(media_port), "-r", str(rate), "-m", str(n), "-l", str(n),
                                 "-d", str(int(call_s * 1000)), "-nostdin", "-aa",
                                 "-recv_timeout", "60000", "-timeout", f"{int(call_s + 300)}s",
                                 "-trace_stat", "-stf", "stats.csv", "-fd", "1"],
                                cwd=rnd, log=rnd / "sipp.log")
                code = sipp.wait(timeout=call_s + 400)
                out["sipp_exit"] = code
                out["sipp"] = sl.sipp_stats(rnd)
            else:
                time.sleep(call_s + 2)
            seconds = time.monotonic() - t0
            _ctl("-i", "off", str(pid))
            before = _count(rnd, pid)
            _ctl("-d", str(pid))
            deadline = time.monotonic() + 60
            while _count(rnd, pid) == before and time.monotonic() < deadline:
                time.sleep(0.5)
            out[f"{phase}_instructions"] = _count(rnd, pid) - before
            out[f"{phase}_seconds"] = round(seconds, 1)
        idle_rate = out["idle_instructions"] / out["idle_seconds"]
        net = out["calls_instructions"] - idle_rate * out["calls_seconds"]
        out["call_seconds"] = round(n * call_s, 1)
        out["instructions_per_call_s"] = round(net / (n * call_s))
        return out
    finally:
        sl.stop(server, grace=20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", required=True, help="source tree (repeat: A/B)")
    ap.add_argument("--env", action="append", default=[], metavar="I:KEY=VALUE",
                    help="environment for the I-th --tree only (0-based), e.g. 1:HOTLINE_RTPIO=pure")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--hold", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--settle", type=float, default=60.0, help="seconds after start-up before measuring")
    ap.add_argument("--prompts", default=None, help="copy built prompts from DIR instead of building them")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("needs valgrind (callgrind_control)", file=sys.stderr)
        return 2
    envs: dict[int, dict] = {}
    for spec in args.env:
        i, kv = spec.split(":", 1)
        k, v = kv.split("=", 1)
        envs.setdefault(int(i), {})[k] = v
    work = Path(tempfile.mkdtemp(prefix="hotline-instr-"))
    (work / "recordings").mkdir()
    load_before = os.getloadavg()
    doc: dict = {"n": args.n, "hold_s": args.hold, "rate_cps": args.rate, "trees": args.tree,
                 "env": {str(k): v for k, v in envs.items()}, "loadavg_before": load_before, "rounds": []}
    try:
        for i, tree in enumerate(dict.fromkeys(args.tree)):
            cfg = sl.write_hotline_config(work, sl.free_udp_port(), sl.free_tcp_port(), sl.RTP_RANGES["hotline"],
                                          code_root=tree)
            cmd, env = sl.hotline_cmd(tree)
            if i == 0:
                if args.prompts:
                    shutil.copytree(args.prompts, work / "prompts")
                else:
                    subprocess.run([*cmd, "prompts", "build", "--config", str(cfg)], cwd=work, check=True,
                                   capture_output=True, timeout=900, env=env)
            subprocess.run([*cmd, "demo", "seed", "--config", str(cfg)], cwd=work, check=True,
                           capture_output=True, timeout=600, env=env)
        pcap = work / "speech.pcap"
        sl.build_speech_pcap(pcap, args.n / args.rate + args.hold + 2)
        for _ in range(args.repeat):
            for i, tree in enumerate(args.tree):
                r = one(tree, args.n, args.hold, args.rate, work, pcap, envs.get(i, {}), args.settle)
                r["index"] = i
                doc["rounds"].append(r)
                print(f"[instr] {i} {tree}: {r.get('instructions_per_call_s')} instr/call-s "
                      f"(sipp exit {r.get('sipp_exit')})", file=sys.stderr, flush=True)
        per = {}
        for i in range(len(args.tree)):
            vals = [r["instructions_per_call_s"] for r in doc["rounds"] if r["index"] == i]
            per[str(i)] = {"tree": args.tree[i], "median": statistics.median(vals), "all": vals}
        doc["summary"] = per
        if len(per) >= 2:
            doc["ratio_0_over_1"] = round(per["0"]["median"] / per["1"]["median"], 3)
    finally:
        sl.stop_all()
        doc["loadavg_after"] = os.getloadavg()
        if args.keep:
            doc["work_dir"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

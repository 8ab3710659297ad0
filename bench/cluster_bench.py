"""Cluster benchmark (issue 17): calls through Kamailio over two nodes vs one node direct, in
the same run, and the time from kill -9 of a node to the first new call the survivor answers.

    .venv/bin/python bench/cluster_bench.py [--rates 10,20,40] [--seconds 10] [--hold 4]
        [--kill-calls 20] [--prompts DIR]

Everything on 127.0.0.1, on a fresh PostgreSQL database at 127.0.0.1:5432 (dropped after):

1. `direct`: one plain `hotline serve` (no [cluster]) on the same database; sipp offers
   `rate` calls/s for `seconds` s, each held `hold` s (bench/sipp/load_call.xml: the IVR's
   welcome plays, the caller talks, hangs up).
2. `cluster`: the same load at Kamailio's port, in front of two nodes (callcenter.cluster.runner).
   Per rate and target: calls offered, answered, failed, setup time (INVITE → 200) median
   and p95, and answered calls/s over the offer window.
3. `fanout`: `--fanout-events` cases created one at a time through node-2's API; when
   `case_created` reaches an admin's websocket on node-2 (local) and on node-1 (through
   PostgreSQL NOTIFY/LISTEN), from the POST's start — the path a screen pop takes to a
   browser on another node.
4. `kill`: with the cluster idle, node-1 is killed with SIGKILL at t0; then one call at a
   time (each a separate sipp, hold 0.3 s) until `kill_calls` calls: when each was sent
   and answered after t0, and its setup time. Kamailio's round robin sends some of the
   first calls to the dead node: they wait for its fr_timer (FR_MS, 2 s) and go on to the
   survivor (failover); once the OPTIONS probe (every PING_S, 1 s) marks the node down,
   none do. Reported: first call answered after t0, the slowest setup among the calls, and
   when Kamailio logged the node down.

Prints one JSON document (stdout). Not a test. The figures are in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callcenter.cluster.runner import HOTLINE, Cluster, _toml  # noqa: E402
from tests.conftest import fresh_pg_database  # noqa: E402
from tests.e2e.peers.pcap import build_rtp_pcap, speech_pcm  # noqa: E402
from tests.e2e.peers.ports import free_tcp_port, free_udp_port, free_udp_port_block  # noqa: E402

SCENARIO = ROOT / "bench" / "sipp" / "load_call.xml"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))], 1)


def setup_times(work: Path) -> list[float]:
    out = []
    for p in work.glob("*_rtt.csv"):
        for line in p.read_text().splitlines():
            parts = line.strip().split(";")
            if len(parts) >= 3 and parts[2] == "setup":
                try:
                    out.append(float(parts[1]))
                except ValueError:
                    pass
    return out


def sipp_counts(stdout: str) -> dict:
    def pick(name: str) -> int:
        m = re.search(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", stdout)
        return int(m.group(1)) if m else 0

    return {"answered": pick("Successful call"), "failed": pick("Failed call")}


def run_load(target: tuple[str, int], pcap: Path, rate: int, seconds: int, hold: float) -> dict:
    n = rate * seconds
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as work:
        cmd = ["sipp", f"{target[0]}:{target[1]}", "-sf", str(SCENARIO), "-s", "12319",
               "-key", "caller", "13800138000", "-key", "pcap", str(pcap),
               "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_udp_port()),
               "-mp", str(free_udp_port_block(4)), "-r", str(rate), "-m", str(n), "-l", str(n),
               "-d", str(int(hold * 1000)), "-nostdin", "-aa", "-recv_timeout", "15000",
               "-timeout", f"{int(seconds + hold + 60)}s", "-trace_rtt", "-rtt_freq", "1",
               "-trace_err", "-error_file", "errors.log"]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=seconds + hold + 120)
        elapsed = time.monotonic() - t0
        times = setup_times(Path(work))
        counts = sipp_counts(proc.stdout)
        errors = Path(work, "errors.log").read_text(errors="replace") if Path(work, "errors.log").exists() else ""
    # Why calls failed, as sipp put it (first few distinct reasons).
    reasons = sorted({re.sub(r"\d+", "N", line.strip())[:160] for line in errors.splitlines()
                      if "Aborting" in line or "unexpected" in line.lower() or "timeout" in line.lower()})[:5]
    return {"rate": rate, "offered": n, **counts, "failure_reasons": reasons, "setup_ms_median": pct(times, 50), "setup_ms_p95": pct(times, 95),
            "answered_per_s": round(counts["answered"] / seconds, 2), "elapsed_s": round(elapsed, 1)}


def one_call(target: tuple[str, int], pcap: Path, caller: str) -> tuple[bool, float | None]:
    with tempfile.TemporaryDirectory(prefix="cluster-kill-") as work:
        cmd = ["sipp", f"{target[0]}:{target[1]}", "-sf", str(SCENARIO), "-s", "12319",
               "-key", "caller", caller, "-key", "pcap", str(pcap),
               "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_udp_port()),
               "-mp", str(free_udp_port_block(4)), "-m", "1", "-l", "1", "-d", "300", "-nostdin", "-aa",
               "-recv_timeout", "15000", "-timeout", "30s", "-trace_rtt", "-rtt_freq", "1"]
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=60)
        times = setup_times(Path(work))
    return proc.returncode == 0, (times[0] if times else None)


def fanout_latency(cluster, token: str, events: int) -> dict:
    """Cases created through node-2's API, one at a time: when `case_created` reaches an admin's
    websocket on node-2 (local hub) and on node-1 (NOTIFY → LISTEN → hub), from the POST's start.
    The screen pop takes the same path (hub.publish on the node that rings the agent)."""
    import asyncio

    import aiohttp

    async def run() -> dict:
        headers = {"Authorization": f"Bearer {token}"}
        arrivals: dict[str, dict[int, float]] = {"local": {}, "remote": {}}
        async with aiohttp.ClientSession(headers=headers) as session:
            async def listen(url: str, sink: dict[int, float]) -> None:
                async with session.ws_connect(url) as ws:
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            data = json.loads(msg.data)
                            if data.get("type") == "case_created":
                                sink[data["id"]] = time.monotonic()

            ws_of = lambda node: node.web_url.replace("http", "ws") + "ws"  # noqa: E731
            tasks = [asyncio.ensure_future(listen(ws_of(cluster.nodes[1]), arrivals["local"])),
                     asyncio.ensure_future(listen(ws_of(cluster.nodes[0]), arrivals["remote"]))]
            await asyncio.sleep(1.0)
            sent: dict[int, float] = {}
            for i in range(events):
                t = time.monotonic()
                async with session.post(cluster.nodes[1].web_url + "api/cases",
                                        json={"description": f"示范路井盖缺失 压测 {i}", "channel": "12319",
                                              "reporter_phone": "13800000000"}) as resp:
                    body = await resp.json()
                sent[body["id"]] = t
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)
            for task in tasks:
                task.cancel()
        local = [1000 * (arrivals["local"][k] - t) for k, t in sent.items() if k in arrivals["local"]]
        remote = [1000 * (arrivals["remote"][k] - t) for k, t in sent.items() if k in arrivals["remote"]]
        hop = [1000 * (arrivals["remote"][k] - arrivals["local"][k]) for k in sent
               if k in arrivals["remote"] and k in arrivals["local"]]
        return {"events": len(sent), "local_received": len(local), "remote_received": len(remote),
                "local_ms_median": pct(local, 50), "local_ms_p95": pct(local, 95),
                "remote_ms_median": pct(remote, 50), "remote_ms_p95": pct(remote, 95),
                "extra_hop_ms_median": pct(hop, 50), "extra_hop_ms_p95": pct(hop, 95)}

    return asyncio.run(run())


def start_direct(tmp: Path, db_url: str, prompts: Path) -> tuple[subprocess.Popen, int]:
    sip, web, rtp = free_udp_port(), free_tcp_port(), free_udp_port_block(8)
    cfg = tmp / "direct.toml"
    cfg.write_text(_toml({
        "sip": {"host": "127.0.0.1", "port": sip, "allow": ["127.0.0.1/32"], "tcp": False},
        "rtp": {"host": "127.0.0.1", "port_min": 30000, "port_max": 30599},
        "web": {"host": "127.0.0.1", "port": web},
        "database": {"url": db_url},
        "storage": {"dir": str(tmp / "direct-recordings")},
        "prompts": {"dir": str(prompts)},
        "stt": {"enabled": False},
        "admission": {"max_calls": 500, "max_calls_per_source": 400},
    }), encoding="utf-8")
    proc = subprocess.Popen([*HOTLINE, "serve", "--config", str(cfg)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    import urllib.request

    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{web}/healthz", timeout=1):
                return proc, sip
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the direct node did not start")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="10,20,40")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--hold", type=float, default=4.0)
    p.add_argument("--kill-calls", type=int, default=20)
    p.add_argument("--fanout-events", type=int, default=50, help="cases created on node-2, seen on both nodes")
    p.add_argument("--prompts", default=str(ROOT / "var" / "prompts"))
    args = p.parse_args()
    prompts = Path(args.prompts)
    rates = [int(r) for r in args.rates.split(",")]
    out: dict = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
                 "cpus": os.cpu_count(), "load_before": os.getloadavg(), "rates": rates, "seconds": args.seconds,
                 "hold_s": args.hold, "direct": [], "cluster": []}
    tmp = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    pcap = tmp / "talk.pcap"
    build_rtp_pcap(pcap, pcm_8k_mono=speech_pcm("aishell1_BAC009S0002W0122.wav")[: 8000 * 2 * 3],
                   codec="PCMU", payload_type=0, dtmf=[])
    with fresh_pg_database() as db_url:
        ports = [(free_udp_port(), free_tcp_port(), 31000 + 600 * i) for i in range(2)]
        cluster = Cluster(tmp / "cluster", db_url, ports, sip_port=free_udp_port(), prompts_dir=prompts,
                          rtp_ports=600, seed_city=False,
                          extra={"stt": {"enabled": False}, "sip": {"tcp": False}})
        cluster.start()
        direct, direct_port = start_direct(tmp, db_url, prompts)
        try:
            time.sleep(3)
            for rate in rates:  # interleaved, so both see the same background load
                out["direct"].append(run_load(("127.0.0.1", direct_port), pcap, rate, args.seconds, args.hold))
                time.sleep(args.hold + 2)
                out["cluster"].append(run_load(("127.0.0.1", cluster.sip_port), pcap, rate, args.seconds, args.hold))
                time.sleep(args.hold + 2)
                print(json.dumps({"rate": rate, "direct": out["direct"][-1], "cluster": out["cluster"][-1]}),
                      file=sys.stderr, flush=True)
            if args.fanout_events:
                token = subprocess.run([*HOTLINE, "token", "create", "admin", "--config", str(cluster.nodes[0].config)],
                                       cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
                out["fanout"] = fanout_latency(cluster, token, args.fanout_events)
                print(json.dumps({"fanout": out["fanout"]}), file=sys.stderr, flush=True)
            # -- kill -9 one node, then call one at a time
            mark = len(cluster.kamailio_output)
            t0 = time.monotonic()
            cluster.kill_node(cluster.nodes[0])
            calls = []
            for i in range(args.kill_calls):
                sent = time.monotonic() - t0
                ok, setup_ms = one_call(("127.0.0.1", cluster.sip_port), pcap, f"1390000{i:04d}")
                calls.append({"sent_s": round(sent, 2), "answered": ok, "setup_ms": setup_ms,
                              "answered_s": round(sent + (setup_ms or 0) / 1000, 2) if ok else None})
            down_logged = any("hotline node down" in line for line in cluster.kamailio_output[mark:])
            answered = [c for c in calls if c["answered"]]
            out["kill"] = {
                "calls": calls,
                "first_answered_s": answered[0]["answered_s"] if answered else None,
                "answered": len(answered), "offered": len(calls),
                "slowest_setup_ms": max((c["setup_ms"] or 0) for c in answered) if answered else None,
                "failovers": sum(1 for c in answered if (c["setup_ms"] or 0) > 1000),
                "kamailio_logged_node_down": down_logged,
            }
        finally:
            os.killpg(direct.pid, 15)
            direct.wait(timeout=30)
            cluster.stop()
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

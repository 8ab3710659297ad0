"""RTP engine A/B benchmark: the Twisted RTP driver + media sessions + a recording mixer,
with real loopback sockets, without SIP — CPU cost per frame of this tree against another.

A load process sends N streams of 50 packets/s (PCMU, 160 bytes) from one socket to N
engine ports (as sipp does); the engine (asyncio reactor, `RtpEngine`) plays a prompt on
every session, records both directions through a `StereoMixer` like the call controller
does, and reports after a warm-up: CPU seconds of the engine process per frame sent (the
figure that survives a shared machine: it does not depend on how much CPU the process
got), the tick's lateness (p50/p99 of fire time − scheduled time), frames skipped, and
packets received. Rounds alternate between the trees (`--base-root`) so both see the same
machine; medians over `--repeat` rounds.

    .venv/bin/python bench/rtp_engine.py --n 600 --seconds 8 --repeat 3 --base-root DIR [--pin]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT_MIN = 23000


def serve(n: int, seconds: float, warmup: float) -> None:
    """The engine side (run in a child process; prints one JSON line)."""
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import reactor

    import numpy as np

    from callcenter.media.recorder import StereoMixer
    from callcenter.media.session import AudioReceived, AudioSent, MediaSession
    from callcenter.twisted_rtp import RtpEngine

    engine = RtpEngine(reactor, host="127.0.0.1", port_min=PORT_MIN, port_max=PORT_MIN + n - 1)
    prompt = np.random.default_rng(0).integers(-8000, 8000, 8000 * 120).astype("<i2").tobytes()
    received = [0]
    late: list[float] = []

    def listener_for(mixer: StereoMixer, pending: bytearray):
        def on_events(events) -> None:
            for ev in events:
                if type(ev) is AudioSent:
                    mixer.add_agent(ev.pcm)
                    pending.extend(mixer.tick())
                    if len(pending) > 64000:
                        pending.clear()
                elif type(ev) is AudioReceived:
                    received[0] += 1
                    mixer.add_caller(ev.pcm)
        return on_events

    for i in range(n):
        s = MediaSession(codec="PCMU", payload_type=0, dtmf_payload_type=101,
                         remote=("127.0.0.1", 9), ssrc=i, initial_sequence=i,
                         initial_timestamp=0, record_sent=True)
        s.play(prompt, "p")
        engine.open(s, listener_for(StereoMixer(), bytearray()))

    orig_fire = engine._fire

    def fire() -> None:
        if engine._t0 is not None:
            late.append(reactor.seconds() - (engine._t0 + engine._n * 0.02))
        orig_fire()

    engine._fire = fire
    print("ready", flush=True)
    state = {}

    def start() -> None:
        late.clear()
        state.update(cpu=time.process_time(), wall=time.monotonic(), ticks=engine.ticks,
                     skipped=engine.frames_skipped, rx=received[0],
                     sent=sum(leg.sent for leg in engine.legs.values()))

    def finish() -> None:
        cpu = time.process_time() - state["cpu"]
        wall = time.monotonic() - state["wall"]
        sent = sum(leg.sent for leg in engine.legs.values()) - state["sent"]
        lat = sorted(late)
        q = lambda p: round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None  # noqa: E731
        print(json.dumps({
            "n": n, "wall_s": round(wall, 2), "cpu_pct": round(100 * cpu / wall, 1),
            "cpu_us_per_frame": round(1e6 * cpu / max(1, sent), 2),
            "frames_sent": sent, "frames_due": int(n * wall / 0.02),
            "frames_skipped": engine.frames_skipped - state["skipped"],
            "packets_received": received[0] - state["rx"],
            "tick_late_ms": {"p50": q(0.5), "p99": q(0.99), "max": round(1000 * lat[-1], 3) if lat else None},
        }), flush=True)
        engine.stop()
        reactor.stop()

    reactor.callLater(warmup, start)
    reactor.callLater(warmup + seconds, finish)
    reactor.run()


def load(n: int, seconds: float) -> None:
    """The peer side: n streams of 50 packets/s from one socket, drift-corrected."""
    import struct

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    payload = bytes(160)
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < seconds:
        header = struct.Struct("!BBHII")
        for i in range(n):
            try:
                sock.sendto(header.pack(0x80, 0, k & 0xFFFF, k * 160, 7000 + i) + payload,
                            ("127.0.0.1", PORT_MIN + i))
            except OSError:
                pass
        k += 1
        delay = t0 + k * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _pin(cmd: list, cpus: str | None) -> list:
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def one_round(tree: str | None, args) -> dict:
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    srv = subprocess.Popen(_pin([sys.executable, __file__, "--serve", "--n", str(args.n),
                                 "--seconds", str(args.seconds), "--warmup", str(args.warmup)],
                                args.server_cpus),
                           env=env, stdout=subprocess.PIPE, text=True, cwd="/tmp",
                           preexec_fn=lambda: resource.setrlimit(
                               resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2))
    gen = None
    try:
        if srv.stdout.readline().strip() != "ready":
            raise RuntimeError("engine did not start")
        gen = subprocess.Popen(_pin([sys.executable, __file__, "--load", "--n", str(args.n),
                                     "--seconds", str(args.warmup + args.seconds + 2)], args.load_cpus))
        line = srv.stdout.readline()
        srv.wait(timeout=30)
        return json.loads(line)
    finally:
        for p in (gen, srv):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--base-root", default=None, help="baseline source tree (PYTHONPATH)")
    ap.add_argument("--pin", action="store_true", help="engine on CPU 1, load on CPU 0")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.n, args.seconds, args.warmup)
    if args.load:
        return load(args.n, args.seconds)
    args.server_cpus, args.load_cpus = ("1", "0") if args.pin else (None, None)
    trees = {"this": str(ROOT)}
    if args.base_root:
        trees["base"] = args.base_root
    rounds: dict[str, list[dict]] = {k: [] for k in trees}
    for _ in range(args.repeat):
        for name, tree in trees.items():
            r = one_round(tree, args)
            rounds[name].append(r)
            print(f"[rtp_engine] {name}: {r}", file=sys.stderr, flush=True)
    med = lambda name, f: statistics.median(f(r) for r in rounds[name])  # noqa: E731
    summary = {name: {"cpu_us_per_frame_median": med(name, lambda r: r["cpu_us_per_frame"]),
                      "cpu_pct_median": med(name, lambda r: r["cpu_pct"]),
                      "tick_late_p99_ms_median": med(name, lambda r: r["tick_late_ms"]["p99"]),
                      "frames_skipped_median": med(name, lambda r: r["frames_skipped"])}
               for name in trees}
    if "base" in summary:
        summary["cpu_per_frame_this_over_base"] = round(
            summary["this"]["cpu_us_per_frame_median"] / summary["base"]["cpu_us_per_frame_median"], 3)
    print(json.dumps({"n": args.n, "seconds": args.seconds, "pinned": args.pin,
                      "loadavg": os.getloadavg(), "summary": summary, "rounds": rounds}, indent=1))


if __name__ == "__main__":
    main()

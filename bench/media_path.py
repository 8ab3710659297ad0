"""CPU and memory of the whole per-call media path, in simulated time: this tree against another.

Each round builds N calls the way the hotline does (an `RtpEngine` leg on a real loopback
UDP port, a `MediaSession` playing the 12319 welcome + menu prompt built afresh per call, the
real `callcenter.calls.Call` listener recording both directions to a stereo WAV through the
router's writer thread), then runs T ticks without waiting for the clock: per tick a load
socket in the same process sends every leg one 20 ms PCMU packet, the engine reads them
(`_read_all`), sends every leg's frame (`_tick_all`) and the router's scheduled work runs.
Only the engine's work is timed (the load socket's sends and drains are not):
`cpu_us_per_call_s` is the process CPU (main thread in the engine phases + the recording
thread) per call per simulated second. CPU time, not wall time, so a busy machine changes
it far less than it changes latency; rounds alternate between the trees.
`rss_mb_per_call`: RSS growth from before the calls to after their set-up and first
second; `rss_mb_after_calls` / `rss_mb_after_trim`: RSS once they are gone, collected, and
with the heap trimmed as the GC pacer does after calls. Prints JSON.

    .venv/bin/python bench/media_path.py --n 1000 --ticks 500 --repeat 3 --base-root DIR [--pin]
    .venv/bin/python bench/media_path.py --root A --base-root A --base-env HOTLINE_RTPIO=pure  # C helper vs pure
    .venv/bin/python bench/media_path.py --syscalls      # the kernel's floor per datagram
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT_MIN = 22000


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(n: int, ticks: int, port_min: int = PORT_MIN) -> dict:
    """One round in this process with whatever `callcenter` is on sys.path."""
    import gc
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    import numpy as np
    from twisted.internet.task import Clock

    from callcenter import calls
    from callcenter.media.recorder import StereoMixer
    from callcenter.media.session import MediaSession
    from callcenter.media.wav import WavWriter
    from callcenter.twisted_rtp import RtpEngine

    class Reactor(Clock):
        """task.Clock that binds real UDP ports (the engine takes their sockets over)."""

        def listenUDP(self, port, protocol, interface=""):
            from twisted.internet import reactor

            return reactor.listenUDP(port, protocol, interface=interface)

    rng = np.random.default_rng(1)
    welcome = rng.integers(-9000, 9000, 8000 * 5).astype("<i2").tobytes()
    menu = rng.integers(-9000, 9000, 8000 * 9).astype("<i2").tobytes()
    clock = Reactor()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recordings")
    workdir = Path(tempfile.mkdtemp(prefix="media-path-"))
    engine = RtpEngine(clock, host="127.0.0.1", port_min=port_min, port_max=port_min + n - 1)
    router = SimpleNamespace(clock=clock, executor=executor, _flushes=[], _synced_at={})
    router.flush = lambda rec: calls.CallRouter.flush(router, rec)
    router._write_flushes = lambda: calls.CallRouter._write_flushes(router)
    load = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    load.bind(("127.0.0.1", 0))
    load.setblocking(False)
    load.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    gc.collect()
    rss0 = _rss_mb()
    call_objs = []
    for i in range(n):
        session = MediaSession(codec="PCMU", payload_type=0, dtmf_payload_type=101,
                               remote=load.getsockname(), ssrc=i, initial_sequence=i,
                               initial_timestamp=0, record_sent=True)
        session.play(b"".join((welcome, menu)), "main")  # a fresh join per call, as prompts.sequence
        call = calls.Call.__new__(calls.Call)
        call.router, call.live, call.agent, call.msg_rec, call.monitors = router, None, None, None, []
        call.consult, call.mixer = None, StereoMixer()
        call.call_rec = calls._Recording(recording_id=None, pending=bytearray(),
                                         writer=WavWriter(workdir / f"{i}.wav", channels=2))
        engine.open(session, call.media_events)
        call_objs.append(call)
    header = bytes([0x80, 0])
    payload = bytes(range(160))
    ports = [("127.0.0.1", port_min + i) for i in range(n)]

    def send_load(k: int) -> None:
        for i, addr in enumerate(ports):
            load.sendto(header + (k & 0xFFFF).to_bytes(2, "big") + (k * 160).to_bytes(4, "big")
                        + (9000 + i).to_bytes(4, "big") + payload, addr)

    def drain_load() -> None:
        try:
            while True:
                load.recv(2048)
        except BlockingIOError:
            pass

    engine_cpu = 0.0
    main_cpu = 0.0
    process0 = time.process_time()
    thread0 = time.thread_time()
    rss1 = None
    for k in range(ticks):
        now = k * 0.02
        t = time.thread_time()
        send_load(k)
        drain_load()
        t2 = time.thread_time()
        engine._read_all(now + 0.01)
        engine._tick_all(now + 0.02)
        clock.advance(0)
        engine_cpu += time.thread_time() - t2
        if k == 50:
            gc.collect()
            rss1 = _rss_mb()
    main_cpu = time.thread_time() - thread0
    executor.shutdown(wait=True)
    writer_cpu = max(0.0, (time.process_time() - process0) - main_cpu)
    received = sum(leg.session.packets_received for leg in engine.legs.values())
    sent = sum(leg.session.packets_sent for leg in engine.legs.values())
    engine.stop()
    for c in call_objs:
        c.call_rec.writer.close()
    wav_bytes = sum(p.stat().st_size for p in workdir.iterdir())
    for p in workdir.iterdir():
        p.unlink()
    workdir.rmdir()
    # Memory once the calls are gone: collected, then with the heap trimmed as the GC pacer
    # does when the media tick stops (callcenter.gc_pacer).
    del call_objs, engine, router
    gc.collect()
    rss_after = _rss_mb()
    trim = getattr(__import__("ctypes").CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)
    rss_trimmed = _rss_mb()
    seconds = ticks * 0.02
    return {
        "n": n, "ticks": ticks,
        "cpu_us_per_call_s": round(1e6 * (engine_cpu + writer_cpu) / (n * seconds), 1),
        "writer_thread_cpu_s": round(writer_cpu, 3),
        "packets_received": received, "packets_sent": sent, "wav_mb": round(wav_bytes / 2**20, 1),
        "rss_mb_per_call": round((rss1 - rss0) / n, 4) if rss1 is not None else None,
        "rss_mb_before_calls": round(rss0, 1), "rss_mb_after_calls": round(rss_after, 1),
        "rss_mb_after_trim": round(rss_trimmed, 1),
    }


def syscalls(count: int = 20000, repeat: int = 3) -> dict:
    """The kernel's floor: CPU µs of one loopback `sendto` and one `recvfrom` of an RTP-sized
    datagram from Python, alone (best of `repeat`)."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    b.setblocking(False)
    addr, datagram = b.getsockname(), bytes(172)
    send_us, recv_us = [], []
    for _ in range(repeat):
        t = time.thread_time()
        for _ in range(count):
            a.sendto(datagram, addr)
        send_us.append(1e6 * (time.thread_time() - t) / count)
        t, got = time.thread_time(), 0
        try:
            while True:
                b.recvfrom(2048)
                got += 1
        except BlockingIOError:
            pass
        recv_us.append(1e6 * (time.thread_time() - t) / max(1, got))
    a.close()
    b.close()
    return {"sendto_us": round(min(send_us), 2), "recvfrom_us": round(min(recv_us), 2)}


def one_round(tree: str, args, extra_env: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, **(extra_env or {}))
    cmd = [sys.executable, __file__, "--child", "--n", str(args.n), "--ticks", str(args.ticks),
           "--port-min", str(args.port_min)]
    if args.pin:
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, env=env, cwd="/tmp", capture_output=True, text=True, timeout=900,
                         preexec_fn=lambda: resource.setrlimit(
                             resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2))
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--base-root", default=None, help="baseline source tree (PYTHONPATH)")
    ap.add_argument("--root", default=str(ROOT), help="the tree under test (default: this one)")
    ap.add_argument("--base-env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment of the base rounds only (e.g. HOTLINE_RTPIO=pure: the same tree "
                         "without the C helper)")
    ap.add_argument("--pin", action="store_true", help="run each round on CPU 1")
    ap.add_argument("--port-min", type=int, default=PORT_MIN, help="first of the N engine ports")
    ap.add_argument("--syscalls", action="store_true",
                    help="only the CPU cost of one loopback sendto and recvfrom (the floor)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.syscalls:
        print(json.dumps({**syscalls(), "loadavg": os.getloadavg()}))
        return
    if args.child:
        sys.path.insert(0, os.environ.get("PYTHONPATH", str(ROOT)))
        print(json.dumps(run(args.n, args.ticks, args.port_min)))
        return
    trees = {"this": args.root}
    if args.base_root:
        trees["base"] = args.base_root
    rounds: dict[str, list[dict]] = {k: [] for k in trees}
    load_before = os.getloadavg()
    for _ in range(args.repeat):
        for name, tree in trees.items():
            r = one_round(tree, args, dict(kv.split("=", 1) for kv in args.base_env) if name == "base" else None)
            rounds[name].append(r)
            print(f"[media_path] {name}: {r}", file=sys.stderr, flush=True)
    summary = {name: {key: statistics.median(r[key] for r in rounds[name])
                      for key in ("cpu_us_per_call_s", "rss_mb_per_call", "writer_thread_cpu_s",
                                  "rss_mb_before_calls", "rss_mb_after_calls", "rss_mb_after_trim")
                      if all(key in r for r in rounds[name])}
               for name in trees}
    if "base" in summary:
        summary["cpu_this_over_base"] = round(
            summary["this"]["cpu_us_per_call_s"] / summary["base"]["cpu_us_per_call_s"], 3)
        summary["rss_this_over_base"] = round(
            summary["this"]["rss_mb_per_call"] / summary["base"]["rss_mb_per_call"], 3)
    print(json.dumps({"n": args.n, "ticks": args.ticks, "pinned": args.pin,
                      "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                      "summary": summary, "rounds": rounds}, indent=1))


if __name__ == "__main__":
    main()

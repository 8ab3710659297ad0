"""Microbenchmark of the pure media core: cost of MediaSession.tick and .receive.

Prints one JSON object. The baseline, measured in the same run, is what a
naive implementation pays per frame: pure-Python per-sample µ-law encoding
plus a header pack. Not a test; numbers depend on the machine and its load.

    .venv/bin/python bench/media_core.py [--sessions 500] [--ticks 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import struct
import time

import numpy as np

from callcenter.media import g711
from callcenter.media.rtp import RtpPacket
from callcenter.media.session import MediaSession


def _naive_ulaw(sample: int) -> int:
    # Classic per-sample Sun/CCITT µ-law encoder, as many pure-Python stacks do it.
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _naive_frame(pcm: bytes, seq: int, ts: int) -> bytes:
    samples = struct.unpack("<160h", pcm)
    payload = bytes(_naive_ulaw(s) for s in samples)
    return struct.pack("!BBHII", 0x80, 0, seq, ts, 1) + payload


def _sessions(n: int, prompt: bytes) -> list[MediaSession]:
    out = []
    for i in range(n):
        s = MediaSession(codec="PCMA" if i % 2 else "PCMU", payload_type=8 if i % 2 else 0,
                         dtmf_payload_type=101, remote=("127.0.0.1", 20000 + i), ssrc=i,
                         initial_sequence=i, initial_timestamp=i * 7, inband_dtmf=(i % 10 == 0))
        if i % 3 == 0:
            s.play(prompt, f"prompt-{i}")
        out.append(s)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--ticks", type=int, default=100)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    prompt = rng.integers(-8000, 8000, 8000 * 60).astype("<i2").tobytes()
    frame = rng.integers(-8000, 8000, 160).astype("<i2").tobytes()
    sessions = _sessions(args.sessions, prompt)
    bridged = [s for i, s in enumerate(sessions) if i % 3 == 1]
    incoming = [RtpPacket(8 if i % 2 else 0, 0, 0, 999, g711.encoder("PCMA" if i % 2 else "PCMU")(frame))
                for i in range(args.sessions)]

    tick_ns = receive_ns = 0
    sent = 0
    for t in range(args.ticks):
        now = t * 0.02
        for s in bridged:
            s.feed_bridge(frame)
        start = time.perf_counter_ns()
        for s in sessions:
            datagram, _ = s.tick(now)
            sent += datagram is not None
        tick_ns += time.perf_counter_ns() - start
        datagrams = [
            RtpPacket(p.payload_type, t & 0xFFFF, t * 160, p.ssrc, p.payload).serialize() for p in incoming
        ]
        start = time.perf_counter_ns()
        for s, d in zip(sessions, datagrams):
            s.receive(d, s.remote, now)
        receive_ns += time.perf_counter_ns() - start

    calls = args.sessions * args.ticks
    naive_frames = min(2000, calls)
    start = time.perf_counter_ns()
    for i in range(naive_frames):
        _naive_frame(frame, i & 0xFFFF, i * 160)
    naive_ns = time.perf_counter_ns() - start

    tick_us = tick_ns / calls / 1000
    receive_us = receive_ns / calls / 1000
    naive_us = naive_ns / naive_frames / 1000
    print(json.dumps({
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sessions": args.sessions,
        "ticks": args.ticks,
        "packets_sent": sent,
        "tick_us_per_session": round(tick_us, 2),
        "receive_us_per_packet": round(receive_us, 2),
        "naive_python_frame_us": round(naive_us, 2),
        "speedup_tick_vs_naive": round(naive_us / tick_us, 1),
        "core_share_of_20ms_at_sessions": round(args.sessions * (tick_us + receive_us) / 20000, 3),
    }, indent=2))


if __name__ == "__main__":
    main()

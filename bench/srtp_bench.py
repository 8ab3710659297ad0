"""What SRTP (libsrtp via pylibsrtp, AES_CM_128_HMAC_SHA1_80) adds to a call leg's media work.

Per 20 ms frame, for `--sessions` legs: MediaSession.tick (build and encode the frame we send)
and MediaSession.receive (a packet in), once plain and once through SrtpSession (protect on
send, unprotect on receive), in the same run and interleaved rounds. Prints one JSON object
with the medians over rounds of µs per frame, the ratio SRTP/plain, and the share of one CPU
that SRTP's extra work takes at `--sessions` legs. Not a test; numbers depend on machine load.

    .venv/bin/python bench/srtp_bench.py [--sessions 200] [--ticks 50] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

from callcenter.media import g711
from callcenter.media.rtp import RtpPacket
from callcenter.media.session import MediaSession
from callcenter.media.srtp import SrtpContext, SrtpSession


def _session(i: int) -> MediaSession:
    return MediaSession(codec="PCMA", payload_type=8, dtmf_payload_type=101, remote=("127.0.0.1", 20000 + i),
                        ssrc=i, initial_sequence=i, initial_timestamp=i * 7)


def _round(sessions, incoming, frame: bytes, ticks: int, t0: int, peer_tx) -> tuple[float, float]:
    """µs per frame of tick and of receive over `ticks` frames of every session."""
    tick_ns = receive_ns = 0
    for t in range(t0, t0 + ticks):
        now = t * 0.02
        for s in sessions:
            s.feed_bridge(frame)
        start = time.perf_counter_ns()
        for s in sessions:
            s.tick(now)
        tick_ns += time.perf_counter_ns() - start
        packets = [RtpPacket(8, t & 0xFFFF, t * 160, 5000 + i, incoming).serialize() for i in range(len(sessions))]
        if peer_tx is not None:
            packets = [tx.protect(p) for tx, p in zip(peer_tx, packets)]
        start = time.perf_counter_ns()
        for s, d in zip(sessions, packets):
            s.receive(d, s.remote, now)
        receive_ns += time.perf_counter_ns() - start
    frames = len(sessions) * ticks
    return tick_ns / frames / 1000, receive_ns / frames / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    frame = rng.integers(-8000, 8000, 160).astype("<i2").tobytes()
    incoming = g711.encoder("PCMA")(frame)
    n = args.sessions
    plain = [_session(i) for i in range(n)]
    keys = [(bytes([i % 256]) * 30, bytes([(i + 1) % 256]) * 30) for i in range(n)]
    secured = [SrtpSession(_session(i), SrtpContext(ours, theirs)) for i, (ours, theirs) in enumerate(keys)]
    # The far ends: they encrypt with their key what our legs decrypt.
    peers = [SrtpContext(theirs, ours) for ours, theirs in keys]

    results = {"plain": [], "srtp": []}
    t = 0
    for _ in range(args.rounds):
        results["plain"].append(_round(plain, incoming, frame, args.ticks, t, None))
        results["srtp"].append(_round(secured, incoming, frame, args.ticks, t, peers))
        t += args.ticks
    rejected = sum(s.context.rejected for s in secured)

    def median(kind: str, i: int) -> float:
        return statistics.median(r[i] for r in results[kind])

    plain_tick, plain_rx = median("plain", 0), median("plain", 1)
    srtp_tick, srtp_rx = median("srtp", 0), median("srtp", 1)
    extra_us = (srtp_tick - plain_tick) + (srtp_rx - plain_rx)
    print(json.dumps({
        "python": platform.python_version(),
        "sessions": n,
        "ticks_per_round": args.ticks,
        "rounds": args.rounds,
        "srtp_packets_rejected": rejected,
        "plain_tick_us": round(plain_tick, 2),
        "srtp_tick_us": round(srtp_tick, 2),
        "plain_receive_us": round(plain_rx, 2),
        "srtp_receive_us": round(srtp_rx, 2),
        "ratio_tick": round(srtp_tick / plain_tick, 2),
        "ratio_receive": round(srtp_rx / plain_rx, 2),
        "srtp_extra_us_per_frame_both_ways": round(extra_us, 2),
        "srtp_extra_cpu_share_at_sessions": round(n * extra_us / 20000, 4),
    }, indent=2))


if __name__ == "__main__":
    main()

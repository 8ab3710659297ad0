"""Timestamp the RTP a server sends, without being in its path: a loopback packet tap.

Why a tap and not a socket the SDP points at: the hotline latches onto the source of the
caller's RTP (symmetric RTP), and sipp's play_pcap_audio sends every call's audio from one
media port, so the server's audio goes wherever sipp's audio comes from, never to a probe
named in the SDP. A tap sees it wherever it goes.

How: one AF_PACKET socket on ``lo`` with a classic BPF filter run in the kernel. It keeps
only the IPv4/UDP packets whose *source* port lies in the server's
RTP port range and whose ``(port - port_min) % sample`` is 0, truncated to the IP+UDP+RTP
headers. Each packet carries the kernel's timestamp (SO_TIMESTAMPNS), taken when ``lo``
hands the packet to the receive path inside the server's ``sendto`` — the send time, untouched by how fast this process,
sipp or the scheduler read it. So the probe's own speed cannot distort the gaps; it can
only drop packets when its buffer overflows, and it reports the kernel's drop counter
(``tap_drops``) so a probe bottleneck would show, not pass for server loss.

Sampling: the hotline hands out RTP ports one after another from port_min, so
``--sample 8`` follows every 8th call; pyVoIP picks ports at random, so it follows a random
eighth. Needs root (CAP_NET_RAW). Run it as a process of its own:

    python bench/rtp_probe.py --ports 30000-31999 --sample 4 --out tap.npz
    (prints "ready" once the filter is attached; SIGTERM/SIGINT stops it and writes --out)

``analyze(path)`` turns the file into the jitter/loss/drift figures.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import selectors
import signal
import socket
import struct
import sys
import time

import numpy as np

ETH_P_IP = 0x0800
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_HOST = 0
SKF_AD_PKTTYPE = 0xFFFFF000 + 4
FRAME_MS = 20.0
SNAP = 20 + 8 + 12  # IPv4 (no options) + UDP + RTP fixed header


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8),
                ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


# classic BPF opcodes
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_LD_H_IND = 0x48
_LDX_B_MSH = 0xB1
_JEQ_K, _JGE_K, _JGT_K = 0x15, 0x35, 0x25
_ALU_SUB_K, _ALU_MOD_K = 0x14, 0x94
_RET_K = 0x06


def bpf_program(port_min: int, port_max: int, sample: int) -> list[tuple[int, int, int, int]]:
    """The filter: outgoing IPv4/UDP, source port in [port_min, port_max], every sample-th
    port. Offsets are from the IP header (SOCK_DGRAM packet socket)."""
    # (code, jt, jf, k); jumps are relative to the next instruction.
    prog = [
        (_LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),      # 0 A = pkttype
        (_JEQ_K, 0, 9, PACKET_HOST),             # 1 the copy lo delivers to the receiver
        (_LD_B_ABS, 0, 0, 9),                    # 2 A = IP protocol
        (_JEQ_K, 0, 7, 17),                      # 3 UDP
        (_LDX_B_MSH, 0, 0, 0),                   # 4 X = IP header length
        (_LD_H_IND, 0, 0, 0),                    # 5 A = UDP source port
        (_JGE_K, 0, 4, port_min),                # 6
        (_JGT_K, 3, 0, port_max),                # 7
        (_ALU_SUB_K, 0, 0, port_min),            # 8
        (_ALU_MOD_K, 0, 0, max(1, sample)),      # 9
        (_JEQ_K, 1, 0, 0),                       # 10 every sample-th port
        (_RET_K, 0, 0, 0),                       # 11 drop
        (_RET_K, 0, 0, SNAP),                    # 12 keep the headers only
    ]
    return prog


def _attach(sock: socket.socket, prog) -> None:
    arr = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), ctypes.cast(arr, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    # setsockopt copies the program; keep arr alive until then
    del arr


def open_tap(port_min: int, port_max: int, sample: int, iface: str = "lo") -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 * 1024 * 1024)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024 * 1024)
    _attach(sock, bpf_program(port_min, port_max, sample))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((iface, ETH_P_IP))
    sock.setblocking(False)
    # drop what slipped in before the filter was attached
    try:
        while True:
            sock.recv(65536)
    except BlockingIOError:
        pass
    _stats(sock)  # reading the statistics resets them
    return sock


def _stats(sock: socket.socket) -> tuple[int, int]:
    raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    packets, drops = struct.unpack("II", raw)
    return packets, drops


def capture(port_min: int, port_max: int, sample: int, out: str,
            duration: float | None = None) -> dict:
    """Capture until SIGTERM/SIGINT (or duration seconds), then save arrays to out (.npz):
    port, ssrc, seq, rtp_ts, t_ns (kernel time, CLOCK_REALTIME ns)."""
    sock = open_tap(port_min, port_max, sample)
    stop = False

    def _stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ports, ssrcs, seqs, tss, times = [], [], [], [], []
    unpack_ts = struct.Struct("qq").unpack
    unpack_udp = struct.Struct("!H").unpack_from
    unpack_rtp = struct.Struct("!HII").unpack_from
    anc = socket.CMSG_SPACE(16)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    print("ready", flush=True)
    deadline = time.monotonic() + duration if duration else math.inf
    tap_packets = tap_drops = 0
    while not stop and time.monotonic() < deadline:
        sel.select(0.2)
        while True:
            try:
                data, ancdata, _, _ = sock.recvmsg(SNAP, anc)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if len(data) < SNAP or not ancdata:
                continue
            ihl = (data[0] & 0x0F) * 4
            if len(data) < ihl + 8 + 12:
                continue
            sec, nsec = unpack_ts(ancdata[0][2][:16])
            ports.append(unpack_udp(data, ihl)[0])
            seq, ts, ssrc = unpack_rtp(data, ihl + 8 + 2)
            seqs.append(seq)
            tss.append(ts)
            ssrcs.append(ssrc)
            times.append(sec * 1_000_000_000 + nsec)
        p, d = _stats(sock)
        tap_packets += p
        tap_drops += d
    p, d = _stats(sock)
    tap_packets += p
    tap_drops += d
    sock.close()
    np.savez(out, port=np.array(ports, dtype=np.uint16), ssrc=np.array(ssrcs, dtype=np.uint32),
             seq=np.array(seqs, dtype=np.uint16), rtp_ts=np.array(tss, dtype=np.uint32),
             t_ns=np.array(times, dtype=np.int64),
             meta=np.array(json.dumps({"tap_packets": tap_packets, "tap_drops": tap_drops,
                                       "sample": sample, "ports": [port_min, port_max]})))
    return {"packets": len(times), "tap_drops": tap_drops}


def _unwrap16(seq: np.ndarray) -> np.ndarray:
    d = np.diff(seq.astype(np.int64))
    d = (d + 32768) % 65536 - 32768
    return np.concatenate([[int(seq[0])], int(seq[0]) + np.cumsum(d)])


def analyze(path: str, min_packets: int = 50) -> dict:
    """Figures over every sampled stream (one per server port and SSRC):

    jitter_ms: |gap between consecutive packets - 20 ms|, pooled over all streams (p50,
    p99, max); loss_pct: sequence numbers missing between the first and last packet;
    drift_pct: send rate vs 50 packets/s, from the least-squares slope of send time over
    sequence number (skipped frames count as late): negative = falls behind real time;
    count_drift_pct: packets received vs due at 50/s over the span (first to last packet,
    ±1 packet of edge error, ~0.1 % on a 20 s stream);
    rtp_clock_drift_pct: the RTP timestamp's advance vs the wall clock over the span.
    """
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    port, ssrc, seq, t_ns = z["port"], z["ssrc"], z["seq"], z["t_ns"]
    rtp_ts = z["rtp_ts"]
    key = port.astype(np.uint64) << np.uint64(32) | ssrc.astype(np.uint64)
    gaps, per_stream_p99, spans, periods = [], [], [], []
    received = expected_seq = expected_time = 0
    rtp_span = wall_span = 0.0
    streams = 0
    for k in np.unique(key):
        idx = np.nonzero(key == k)[0]
        if len(idx) < min_packets:  # a stray or a stream cut by the capture window
            continue
        idx = idx[np.argsort(t_ns[idx], kind="stable")]
        t = t_ns[idx] / 1e6
        s = _unwrap16(seq[idx])
        if s.max() == s.min():  # one sequence number repeated (a stray resend): no stream to fit
            continue
        g = np.abs(np.diff(t) - FRAME_MS)
        gaps.append(g)
        per_stream_p99.append(float(np.percentile(g, 99)))
        streams += 1
        received += len(np.unique(s))
        expected_seq += int(s.max() - s.min() + 1)
        span = t[-1] - t[0]
        spans.append(span / 1000)
        expected_time += span / FRAME_MS + 1
        # send period: least-squares slope of send time over sequence number
        periods.append((float(np.polyfit(s - s[0], t - t[0], 1)[0]), len(idx)))
        ts = rtp_ts[idx].astype(np.int64)
        dts = (np.diff(ts) + 2**31) % 2**32 - 2**31
        rtp_span += float(dts.sum()) / 8.0  # ms at 8 kHz
        wall_span += span
    out = {"streams_sampled": streams, "sample_every": meta["sample"],
           "packets": int(received), "tap_drops": int(meta["tap_drops"])}
    if not streams:
        return out
    allg = np.concatenate(gaps)
    out.update({
        "jitter_ms": {"p50": round(float(np.percentile(allg, 50)), 3),
                      "p99": round(float(np.percentile(allg, 99)), 3),
                      "max": round(float(allg.max()), 1),
                      "gaps_over_40ms": int((allg > 20.0).sum()),
                      "worst_stream_p99": round(max(per_stream_p99), 3)},
        "loss_pct": round(100.0 * (expected_seq - received) / expected_seq, 4),
        "drift_pct": round(100.0 * (FRAME_MS * sum(w for _, w in periods)
                                    / sum(p * w for p, w in periods) - 1.0), 3),
        "count_drift_pct": round(100.0 * (received / expected_time - 1.0), 3),
        "rtp_clock_drift_pct": round(100.0 * (rtp_span / wall_span - 1.0), 3) if wall_span else None,
        "stream_span_s": {"min": round(min(spans), 2), "max": round(max(spans), 2)},
    })
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ports", required=True, help="server RTP source port range LO-HI")
    ap.add_argument("--sample", type=int, default=1, help="follow every k-th port (default 1: all)")
    ap.add_argument("--out", required=True, help="where to write the capture (.npz)")
    ap.add_argument("--duration", type=float, default=None, help="stop after seconds")
    ap.add_argument("--analyze", action="store_true", help="print the figures as JSON at the end")
    args = ap.parse_args(argv)
    lo, hi = (int(x) for x in args.ports.split("-"))
    summary = capture(lo, hi, args.sample, args.out, args.duration)
    print(json.dumps(analyze(args.out) if args.analyze else summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

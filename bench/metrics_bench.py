"""What the Prometheus metrics cost: scrape time, and the hot-path hooks against no hooks.

In one process, rounds alternating so both sides see the same machine:

* **media tick** — an `RtpEngine` on a fake reactor with `--legs` sessions playing a prompt
  (frames built and "sent" into memory), ticked `--ticks` times per round, with
  `on_lag = metrics.tick_lag.observe` (metrics) and without (baseline): µs per tick.
* **SIP datagram** — the real `SipEndpoint` + `UserAgent` answering OPTIONS (one datagram
  in, one out), with `on_message = metrics.sip_message` and without: µs per OPTIONS.
* **scrape** — `HotlineMetrics.exposition()` over a state like a busy centre (`--calls`
  calls, 50 agents, 3 queues, ~40 SIP label sets) and a SQLite database with `--cases`
  cases, as many SMS and a tenth as many callbacks: cache miss (the UNION query + render)
  and cache hit (render only), against the baseline of one `SELECT count(*) FROM cases`.

    .venv/bin/python bench/metrics_bench.py [--legs 200] [--ticks 500] [--rounds 5] [--cases 20000]

Prints one JSON document (medians over rounds). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 12, 7, 10, 0)


def media_engine(legs: int):
    from callcenter.media.session import MediaSession
    from callcenter.twisted_rtp import RtpEngine
    from tests.fakes import FakeReactor

    reactor = FakeReactor()
    engine = RtpEngine(reactor, host="127.0.0.1", port_min=30000, port_max=30000 + legs)
    prompt = random.Random(0).randbytes(8000 * 2 * 30)
    for i in range(legs):
        session = MediaSession(codec="PCMU", payload_type=0, dtmf_payload_type=101, remote=("127.0.0.1", 40000 + i),
                               ssrc=i + 1, initial_sequence=i, initial_timestamp=i * 7, record_sent=True)
        session.play(prompt, f"p{i}")
        engine.open(session, lambda events: None)
    return reactor, engine


def time_ticks(reactor, engine, ticks: int) -> float:
    """µs of CPU per 20 ms firing (all legs)."""
    ports = list(reactor.ports.values())
    started = time.process_time()
    for _ in range(ticks):
        reactor.advance(0.02)
        for p in ports:
            p.written.clear()
    return (time.process_time() - started) / ticks * 1e6


def sip_endpoint():
    from callcenter.sip.ua import UserAgent
    from callcenter.twisted_sip import SipEndpoint
    from tests.fakes import FakeReactor

    reactor = FakeReactor()
    ua = UserAgent(local_host="127.0.0.1", local_port=5060)
    endpoint = SipEndpoint(ua, reactor)
    reactor.listenUDP(5060, endpoint, interface="127.0.0.1")
    return reactor, endpoint


def options(i: int) -> bytes:
    return (f"OPTIONS sip:12319@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{i}\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={i}\r\nTo: <sip:12319@127.0.0.1>\r\nCall-ID: o{i}@bench\r\n"
            f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def time_sip(reactor, endpoint, messages: list[bytes]) -> float:
    """µs of CPU per OPTIONS (parse, transaction, 200 OK out)."""
    port = reactor.ports[5060]
    started = time.process_time()
    for data in messages:
        endpoint.datagramReceived(data, ("127.0.0.1", 5070))
    elapsed = time.process_time() - started
    port.written.clear()
    reactor.advance(40)  # let the server transactions expire (timer J) between rounds
    return elapsed / len(messages) * 1e6


def busy_sources(calls: int):
    """Router, ACD, RTP engine and STT pool as a busy centre has them."""
    agents = {f"agent{i}": SimpleNamespace(status=("on_call", "ready", "wrap_up", "paused")[i % 4])
              for i in range(50)}
    entries = {f"c{i}": SimpleNamespace(queue=f"q{i % 3}", status="waiting" if i % 5 else "callback",
                                        joined_at=NOW - timedelta(seconds=i)) for i in range(100)}
    acd = SimpleNamespace(state=SimpleNamespace(config=SimpleNamespace(queues={"q0": 0, "q1": 0, "q2": 0}),
                                                entries=entries, agents=agents), now=lambda: NOW)
    router = SimpleNamespace(calls={f"c{i}": SimpleNamespace(did="12319") for i in range(calls)},
                             callbacks={}, rejected=3)
    rtp = SimpleNamespace(legs=dict.fromkeys(range(calls * 2)), frames_skipped=0)
    return SimpleNamespace(router=router, acd=acd, rtp=rtp,
                           stt_status=lambda: {"queued": 12, "running": 1, "completed": 500, "paused": True})


async def fill_database(url: str, n_cases: int) -> None:
    from sqlalchemy import insert

    from callcenter.callbacks.dialer import callbacks_table
    from callcenter.notify.outbox import sms_outbox
    from case_core.adapters import migrate
    from case_core.adapters.orm import cases
    from case_core.adapters.sqlalchemy_repo import make_engine, sync_url

    migrate.upgrade(sync_url(url))
    engine = make_engine(url)
    statuses = ("accepted", "registered", "dispatched", "processing", "checking", "closed", "closed", "closed")
    rng = random.Random(1)
    async with engine.begin() as conn:
        await conn.execute(insert(cases), [
            {"number": f"20261207-{i:06d}", "channel": "12319", "kind": "report", "case_type": "normal",
             "status": statuses[i % len(statuses)], "description": "", "address": "", "created_at": NOW,
             "updated_at": NOW, "version": 1, "state_json": "{}",
             "due_at": NOW + timedelta(hours=rng.randint(-48, 48)) if i % 8 < 5 else None}
            for i in range(n_cases)])
        await conn.execute(insert(sms_outbox), [
            {"dedupe_key": f"k{i}", "to_number": "13800000000", "template": "accepted", "event": "CaseAccepted",
             "text": "x", "encoding": "gsm7", "parts": 1, "status": ("sent", "delivered", "queued")[i % 3],
             "attempts": 1, "next_attempt_at": NOW, "created_at": NOW, "updated_at": NOW, "dlr_token": "t"}
            for i in range(n_cases)])
        await conn.execute(insert(callbacks_table), [
            {"id": f"cb{i}", "kind": "follow_up", "number": "13800000000", "status": ("pending", "answered")[i % 2],
             "due_at": NOW + timedelta(minutes=rng.randint(-600, 600)), "created_at": NOW, "updated_at": NOW}
            for i in range(n_cases // 10)])
    await engine.dispose()


async def scrape_figures(url: str, calls: int, rounds: int, reps: int) -> dict:
    from sqlalchemy import text

    from callcenter.metrics import HotlineMetrics, sip_start_line  # noqa: F401
    from case_core.adapters.sqlalchemy_repo import make_engine

    engine = make_engine(url)
    clock = [0.0]
    m = HotlineMetrics(busy_sources(calls), node="bench", engine=engine, now_dt=lambda: NOW, db_ttl_s=5.0,
                       clock=lambda: clock[0])
    for method in ("INVITE", "ACK", "BYE", "OPTIONS", "REGISTER", "CANCEL", "INFO"):
        for status in ("", "100", "180", "200", "401", "486", "487"):
            m.sip_messages[("in", method, status)] = 1000
            m.sip_messages[("out", method, status)] = 1000
    for v in range(5000):
        m.tick_lag.observe(v * 1e-6)
        m.loop_lag.observe(v * 1e-6)
    miss, hit, base, size = [], [], [], 0
    for _ in range(rounds):
        for _ in range(reps):
            clock[0] += 10  # cache expired: query + render
            t = time.perf_counter()
            body = await m.exposition()
            miss.append(time.perf_counter() - t)
            size = len(body)
            t = time.perf_counter()
            await m.exposition()  # within cache_s: render only
            hit.append(time.perf_counter() - t)
            t = time.perf_counter()
            async with engine.connect() as conn:
                (await conn.execute(text("select count(*) from cases"))).scalar()
            base.append(time.perf_counter() - t)
    await engine.dispose()
    ms = lambda xs: round(statistics.median(xs) * 1e3, 3)  # noqa: E731
    p95 = lambda xs: round(sorted(xs)[int(len(xs) * 0.95) - 1] * 1e3, 3)  # noqa: E731
    return {"scrape_db_miss_ms_p50": ms(miss), "scrape_db_miss_ms_p95": p95(miss),
            "scrape_cached_ms_p50": ms(hit), "scrape_cached_ms_p95": p95(hit),
            "baseline_count_cases_ms_p50": ms(base), "exposition_bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--sip", type=int, default=2000, help="OPTIONS per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    from callcenter.metrics import HotlineMetrics

    metrics = HotlineMetrics(SimpleNamespace(), node="bench")
    reactor, engine = media_engine(args.legs)
    time_ticks(reactor, engine, 50)  # warm-up
    tick_base, tick_metrics = [], []
    for _ in range(args.rounds):
        engine.on_lag = None
        tick_base.append(time_ticks(reactor, engine, args.ticks))
        engine.on_lag = metrics.tick_lag.observe
        tick_metrics.append(time_ticks(reactor, engine, args.ticks))

    sip_reactor, endpoint = sip_endpoint()
    sip_base, sip_metrics = [], []
    seq = 0
    for r in range(args.rounds + 1):
        for hook, sink in ((None, sip_base), (metrics.sip_message, sip_metrics)):
            endpoint.on_message = hook
            batch = [options(seq + i) for i in range(args.sip)]
            seq += args.sip
            figure = time_sip(sip_reactor, endpoint, batch)
            if r:  # round 0 warms up
                sink.append(figure)

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(fill_database(url, args.cases))
        scrape = asyncio.run(scrape_figures(url, args.calls, args.rounds, 10))

    # The hooks alone (best of 5 timeit runs): what each firing / datagram pays.
    import timeit

    invite = options(0).replace(b"OPTIONS", b"INVITE")
    response = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    probe = HotlineMetrics(SimpleNamespace(), node="bench")
    hook_ns = {name: round(min(timeit.repeat(fn, number=100000, repeat=5)) / 100000 * 1e9, 1) for name, fn in (
        ("tick_lag_observe", lambda: probe.tick_lag.observe(0.0007)),
        ("sip_message_request", lambda: probe.sip_message(invite, "in")),
        ("sip_message_response", lambda: probe.sip_message(response, "out")),
    )}
    med = lambda xs: round(statistics.median(xs), 2)  # noqa: E731
    out = {
        "params": vars(args),
        "media_tick_us": {"baseline": med(tick_base), "metrics": med(tick_metrics),
                          "overhead_us": round(med(tick_metrics) - med(tick_base), 2),
                          "overhead_pct": round(100 * (med(tick_metrics) - med(tick_base)) / med(tick_base), 2)},
        "sip_options_us": {"baseline": med(sip_base), "metrics": med(sip_metrics),
                           "overhead_us": round(med(sip_metrics) - med(sip_base), 2),
                           "overhead_pct": round(100 * (med(sip_metrics) - med(sip_base)) / med(sip_base), 2)},
        "hook_ns": hook_ns,
        "scrape": scrape,
        "tick_lag_observations": metrics.tick_lag.count,
        "sip_messages_counted": sum(metrics.sip_messages.values()),
        "load": os.getloadavg(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

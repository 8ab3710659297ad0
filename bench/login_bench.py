"""Web logins (issue 14, point 7): what a password check costs the event loop, and whether the
answer time tells known user names from unknown ones.

Two ways of checking a login, in one run on the same SQLite database:
- `on_loop` (the baseline, the code before issue 14): `SqlRepository.check_password`, scrypt run
  on the event loop, and no hashing at all for an unknown name;
- `executor` (now): `AuthStore.verify_login`, scrypt in its two-thread pool, a dummy hash for an
  unknown name.

For each it measures (1) the answer time of one login for a known name with a wrong password
and for an unknown name, sequentially (median over --n), and (2) the event loop's lateness
while --burst wrong logins are checked at once: a 20 ms ticker (as the media tick) records
how late each tick fires (p50, p99, max). Prints JSON.

    .venv/bin/python bench/login_bench.py [--n 40] [--burst 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from callcenter.cpus import background_thread  # noqa: E402
from case_core.adapters import migrate  # noqa: E402
from case_core.adapters.auth_store import AuthStore  # noqa: E402
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url  # noqa: E402

TICK_S = 0.020


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _answer_ms(check, name: str, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await check(name, "wrong-password")
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def _lateness_during(check, burst: int) -> dict:
    late: list[float] = []
    stop = asyncio.Event()

    async def ticker():
        next_at = time.perf_counter() + TICK_S
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            late.append((time.perf_counter() - next_at) * 1000)
            next_at += TICK_S

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.2)
    t0 = time.perf_counter()
    await asyncio.gather(*(check("admin", f"wrong-{i}") for i in range(burst)))
    elapsed = time.perf_counter() - t0
    stop.set()
    await task
    return {"tick_late_ms_p50": round(_pct(late, 0.5), 2), "tick_late_ms_p99": round(_pct(late, 0.99), 2),
            "tick_late_ms_max": round(max(late), 2), "burst_s": round(elapsed, 2)}


async def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        migrate.upgrade(sync_url(url))
        repo = SqlRepository(make_engine(url))
        await repo.create_user(username="admin", password="hotline12319", role="admin", now=datetime(2026, 12, 7))
        store = AuthStore(repo.engine, thread_initializer=background_thread)  # as `hotline serve` does
        ways = {"on_loop": repo.check_password, "executor": store.verify_login}
        out: dict = {"n": args.n, "burst": args.burst, "tick_ms": TICK_S * 1000}
        for name, check in ways.items():
            await check("admin", "warm-up")
            known = await _answer_ms(check, "admin", args.n)
            unknown = await _answer_ms(check, "no-such-user", args.n)
            out[name] = {"known_ms_median": round(known, 2), "unknown_ms_median": round(unknown, 2),
                         "known_over_unknown": round(known / unknown, 2) if unknown else None,
                         **await _lateness_during(check, args.burst)}
        store.executor.shutdown()
        await repo.close()
    out["tick_late_p99_ratio_on_loop_over_executor"] = round(
        out["on_loop"]["tick_late_ms_p99"] / max(out["executor"]["tick_late_ms_p99"], 0.01), 1)
    return out


if __name__ == "__main__":
    result = asyncio.run(main())
    print(json.dumps(result, indent=2))
    print(f"on loop: known {result['on_loop']['known_ms_median']} ms / unknown {result['on_loop']['unknown_ms_median']} ms, "
          f"tick p99 late {result['on_loop']['tick_late_ms_p99']} ms; executor: known "
          f"{result['executor']['known_ms_median']} / unknown {result['executor']['unknown_ms_median']} ms, "
          f"tick p99 late {result['executor']['tick_late_ms_p99']} ms", file=sys.stderr)

"""Event-loop lag while cases are saved with the largest description allowed (issue 14, point 9).

A 20 ms ticker (the media tick's period) runs on the loop and records how late each tick
fires. Meanwhile cases are saved the way `POST /api/cases` saves them: `create_case`, then
the duplicate check against every active case of the same category in the window, each
with a description of `MAX_DESCRIPTION` (4,000) characters. Scenarios, in one run:

- `idle`: the ticker alone (baseline);
- `before`: the duplicate check as it was (`--base-rev`'s duplicates.py, read with git show):
  on the loop, whole descriptions compared;
- `after_inline`: today's comparison (first `COMPARED_CHARS`, probe's bigrams counted once),
  but still on the loop;
- `after`: `CaseService.duplicates_for` as it is now (today's comparison in a worker thread);
- `huge_before`: one 1.9 MB description compared on the loop with one candidate, the old
  way, as the issue measured it (such a description is now refused by `create_case`:
  `huge_refused`).

Prints JSON: tick lateness p50/p99/max (ms) per scenario, save time per case, and the
ratios executor/inline. SQLite in a temporary folder; no network.

    .venv/bin/python bench/case_save_lag.py [--candidates 150] [--saves 20]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
import types
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from case_core.adapters import migrate  # noqa: E402
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url  # noqa: E402
from case_core.domain import duplicates  # noqa: E402
from case_core.domain.bounds import MAX_DESCRIPTION  # noqa: E402
from case_core.domain.duplicates import nearby_by_distance  # noqa: E402
from case_core.domain.workflow import InvalidField  # noqa: E402
from case_core.service import CaseService, _DupView  # noqa: E402

TICK_S = 0.020
NOW = datetime(2026, 11, 23, 10, 0)
WORDS = "长江路东段污水井盖缺失行人经过很危险请尽快处理路灯不亮垃圾满溢占道经营噪声扰民"


def text(seed: int, size: int) -> str:
    """A description of `size` characters that differs from case to case (no two alike)."""
    out = []
    i = seed
    while sum(len(p) for p in out) < size:
        out.append(WORDS[i % len(WORDS):] + str(i))
        i = i * 7 + 3
    return "".join(out)[:size]


class Ticker:
    """Records how late each 20 ms tick fires while `running`."""

    def __init__(self) -> None:
        self.late_ms: list[float] = []
        self.running = True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + TICK_S
        while self.running:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            self.late_ms.append((now - due) * 1000)
            due = max(due + TICK_S, now)  # a late tick does not make the next ones late too


def summary(late: list[float]) -> dict:
    s = sorted(late)
    pick = lambda q: round(s[min(len(s) - 1, int(q * len(s)))], 2) if s else None  # noqa: E731
    return {"ticks": len(s), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(s[-1], 2) if s else None}


BASE_REV = "9642e02"  # the tree before issue 14's bounds: case_core/domain/duplicates.py as it was


def old_duplicates(rev: str):
    """`case_core.domain.duplicates` as it was at `rev` (git show), loaded as its own module."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:case_core/domain/duplicates.py"],
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("duplicates_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:case_core/domain/duplicates.py", "exec"), module.__dict__)
    return module


async def inline_duplicates(service: CaseService, case_id: int, module=duplicates) -> int:
    """The duplicate check on the event loop, with `module`'s comparison."""
    repo = service.repo
    probe = await repo.get_case(case_id)
    category = f"{probe.category_kind}:{probe.category_code}" if probe.category_kind else None
    views = await repo.duplicate_candidates(category=category, created_at=probe.created_at, window_days=7.0,
                                            exclude_id=case_id)
    ref = await service.reference()
    found = module.suggest_duplicates(_DupView.of(probe), [_DupView.of(v) for v in views], window=timedelta(days=7),
                                      nearby=nearby_by_distance(ref.grid_cells.values()), limit=5)
    return len(found)


async def scenario(name: str, work) -> dict:
    ticker = Ticker()
    task = asyncio.ensure_future(ticker.run())
    await asyncio.sleep(0.2)  # warm
    ticker.late_ms.clear()
    started = time.perf_counter()
    per_save = await work()
    elapsed = time.perf_counter() - started
    ticker.running = False
    await task
    return {"name": name, **summary(ticker.late_ms), "elapsed_s": round(elapsed, 3), **per_save}


async def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=150, help="active cases of the same category in the window")
    ap.add_argument("--saves", type=int, default=20, help="cases saved per scenario")
    ap.add_argument("--idle-s", type=float, default=3.0)
    ap.add_argument("--base-rev", default=BASE_REV, help="git revision whose duplicate check is `before`")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="case_save_lag_"))
    url = f"sqlite+aiosqlite:///{tmp / 'h.db'}"
    migrate.upgrade(sync_url(url))
    repo = SqlRepository(make_engine(url))
    service = CaseService(repo)
    kw = dict(channel="12319", actor="agent1", role="agent", category="component:01002", address="长江路12号")
    for i in range(args.candidates):
        await service.create_case(description=text(i, MAX_DESCRIPTION), now=NOW - timedelta(minutes=i), **kw)

    async def saves(check, offset: int):
        times = []
        for i in range(args.saves):
            t0 = time.perf_counter()
            view = await service.create_case(description=text(10_000 + offset + i, MAX_DESCRIPTION), now=NOW, **kw)
            await check(view.id)
            times.append((time.perf_counter() - t0) * 1000)
        return {"save_ms_median": round(statistics.median(times), 1)}

    async def idle():
        await asyncio.sleep(args.idle_s)
        return {}

    before = old_duplicates(args.base_rev)
    results = [await scenario("idle", idle),
               await scenario("before", lambda: saves(lambda cid: inline_duplicates(service, cid, before), 0)),
               await scenario("after_inline", lambda: saves(lambda cid: inline_duplicates(service, cid), 500)),
               await scenario("after", lambda: saves(service.duplicates_for, 1000))]
    huge = "井" * 1_900_000
    try:
        await service.create_case(description=huge, now=NOW, **kw)
        refused = False
    except InvalidField:
        refused = True
    probe = await repo.get_case(1)

    async def huge_inline():
        t0 = time.perf_counter()
        big = dataclasses.replace(_DupView.of(probe), description=huge)
        views = await repo.duplicate_candidates(category="component:01002", created_at=NOW, window_days=7.0,
                                                exclude_id=1)
        before.suggest_duplicates(big, [_DupView.of(v) for v in views[:1]], window=timedelta(days=7), limit=5)
        return {"save_ms_median": round((time.perf_counter() - t0) * 1000, 1)}

    results.append(await scenario("huge_before", huge_inline))
    await repo.close()
    by = {r["name"]: r for r in results}
    ratio = {k: round(by["after"][k] / by["before"][k], 3) if by["before"][k] else None
             for k in ("p50_ms", "p99_ms", "max_ms", "save_ms_median")}
    return {"bench": "case_save_lag", "date": datetime.now().isoformat(timespec="seconds"),
            "candidates": args.candidates, "saves": args.saves, "max_description": MAX_DESCRIPTION,
            "scenarios": results, "after_over_before": ratio, "huge_refused": refused}


if __name__ == "__main__":
    out = asyncio.run(main())
    print(json.dumps(out, ensure_ascii=False, indent=1))
    for r in out["scenarios"]:
        print(f"{r['name']:>12}: tick late p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms",
              file=sys.stderr)

"""Benchmark of the case list's filters (web/case_list.py) on a generated SQLite database.

Bulk-loads ``--cases`` cases spread over ``--days`` days (random status, channel, category,
department; open cases have a step deadline in state_json and due_at), then times one page
(30 rows) of ids for each filter, median of ``--repeat`` runs:

* baseline — what /cases did before the filters: the newest 30 (``search_cases``);
* status, channel + date range, category, text, department sorted by deadline, a deep page;
* 超期 (SQL: due_at < now) and 黄灯 (needs the working calendar: the candidates' states are
  read and classified in Python — the expensive one).

Prints one JSON object. Not a test; numbers depend on the machine and its load.

    .venv/bin/python bench/case_list_bench.py [--cases 20000] [--days 365] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from case_core.adapters import migrate, orm  # noqa: E402
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url  # noqa: E402
from case_core.domain.calendar import WorkCalendar  # noqa: E402
from web.case_list import parse_query  # noqa: E402

STATUSES = ["accepted", "verifying", "registered", "dispatched", "handling", "checking", "closed", "followed_up"]
OPEN = {"accepted", "verifying", "registered", "dispatched", "handling", "checking"}
CHANNELS = ["12319", "96310", "inspector_app", "open311"]
CATEGORIES = [("component", "01002"), ("component", "03001"), ("matter", "01001"), ("matter", "02003")]
DEPARTMENTS = ["municipal", "lighting", "sanitation", "water", "gardens"]
WORDS = ["井盖", "路灯", "垃圾", "占道", "噪音", "积水", "绿化"]


def generate(url: str, n: int, days: int, now: datetime, seed: int = 7) -> None:
    rng = random.Random(seed)
    engine = create_engine(sync_url(url))
    start = now - timedelta(days=days)
    rows = []
    for i in range(n):
        created = start + timedelta(seconds=rng.uniform(0, days * 86400))
        status = rng.choice(STATUSES)
        kind, code = rng.choice(CATEGORIES)
        due = None
        state = {}
        if status in OPEN:
            began = max(created, now - timedelta(hours=rng.uniform(0, 72)))
            due = began + timedelta(hours=rng.choice([1, 4, 24, 72]))
            state = {"deadlines": {"handle": {"started_at": began.isoformat(), "due_at": due.isoformat()}}}
        rows.append({
            "number": f"{created:%Y%m%d}-{i:06d}", "channel": rng.choice(CHANNELS), "kind": "report",
            "case_type": "urgent" if rng.random() < 0.05 else "normal", "status": status,
            "reporter_phone": f"138{rng.randrange(10**8):08d}", "description": rng.choice(WORDS) + "问题",
            "address": f"{rng.choice(['长江路', '幸福路', '人民路'])}{rng.randrange(1, 200)}号",
            "category_kind": kind, "category_code": code, "department": rng.choice(DEPARTMENTS),
            "created_at": created, "updated_at": created, "version": 1, "state_json": json.dumps(state),
            "due_at": due,
        })
    with engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            conn.execute(insert(orm.cases), rows[i:i + 5000])
    engine.dispose()


async def measure(url: str, now: datetime, repeat: int) -> dict:
    repo = SqlRepository(make_engine(url))
    calendar = WorkCalendar()
    day = now.date()
    queries = {
        "status": {"status": "dispatched,handling"},
        "channel_and_month": {"channel": "12319", "from": str(day - timedelta(days=30)), "to": str(day)},
        "category": {"category": "component:01002"},
        "text": {"q": "井盖"},
        "department_by_deadline": {"department": "lighting", "sort": "due", "dir": "asc"},
        "page_100": {"page": "100"},
        "overdue": {"deadline": "overdue"},
        "yellow": {"deadline": "yellow"},
    }
    out: dict = {}

    async def timed(fn) -> tuple[float, object]:
        times, result = [], None
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = await fn()
            times.append((time.perf_counter() - t0) * 1000)
        return round(statistics.median(times), 2), result

    ms, found = await timed(lambda: repo.search_cases(limit=30, with_recordings=False))
    out["baseline_newest_30_ms"] = ms
    for name, params in queries.items():
        lq = parse_query(params)
        ms, (ids, total, page) = await timed(lambda: repo.case_page(lq, now, calendar))
        out[f"{name}_ms"] = ms
        out[f"{name}_total"] = total
    await repo.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    now = datetime(2026, 11, 23, 10, 0)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        migrate.upgrade(sync_url(url))
        t0 = time.perf_counter()
        generate(url, args.cases, args.days, now)
        load_s = time.perf_counter() - t0
        result = asyncio.run(measure(url, now, args.repeat))
    print(json.dumps({"bench": "case_list", "cases": args.cases, "days": args.days, "repeat": args.repeat,
                      "load_s": round(load_s, 1), "python": platform.python_version(),
                      "loadavg": os.getloadavg(), **result}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()

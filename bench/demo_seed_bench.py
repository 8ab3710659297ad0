"""How long `hotline demo seed --city` takes, first and second time, against one transaction per action.

    .venv/bin/python bench/demo_seed_bench.py [--repeat 3] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

For each database (SQLite in a temporary folder; PostgreSQL too with --pg, in a fresh
database dropped afterwards) and each round: migrate an empty database, time
`seed_city` (the staged play: every action through `CaseService` in memory, one bulk
write at the end — what the command does), time a second `seed_city` on the same database
(must add nothing), and as the baseline time the same plan with every action stored in its
own transaction as the running hotline does (`staged=False`). The staff's scrypt password
hashes (16 users) are inside both first-run figures. Prints one JSON document (medians).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from case_core import demo_city  # noqa: E402
from case_core.adapters import migrate  # noqa: E402
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url  # noqa: E402

NOW = datetime(2026, 12, 7, 16, 20)


async def _timed(url: str, **kw) -> tuple[float, dict]:
    repo = SqlRepository(make_engine(url))
    try:
        started = time.perf_counter()
        added = await demo_city.seed_city(repo, now=NOW, password="hotline12319", **kw)
        return time.perf_counter() - started, added
    finally:
        await repo.close()


def _fresh(kind: str, folder: Path, pg: str | None, made: list[str]) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}"
    import psycopg2

    name = f"hotline_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(pg)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    made.append(name)
    return f"{pg.rsplit('/', 1)[0]}/{name}"


def _drop(pg: str, names: list[str]) -> None:
    import psycopg2

    admin = psycopg2.connect(pg)
    admin.autocommit = True
    with admin.cursor() as cur:
        for name in names:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pg", help="PostgreSQL admin URL (also measure there)")
    args = ap.parse_args()
    out: dict = {"now": NOW.isoformat(), "repeat": args.repeat, "databases": {}}
    made: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ["sqlite"] + (["postgresql"] if args.pg else []):
                first, second, baseline, counts = [], [], [], {}
                for _ in range(args.repeat):
                    url = _fresh(kind, Path(tmp), args.pg, made)
                    migrate.upgrade(sync_url(url))
                    t, counts = asyncio.run(_timed(url))
                    first.append(t)
                    t, again = asyncio.run(_timed(url))
                    assert again["cases"] == 0 and again["users"] == 0, again
                    second.append(t)
                    url = _fresh(kind, Path(tmp), args.pg, made)
                    migrate.upgrade(sync_url(url))
                    t, base_counts = asyncio.run(_timed(url, staged=False))
                    assert base_counts == counts, (base_counts, counts)
                    baseline.append(t)
                out["databases"][kind] = {
                    "cases": counts["cases"], "actions": counts["actions"], "users": counts["users"],
                    "first_run_s": round(statistics.median(first), 2),
                    "second_run_s": round(statistics.median(second), 3),
                    "baseline_one_transaction_per_action_s": round(statistics.median(baseline), 2),
                    "rounds": {"first": [round(x, 2) for x in first], "second": [round(x, 3) for x in second],
                               "baseline": [round(x, 2) for x in baseline]},
                }
                print(f"{kind}: first {out['databases'][kind]['first_run_s']} s, second "
                      f"{out['databases'][kind]['second_run_s']} s, baseline "
                      f"{out['databases'][kind]['baseline_one_transaction_per_action_s']} s", file=sys.stderr)
    finally:
        if made:
            _drop(args.pg, made)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

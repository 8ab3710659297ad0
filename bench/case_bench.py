"""Benchmark of the case workflow store: a generated year of cases on SQLite and PostgreSQL.

Generates ``--cases`` cases spread over 2026 with full histories (verify, register,
dispatch, send-backs, rework, voids, follow-ups; the last weeks still open), through the
pure domain with deadlines from routing rules and the working calendar, bulk-loads
them, then measures on each database:

* transitions/s through ``CaseService.act`` (load, apply, versioned UPDATE, history,
  facts) — sequential, one client;
* a month's and the year's evaluation by department (whole days from the daily rollup
  case_fact_rollup), and the same figures aggregated over every row of case_facts (the
  SQL path before the rollup), checked equal;
* worklist queries (50 newest dispatched cases of a department, overdue, an
  inspector's checks, urgent open cases);

and, in the same run, a naive per-row baseline: evaluation by loading each case's
state and history row by row and calling ``evaluate`` in Python, and worklists by
reading every case of the status and filtering/sorting in Python (the year's naive
evaluation is timed on a sample and extrapolated; marked ``estimated``).

Prints one JSON object. Not a test; numbers depend on the machine and its load.

    .venv/bin/python bench/case_bench.py [--cases 20000] [--db sqlite,postgresql] [--days 365]

``--days 10 --cases 27400`` puts a 1,000,000-case year's daily load on 10 days: its
year evaluation times 36.5 (``evaluation_year_by_department_projected``) is what a full
year at that size would cost, where loading a million generated cases would take hours.
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
import uuid
import warnings
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text

from case_core.adapters import migrate, orm
from case_core.adapters.sqlalchemy_repo import (
    SqlRepository,
    _case_columns,
    _history_row,
    make_engine,
    rebuild_rollup,
    sync_url,
)
from case_core.domain import workflow
from case_core.domain.calendar import UncoveredYearWarning, WorkCalendar
from case_core.domain.categories import load_categories, DEFAULT_CATEGORIES_PATH
from case_core.domain.evaluation import evaluate, evaluate_counts, extract_facts
from case_core.domain.reference import RoutingRule, RoutingTable, parse_time_limit
from case_core.domain.workflow import CaseCommand, apply, new_case
from case_core.service import CaseService, ReferenceData

YEAR_START, YEAR_END = datetime(2026, 1, 1), datetime(2027, 1, 1)
# Cases are spread over [YEAR_START, SPAN_END): the whole year, or with --days the first days
# of it at the same cases per day as a bigger year (--cases 82000 --days 30: the daily load
# of a 1,000,000-case year, for a month).
SPAN_END = YEAR_END
SPEC = workflow.load_workflow_spec()
DEPARTMENTS = [f"dept{i:02d}" for i in range(1, 31)]
FOREVER = datetime(9999, 1, 1)


def _routing() -> RoutingTable:
    L = parse_time_limit
    return RoutingTable([
        RoutingRule(1, "", "", "", "", None, {"verify": L("2h"), "register": L("1h"), "dispatch": L("1h"),
                                              "handle": L("3d"), "check": L("4h"), "close": L("2h"),
                                              "case": L("5d")}),
        RoutingRule(2, "", "", "", "urgent", None, {"verify": L("30min"), "register": L("30min"),
                                                    "dispatch": L("30min"), "handle": L("4h"), "check": L("1h"),
                                                    "close": L("1h"), "case": L("1d")}),
        RoutingRule(3, "", "", "", "complex", None, {"handle": L("10d"), "case": L("15d")}),
    ])


class Generator:
    """A realistic year: mostly finished cases, some late, the last weeks still open."""

    def __init__(self, seed: int = 12319) -> None:
        self.rng = random.Random(seed)
        self.cal = WorkCalendar()
        self.routing = _routing()
        cats, _ = load_categories(DEFAULT_CATEGORIES_PATH)
        self.categories = [c.key for c in cats]
        self.cells = [f"320102{d:03d}{c:03d}{g:03d}" for d in range(1, 9) for c in range(1, 11) for g in range(1, 26)]
        self.inspectors = {cell: f"insp{(i // 10) + 1:03d}" for i, cell in enumerate(self.cells)}
        self.per_day: dict[str, int] = {}
        self.routes: dict[str, object] = {}

    def _number(self, t: datetime) -> str:
        key = t.strftime("%Y%m%d")
        self.per_day[key] = self.per_day.get(key, 0) + 1
        return f"{key}-{self.per_day[key]:04d}"

    def _do(self, state, action, actor, role, t, fields=None):
        fields = dict(fields or {})
        tr = SPEC.find(action, state.status)
        route = self.routes.get(state.case_type)
        if route is None:
            route = self.routes[state.case_type] = self.routing.route(None, None, None, state.case_type)
        allowed = set(tr.optional_fields) | set(tr.required_fields)
        for step in tr.starts:
            key = f"{step}_deadline"
            if key in allowed and key not in fields:
                due = route.deadline(step, self.cal, t)
                if due is not None and due > t:
                    fields[key] = due
        new, _ = apply(SPEC, state, CaseCommand(action, actor, role, fields), t)
        return new

    def case(self, created: datetime):
        rng = self.rng
        r = rng.random()
        channel = "12319" if r < 0.6 else "96310" if r < 0.8 else "inspector_app" if r < 0.95 else "website"
        kind = "consultation" if channel in ("12319", "96310") and rng.random() < 0.05 else "report"
        ctype = "urgent" if rng.random() < 0.03 else "complex" if rng.random() < 0.05 else "normal"
        cell = rng.choice(self.cells)
        inspector = self.inspectors[cell]
        state, _ = new_case(number=self._number(created), channel=channel, reporter_phone=f"139{rng.randrange(10**8):08d}",
                            description=rng.choice(["井盖缺失", "路灯不亮", "垃圾满溢", "占道经营", "道路破损"]) + f" {rng.randrange(1000)}号附近",
                            category=rng.choice(self.categories), address=f"长江路{rng.randrange(1, 500)}号",
                            now=created, kind=kind, case_type=ctype, grid_cell=cell, actor="agent01", role="agent")
        t = created
        # The year ends mid-flow for recent cases: stop at the snapshot moment.
        budget = 20 if (SPAN_END - created).days > 20 else rng.randrange(1, 10)
        steps = 0

        def step(action, actor, role, hours, fields=None):
            nonlocal state, t, steps
            t2 = t + timedelta(hours=hours)
            if t2 >= SPAN_END or steps >= budget:
                raise StopIteration
            state = self._do(state, action, actor, role, t2, fields)
            t = t2
            steps += 1

        try:
            if kind == "consultation":
                step("direct_answer", "agent01", "agent", 0.1, {"answer": "已答复"})
                if rng.random() < 0.5:
                    step("follow_up", "agent02", "agent", 24, {"satisfaction": "satisfied"})
                return state
            if channel not in workflow.VERIFY_EXEMPT_CHANNELS and ctype != "urgent":
                step("send_verify", "agent01", "agent", 0.1, {"inspector": inspector})
                step("verify", inspector, "inspector", rng.uniform(0.3, 3),
                     {"verify_result": "confirmed" if rng.random() < 0.95 else "not_confirmed"})
                if state.verify_result != "confirmed":
                    step("decline", "lead01", "shift_lead", 0.5, {"reason": "核实不属实"})
                    return state
            step("register", "lead01", "shift_lead", rng.uniform(0.1, 1.5))
            if rng.random() < 0.02:
                step("apply_void", "disp01", "dispatcher", 0.5, {"reason": "重复上报"})
                step("approve_void", "lead01", "shift_lead", 1, {})
                return state
            dept = rng.choice(DEPARTMENTS)
            step("dispatch", "disp01", "dispatcher", rng.uniform(0.1, 1.5), {"department": dept})
            if rng.random() < 0.05:
                step("apply_send_back", dept, "department", 2, {"reason": "不属于本单位"})
                step("approve_send_back", "disp01", "dispatcher", 1)
                dept = rng.choice(DEPARTMENTS)
                step("dispatch", "disp01", "dispatcher", 0.5, {"department": dept})
            for _round in range(3):
                step("handle", dept, "department", rng.uniform(0.5, 6))
                step("report_done", dept, "department", rng.uniform(4, 90), {"result": "已处置", "photos": ["p.jpg"]})
                passed = rng.random() < 0.92
                step("check", inspector, "inspector", rng.uniform(0.5, 6),
                     {"check_result": "passed" if passed else "failed"})
                if passed:
                    break
                step("rework", "lead01", "shift_lead", 0.5, {"reason": "处置不到位"})
                step("dispatch", "disp01", "dispatcher", 0.5, {"department": dept})
            if state.status != "checked":
                return state  # third rework still at the department
            step("close", "lead01", "shift_lead", rng.uniform(0.2, 3))
            if rng.random() < 0.8:
                sat = rng.choices(["satisfied", "basically_satisfied", "dissatisfied", "unreachable"], [70, 15, 5, 10])[0]
                step("follow_up", "agent02", "agent", rng.uniform(4, 48), {"satisfaction": sat})
                if rng.random() < 0.5:
                    step("evaluate", "sup01", "supervisor", 24)
        except StopIteration:
            pass
        return state


def generate(n: int) -> list:
    gen = Generator()
    span = (SPAN_END - YEAR_START).total_seconds()
    times = sorted(YEAR_START + timedelta(seconds=gen.rng.random() * span) for _ in range(n))
    return [gen.case(t.replace(microsecond=0)) for t in times]


def bulk_load(url: str, states: list) -> dict:
    engine = create_engine(sync_url(url))
    started = time.perf_counter()
    n_hist = n_facts = 0
    with engine.begin() as conn:
        batch_c, batch_h, batch_f = [], [], []
        for case_id, s in enumerate(states, start=1):
            batch_c.append({"id": case_id, "number": s.number, "channel": s.channel, "kind": s.kind, "call_id": None,
                            "created_at": s.created_at, **_case_columns(s, {})})
            batch_h += [_history_row(case_id, i, h) for i, h in enumerate(s.history, start=1)]
            for f in extract_facts(s, until=FOREVER):
                batch_f.append({"case_id": case_id, "kind": f.kind, "at": f.at, "role": f.role, "person": f.person,
                                "department": f.department, "grid_cell": f.grid_cell, "on_time": f.on_time,
                                "ok": f.ok, "flipped_at": f.flipped_at, "still_open": f.still_open})
            if len(batch_h) > 20000 or case_id == len(states):
                conn.execute(insert(orm.cases), batch_c)
                conn.execute(insert(orm.case_history), batch_h)
                if batch_f:
                    conn.execute(insert(orm.case_facts), batch_f)
                n_hist += len(batch_h)
                n_facts += len(batch_f)
                batch_c, batch_h, batch_f = [], [], []
        last: dict[str, int] = {}
        for st in states:
            day, seq = st.number.split("-")
            last[day] = max(last.get(day, 0), int(seq))
        conn.execute(insert(orm.case_number_seq), [{"day": d, "last_seq": n} for d, n in last.items()])
        rollup_started = time.perf_counter()
        rebuild_rollup(conn)
        rollup_s = time.perf_counter() - rollup_started
        if engine.dialect.name == "postgresql":
            for table in ("cases", "case_history", "case_facts"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT coalesce(max(id), 1) FROM {table}))"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
        n_rollup = conn.execute(text("SELECT count(*) FROM case_fact_rollup")).scalar_one()
    engine.dispose()
    return {"cases": len(states), "history_rows": n_hist, "fact_rows": n_facts, "rollup_rows": n_rollup,
            "rollup_build_s": round(rollup_s, 2), "load_s": round(time.perf_counter() - started, 2)}


def _timed(samples: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(samples) * 1000, 2), "max_ms": round(max(samples) * 1000, 2),
            "runs": len(samples)}


async def measure(url: str, states: list, transitions_cases: int, naive_sample: int) -> dict:
    repo = SqlRepository(make_engine(url))
    service = CaseService(repo, reference=ReferenceData(routing=_routing(), calendar=WorkCalendar()))
    out: dict = {}
    try:
        # -- evaluation by department (SQL) ------------------------------------------------
        month = ((datetime(2026, 6, 1), datetime(2026, 7, 1)) if SPAN_END >= datetime(2026, 7, 1)
                 else (YEAR_START, min(SPAN_END, YEAR_START + timedelta(days=30))))
        out["month"] = [month[0].date().isoformat(), month[1].date().isoformat()]
        for label, (start, end) in (("month", month), ("year", (YEAR_START, YEAR_END))):
            samples = []
            for _ in range(3):
                t0 = time.perf_counter()
                groups = await service.evaluate(start, end, group_by="department")
                samples.append(time.perf_counter() - t0)
            out[f"evaluation_{label}_by_department"] = {**_timed(samples), "groups": len(groups)}
            # The same figures from every fact in case_facts (the SQL path before the rollup).
            samples = []
            for _ in range(3):
                t0 = time.perf_counter()
                from_facts = evaluate_counts(await repo.evaluation_counts(start, end, "department", rollup=False))
                samples.append(time.perf_counter() - t0)
            out[f"evaluation_{label}_by_department_all_facts"] = {
                **_timed(samples), "same_figures_as_rollup": from_facts == {g.key: g.results for g in groups}}
        span_days = (SPAN_END - YEAR_START).days
        if span_days < 365:
            out["evaluation_year_by_department_projected"] = {
                "ms": round(out["evaluation_year_by_department"]["p50_ms"] * 365 / span_days, 1),
                "note": f"the year's p50 (all {span_days} days with cases) x 365/{span_days}: "
                        "a whole year at this many cases per day"}

        # -- naive baseline: every case's state loaded row by row, evaluate() in Python ------
        async with repo.engine.connect() as conn:
            month_ids = (await conn.execute(select(orm.cases.c.id).where(
                orm.cases.c.created_at >= month[0] - timedelta(days=30), orm.cases.c.created_at < month[1]))).scalars().all()
        t0 = time.perf_counter()
        loaded = [await repo.load_state(i) for i in month_ids]
        naive_month = evaluate(loaded, *month, group_by="department")
        naive_month_s = time.perf_counter() - t0
        sql_month = {g.key: g.results for g in await service.evaluate(*month, group_by="department")}
        out["naive_evaluation_month_by_department"] = {
            "ms": round(naive_month_s * 1000, 1), "cases_loaded": len(month_ids),
            "same_figures_as_sql": naive_month == sql_month}
        sample = list(range(1, min(naive_sample, len(states)) + 1))
        t0 = time.perf_counter()
        loaded = [await repo.load_state(i) for i in sample]
        evaluate(loaded, YEAR_START, YEAR_END, group_by="department")
        per_case = (time.perf_counter() - t0) / max(1, len(sample))
        out["naive_evaluation_year_by_department"] = {
            "ms": round(per_case * len(states) * 1000, 1), "estimated": True,
            "from_sample_cases": len(sample)}

        # -- worklists ---------------------------------------------------------------------------
        now = YEAR_END
        queries = {
            "dispatched_department_newest_50": dict(status="dispatched", department="dept07", limit=50),
            "handling_department_newest_50": dict(status="handling", department="dept07", limit=50),
            "overdue_newest_50": dict(overdue_at=now, limit=50),
            "checking_inspector_50": dict(status="checking", inspector="insp005", limit=50),
            "urgent_open_50": dict(status=("registered", "dispatched", "handling"), urgent=True, limit=50),
            "registered_oldest_first_50": dict(status="registered", limit=50, oldest_first=True),
        }
        worklists = {}
        for name, q in queries.items():
            samples = []
            for _ in range(15):
                t0 = time.perf_counter()
                rows = await service.search(**q)
                samples.append(time.perf_counter() - t0)
            worklists[name] = {**_timed(samples), "rows": len(rows)}
        out["worklists"] = worklists
        # Naive: all cases of the status read into Python, filtered and sorted there.
        samples = []
        for _ in range(3):
            t0 = time.perf_counter()
            async with repo.engine.connect() as conn:
                rows = (await conn.execute(select(orm.cases).where(orm.cases.c.status == "dispatched"))).all()
            picked = sorted((r for r in rows if r.department == "dept07"), key=lambda r: r.created_at,
                            reverse=True)[:50]
            samples.append(time.perf_counter() - t0)
        out["naive_worklist_dispatched_department"] = {**_timed(samples), "rows": len(picked),
                                                       "rows_scanned": len(rows)}
        t0 = time.perf_counter()
        await service.search(text="井盖缺失 42", limit=50)
        out["text_search_like_ms"] = round((time.perf_counter() - t0) * 1000, 1)

        # -- transitions through the service ----------------------------------------------------
        t = datetime(2026, 12, 31, 9, 0)
        ids = []
        for i in range(transitions_cases):
            v = await service.create_case(channel="inspector_app", description="井盖缺失", actor="insp001",
                                          role="inspector", now=t, grid_cell="320102001001001")
            ids.append(v.id)
        script = [("register", "lead01", "shift_lead", {}), ("dispatch", "disp01", "dispatcher", {"department": "dept07"}),
                  ("handle", "dept07", "department", {}),
                  ("report_done", "dept07", "department", {"result": "已处置", "photos": ["p.jpg"]}),
                  ("check", "insp001", "inspector", {"check_result": "passed"}), ("close", "lead01", "shift_lead", {})]
        count = 0
        t0 = time.perf_counter()
        for k, (action, actor, role, fields) in enumerate(script):
            for cid in ids:
                await service.act(cid, action, actor=actor, role=role, fields=fields,
                                  now=t + timedelta(minutes=10 * (k + 1)))
                count += 1
        elapsed = time.perf_counter() - t0
        out["transitions"] = {"count": count, "seconds": round(elapsed, 2), "per_second": round(count / elapsed, 1),
                              "note": "sequential CaseService.act incl. reading the case back for the response"}
        # Naive transition: the same act, but facts/history written row by row in separate statements
        # is what the repository avoids; measured instead as the act without the case read-back.
        t0 = time.perf_counter()
        n2 = 0
        for cid in ids[: max(1, len(ids) // 2)]:
            state = await repo.load_state(cid)
            new, _ = apply(SPEC, state, CaseCommand("follow_up", "agent02", "agent", {"satisfaction": "satisfied"}), t + timedelta(hours=2))
            await repo.save_states([(cid, state.version, new)])
            n2 += 1
        out["transitions_store_only_per_second"] = round(n2 / (time.perf_counter() - t0), 1)
    finally:
        await repo.close()
    return out


def _pg_database() -> tuple[str, callable]:
    import psycopg2

    admin_url = os.environ.get("HOTLINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"hotline_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return admin_url.rsplit("/", 1)[0] + "/" + name, drop


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20000, help="cases in the generated year (default 20000)")
    ap.add_argument("--db", default="sqlite,postgresql", help="comma list: sqlite, postgresql")
    ap.add_argument("--transition-cases", type=int, default=300, help="cases walked through 6 transitions each")
    ap.add_argument("--days", type=int, default=365,
                    help="spread the cases over the first DAYS days of the year (default 365)")
    ap.add_argument("--naive-sample", type=int, default=2000, help="cases loaded for the naive year estimate")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", UncoveredYearWarning)
    global SPAN_END
    SPAN_END = min(YEAR_END, YEAR_START + timedelta(days=args.days))

    t0 = time.perf_counter()
    states = generate(args.cases)
    gen_s = time.perf_counter() - t0
    statuses: dict[str, int] = {}
    for s in states:
        statuses[s.status] = statuses.get(s.status, 0) + 1
    report = {"bench": "case_core", "python": platform.python_version(), "machine": platform.machine(),
              "cpus": os.cpu_count(), "cases": args.cases, "span_days": (SPAN_END - YEAR_START).days,
              "cases_per_year_at_this_density": round(args.cases * 365 / (SPAN_END - YEAR_START).days),
              "generate_s": round(gen_s, 1),
              "transitions_generated": sum(len(s.history) - 1 for s in states),
              "status_mix": dict(sorted(statuses.items(), key=lambda kv: -kv[1])), "databases": {}}
    for db in args.db.split(","):
        drop = None
        tmp = None
        if db == "sqlite":
            tmp = tempfile.TemporaryDirectory()
            url = f"sqlite:///{Path(tmp.name) / 'bench.db'}"
        elif db == "postgresql":
            url, drop = _pg_database()
        else:
            raise SystemExit(f"unknown database {db!r}")
        try:
            migrate.upgrade(sync_url(url))
            load = bulk_load(url, states)
            result = asyncio.run(measure(url, states, args.transition_cases, args.naive_sample))
            report["databases"][db] = {"load": load, **result}
        finally:
            if drop:
                drop()
            if tmp:
                tmp.cleanup()
        print(f"{db} done", file=sys.stderr)
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The demo city (`hotline demo seed --city`) on SQLite and PostgreSQL.

Its reference files load cleanly and contain the small test district; the seed leaves cases
in every workflow state with 黄灯 and 超期 clocks, all three survey answers and evaluation
figures below 100 %; a second seed adds nothing; the plan is deterministic; and the staged
play (one transaction at the end) stores exactly what one transaction per action stores.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from case_core import demo_city
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.domain import reference
from case_core.domain.categories import load_category_directory
from case_core.domain.workflow import STATUS_LABELS
from case_core.service import CaseService, load_reference

DEMO = Path(demo_city.__file__).resolve().parent / "demo_data"
NOW = datetime(2026, 12, 7, 16, 20)  # a Monday afternoon


def test_city_files_load_cleanly_and_extend_the_test_district():
    """Every city CSV loads without row errors, keeps every row of the test district's file,
    has 15-character grid IDs (district+street+community+cell) with a GeoJSON rectangle each."""
    areas, e1 = reference.load_areas(DEMO / "city_areas.csv")
    cells, e2 = reference.load_grid_cells(DEMO / "city_grid_cells.csv", [a.code for a in areas if a.level == "community"])
    places, e3 = reference.load_gazetteer(DEMO / "city_gazetteer.csv", [c.grid_id for c in cells])
    depts, e4 = reference.load_departments(DEMO / "city_departments.csv")
    cats, e5 = load_category_directory(local=[DEMO / "local_categories.csv"])
    rules, e6 = reference.load_routing_rules(DEMO / "city_routing_rules.csv", departments=[d.code for d in depts],
                                             categories=cats.keys())
    assert e1 + e2 + e3 + e4 + e5 + e6 == []
    assert len([a for a in areas if a.level == "street"]) >= 4 and 6 <= len(depts) <= 12
    assert len(cells) >= 30 and all(len(c.grid_id) == 15 and c.grid_id.startswith("320102") for c in cells)
    for small, city in [("areas", "city_areas"), ("departments", "city_departments"), ("gazetteer", "city_gazetteer"),
                        ("routing_rules", "city_routing_rules")]:
        rows = list(csv.reader((DEMO / f"{city}.csv").open(encoding="utf-8")))
        assert [r for r in csv.reader((DEMO / f"{small}.csv").open(encoding="utf-8")) if r not in rows] == []
    old_cells = {r["grid_id"]: r["name"] for r in csv.DictReader((DEMO / "grid_cells.csv").open(encoding="utf-8"))}
    assert {c.grid_id: c.name for c in cells if c.grid_id in old_cells} == old_cells
    geo = json.loads((DEMO / "grid_cells.geojson").read_text(encoding="utf-8"))
    shapes = {f["properties"]["grid_id"]: f["geometry"]["coordinates"][0] for f in geo["features"]}
    assert set(shapes) == {c.grid_id for c in cells}
    for ring in shapes.values():
        lons, lats = [p[0] for p in ring], [p[1] for p in ring]
        assert ring[0] == ring[-1] and 118.7 < min(lons) < max(lons) < 118.9 and 32.0 < min(lats) < max(lats) < 32.1


def test_the_plan_is_deterministic():
    """The same seed time plans the same cases and actions."""
    places = [("长江路", "road", "320102001002001"), ("新街口广场", "landmark", "320102002001001")]

    def route(category, grid, ctype):
        return "municipal", 21.0

    one, two = (demo_city.plan_city(NOW, places, route=route, cases=60) for _ in range(2))
    assert [(p.created_at, p.description, [(s.action, s.at) for s in p.steps]) for p in one] == \
        [(p.created_at, p.description, [(s.action, s.at) for s in p.steps]) for p in two]
    assert all(s.at < NOW for p in one for s in p.steps)


def test_every_inspector_signs_in_to_a_verify_and_a_check_task_whatever_the_seed_time():
    """The field app's demo needs a 核实 and a 核查 task waiting for each inspector, on any day
    and at any hour the city is seeded (the plan's random draws depend on the seed time)."""
    csv_rows = list(csv.DictReader((DEMO / "city_gazetteer.csv").open(encoding="utf-8")))
    places = [(r["name"], r["kind"], r["grid_id"]) for r in csv_rows]

    def route(category, grid, ctype):
        return "municipal", 21.0

    for hours in range(0, 7 * 24, 13):
        now = NOW + timedelta(hours=hours)
        waiting = Counter()
        for p in demo_city.plan_city(now, places, route=route):
            last = p.steps[-1].action if p.steps else ""
            if last in ("send_verify", "report_done"):
                waiting[(last, p.inspector)] += 1
        for n in range(1, 5):
            assert waiting[("send_verify", f"inspector{n}")] >= 1, (now, waiting)
            assert waiting[("report_done", f"inspector{n}")] >= 1, (now, waiting)


async def test_the_city_has_every_state_warnings_and_real_figures_and_a_second_seed_adds_nothing(repo):
    added = await demo_city.seed_city(repo, now=NOW, password="hotline12319")
    assert added["cases"] >= 300 and added["actions"] > 2000 and added["users"] == len(demo_city.CITY_USERS)

    views = await repo.list_cases(limit=5000)
    states = Counter(v.status for v in views)
    assert set(states) == set(STATUS_LABELS), set(STATUS_LABELS) - set(states)
    assert min(v.created_at for v in views) >= NOW - timedelta(days=demo_city.DAYS)

    service = CaseService(repo)
    clocks = Counter()
    for v in views:
        if v.status in ("verifying", "verified", "registered", "dispatched", "handling", "checking", "checked"):
            for d in await service.deadline_report(await repo.load_state(v.id), NOW):
                clocks[d["status"]] += 1
    assert clocks["overdue"] >= 5 and clocks["yellow"] >= 1 and clocks["on_time"] >= 5, clocks

    answers = Counter(json.loads(r[0]).get("satisfaction") for r in _rows(repo, "SELECT state_json FROM cases"))
    assert all(answers[a] >= 3 for a in ("satisfied", "basically_satisfied", "dissatisfied")), answers

    (group,) = await service.evaluate(NOW - timedelta(days=90), NOW)
    rates = {code: r.value for code, r in group.results.items() if code.endswith("_rate") and r.value is not None}
    assert len(rates) >= 8 and sum(1 for v in rates.values() if 0 < v < 1) >= 6, rates

    ref = await load_reference(repo)
    assert len(ref.grid_cells) >= 30 and len(ref.departments) >= 6
    handled = {v.department for v in views if v.department}
    assert len(handled) >= 6 and handled <= set(ref.departments)

    before = _snapshot(repo)
    again = await demo_city.seed_city(repo, now=NOW + timedelta(days=3), password="hotline12319")
    assert again == {"reference_tables": 0, "users": 0, "cases": 0, "actions": 0, "kept": []}
    assert _snapshot(repo) == before


async def test_a_database_with_its_own_reference_data_gets_no_demo_city(repo, tmp_path):
    """A city that imported its own departments keeps them; no demo cases are routed by them."""
    await repo.replace_reference("departments", [{"code": "roads", "name": "道路管理处", "parent_code": None,
                                                  "phone": ""}])
    added = await demo_city.seed_city(repo, now=NOW, password="hotline12319")
    assert "departments" in added["kept"] and added["cases"] == 0
    assert [r["code"] for r in await repo.reference_rows("departments")] == ["roads"]
    assert await repo.count_cases() == 0


async def test_staged_play_stores_what_one_transaction_per_action_stores(tmp_path):
    """Cases, history, facts and the evaluation rollup of the staged seed equal those of the
    step-by-step seed through the repository's normal write path."""
    snaps = []
    for name, staged in (("staged", True), ("steps", False)):
        url = f"sqlite:///{tmp_path / name}.db"
        migrate.upgrade(url)
        r = SqlRepository(make_engine(url))
        try:
            await demo_city.seed_city(r, now=NOW, password="hotline12319", cases=60, staged=staged)
            snaps.append(_snapshot(r, full=True))
        finally:
            await r.close()
    assert snaps[0] == snaps[1]
    assert len(snaps[0]["cases"]) > 60


def _rows(repo: SqlRepository, sql: str) -> list[tuple]:
    engine = create_engine(sync_url(repo.engine.url.render_as_string(hide_password=False)))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def _snapshot(repo: SqlRepository, full: bool = False) -> dict:
    cases = "number, status, version, description, department, due_at" + (", state_json" if full else "")
    out = {
        "cases": sorted(_rows(repo, f"SELECT {cases} FROM cases")),
        "users": sorted(_rows(repo, "SELECT username, role, department FROM users")),
        "ref": [_rows(repo, f"SELECT COUNT(*) FROM ref_{t}") for t in ("areas", "grid_cells", "places",
                                                                       "departments", "routing_rules")],
        "facts": sorted(map(str, _rows(repo, "SELECT c.number, f.kind, f.at, f.person, f.department, f.on_time, "
                                             "f.ok, f.still_open FROM case_facts f JOIN cases c ON c.id = f.case_id"))),
        "rollup": sorted(map(str, _rows(repo, 'SELECT dim, day, "key", kind, on_time, ok, still_open, flip_day, n '
                                              "FROM case_fact_rollup WHERE n <> 0"))),
    }
    if full:
        out["history"] = sorted(map(str, _rows(repo, "SELECT c.number, h.seq, h.action, h.actor, h.at, h.fields_json "
                                                     "FROM case_history h JOIN cases c ON c.id = h.case_id")))
    return out

"""`hotline import …` and `hotline evaluate` through the real CLI entry point on SQLite."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import pytest

from callcenter.cli import main
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine
from case_core.service import CaseService, load_reference

DEMO = Path(__file__).resolve().parents[3] / "case_core" / "demo_data"


@pytest.fixture
def config(tmp_path):
    db = tmp_path / "h.db"
    path = tmp_path / "hotline.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n', encoding="utf-8")
    return str(path), f"sqlite:///{db}"


def run(*argv) -> int:
    return main(list(argv))


async def _with_repo(url, fn):
    repo = SqlRepository(make_engine(url))
    try:
        return await fn(repo)
    finally:
        await repo.close()


def test_importing_the_demo_data_fills_the_reference_tables(config, capsys):
    """Every demo CSV imports with exit 0, and the service then routes with the imported rules."""
    path, url = config
    for kind, name in [("departments", "departments"), ("areas", "areas"), ("grid_cells", "grid_cells"),
                       ("gazetteer", "gazetteer"), ("routing", "routing_rules"), ("holidays", "holidays")]:
        assert run("import", kind, str(DEMO / f"{name}.csv"), "--config", path) == 0, kind
    assert run("import", "categories", str(DEMO / "local_categories.csv"), "--local", "--config", path) == 0
    out = capsys.readouterr().out
    assert "imported 9 departments" in out and "imported 15 routing rules" in out

    ref = asyncio.run(_with_repo(url, load_reference))
    route = ref.routing.route("component", "01002", "320102001002001", "normal")
    assert route.department == "municipal" and str(route.limits["handle"]) == "3d"
    assert ref.gazetteer.grid_cell_for("长江路西段12号") == "320102001002002"
    assert ref.categories.get("matter", "06901").name == "共享单车乱停放"
    assert not ref.calendar.is_workday(datetime(2027, 1, 1))


def test_bad_rows_are_listed_with_line_numbers_and_nothing_is_replaced(config, tmp_path, capsys):
    """A routing file with bad rows exits 2, names each line and reason, and keeps the old table."""
    path, url = config
    assert run("import", "departments", str(DEMO / "departments.csv"), "--config", path) == 0
    assert run("import", "routing", str(DEMO / "routing_rules.csv"), "--config", path) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("kind,code,area,case_type,department,handle\ncomponent,01,,,nowhere,3d\n*,*,,,,3x\n"
                   "component,01,,,lighting,2d\n", encoding="utf-8")
    assert run("import", "routing", str(bad), "--config", path) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: department 'nowhere' is unknown" in err
    assert f"{bad}:3: handle: time limit '3x'" in err and "nothing imported" in err
    rows = asyncio.run(_with_repo(url, lambda r: r.reference_rows("routing")))
    assert len(rows) == 15
    assert run("import", "routing", str(bad), "--skip-bad", "--allow-shrink", "--config", path) == 2
    rows = asyncio.run(_with_repo(url, lambda r: r.reference_rows("routing")))
    assert [r["department"] for r in rows] == ["lighting"]


def test_a_file_with_missing_columns_writes_nothing(config, tmp_path, capsys):
    """Missing columns are one fatal error on line 1; the existing departments stay."""
    path, url = config
    assert run("import", "departments", str(DEMO / "departments.csv"), "--config", path) == 0
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("foo,bar\n1,2\n", encoding="utf-8")
    assert run("import", "departments", str(wrong), "--skip-bad", "--config", path) == 2
    assert f"{wrong}:1: missing columns: code, name" in capsys.readouterr().err
    assert len(asyncio.run(_with_repo(url, lambda r: r.reference_rows("departments")))) == 9
    assert run("import", "departments", str(tmp_path / "absent.csv"), "--config", path) == 2


def _dispatch_one_case(t: datetime):
    """A seed for `_with_repo`: one inspector case registered and dispatched to municipal at `t`."""

    async def seed(repo):
        service = CaseService(repo)
        view = await service.create_case(channel="inspector_app", description="井盖缺失", actor="i1",
                                         role="inspector", now=t)
        await service.act(view.id, "register", actor="l1", role="shift_lead", now=t)
        await service.act(view.id, "dispatch", actor="d1", role="dispatcher", fields={"department": "municipal"},
                          now=t)

    return seed


def test_evaluate_prints_indicators_as_json(config, capsys):
    """`hotline evaluate` prints each group's indicators with formulas and a composite score."""
    path, url = config
    assert run("import", "departments", str(DEMO / "departments.csv"), "--config", path) == 0

    asyncio.run(_with_repo(url, _dispatch_one_case(datetime(2026, 11, 23, 9, 0))))
    capsys.readouterr()
    assert run("evaluate", "--start", "2026-11-01", "--end", "2026-11-24", "--group-by", "department",
               "--config", path) == 0
    body = json.loads(capsys.readouterr().out)
    groups = {g["key"]: g for g in body["groups"]}
    dispatch = {i["code"]: i for i in groups["municipal"]["indicators"]}["on_time_dispatch_rate"]
    assert (dispatch["numerator"], dispatch["denominator"], dispatch["value"]) == (1, 1, 1.0)
    assert dispatch["formula_zh"].startswith("按时派遣率")
    assert run("evaluate", "--start", "2026-11-24", "--end", "2026-11-01", "--config", path) == 2


def test_evaluate_end_day_is_inclusive(config, capsys):
    """`--end D` counts the whole of day D: a case dispatched at 15:00 on the end day is in; the period
    in the JSON ends at the next midnight; --start = --end is one day."""
    path, url = config
    assert run("import", "departments", str(DEMO / "departments.csv"), "--config", path) == 0

    asyncio.run(_with_repo(url, _dispatch_one_case(datetime(2026, 11, 24, 15, 0))))
    for start in ("2026-11-01", "2026-11-24"):
        capsys.readouterr()
        assert run("evaluate", "--start", start, "--end", "2026-11-24", "--group-by", "department",
                   "--config", path) == 0
        body = json.loads(capsys.readouterr().out)
        # the bounds carry the center's offset, like every time the web API gives (issue 11)
        assert (body["start"], body["end"]) == (f"{start}T00:00:00+08:00", "2026-11-25T00:00:00+08:00")
        groups = {g["key"]: g for g in body["groups"]}
        dispatch = {i["code"]: i for i in groups["municipal"]["indicators"]}["on_time_dispatch_rate"]
        assert (dispatch["numerator"], dispatch["denominator"]) == (1, 1), start
    capsys.readouterr()
    assert run("evaluate", "--start", "2026-11-01", "--end", "2026-11-23", "--group-by", "department",
               "--config", path) == 0
    assert "municipal" not in {g["key"] for g in json.loads(capsys.readouterr().out)["groups"]}
    # a bound given with another offset is the same instant in the center's time: 07:00Z is 15:00 +08:00
    assert run("evaluate", "--start", "2026-11-24T07:00:00+00:00", "--end", "2026-11-24T07:00:01+00:00",
               "--group-by", "department", "--config", path) == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["start"], body["end"]) == ("2026-11-24T15:00:00+08:00", "2026-11-24T15:00:01+08:00")
    assert "municipal" in {g["key"] for g in body["groups"]}


def test_token_for_an_unknown_user_points_to_user_add(config, capsys):
    """`hotline token create nobody` says how to create the account (hotline user add), no admin page."""
    path, _ = config
    assert run("db", "upgrade", "--config", path) == 0
    capsys.readouterr()
    assert run("token", "create", "nobody", "--config", path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "hotline user add nobody --role" in err[-1]
    assert "admin page" not in err[-1]


def test_a_listing_piped_into_a_reader_that_leaves_is_no_error(config, capsys, monkeypatch):
    """`hotline user list --json | head -1`: the closed pipe ends the command quietly (status 0, no `error:`)."""
    import os

    path, _ = config
    assert run("db", "upgrade", "--config", path) == 0
    assert run("user", "add", "lead9", "--role", "shift_lead", "--password", "pw-123456", "--config", path) == 0
    capsys.readouterr()
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head) has gone
    saved = os.dup(1)
    try:
        with open(write_end, "w", buffering=1, encoding="utf-8") as pipe:
            monkeypatch.setattr("sys.stdout", pipe)
            assert run("user", "list", "--json", "--config", path) == 0
            monkeypatch.undo()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert "error" not in capsys.readouterr().err

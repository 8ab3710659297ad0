"""Unit tests for reference-data loaders, routing, gazetteer, categories and case numbers."""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from case_core.domain.calendar import WorkCalendar
from case_core.domain.categories import (
    InvalidCategoryKey, load_categories, load_category_directory,
    parse_category_key,
)
from case_core.domain.numbering import InvalidCaseNumber, format_case_number, parse_case_number
from case_core.domain.reference import (
    Gazetteer, RoutingTable, TimeLimit, load_areas, load_departments, load_gazetteer,
    load_grid_cells, load_routing_rules, parse_time_limit,
)

DEMO = Path(__file__).resolve().parents[3] / "case_core" / "demo_data"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo():
    areas, e1 = load_areas(DEMO / "areas.csv")
    cells, e2 = load_grid_cells(DEMO / "grid_cells.csv",
                                [a.code for a in areas if a.level == "community"])
    places, e3 = load_gazetteer(DEMO / "gazetteer.csv", [c.grid_id for c in cells])
    depts, e4 = load_departments(DEMO / "departments.csv")
    cats, e5 = load_category_directory(local=[DEMO / "local_categories.csv"])
    rules, e6 = load_routing_rules(DEMO / "routing_rules.csv",
                                   departments=[d.code for d in depts], categories=cats.keys())
    return dict(errors=e1 + e2 + e3 + e4 + e5 + e6, cats=cats, rules=RoutingTable(rules),
                gaz=Gazetteer(places), cells=cells)


def test_demo_data_loads_cleanly(demo):
    """Every demo CSV loads without row errors, with the national table plus 3 local rows."""
    assert demo["errors"] == []
    assert len(demo["cats"]) == 403 + 3
    assert demo["cats"].by_key("matter:06901").class_name == "市容环境类"


def test_category_codes_repeat_across_kinds(demo):
    """01001 is both a component and a matter; (kind, code) keeps them apart."""
    assert demo["cats"].get("component", "01001").name == "供水井盖"
    assert demo["cats"].get("matter", "01001").name == "供水井盖异常"


def test_category_rows_with_errors(tmp_path):
    """Bad category rows become RowErrors with their line; good rows still load."""
    base, _ = load_category_directory()
    path = write(tmp_path, "kind,code,class_code,class_name,name\n"
                 "matter,06901,06,,共享单车\n"        # ok: class exists
                 "matter,06010,06,,暴露垃圾\n"        # redefines national code
                 "matter,1290,12,,x\n"               # 4 digits
                 "matter,12901,12,,新类\n"            # new class, no class name
                 "matter,06902,07,,错类\n"            # class prefix mismatch
                 "thing,06903,06,,x\n")
    rows, errors = load_categories(path, existing=base)
    assert [r.code for r in rows] == ["06901"]
    assert [e.line for e in errors] == [3, 4, 5, 6, 7]


def test_missing_file_is_a_row_error(tmp_path):
    """An unreadable file gives one line-0 error instead of raising."""
    rows, errors = load_categories(tmp_path / "nope.csv")
    assert rows == [] and errors[0].line == 0 and "cannot read" in errors[0].reason


def test_category_key_parsing():
    """Keys are kind:code; malformed keys raise InvalidCategoryKey."""
    assert parse_category_key("component:01001") == ("component", "01001")
    with pytest.raises(InvalidCategoryKey):
        parse_category_key("01001")


def test_missing_columns_is_one_error(tmp_path):
    """A file without the needed header yields a single line-1 error and no rows."""
    rows, errors = load_departments(write(tmp_path, "id,title\nx,y\n"))
    assert rows == [] and errors[0].line == 1 and "code" in errors[0].reason


def test_area_and_grid_errors(tmp_path):
    """Areas need the right code length and a parent above; grid IDs need 15 characters."""
    areas, errors = load_areas(write(tmp_path, "level,code,name,parent\n"
                                     "district,320102,示范区,\n"
                                     "street,32010200,短,\n"
                                     "community,320102009001,孤儿社区,\n"
                                     "street,320102001,梅园,320199\n"))
    assert [a.code for a in areas] == ["320102"]
    assert [e.line for e in errors] == [3, 4, 5]
    cells, errors = load_grid_cells(write(tmp_path, "grid_id,x,y\n3201020010010\n"
                                          "320102001001001,1,a\n320102001001002,1,2\n"),
                                    ["320102001001"])
    assert [c.grid_id for c in cells] == ["320102001001002"]
    assert [e.line for e in errors] == [2, 3]


def test_routing_most_specific_wins(demo):
    """Area rules beat class rules; urgent limits beat category limits; columns resolve apart."""
    r = demo["rules"].route("matter", "06010", "320102001001001", "normal")
    assert r.department == "street_meiyuan" and r.limits["handle"] == TimeLimit(4, "h")
    r = demo["rules"].route("matter", "06010", "320102002001001", "normal")
    assert r.department == "sanitation" and r.limits["case"] == TimeLimit(5, "d")
    r = demo["rules"].route("matter", "09006", "320102002001001", "urgent")
    assert r.department == "street_xinjiekou" and r.limits["handle"] == TimeLimit(4, "h")
    assert demo["rules"].route("component", "01001", None).department == "water"
    assert demo["rules"].route("matter", "10001", None).department is None


def test_route_deadline_uses_calendar(demo):
    """A 3-day handle limit from Sep 30 10:00 lands on Oct 10 (make-up Saturday) 10:00."""
    r = demo["rules"].route("component", "01002", None)
    assert r.deadline("handle", WorkCalendar(), datetime(2026, 9, 30, 10)) == datetime(2026, 10, 10, 10)


def test_routing_rule_errors(tmp_path):
    """Bad kinds, codes without kind, unknown departments and bad limits are row errors."""
    rules, errors = load_routing_rules(
        write(tmp_path, "kind,code,area,case_type,department,handle\n"
              "matter,06,,,sanitation,2d\n"
              "stuff,06,,,sanitation,\n"
              ",06,,,sanitation,\n"
              "matter,06,,,nobody,\n"
              "matter,06,,,sanitation,soon\n"
              "matter,06,,,,\n"),
        departments=["sanitation"])
    assert len(rules) == 1
    assert [e.line for e in errors] == [3, 4, 5, 6, 7]


@pytest.mark.parametrize("text,limit", [("2h", TimeLimit(2, "h")), ("30min", TimeLimit(0.5, "h")),
                                        ("3d", TimeLimit(3, "d"))])
def test_parse_time_limit(text, limit):
    """Limits are written as hours, minutes or working days."""
    assert parse_time_limit(text) == limit


def test_gazetteer_prefers_longest_name(demo):
    """'长江路西段' wins over '长江路', and an alias finds its landmark."""
    assert demo["gaz"].grid_cell_for("长江路西段18号") == "320102001002002"
    assert [p.name for p in demo["gaz"].lookup("新街口地铁站")] == ["新街口广场"]
    assert demo["gaz"].lookup("火星路") == []


def test_case_number_round_trip():
    """Numbers format as YYYYMMDD-NNNN and parse back; bad ones raise InvalidCaseNumber."""
    assert format_case_number(date(2026, 11, 21), 1) == "20261121-0001"
    assert format_case_number(date(2026, 11, 21), 12345) == "20261121-12345"
    assert parse_case_number("20261121-0042") == (date(2026, 11, 21), 42)
    for bad in ("20261131-0001", "2026112-0001", "20261121-0000", "20261121-01"):
        with pytest.raises(InvalidCaseNumber):
            parse_case_number(bad)
    with pytest.raises(ValueError):
        format_case_number(date(2026, 11, 21), 0)

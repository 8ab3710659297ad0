"""Evaluation indicators and composite score against a small hand-computed fixture."""
from __future__ import annotations

from datetime import datetime

import pytest

from case_core.domain.evaluation import INDICATORS, composite_score, evaluate
from case_core.domain.workflow import CaseCommand, apply, load_workflow_spec, new_case

SPEC = load_workflow_spec()
START, END = datetime(2026, 11, 23), datetime(2026, 11, 30)


def d(day, hour, minute=0):
    return datetime(2026, 11, day, hour, minute)


def case_with(number, at, kind="report", channel="inspector_app"):
    return new_case(number=number, channel=channel, reporter_phone="", description="x",
                    category="matter:06010", address="a", now=at, kind=kind,
                    grid_cell="320102001001001", actor="insp-1", role="inspector")[0]


def go(case, steps):
    for action, role, actor, at, fields in steps:
        case, _ = apply(SPEC, case, CaseCommand(action, actor, role, fields), at)
    return case


@pytest.fixture(scope="module")
def cases():
    a = go(case_with("20261123-0001", d(23, 9)), [
        ("register", "shift_lead", "lead-1", d(23, 9, 10),
         {"dispatch_deadline": d(23, 10, 10), "case_deadline": d(27, 17)}),
        ("dispatch", "dispatcher", "disp-1", d(23, 9, 30),
         {"department": "municipal", "handle_deadline": d(24, 17)}),
        ("report_done", "department", "muni-7", d(24, 10),
         {"result": "ok", "photos": ["p"], "check_deadline": d(24, 14)}),
        ("check", "inspector", "insp-1", d(24, 11), {"check_result": "passed"}),
        ("close", "shift_lead", "lead-1", d(24, 12), {}),
        ("follow_up", "agent", "agent-1", d(25, 10), {"satisfaction": "satisfied"}),
    ])
    b = go(case_with("20261123-0002", d(23, 9)), [
        ("register", "shift_lead", "lead-2", d(23, 9, 10),
         {"dispatch_deadline": d(23, 10, 10), "case_deadline": d(26, 17)}),
        ("dispatch", "dispatcher", "disp-1", d(23, 9, 20), {"department": "water"}),
        ("apply_send_back", "department", "water-1", d(23, 10), {"reason": "不归我们"}),
        ("approve_send_back", "dispatcher", "disp-1", d(23, 10, 30),
         {"dispatch_deadline": d(23, 11, 30)}),
        ("dispatch", "dispatcher", "disp-1", d(23, 13),
         {"department": "municipal", "handle_deadline": d(24, 9)}),
        ("report_done", "department", "muni-8", d(24, 15), {"result": "ok", "photos": ["p"]}),
        ("check", "inspector", "insp-1", d(24, 16), {"check_result": "failed"}),
        ("rework", "shift_lead", "lead-2", d(24, 16, 30),
         {"reason": "没修好", "dispatch_deadline": d(25, 9)}),
    ])
    c = go(case_with("20261123-0003", d(23, 9)), [
        ("register", "shift_lead", "lead-1", d(23, 9, 10), {"dispatch_deadline": d(23, 10, 10)}),
        ("apply_void", "dispatcher", "disp-1", d(23, 9, 40), {"reason": "重复"}),
        ("approve_void", "shift_lead", "lead-2", d(23, 10), {}),
    ])
    e = go(case_with("20261123-0004", d(23, 9), kind="consultation", channel="12319"), [
        ("direct_answer", "agent", "agent-9", d(23, 9, 5), {"answer": "周二"}),
        ("follow_up", "agent", "agent-1", d(24, 9), {"satisfaction": "dissatisfied"}),
    ])
    return [a, b, c, e]


def figures(results):
    return {code: (r.numerator, r.denominator) for code, r in results.items()}


def test_overall_indicators(cases):
    """Every indicator over the whole fixture matches the hand count."""
    got = figures(evaluate(cases, START, END)["all"])
    assert got == {
        "register_count": (3, None),
        "on_time_register_rate": (3, 3),        # no register clocks: cannot be late
        "accurate_register_rate": (2, 3),       # C voided after registering
        "on_time_dispatch_rate": (2, 4),        # A, B1 on time; B2 late; B3 open and overdue
        "accurate_dispatch_rate": (2, 3),       # B1 sent back
        "on_time_handle_rate": (1, 2),          # B handled after its deadline
        "rework_rate": (1, 2),
        "close_rate": (1, 3),                   # only A closed
        "on_time_close_rate": (1, 2),           # A on time; B's case deadline passed, open
        "on_time_verify_rate": (0, 0),
        "on_time_check_rate": (2, 2),
        "satisfaction_rate": (1, 2),            # A satisfied, consultation dissatisfied
        "valid_report_count": (2, None),        # inspector reports A, B, C registered; C voided
        "valid_report_rate": (2, 3),
    }


def test_formula_text_travels_with_figure(cases):
    """Each result carries its Chinese formula; a zero denominator gives value None."""
    res = evaluate(cases, START, END)["all"]
    assert res["rework_rate"].formula_zh.startswith("返工率 = 返工数 ÷ 处置反馈数")
    assert res["rework_rate"].value == 0.5 and res["rework_rate"].display == "50.00%"
    assert res["on_time_verify_rate"].value is None and res["on_time_verify_rate"].display == "—"
    assert all(i.formula_zh for i in INDICATORS) and len(INDICATORS) == 14


def test_by_department(cases):
    """Handling and dispatch accuracy are attributed to the department dispatched to."""
    res = evaluate(cases, START, END, group_by="department")
    assert figures(res["municipal"])["on_time_handle_rate"] == (1, 2)
    assert figures(res["water"])["accurate_dispatch_rate"] == (0, 1)


def test_by_person(cases):
    """Registration counts go to the lead; rework to the department user who handled it;
    a consultation's satisfaction to the agent who answered."""
    res = evaluate(cases, START, END, group_by="person")
    assert figures(res["lead-1"])["register_count"] == (2, None)
    assert figures(res["lead-1"])["accurate_register_rate"] == (1, 2)
    assert figures(res["muni-8"])["rework_rate"] == (1, 1)
    assert figures(res["agent-9"])["satisfaction_rate"] == (0, 1)


def test_by_area_and_role(cases):
    """Street-level area grouping uses the grid ID prefix; roles group dispatcher facts."""
    res = evaluate(cases, START, END, group_by="area", area_level="street")
    assert set(res) == {"320102001"}
    roles = evaluate(cases, START, END, group_by="role")
    assert figures(roles["dispatcher"])["on_time_dispatch_rate"] == (2, 4)


def test_period_excludes_later_facts(cases):
    """A period ending Monday noon sees the registrations but no handling yet."""
    got = figures(evaluate(cases, START, d(23, 12))["all"])
    assert got["register_count"] == (3, None)
    assert got["on_time_handle_rate"] == (0, 0)
    assert got["close_rate"] == (0, 3)


def test_composite_score(cases):
    """(50×3 + 50×1 + (1−0.5)×100×1) ÷ 5 = 50; indicators without data are listed apart."""
    res = evaluate(cases, START, END)["all"]
    score = composite_score(res, {"on_time_handle_rate": 3, "satisfaction_rate": 1,
                                  "rework_rate": 1, "on_time_verify_rate": 2})
    assert score.score == 50.0
    assert score.missing == ("on_time_verify_rate",)
    with pytest.raises(ValueError):
        composite_score(res, {"register_count": 1})
    with pytest.raises(ValueError):
        composite_score(res, {"no_such": 1})


def test_bad_grouping_is_rejected(cases):
    """Unknown group_by or a reversed period raise ValueError."""
    with pytest.raises(ValueError):
        evaluate(cases, START, END, group_by="planet")
    with pytest.raises(ValueError):
        evaluate(cases, END, START)

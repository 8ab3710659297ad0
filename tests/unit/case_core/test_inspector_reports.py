"""有效上报 (the seeds' 监督员 indicator): an inspector's own report from 城管通 counts for that
inspector when registered, not when declined; reports that came by phone do not count."""
from __future__ import annotations

from datetime import datetime

from case_core.domain.evaluation import evaluate
from case_core.domain.workflow import CaseCommand, apply, load_workflow_spec, new_case

SPEC = load_workflow_spec()


def report(number, channel, actor, role, then):
    at = datetime(2026, 11, 23, 9)
    state, _ = new_case(number=number, channel=channel, reporter_phone="", description="井盖破损",
                        category="component:01002", address="", now=at, grid_cell="320102001001001",
                        actor=actor, role=role)
    state, _ = apply(SPEC, state, CaseCommand(then[0], "lead-1", "shift_lead", then[1]), datetime(2026, 11, 23, 10))
    return state


def test_valid_reports_per_inspector():
    """insp-1: two registered of three reviewed; insp-2: one declined; the phone case counts for nobody."""
    cases = [
        report("20261123-0001", "inspector", "insp-1", "inspector", ("register", {})),
        report("20261123-0002", "inspector", "insp-1", "inspector", ("register", {})),
        report("20261123-0003", "inspector", "insp-1", "inspector", ("decline", {"reason": "不属于城管"})),
        report("20261123-0004", "inspector", "insp-2", "inspector", ("decline", {"reason": "重复"})),
    ]
    phone = report("20261123-0005", "12319", "agent-1", "agent", ("send_verify", {}))
    res = evaluate(cases + [phone], datetime(2026, 11, 23), datetime(2026, 11, 24), group_by="person")
    one, two = res["insp-1"], res["insp-2"]
    assert (one["valid_report_count"].numerator, one["valid_report_rate"].denominator) == (2, 3)
    assert one["valid_report_rate"].display == "66.67%"
    assert (two["valid_report_count"].numerator, two["valid_report_rate"].value) == (0, 0.0)
    assert res.get("agent-1") is None or res["agent-1"]["valid_report_rate"].denominator == 0

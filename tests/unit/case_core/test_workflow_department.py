"""Department staff act only on cases dispatched to their own department (workflow.apply)."""

from datetime import datetime

import pytest

from case_core.domain import workflow
from case_core.domain.workflow import CaseCommand, NotPermitted

NOW = datetime(2026, 11, 23, 10, 0)


def _dispatched(spec, department):
    case, _ = workflow.new_case(number="20261123-0001", channel="inspector_app", reporter_phone="13800138000",
                                description="井盖缺失", category="component:01002", address="长江路", now=NOW,
                                kind="report", actor="agent1", role="agent")
    for action, role, fields in (("register", "shift_lead", {}),
                                 ("dispatch", "dispatcher", {"department": department})):
        case, _ = workflow.apply(spec, case, CaseCommand(action, "x", role, fields), NOW)
    return case


def test_department_staff_of_another_department_are_refused():
    spec = workflow.load_workflow_spec()
    case = _dispatched(spec, "lighting")
    with pytest.raises(NotPermitted) as exc:
        workflow.apply(spec, case, CaseCommand("handle", "san1", "department", department="sanitation"), NOW)
    assert "其他处置部门" in exc.value.message_zh
    new, _ = workflow.apply(spec, case, CaseCommand("handle", "lamp1", "department", department="lighting"), NOW)
    assert new.status == "handling"
    # not tied to a department: as before, any department user may act
    new, _ = workflow.apply(spec, case, CaseCommand("handle", "dept1", "department"), NOW)
    assert new.status == "handling"

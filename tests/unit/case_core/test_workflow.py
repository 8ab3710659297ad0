"""Unit tests for the pure case workflow: spec loading, apply, guards, errors, diagram."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from case_core.domain.workflow import (
    ACTION_LABELS, STATUS_LABELS, CaseCommand, GuardFailed, IllegalTransition, InvalidField,
    MissingField, NotPermitted, VersionConflict, WorkflowError, WorkflowSpecError,
    available_actions, apply, load_workflow_spec, new_case, render_diagram,
)

T0 = datetime(2026, 11, 23, 9, 0)
SPEC = load_workflow_spec()


def make(kind="report", channel="12319", case_type="normal"):
    case, events = new_case(number="20261123-0001", channel=channel, reporter_phone="13800000000",
                            description="人民路井盖缺失", category="component:01002",
                            address="人民路 12 号", now=T0, kind=kind, case_type=case_type,
                            actor="a1")
    return case


def run(case, *steps):
    """Apply (action, role, fields) steps one hour apart; return the final case and events."""
    events = []
    for i, (action, role, fields) in enumerate(steps, start=1):
        case, ev = apply(SPEC, case, CaseCommand(action, f"{role}-1", role, fields),
                         T0 + timedelta(hours=i))
        events.extend(ev)
    return case, events


def to_checked(check_result="passed"):
    return run(make(),
               ("send_verify", "agent", {}),
               ("verify", "inspector", {"verify_result": "confirmed"}),
               ("register", "shift_lead", {}),
               ("dispatch", "dispatcher", {"department": "water"}),
               ("report_done", "department", {"result": "已更换", "photos": ["p1.jpg"]}),
               ("check", "inspector", {"check_result": check_result}))[0]


def test_required_status_names_have_labels():
    """Every status the other teams rely on exists with its Chinese label."""
    wanted = {"accepted": "已受理", "verifying": "核实中", "registered": "已立案",
              "dispatched": "已派遣", "handling": "处置中", "checking": "核查中",
              "closed": "已结案", "declined": "不予立案", "void": "已作废", "suspended": "挂账",
              "direct_answered": "已直办", "followed_up": "已回访"}
    assert {k: STATUS_LABELS[k] for k in wanted} == wanted


def test_every_spec_action_has_a_label():
    """The loaded spec uses only labelled actions and every label is used or is 'accept'."""
    assert set(SPEC.actions) | {"accept"} == set(ACTION_LABELS)


def test_new_case_is_accepted_with_history():
    """new_case starts at accepted, version 1, with one 'accept' history line and event."""
    case, events = new_case(number="20261123-0002", channel="96310", reporter_phone="",
                            description="咨询垃圾分类", category=None, address="",
                            now=T0, kind="consultation")
    assert (case.status, case.version, case.kind) == ("accepted", 1, "consultation")
    assert [h.action for h in case.history] == ["accept"]
    assert [e.name for e in events] == ["CaseAccepted"]


@pytest.mark.parametrize("bad", [{"number": "2026-1"}, {"channel": "fax"}, {"kind": "x"},
                                 {"case_type": "huge"}])
def test_new_case_rejects_bad_input(bad):
    """new_case refuses malformed numbers and unknown channel/kind/case type."""
    args = dict(number="20261123-0001", channel="12319", reporter_phone="", description="d",
                category=None, address="", now=T0)
    args.update(bad)
    with pytest.raises(InvalidField):
        new_case(**args)


def test_happy_path_to_evaluated():
    """The main line runs through to evaluated, bumping the version once per action."""
    case = to_checked()
    case, events = run(case, ("close", "shift_lead", {}),
                       ("follow_up", "agent", {"satisfaction": "satisfied"}),
                       ("evaluate", "supervisor", {}))
    assert case.status == "evaluated"
    assert case.version == 1 + 9
    assert [e.name for e in events] == ["CaseClosed", "CaseFollowedUp", "CaseEvaluated"]
    assert [h.after_status for h in case.history][-3:] == ["closed", "followed_up", "evaluated"]


def test_close_needs_passed_check():
    """A failed check blocks close with GuardFailed; rework sends it back to dispatch."""
    case = to_checked("failed")
    with pytest.raises(GuardFailed) as info:
        run(case, ("close", "shift_lead", {}))
    assert "核查未通过" in info.value.message_zh
    case, _ = run(case, ("rework", "shift_lead", {"reason": "未修复"}))
    assert (case.status, case.rework_count, case.check_result) == ("registered", 1, None)


def test_illegal_transition_is_refused():
    """Dispatching an unregistered case raises IllegalTransition naming both in Chinese."""
    with pytest.raises(IllegalTransition) as info:
        run(make(), ("dispatch", "dispatcher", {"department": "water"}))
    assert "已受理" in info.value.message_zh and "派遣" in info.value.message_zh


def test_unknown_action_is_illegal():
    """An action not in the table is an IllegalTransition, not a KeyError."""
    with pytest.raises(IllegalTransition):
        run(make(), ("teleport", "admin", {}))


def test_wrong_role_is_not_permitted():
    """An agent may not register a case."""
    case = run(make(), ("send_verify", "agent", {}),
               ("verify", "inspector", {"verify_result": "confirmed"}))[0]
    with pytest.raises(NotPermitted) as info:
        run(case, ("register", "agent", {}))
    assert isinstance(info.value, WorkflowError) and "值班长" in info.value.message_zh


def test_missing_and_invalid_fields():
    """report_done needs photos; a bad choice or an unknown field is InvalidField."""
    case = run(make(), ("send_verify", "agent", {}),
               ("verify", "inspector", {"verify_result": "confirmed"}),
               ("register", "shift_lead", {}),
               ("dispatch", "dispatcher", {"department": "water"}))[0]
    with pytest.raises(MissingField) as info:
        run(case, ("report_done", "department", {"result": "done", "photos": []}))
    assert info.value.field == "photos"
    with pytest.raises(InvalidField):
        run(case, ("report_done", "department", {"result": "done", "photos": "p.jpg"}))
    with pytest.raises(InvalidField):
        run(case, ("report_done", "department", {"result": "d", "photos": ["p"], "x": 1}))


def test_version_conflict():
    """A command with a stale expected_version raises VersionConflict; a fresh one passes."""
    case = make()
    with pytest.raises(VersionConflict):
        apply(SPEC, case, CaseCommand("send_verify", "a1", "agent", {}, expected_version=0), T0)
    case2, _ = apply(SPEC, case, CaseCommand("send_verify", "a1", "agent", {}, expected_version=1), T0)
    assert case2.version == 2 and case.version == 1


def test_failed_apply_changes_nothing():
    """A refused command leaves the original case object identical."""
    case = make()
    before = case
    with pytest.raises(WorkflowError):
        run(case, ("register", "shift_lead", {}))
    assert case == before and len(case.history) == 1


def test_register_without_verify_only_when_exempt():
    """Citizen reports must be verified first; inspector reports may be registered at once."""
    with pytest.raises(GuardFailed):
        run(make(), ("register", "shift_lead", {}))
    case, _ = run(make(channel="inspector_app"), ("register", "shift_lead", {}))
    assert case.status == "registered"


def test_direct_answer_only_for_consultations():
    """direct_answer works for a consultation and is refused for a report."""
    case, _ = run(make(kind="consultation"), ("direct_answer", "agent", {"answer": "周二收"}))
    assert case.status == "direct_answered"
    with pytest.raises(GuardFailed):
        run(make(), ("direct_answer", "agent", {"answer": "x"}))


def test_deadline_clocks_and_history_due():
    """dispatch starts the handle clock; report_done records its due time in history."""
    due = T0 + timedelta(days=2)
    case = run(make(channel="inspector_app"), ("register", "shift_lead", {}),
               ("dispatch", "dispatcher", {"department": "water", "handle_deadline": due}))[0]
    assert case.deadlines["handle"].due_at == due
    case = run(case, ("report_done", "department", {"result": "ok", "photos": ["p"]}))[0]
    assert case.history[-1].ended == {"handle": due}
    assert case.deadlines["handle"].done_at == T0 + timedelta(hours=1)


def test_deadline_in_the_past_is_invalid():
    """A deadline field earlier than now is rejected."""
    case = run(make(channel="inspector_app"), ("register", "shift_lead", {}))[0]
    with pytest.raises(InvalidField):
        run(case, ("dispatch", "dispatcher", {"department": "w", "handle_deadline": T0}))


def test_extension_moves_handle_deadline():
    """An approved extension sets the requested deadline and clears the application."""
    due, later = T0 + timedelta(days=2), T0 + timedelta(days=9)
    case = run(make(channel="inspector_app"), ("register", "shift_lead", {}),
               ("dispatch", "dispatcher", {"department": "w", "handle_deadline": due}),
               ("apply_extension", "department", {"reason": "等材料", "handle_deadline": later}))[0]
    assert case.pending_application("extension").fields["handle_deadline"] == later
    with pytest.raises(GuardFailed):
        run(case, ("apply_extension", "department", {"reason": "again", "handle_deadline": later}))
    case = run(case, ("approve_extension", "commander", {}))[0]
    assert case.deadlines["handle"].due_at == later and case.pending == ()


def test_pending_applications_dropped_when_undecidable():
    """A send-back approval drops a pending extension, which no longer makes sense."""
    case = run(make(channel="inspector_app"), ("register", "shift_lead", {}),
               ("dispatch", "dispatcher", {"department": "w"}),
               ("apply_extension", "department", {"reason": "r",
                                                  "handle_deadline": T0 + timedelta(days=5)}),
               ("apply_send_back", "department", {"reason": "不归我们管"}),
               ("approve_send_back", "dispatcher", {}))[0]
    assert case.status == "registered" and case.pending == () and case.department is None


def test_suspend_and_resume_returns_to_previous():
    """A suspended case resumes in the status it was parked from."""
    case = run(make(channel="inspector_app"), ("register", "shift_lead", {}),
               ("dispatch", "dispatcher", {"department": "w"}),
               ("handle", "department", {}),
               ("apply_suspend", "department", {"reason": "需立项"}),
               ("approve_suspend", "commander", {}))[0]
    assert case.status == "suspended"
    case = run(case, ("resume", "commander", {}))[0]
    assert (case.status, case.resume_status) == ("handling", None)


def test_available_actions_respect_role_and_guard():
    """Buttons: a shift lead on a failed check sees rework but not close."""
    case = to_checked("failed")
    acts = available_actions(SPEC, case, "shift_lead")
    assert "rework" in acts and "close" not in acts
    assert available_actions(SPEC, case, "department") == ["note"]  # only a remark


def test_merge_rejects_self():
    """A case cannot be merged into itself."""
    with pytest.raises(InvalidField):
        run(make(), ("merge", "agent", {"merged_into": "20261123-0001"}))


def test_diagram_lists_main_edges():
    """The Mermaid diagram is generated from the table and shows the main line."""
    text = render_diagram(SPEC)
    assert text.startswith("stateDiagram-v2")
    assert "registered --> dispatched: dispatch 派遣" in text
    assert "suspended --> handling: resume" in text
    assert "deferred --> registered" not in text


@pytest.mark.parametrize("snippet,needle", [
    ("transitions: [{name: fly, from: [accepted], to: closed, roles: [agent], emits: [X]}]",
     "no label"),
    ("transitions: [{name: close, from: [nowhere], to: closed, roles: [agent], emits: [X]}]",
     "unknown state"),
    ("transitions: [{name: close, from: [checked], to: closed, roles: [king], emits: [X]}]",
     "unknown role"),
    ("transitions: [{name: close, from: [checked], to: closed, roles: [agent], emits: [X],"
     " guard: magic}]", "unknown guard"),
    ("transitions: [{name: close, from: [checked], to: closed, roles: [agent], emits: [X],"
     " effects: ['open:void']}]", "never decided"),
    ("transitions: [{name: close, from: [checked], to: closed, roles: [agent], emits: [X]},"
     " {name: close, from: [checked], to: void, roles: [agent], emits: [Y]}]", "already defined"),
    ("transitions: [{name: close, from: [checked], to: closed, roles: [agent]}]", "must not be empty"),
    ("transitions: {}", "transitions"),
    ("a: [", "not valid YAML"),
])
def test_bad_spec_is_rejected(tmp_path: Path, snippet, needle):
    """Malformed spec files fail at load time with a message naming the problem."""
    path = tmp_path / "wf.yaml"
    path.write_text(snippet, encoding="utf-8")
    with pytest.raises(WorkflowSpecError) as info:
        load_workflow_spec(path)
    assert needle in str(info.value)

"""The case workflow through CaseService and the SQL repository, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from case_core.domain import workflow
from case_core.domain.calendar import WorkCalendar
from case_core.domain.categories import load_category_directory
from case_core.domain.evaluation import evaluate
from case_core.domain.reference import (
    Gazetteer,
    RoutingTable,
    load_departments,
    load_gazetteer,
    load_grid_cells,
    load_routing_rules,
)
from case_core.domain.workflow import VersionConflict, new_case
from case_core.service import CaseService, ReferenceData
from tests.unit.case_core.test_traces import TRACES, check_history, replay

DEMO = Path(__file__).resolve().parents[3] / "case_core" / "demo_data"
MON = datetime(2026, 11, 23, 9, 0)


def demo_reference() -> ReferenceData:
    rules, errors = load_routing_rules(DEMO / "routing_rules.csv")
    assert not errors
    categories, errors = load_category_directory(local=[DEMO / "local_categories.csv"])
    assert not errors
    places, _ = load_gazetteer(DEMO / "gazetteer.csv")
    cells, _ = load_grid_cells(DEMO / "grid_cells.csv")
    depts, _ = load_departments(DEMO / "departments.csv")
    return ReferenceData(routing=RoutingTable(rules), calendar=WorkCalendar(), categories=categories,
                         gazetteer=Gazetteer(places), grid_cells={c.grid_id: c for c in cells},
                         departments={d.code: d for d in depts})


async def insert_trace_case(repo, c) -> int:
    state, _ = new_case(number=c["number"], channel=c["channel"], reporter_phone=c.get("reporter_phone", "13800000000"),
                        description=c.get("description", "井盖缺失"), category=c.get("category"),
                        address=c.get("address", "长江路1号"), now=c["at"], kind=c.get("kind", "report"),
                        case_type=c.get("case_type", "normal"), actor=c["actor"], role=c.get("role", "agent"))
    return await repo.insert_case_state(state)


@pytest.mark.parametrize("path", TRACES, ids=[p.stem for p in TRACES])
async def test_golden_trace_through_the_database(repo, path):
    """Each golden trace replayed through service + SQL ends in exactly the pure core's state."""
    trace = yaml.safe_load(path.read_text(encoding="utf-8"))
    expected_state, expected_events = replay(trace)
    service = CaseService(repo, reference=ReferenceData())
    c = trace["case"]
    for step in trace["steps"]:
        target = (step.get("fields") or {}).get("merged_into")
        if isinstance(target, str) and target != c["number"] and "-" in target and target[:8].isdigit():
            await insert_trace_case(repo, {**c, "number": target})
    case_id = await insert_trace_case(repo, c)
    events = ["CaseAccepted"]
    for step in trace["steps"]:
        version = (await repo.load_state(case_id)).version
        call = service.act(case_id, step["action"], actor=step["actor"], role=step["role"],
                           fields=step.get("fields") or {}, expected_version=version, now=step["at"])
        if "expect_error" in step:
            with pytest.raises(getattr(workflow, step["expect_error"])):
                await call
            continue
        _view, more = await call
        events += [e.name for e in more]
    state = await repo.load_state(case_id)
    assert state == expected_state
    assert state.status == trace["expected"]["status"]
    check_history(state.history, trace["expected"]["history"])
    assert events == [e.name for e in expected_events]
    view = await repo.get_case(case_id)
    assert [h.action for h in view.history] == [h.action for h in expected_state.history]


async def registered_case(service, repo, now=MON, **kw) -> int:
    view = await service.create_case(channel="inspector_app", description=kw.pop("description", "井盖缺失"),
                                     actor="insp-01", role="inspector", now=now,
                                     category=kw.pop("category", "component:01002"), **kw)
    await service.act(view.id, "register", actor="lead-1", role="shift_lead", now=now + timedelta(minutes=5))
    return view.id


async def test_two_dispatchers_race_exactly_one_wins(repo):
    """Two dispatchers dispatch the same case at once: one succeeds, the other gets VersionConflict."""
    service = CaseService(repo, reference=ReferenceData())
    case_id = await registered_case(service, repo)
    version = (await repo.load_state(case_id)).version

    async def dispatch(dept: str):
        return await service.act(case_id, "dispatch", actor=f"disp-{dept}", role="dispatcher",
                                 fields={"department": dept}, expected_version=version,
                                 now=MON + timedelta(minutes=10))

    results = await asyncio.gather(dispatch("municipal"), dispatch("lighting"), return_exceptions=True)
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1 and len(losses) == 1
    assert isinstance(losses[0], VersionConflict)
    state = await repo.load_state(case_id)
    assert state.version == version + 1
    assert [h.action for h in state.history].count("dispatch") == 1
    assert state.department == wins[0][0].department


async def test_stale_write_is_refused_by_the_sql_version_check(repo):
    """A save based on an old version matches no row: VersionConflict, nothing written."""
    service = CaseService(repo, reference=ReferenceData())
    case_id = await registered_case(service, repo)
    stale = await repo.load_state(case_id)
    await service.act(case_id, "urge", actor="lead-1", role="shift_lead", fields={"reason": "群众反映强烈"},
                      now=MON + timedelta(hours=1))
    new, _ = workflow.apply(service.spec, stale, workflow.CaseCommand("dispatch", "d", "dispatcher",
                                                                      {"department": "municipal"}), MON)
    with pytest.raises(VersionConflict):
        await repo.save_states([(case_id, stale.version, new)])
    after = await repo.load_state(case_id)
    assert after.status == "registered" and after.urge_count == 1 and after.department is None


async def test_deadlines_come_from_routing_rules_and_the_calendar(repo):
    """Dispatch starts the 处置 clock at 3 working days (demo routing); the overdue filter sees it later."""
    ref = demo_reference()
    service = CaseService(repo, reference=ref)
    case_id = await registered_case(service, repo)
    t = datetime(2026, 11, 27, 16, 0)  # a Friday afternoon: the clock runs over the weekend
    view, events = await service.act(case_id, "dispatch", actor="disp-1", role="dispatcher", now=t)
    assert [e.name for e in events] == ["CaseDispatched"]
    assert view.department == "municipal"  # component:01… → municipal in the demo rules
    state = await repo.load_state(case_id)
    due = state.deadlines["handle"].due_at
    assert due == WorkCalendar().add_working_days(t, 3) == datetime(2026, 12, 2, 16, 0)
    # The case column holds the earliest open deadline (here the whole case's 5 days from 立案).
    first_due = min(c.due_at for c in state.deadlines.values() if c.done_at is None and c.due_at)
    assert view.due_at == first_due == datetime(2026, 11, 30, 9, 5)
    assert await service.search(overdue_at=first_due - timedelta(minutes=1)) == []
    [late] = await service.search(overdue_at=first_due + timedelta(minutes=1), department="municipal")
    assert late.id == case_id


async def test_merge_changes_both_cases_or_neither(repo):
    """Merging sets merged on the duplicate and records it on the target; a conflict rolls both back."""
    service = CaseService(repo, reference=ReferenceData())
    first = await service.create_case(channel="12319", description="长江路井盖缺失", actor="a1", role="agent", now=MON)
    dup = await service.create_case(channel="12319", description="长江路有个井盖没了", actor="a1", role="agent",
                                    now=MON + timedelta(minutes=3))
    third = await service.create_case(channel="12319", description="路灯不亮", actor="a1", role="agent",
                                      now=MON + timedelta(minutes=4))
    a, b = await service.merge_cases(dup.id, first.id, actor="a1", role="agent", now=MON + timedelta(minutes=5),
                                     comment="同一井盖")
    assert a.status == "merged" and b.status == "accepted"
    target = await repo.load_state(first.id)
    assert target.merged_from == (dup.number,) and target.version == 2
    # Stale version on the target: the merge of `third` must not be half-written.
    s3 = await repo.load_state(third.id)
    new3, _ = workflow.apply(service.spec, s3, workflow.CaseCommand("merge", "a1", "agent",
                                                                    {"merged_into": first.number}), MON)
    tgt_new, _ = workflow.apply(service.spec, target, workflow.CaseCommand("absorb", "a1", "agent",
                                                                           {"merged_case": third.number}), MON)
    with pytest.raises(VersionConflict):
        await repo.save_states([(third.id, s3.version, new3), (first.id, target.version - 1, tgt_new)])
    assert (await repo.load_state(third.id)).status == "accepted"


async def test_search_filters(repo):
    """Status, department, urgent, text, reporter and category filters each narrow the list."""
    service = CaseService(repo, reference=ReferenceData())
    c1 = await registered_case(service, repo, reporter_phone="13900000001")
    c2 = await registered_case(service, repo, description="路灯不亮", category="component:02001", case_type="urgent")
    await service.act(c1, "dispatch", actor="d", role="dispatcher", fields={"department": "municipal"},
                      now=MON + timedelta(hours=1))
    ids = lambda views: sorted(v.id for v in views)  # noqa: E731
    assert ids(await service.search(status="dispatched")) == [c1]
    assert ids(await service.search(department="municipal")) == [c1]
    assert ids(await service.search(urgent=True)) == [c2]
    assert ids(await service.search(text="路灯")) == [c2]
    assert ids(await service.search(reporter_phone="13900000001")) == [c1]
    assert ids(await service.search(category="component:02001")) == [c2]
    assert ids(await service.search(category="component:01")) == [c1]
    assert ids(await service.search(status=("dispatched", "registered"))) == [c1, c2]


async def test_duplicate_suggestions_find_the_same_problem(repo):
    """A second report of the same manhole in the same grid cell is suggested; an unrelated one is not."""
    service = CaseService(repo, reference=ReferenceData())
    kw = dict(channel="12319", actor="a1", role="agent", category="component:01002", grid_cell="320102001002001")
    first = await service.create_case(description="长江路口污水井盖缺失", address="长江路12号", now=MON, **kw)
    await service.create_case(description="路灯杆倾斜", address="梅园新村", now=MON, channel="12319", actor="a1",
                              role="agent", category="component:02001")
    probe = await service.create_case(description="长江路口污水井盖不见了", address="长江路12号",
                                      now=MON + timedelta(hours=2), **kw)
    found = await service.duplicates_for(probe.id)
    assert [v.id for _s, v in found] == [first.id]
    assert found[0][0].location == "same_cell" and found[0][0].score > 0.6


async def test_sql_evaluation_equals_the_domain_evaluation(repo):
    """Indicators aggregated in SQL equal evaluate() over the same cases, for several periods and groupings."""
    states = []
    for i, path in enumerate(TRACES):
        state, _ = replay(yaml.safe_load(path.read_text(encoding="utf-8")))
        states.append(replace(state, number=f"20261123-{9000 + i}"))
    for s in states:
        await repo.insert_case_state(s)
    service = CaseService(repo, reference=ReferenceData())
    periods = [(datetime(2026, 11, 1), datetime(2026, 12, 31)), (datetime(2026, 11, 23), datetime(2026, 11, 24)),
               (datetime(2026, 11, 23, 10, 0), datetime(2026, 11, 24, 11, 0)),
               (datetime(2026, 11, 24), datetime(2026, 11, 28))]
    checked = 0
    for start, end in periods:
        for group_by in (None, "department", "role", "person", "area"):
            expected = evaluate(states, start, end, group_by=group_by)
            got = {g.key: g.results for g in await service.evaluate(start, end, group_by=group_by)}
            assert got == expected, (start, end, group_by)
            checked += sum(r.numerator for rs in expected.values() for r in rs.values())
    assert checked > 0

"""The evaluation rollup (case_fact_rollup, migration 0008) on SQLite and PostgreSQL.

Its figures must equal the SQL aggregation over every fact (``rollup=False``) and the pure
domain ``evaluate()`` over the loaded cases, for whole-day and partial-day periods and every
grouping, also after transitions that flip a judgement (send-back, void, close) on a later
day, and a period ending on the flip day before or after the flip. The rollup kept up by
transitions equals one rebuilt from ``case_facts``, and migration 0008 backfills it.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import create_engine, insert, select

from case_core.adapters import migrate, orm
from case_core.adapters.sqlalchemy_repo import (
    SqlRepository,
    _case_columns,
    _fact_rows,
    _history_row,
    make_engine,
    sync_url,
)
from case_core.domain.calendar import WorkCalendar
from case_core.domain.evaluation import evaluate, evaluate_counts
from case_core.domain.reference import RoutingRule, RoutingTable, parse_time_limit
from case_core.domain.workflow import CaseCommand, apply, load_workflow_spec, new_case
from case_core.service import CaseService, ReferenceData

D1 = datetime(2026, 11, 23)  # a Monday
G1, G2, G3 = "320102001002001", "320102001003004", "320102002001001"
GROUPINGS = [(None, "street"), ("department", "street"), ("role", "street"), ("person", "street"),
             ("area", "district"), ("area", "street"), ("area", "community"), ("area", "grid")]
SPEC = load_workflow_spec()


def h(day: int, hour: float) -> datetime:
    """Day 1..n of the fixture week at an hour (fractions are minutes)."""
    return D1 + timedelta(days=day - 1, hours=hour)


def reference() -> ReferenceData:
    L = parse_time_limit
    rules = [RoutingRule(1, "", "", "", "", None, {"verify": L("2h"), "register": L("1h"), "dispatch": L("1h"),
                                                   "handle": L("1d"), "check": L("4h"), "close": L("2h"),
                                                   "case": L("3d")})]
    return ReferenceData(routing=RoutingTable(rules), calendar=WorkCalendar())


# (channel, kind, case_type, grid cell, created, [(action, actor, role, fields, at)])
SCENARIOS = [
    # Sent to the wrong department; the send-back is approved two days later at 15:00
    # (the first dispatch stops being accurate then); closed on day 4 at 11:30.
    ("inspector_app", "report", "normal", G1, h(1, 9), [
        ("register", "lead-1", "shift_lead", {}, h(1, 9.2)),
        ("dispatch", "disp-1", "dispatcher", {"department": "water"}, h(1, 9.5)),
        ("apply_send_back", "water", "department", {"reason": "非供水井盖"}, h(2, 10)),
        ("approve_send_back", "disp-1", "dispatcher", {}, h(3, 15)),
        ("dispatch", "disp-1", "dispatcher", {"department": "municipal"}, h(3, 15.2)),
        ("handle", "municipal", "department", {}, h(3, 16)),
        ("report_done", "municipal", "department", {"result": "已修复", "photos": ["a.jpg"]}, h(4, 10)),
        ("check", "insp-01", "inspector", {"check_result": "passed"}, h(4, 11)),
        ("close", "lead-1", "shift_lead", {}, h(4, 11.5)),
        ("follow_up", "agent-2", "agent", {"satisfaction": "satisfied"}, h(4, 15)),
    ]),
    # Verified and registered on day 1, voided on day 3 at 11:00 (registration not accurate).
    ("12319", "report", "normal", G2, h(1, 10), [
        ("send_verify", "agent-1", "agent", {"inspector": "insp-02"}, h(1, 10.1)),
        ("verify", "insp-02", "inspector", {"verify_result": "confirmed"}, h(1, 13)),
        ("register", "lead-1", "shift_lead", {}, h(1, 13.5)),
        ("apply_void", "disp-1", "dispatcher", {"reason": "重复上报"}, h(3, 10)),
        ("approve_void", "lead-2", "shift_lead", {}, h(3, 11)),
    ]),
    # A rework loop, closed on day 3 at 13:00; dissatisfied on follow-up.
    ("inspector_app", "report", "normal", G1, h(2, 8.5), [
        ("register", "lead-2", "shift_lead", {}, h(2, 9)),
        ("dispatch", "disp-1", "dispatcher", {"department": "municipal"}, h(2, 9.1)),
        ("handle", "municipal", "department", {}, h(2, 10)),
        ("report_done", "municipal", "department", {"result": "已处置", "photos": ["b.jpg"]}, h(2, 17)),
        ("check", "insp-01", "inspector", {"check_result": "failed"}, h(3, 9)),
        ("rework", "lead-1", "shift_lead", {"reason": "处置不到位"}, h(3, 9.5)),
        ("dispatch", "disp-1", "dispatcher", {"department": "municipal"}, h(3, 9.7)),
        ("handle", "municipal", "department", {}, h(3, 10)),
        ("report_done", "municipal", "department", {"result": "已返工", "photos": ["c.jpg"]}, h(3, 12)),
        ("check", "insp-01", "inspector", {"check_result": "passed"}, h(3, 12.5)),
        ("close", "lead-2", "shift_lead", {}, h(3, 13)),
        ("follow_up", "agent-2", "agent", {"satisfaction": "dissatisfied"}, h(3, 16)),
    ]),
    # Urgent, no grid cell, left at the department: its handling runs late (still open).
    ("inspector_app", "report", "urgent", None, h(1, 8), [
        ("register", "lead-1", "shift_lead", {}, h(1, 8.1)),
        ("dispatch", "disp-2", "dispatcher", {"department": "lighting"}, h(1, 8.2)),
    ]),
    # Never registered: its 立案 deadline passes on day 3 (an open, late step).
    ("inspector_app", "report", "normal", G3, h(2, 20), []),
    # A consultation answered on the call, followed up the next day.
    ("96310", "consultation", "normal", G3, h(2, 11), [
        ("direct_answer", "agent-1", "agent", {"answer": "已答复"}, h(2, 11.1)),
        ("follow_up", "agent-2", "agent", {"satisfaction": "basically_satisfied"}, h(3, 9)),
    ]),
]

PERIODS = [
    (h(1, 0), h(3, 0)),            # whole days, before every flip
    (h(1, 0), h(5, 0)),            # whole days, after every flip
    (h(1, 0), h(3, 12)),           # ends on day 3 after the void and close, before the send-back
    (h(1, 0), h(3, 10.5)),         # ends on day 3 before the void
    (h(1, 0), h(4, 11.75)),        # ends just after a close on day 4
    (h(1, 8.5), h(3, 16)),         # partial first and last day
    (h(2, 0), h(3, 0)),            # one whole day
    (h(1, 9), h(2, 9)),            # shorter than two midnights: facts only
    (h(3, 9), h(3, 13)),           # inside one day
    (datetime(2026, 1, 1), datetime(2027, 1, 1)),
]


async def file_scenarios(service: CaseService, scenarios=SCENARIOS) -> list[int]:
    ids = []
    for channel, kind, ctype, grid, created, steps in scenarios:
        view = await service.create_case(channel=channel, kind=kind, case_type=ctype, description="井盖缺失",
                                         actor="agent-1", role="agent", now=created, grid_cell=grid)
        for action, actor, role, fields, at in steps:
            await service.act(view.id, action, actor=actor, role=role, fields=fields, now=at)
        ids.append(view.id)
    return ids


async def assert_same_figures(repo: SqlRepository, ids: list[int], periods=PERIODS) -> int:
    """Rollup == every fact in SQL == the domain over the loaded cases; returns how much was counted."""
    service = CaseService(repo, reference=reference())
    states = [await repo.load_state(i) for i in ids]
    counted = 0
    for start, end in periods:
        for group_by, level in GROUPINGS:
            expected = evaluate(states, start, end, group_by=group_by, area_level=level)
            via_rollup = evaluate_counts(await repo.evaluation_counts(start, end, group_by, level))
            via_facts = evaluate_counts(await repo.evaluation_counts(start, end, group_by, level, rollup=False))
            assert via_facts == expected, (start, end, group_by, level)
            assert via_rollup == expected, (start, end, group_by, level)
            got = {g.key: g.results for g in await service.evaluate(start, end, group_by=group_by, area_level=level)}
            assert got == expected, (start, end, group_by, level)
            counted += sum(r.numerator + (r.denominator or 0) for rs in expected.values() for r in rs.values())
    return counted


async def rollup_rows(repo: SqlRepository) -> Counter:
    async with repo.engine.connect() as conn:
        rows = (await conn.execute(select(orm.case_fact_rollup))).all()
    return Counter({tuple(r[:-1]): r.n for r in rows if r.n})


async def test_rollup_equals_facts_and_domain_across_periods_and_groupings(repo):
    """Every period (whole days, partial days, under a day) and grouping gives the same figures three ways."""
    ids = await file_scenarios(CaseService(repo, reference=reference()))
    assert await assert_same_figures(repo, ids) > 0


async def test_flipped_judgements_count_as_they_stood_at_the_period_end(repo):
    """A send-back, a void and a close on a later day change last week's accuracy and close
    rate only for periods ending after them; the rollup follows each flip."""
    service = CaseService(repo, reference=reference())
    ids = await file_scenarios(service, SCENARIOS[:3])

    async def rates(end):
        got = evaluate_counts(await repo.evaluation_counts(h(1, 0), end, None))["all"]
        return (got["accurate_dispatch_rate"].numerator, got["accurate_register_rate"].numerator,
                got["close_rate"].numerator)

    # Registered: A d1, B d1, C d2. Dispatched: A d1, C d2, C again d3 09:42, A again d3 15:12.
    # Flips: B voided d3 11:00, C closed d3 13:00, A's first dispatch sent back d3 15:00,
    # A closed d4 11:30. Accurate dispatches, accurate registrations, closed registrations:
    assert await rates(h(3, 0)) == (2, 3, 0)
    assert await rates(h(3, 10.5)) == (3, 3, 0)
    assert await rates(h(3, 12)) == (3, 2, 0)
    assert await rates(h(3, 14)) == (3, 2, 1)
    assert await rates(h(3, 16)) == (3, 2, 1)   # 4 dispatches now, A's first no longer accurate
    assert await rates(h(5, 0)) == (3, 2, 2)
    assert await assert_same_figures(repo, ids) > 0

    # One more flip through a transition after the fact: the rollup is updated with it.
    case = await service.create_case(channel="inspector_app", description="路灯不亮", actor="insp-01",
                                     role="inspector", now=h(1, 14), grid_cell=G2)
    await service.act(case.id, "register", actor="lead-1", role="shift_lead", now=h(1, 14.1))
    await service.act(case.id, "dispatch", actor="disp-1", role="dispatcher", fields={"department": "water"},
                      now=h(1, 14.2))
    before = await rates(h(5, 0))
    await service.act(case.id, "apply_send_back", actor="water", role="department", fields={"reason": "不属本单位"},
                      now=h(4, 9))
    await service.act(case.id, "approve_send_back", actor="disp-1", role="dispatcher", now=h(4, 9.5))
    assert await rates(h(5, 0)) == (before[0] - 1, before[1], before[2])
    assert await assert_same_figures(repo, [*ids, case.id]) > 0


async def test_rollup_kept_by_transitions_equals_a_rebuild_from_facts(repo):
    """After creates, transitions, merges and save_states the rollup holds exactly what a
    recount of case_facts gives."""
    service = CaseService(repo, reference=reference())
    ids = await file_scenarios(service)
    a = await service.create_case(channel="12319", description="井盖缺失", actor="agent-1", role="agent",
                                  now=h(2, 9), grid_cell=G1)
    b = await service.create_case(channel="12319", description="井盖不见了", actor="agent-1", role="agent",
                                  now=h(2, 9.5), grid_cell=G1)
    await service.merge_cases(b.id, a.id, actor="agent-1", role="agent", now=h(2, 10))
    state = await repo.load_state(ids[3])
    new, _ = apply(SPEC, state, CaseCommand("handle", "lighting", "department", {}), h(2, 8))
    await repo.save_states([(ids[3], state.version, new)])
    kept = await rollup_rows(repo)
    assert kept
    await repo.rebuild_evaluation_rollup()
    assert await rollup_rows(repo) == kept
    assert await assert_same_figures(repo, [*ids, a.id, b.id], PERIODS[:3]) > 0


async def test_migration_backfills_the_rollup_from_existing_facts(db_url):
    """Facts written before 0008 (no rollup yet) are counted into the rollup by the upgrade."""
    url = sync_url(db_url)
    migrate.upgrade(url, "0002")
    states = []
    for n, (channel, kind, ctype, grid, created, steps) in enumerate(SCENARIOS, start=1):
        state, _ = new_case(number=f"20261123-{n:04d}", channel=channel, reporter_phone="13800000000",
                            description="井盖缺失", category=None, address="", now=created, kind=kind,
                            case_type=ctype, grid_cell=grid, actor="agent-1", role="agent",
                            deadlines={"register": created + timedelta(hours=1)}
                            if channel == "inspector_app" and kind == "report" else {})
        for action, actor, role, fields, at in steps:
            state, _ = apply(SPEC, state, CaseCommand(action, actor, role, fields), at)
        states.append(state)
    engine = create_engine(url)
    with engine.begin() as conn:
        for case_id, s in enumerate(states, start=1):
            conn.execute(insert(orm.cases).values(id=case_id, number=s.number, channel=s.channel, kind=s.kind,
                                                  created_at=s.created_at,
                                                  # columns of 0002's schema only (later ones came after)
                                                  **{k: v for k, v in _case_columns(s, {}).items()
                                                     if k not in ("lat", "lon")}))
            conn.execute(insert(orm.case_history), [_history_row(case_id, i, e) for i, e in
                                                    enumerate(s.history, start=1)])
            conn.execute(insert(orm.case_facts), _fact_rows(case_id, s))
    engine.dispose()
    migrate.upgrade(url)
    repo = SqlRepository(make_engine(db_url))
    try:
        backfilled = await rollup_rows(repo)
        assert backfilled
        assert await assert_same_figures(repo, list(range(1, len(states) + 1))) > 0
        await repo.rebuild_evaluation_rollup()
        assert await rollup_rows(repo) == backfilled
    finally:
        await repo.close()

"""Evaluation (综合评价): indicators and weighted scores per department, area, role, person.

Owns the definition of every indicator (numerator, denominator, the formula text shown
next to the figure) and the composite score. Input is plain ``CaseState`` records with
their histories; each case is first reduced to *facts* (one timed step done, one case
registered, one rework …) carrying who is responsible, then facts in the period are
counted. A step with no deadline cannot be late and counts as on time; a step still
open whose deadline fell inside the period counts as late (期末超时未办).
"""
from __future__ import annotations

from dataclasses import dataclass, replace as _replace
from datetime import datetime
from typing import Callable, Iterable, Mapping

from case_core.domain.reference import AREA_LEVELS
from case_core.domain.workflow import VERIFY_EXEMPT_CHANNELS, CaseState

__all__ = [
    "Fact", "Indicator", "IndicatorResult", "CompositeScore", "INDICATORS",
    "DEFAULT_WEIGHTS", "GROUP_BY", "extract_facts", "evaluate", "evaluate_counts",
    "composite_score", "effective_ok",
]

GROUP_BY = ("department", "area", "role", "person")

# Which role answers for a step that is still open (nobody has acted on it yet).
_STEP_ROLE = {"verify": "inspector", "register": "shift_lead", "dispatch": "dispatcher",
              "handle": "department", "check": "inspector", "case": "shift_lead"}
# Channels of inspectors' own reports (城管通 and the older inspector_app).
INSPECTOR_CHANNELS = VERIFY_EXEMPT_CHANNELS  # the inspectors' own channels, as the workflow knows them
_TIMED_ACTIONS = {"verify": "verify", "register": "register", "dispatch": "dispatch",
                  "report_done": "handle", "check": "check", "close": "case"}


@dataclass(frozen=True)
class Fact:
    """One countable thing that happened to a case, attributed to whoever answers for it.

    ``kind`` is a step name (verify, register, dispatch, handle, check, case) for timed
    steps, or rework / follow_up. ``on_time`` is set for timed steps; ``ok`` carries the
    second judgement some indicators need (accurate register/dispatch, closed, satisfied).
    """

    kind: str
    case_number: str
    at: datetime
    role: str
    person: str
    department: str | None
    grid_cell: str | None
    on_time: bool | None = None
    ok: bool | None = None
    still_open: bool = False
    # When ``ok`` took this value; before that moment it was the opposite (a dispatch
    # is accurate until a send-back, a registration unclosed until its close).
    flipped_at: datetime | None = None


def effective_ok(ok: bool | None, flipped_at: datetime | None, until: datetime) -> bool | None:
    """``ok`` as it stood at ``until`` (the judgement may have flipped later)."""
    if ok is None or flipped_at is None or flipped_at < until:
        return ok
    return not ok


def _on_time(at: datetime, due: datetime | None) -> bool:
    return due is None or at <= due


def extract_facts(case: CaseState, *, until: datetime) -> list[Fact]:
    """Reduce one case's history (up to ``until``) to facts for the indicators."""
    facts: list[Fact] = []
    history = [h for h in case.history if h.at < until]
    department: str | None = None
    last_dispatch: int | None = None   # index into facts
    last_register: int | None = None
    last_handler: tuple[str, str] | None = None
    closed_registers: dict[int, datetime] = {}

    def add(kind: str, h, person: str, role: str, **kw) -> int:
        facts.append(Fact(kind, case.number, h.at, role, person, department, case.grid_cell, **kw))
        return len(facts) - 1

    # 监督员上报: an inspector's own report is 有效 once it is registered (立案), not when declined.
    reporter = history[0].actor if history and case.channel in INSPECTOR_CHANNELS else None
    last_report: int | None = None
    for h in history:
        if reporter is not None and h.action in ("register", "decline"):
            last_report = add("inspector_report", h, reporter, "inspector", ok=h.action == "register")
        if h.action == "dispatch":
            department = h.fields.get("department", department)
        step = _TIMED_ACTIONS.get(h.action)
        if step is not None and (step in h.ended or step in ("register", "dispatch")):
            on_time = _on_time(h.at, h.ended.get(step))
            idx = add(step, h, h.actor, h.role, on_time=on_time,
                      ok=True if step in ("register", "dispatch") else None)
            if step == "register":
                last_register = idx
            elif step == "dispatch":
                last_dispatch = idx
            elif step == "handle":
                last_handler = (h.actor, h.role)
        if h.action == "approve_send_back":
            # A send-back proves the last dispatch went to the wrong department.
            if last_dispatch is not None:
                facts[last_dispatch] = _replace(facts[last_dispatch], ok=False, flipped_at=h.at)
            department = None
        elif h.action == "approve_void" and last_register is not None:
            facts[last_register] = _replace(facts[last_register], ok=False, flipped_at=h.at)
            if last_report is not None and facts[last_report].ok:   # a voided report was not 有效
                facts[last_report] = _replace(facts[last_report], ok=False, flipped_at=h.at)
        elif h.action == "rework":
            person, role = last_handler or (department or "", "department")
            add("rework", h, person, role)
        elif h.action == "close" and last_register is not None:
            closed_registers.setdefault(last_register, h.at)
        elif h.action == "follow_up":
            satisfaction = h.fields.get("satisfaction")
            answered = next((x for x in reversed(history)
                             if x.action == "direct_answer" and x.at <= h.at), None)
            if last_handler is not None:
                person, role = last_handler
            elif answered is not None:
                person, role = answered.actor, answered.role
            else:
                person, role = "", "department"
            if satisfaction != "unreachable":
                add("follow_up", h, person, role,
                    ok=satisfaction in ("satisfied", "basically_satisfied"))

    # The 结案率 cohort: each registration in the period, closed by ``until`` or not.
    for i in [i for i, f in enumerate(facts) if f.kind == "register"]:
        facts.append(_replace(facts[i], kind="register_cohort", ok=i in closed_registers,
                              flipped_at=closed_registers.get(i)))

    for clock in case.deadlines.values():
        if clock.done_at is None and clock.due_at is not None and clock.due_at < until \
                and clock.step in _STEP_ROLE:
            role = _STEP_ROLE[clock.step]
            person = (case.inspector or "") if role == "inspector" else (
                case.department or "") if role == "department" else ""
            facts.append(Fact(clock.step, case.number, clock.due_at, role, person,
                              case.department, case.grid_cell, on_time=False, still_open=True))
    return facts


@dataclass(frozen=True)
class Indicator:
    """One indicator: which facts count below and above the line, and how to read it."""

    code: str
    name_zh: str
    formula_zh: str
    numerator: Callable[[Fact], bool]
    denominator: Callable[[Fact], bool] | None = None  # None: a plain count
    higher_is_better: bool = True


@dataclass(frozen=True)
class IndicatorResult:
    """An indicator's figure for one group and period; ``value`` is a ratio 0–1
    (None when the denominator is 0) or, for counts, the count itself."""

    code: str
    name_zh: str
    numerator: int
    denominator: int | None
    value: float | None
    formula_zh: str

    @property
    def display(self) -> str:
        if self.denominator is None:
            return str(self.numerator)
        return "—" if self.value is None else f"{self.value:.2%}"


def _timed(step: str) -> Callable[[Fact], bool]:
    return lambda f: f.kind == step


def _timed_ok(step: str) -> Callable[[Fact], bool]:
    return lambda f: f.kind == step and bool(f.on_time)


INDICATORS: tuple[Indicator, ...] = (
    Indicator("register_count", "立案数", "立案数 = 期内立案的案卷数",
              lambda f: f.kind == "register" and not f.still_open),
    Indicator("on_time_register_rate", "按时立案率",
              "按时立案率 = 按时立案数 ÷ 应立案数 × 100%（应立案数 = 期内立案数 + 期内到期未立案数）",
              _timed_ok("register"), _timed("register")),
    Indicator("accurate_register_rate", "准确立案率",
              "准确立案率 = (立案数 − 立案后作废数) ÷ 立案数 × 100%",
              lambda f: f.kind == "register" and not f.still_open and f.ok is True,
              lambda f: f.kind == "register" and not f.still_open),
    Indicator("on_time_dispatch_rate", "按时派遣率",
              "按时派遣率 = 按时派遣数 ÷ 应派遣数 × 100%（应派遣数 = 期内派遣数 + 期内到期未派遣数）",
              _timed_ok("dispatch"), _timed("dispatch")),
    Indicator("accurate_dispatch_rate", "准确派遣率",
              "准确派遣率 = (派遣数 − 回退数) ÷ 派遣数 × 100%",
              lambda f: f.kind == "dispatch" and not f.still_open and f.ok is True,
              lambda f: f.kind == "dispatch" and not f.still_open),
    Indicator("on_time_handle_rate", "按期处置率",
              "按期处置率 = 按期处置数 ÷ 应处置数 × 100%（应处置数 = 期内处置反馈数 + 期内到期未反馈数）",
              _timed_ok("handle"), _timed("handle")),
    Indicator("rework_rate", "返工率", "返工率 = 返工数 ÷ 处置反馈数 × 100%",
              lambda f: f.kind == "rework",
              lambda f: f.kind == "handle" and not f.still_open, higher_is_better=False),
    Indicator("close_rate", "结案率",
              "结案率 = 期内立案案卷中已结案数 ÷ 期内立案数 × 100%",
              lambda f: f.kind == "register_cohort" and f.ok is True,
              lambda f: f.kind == "register_cohort"),
    Indicator("on_time_close_rate", "按期结案率",
              "按期结案率 = 按期结案数 ÷ 应结案数 × 100%（应结案数 = 期内结案数 + 期内到期未结案数）",
              _timed_ok("case"), _timed("case")),
    Indicator("on_time_verify_rate", "按时核实率",
              "按时核实率 = 按时核实数 ÷ 应核实数 × 100%（应核实数 = 期内核实数 + 期内到期未核实数）",
              _timed_ok("verify"), _timed("verify")),
    Indicator("on_time_check_rate", "按时核查率",
              "按时核查率 = 按时核查数 ÷ 应核查数 × 100%（应核查数 = 期内核查数 + 期内到期未核查数）",
              _timed_ok("check"), _timed("check")),
    Indicator("valid_report_count", "有效上报数",
              "有效上报数 = 期内立案的监督员上报案卷数（立案后作废的不计）",
              lambda f: f.kind == "inspector_report" and f.ok is True),
    Indicator("valid_report_rate", "有效上报率",
              "有效上报率 = 有效上报数 ÷ 期内审核的监督员上报数 × 100%（审核 = 立案或不予立案）",
              lambda f: f.kind == "inspector_report" and f.ok is True,
              lambda f: f.kind == "inspector_report"),
    Indicator("satisfaction_rate", "满意率",
              "满意率 = (满意数 + 基本满意数) ÷ 有效回访数 × 100%（未接通不计入）",
              lambda f: f.kind == "follow_up" and f.ok is True,
              lambda f: f.kind == "follow_up"),
)

_BY_CODE = {i.code: i for i in INDICATORS}

# A starting point; every city sets its own weights in configuration.
DEFAULT_WEIGHTS: dict[str, float] = {
    "on_time_register_rate": 1, "accurate_register_rate": 1, "on_time_dispatch_rate": 1,
    "accurate_dispatch_rate": 1, "on_time_handle_rate": 3, "rework_rate": 1,
    "on_time_close_rate": 2, "on_time_verify_rate": 1, "on_time_check_rate": 1,
    "satisfaction_rate": 2,
}


def _group_key(f: Fact, group_by: str | None, area_level: str) -> str | None:
    if group_by is None:
        return "all"
    if group_by == "department":
        return f.department
    if group_by == "role":
        return f.role
    if group_by == "person":
        return f.person or None
    # area
    if not f.grid_cell:
        return None
    return f.grid_cell if area_level == "grid" else f.grid_cell[:AREA_LEVELS[area_level]]


def evaluate(cases: Iterable[CaseState], start: datetime, end: datetime, *,
             group_by: str | None = None, area_level: str = "street",
             indicators: Iterable[Indicator] = INDICATORS,
             ) -> dict[str | None, dict[str, IndicatorResult]]:
    """Every indicator per group over ``[start, end)``.

    ``group_by`` is None (one group ``"all"``), department, area, role or person;
    ``area_level`` is district, street, community or grid. Facts nobody can be
    attributed to (e.g. by department before dispatch) fall in group ``None``.
    """
    if group_by is not None and group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {GROUP_BY} or None, got {group_by!r}")
    if area_level != "grid" and area_level not in AREA_LEVELS:
        raise ValueError(f"area_level must be grid or one of {tuple(AREA_LEVELS)}")
    if end <= start:
        raise ValueError("the period must end after it starts")
    indicators = tuple(indicators)
    groups: dict[str | None, list[Fact]] = {}
    for case in cases:
        for f in extract_facts(case, until=end):
            if start <= f.at < end:
                groups.setdefault(_group_key(f, group_by, area_level), []).append(f)
    return evaluate_counts({k: [(f, 1) for f in fs] for k, fs in groups.items()}, indicators)


def evaluate_counts(groups: Mapping[str | None, Iterable[tuple[Fact, int]]],
                    indicators: Iterable[Indicator] = INDICATORS,
                    ) -> dict[str | None, dict[str, IndicatorResult]]:
    """Every indicator per group from facts with multiplicities.

    The database adapter aggregates facts in SQL (count per group, kind and judgement)
    and hands one representative ``Fact`` per combination here, so the indicator
    definitions stay in one place. ``ok`` must already be the value at the period end.
    """
    indicators = tuple(indicators)
    out: dict[str | None, dict[str, IndicatorResult]] = {}
    for key, weighted in groups.items():
        weighted = list(weighted)
        results = {}
        for ind in indicators:
            # Numerators are counted over all facts: a rework is not itself a handling.
            n = sum(c for f, c in weighted if ind.numerator(f))
            if ind.denominator is None:
                results[ind.code] = IndicatorResult(ind.code, ind.name_zh, n, None, float(n),
                                                    ind.formula_zh)
                continue
            d = sum(c for f, c in weighted if ind.denominator(f))
            results[ind.code] = IndicatorResult(ind.code, ind.name_zh, n, d,
                                                n / d if d else None, ind.formula_zh)
        out[key] = results
    return out


@dataclass(frozen=True)
class CompositeScore:
    """Weighted score 0–100; ``parts`` lists (code, weight, points) that were counted,
    ``missing`` the weighted indicators with no data in this group."""

    score: float | None
    parts: tuple[tuple[str, float, float], ...]
    missing: tuple[str, ...]
    formula_zh: str = "综合得分 = Σ(指标得分 × 权重) ÷ Σ权重；比率类指标得分 = 比率 × 100，返工率得分 = (1 − 返工率) × 100"


def composite_score(results: Mapping[str, IndicatorResult],
                    weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> CompositeScore:
    """Weighted mean of the rate indicators, lower-is-better ones inverted; indicators
    without data are left out rather than scored as zero."""
    parts = []
    missing = []
    for code, weight in weights.items():
        ind = _BY_CODE.get(code)
        if ind is None:
            raise ValueError(f"unknown indicator {code!r} in weights")
        if ind.denominator is None:
            raise ValueError(f"{code!r} is a count; only rates can be weighted")
        if weight < 0:
            raise ValueError(f"weight for {code!r} must not be negative")
        r = results.get(code)
        if r is None or r.value is None:
            missing.append(code)
            continue
        points = 100 * (r.value if ind.higher_is_better else 1 - r.value)
        parts.append((code, float(weight), round(points, 4)))
    total = sum(w for _, w, _ in parts)
    score = round(sum(w * p for _, w, p in parts) / total, 4) if total else None
    return CompositeScore(score, tuple(parts), tuple(missing))

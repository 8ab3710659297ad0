"""Service layer: the commands the call center and the web use, over the repository.

Each handler takes `now` from its caller (time is a parameter) and returns plain views.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping

from case_core.domain import workflow
from case_core.domain.bounds import check_action_fields, check_case_texts
from case_core.domain.calendar import HolidayEntry, WorkCalendar
from case_core.domain.categories import DEFAULT_CATEGORIES_PATH, Category, CategoryDirectory, load_categories
from case_core.domain.geo import GridIndex
from case_core.domain.duplicates import DuplicateSuggestion, nearby_by_distance, suggest_duplicates
from case_core.domain.evaluation import (
    DEFAULT_WEIGHTS,
    GROUP_BY,
    CompositeScore,
    IndicatorResult,
    composite_score,
    evaluate_counts,
)
from case_core.domain.reference import (
    Department,
    Gazetteer,
    GridCell,
    Place,
    RoutingRule,
    RoutingTable,
    parse_time_limit,
)
from case_core.domain.workflow import CaseCommand, CaseEvent, CaseState, InvalidField
from case_core.ports import CaseRepository, ReferenceRows
from case_core.views import CaseView

log = logging.getLogger(__name__)

# The call center files reports as this system actor.
IVR_ACTOR = "ivr"
IVR_ROLE = "agent"


def normalize_case_number(text: str) -> str:
    """Accept a number as keyed on a phone (digits only) as well as the printed form."""
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) > 8 and "-" not in text:
        return f"{digits[:8]}-{digits[8:]}"
    return text.strip()


def _history_rows(state) -> list[dict]:
    return [
        {
            "action": h.action,
            "actor": h.actor,
            "role": h.role,
            "at": h.at,
            "comment": h.comment,
            "before_status": h.before_status,
            "after_status": h.after_status,
            "fields": dict(h.fields),
        }
        for h in state.history
    ]


@dataclass(frozen=True)
class ReferenceData:
    """The city's reference data as the domain uses it (loaded from the ref_* tables)."""

    routing: RoutingTable = field(default_factory=lambda: RoutingTable(()))
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    categories: CategoryDirectory = field(default_factory=lambda: CategoryDirectory(()))
    gazetteer: Gazetteer = field(default_factory=lambda: Gazetteer(()))
    grid_cells: Mapping[str, GridCell] = field(default_factory=dict)
    departments: Mapping[str, Department] = field(default_factory=dict)
    # 地理编码: the imported grid-cell polygons in a spatial index (None: no polygons imported).
    geo: GridIndex | None = None


async def category_list(repo: ReferenceRows, *, local: bool = True) -> list[Category]:
    """Imported national categories (or the default GB/T 47678.5 file) plus local ones."""
    rows = await repo.reference_rows("categories")
    make = lambda r: Category(r["kind"], r["code"], r["class_code"], r["class_name"], r["name"])  # noqa: E731
    national = [make(r) for r in rows if not r["local"]]
    if not national and DEFAULT_CATEGORIES_PATH.is_file():
        national, _errors = load_categories(DEFAULT_CATEGORIES_PATH)
    return national + ([make(r) for r in rows if r["local"]] if local else [])


async def load_reference(repo: ReferenceRows) -> ReferenceData:
    """Read every ref_* table; with no imported categories, the national GB/T 47678.5 table."""
    cats = await category_list(repo)
    rules = [
        RoutingRule(r["line"], r["kind"], r["code"], r["area"], r["case_type"], r["department"],
                    {step: parse_time_limit(text) for step, text in json.loads(r["limits_json"]).items()})
        for r in await repo.reference_rows("routing")
    ]
    holidays = {
        date.fromisoformat(r["day"]): HolidayEntry(date.fromisoformat(r["day"]), bool(r["workday"]), r["name"])
        for r in await repo.reference_rows("holidays")
    }
    cell_rows = await repo.reference_rows("grid_cells")
    cells = {r["grid_id"]: GridCell(r["grid_id"], r["name"], r["inspector"], r["x"], r["y"]) for r in cell_rows}
    places = [Place(r["name"], r["kind"], r["grid_id"], tuple(a for a in r["aliases"].split("|") if a))
              for r in await repo.reference_rows("gazetteer")]
    depts = {r["code"]: Department(r["code"], r["name"], r["parent_code"], r["phone"])
             for r in await repo.reference_rows("departments")}
    shapes = [(r["grid_id"], json.loads(r["geometry_json"])) for r in cell_rows if r.get("geometry_json")]
    geo = GridIndex(shapes, [(p.name, p.grid_id) for p in places if p.kind == "road"]) if shapes else None
    return ReferenceData(RoutingTable(rules), WorkCalendar(holiday_file=holidays), CategoryDirectory(cats),
                         Gazetteer(places), cells, depts, geo)


@dataclass(frozen=True)
class EvaluationGroup:
    key: str | None
    results: dict[str, IndicatorResult]
    composite: CompositeScore


# Statuses where the case is finished as far as the reporter is concerned (Open311 "closed").
CLOSED_STATUSES = frozenset({"closed", "followed_up", "evaluated", "declined", "void", "merged", "direct_answered"})

# How long imported reference data may be cached by a running server before re-reading.
REFERENCE_TTL_S = 30.0


# A voice-message case's description until its transcript is ready.
VOICE_MESSAGE_PLACEHOLDER = "来电留言（见录音）"


class CaseService:
    def __init__(
        self,
        repo: CaseRepository,
        on_event: Callable[[str, dict], None] | None = None,
        *,
        spec: workflow.WorkflowSpec | None = None,
        reference: ReferenceData | None = None,
    ):
        self.repo = repo
        # Live notifications (web desk, wallboard); must not block.
        self.on_event = on_event or (lambda kind, data: None)
        self.spec = spec or workflow.load_workflow_spec()
        # A fixed reference (tests, bench) is never reloaded; otherwise read from the database.
        self._fixed_reference = reference
        self._reference: ReferenceData | None = reference
        self._reference_loaded = 0.0
        # Called with a recording's id once its WAV is complete (transcription); must not block.
        self.on_recording_finished: Callable[[int], None] | None = None

    async def reference(self) -> ReferenceData:
        if self._fixed_reference is not None:
            return self._fixed_reference
        if self._reference is None or time.monotonic() - self._reference_loaded > REFERENCE_TTL_S:
            self._reference = await load_reference(self.repo)
            self._reference_loaded = time.monotonic()
        return self._reference

    def reload_reference(self) -> None:
        """Forget cached reference data (after an import in this process)."""
        self._reference = self._fixed_reference

    # -- cases ------------------------------------------------------------------------------
    async def file_report(
        self,
        *,
        channel: str,
        reporter_phone: str | None,
        call_id: str | None,
        recording_ids: tuple[int, ...],
        variables: dict,
        now: datetime,
        description: str = "",
        kind: str = "report",
    ) -> str:
        """A report arrives by phone (a voice message) or from the agent's screen pop: accept it."""
        number = await self.repo.allocate_case_number(now.date())
        text = description or VOICE_MESSAGE_PLACEHOLDER
        state, events = workflow.new_case(
            number=number,
            channel=channel,
            reporter_phone=reporter_phone or "",
            description=text,
            category=None,
            address="",
            now=now,
            kind=kind,
            actor=IVR_ACTOR,
            role=IVR_ROLE,
        )
        case_id = await self.repo.insert_case_state(
            state, call_id=call_id, recording_ids=recording_ids, events=events
        )
        if call_id:
            await self.repo.attach_call_recordings(call_id, case_id)
        self.on_event("case_created", {"id": case_id, "number": number, "channel": channel})
        return number

    async def describe_from_transcript(self, case_id: int, text: str, now: datetime) -> bool:
        """A voice message was transcribed: it becomes the case's description (if nobody has
        written one meanwhile) and a line in its history."""
        text = " ".join(text.split())
        if not text:
            return False
        changed = await self.repo.replace_description(case_id, VOICE_MESSAGE_PLACEHOLDER, f"【留言转写】{text}"[:2000])
        if changed:
            await self.act(case_id, "note", actor="stt", role="agent",
                           fields={"comment": f"留言转写：{text}"[:2000]}, now=now)
        return changed

    async def lookup_case(self, number: str) -> tuple[bool, str | None]:
        view = await self.repo.find_case_by_number(normalize_case_number(number))
        return (False, None) if view is None else (True, view.status)

    async def list_cases(self, **filters) -> list[CaseView]:
        return await self.repo.list_cases(**filters)

    async def get_case(self, case_id: int) -> CaseView:
        return await self.repo.get_case(case_id)

    # -- calls and recordings -----------------------------------------------------------------
    async def call_started(self, *, call_id, direction, did, caller, now) -> None:
        await self.repo.call_started(call_id=call_id, direction=direction, did=did, caller=caller, now=now)

    async def call_answered(self, call_id: str, now: datetime) -> None:
        await self.repo.call_answered(call_id, now)

    async def call_ended(self, call_id: str, now: datetime, reason: str, ivr_path: str) -> None:
        await self.repo.call_ended(call_id, now, reason, ivr_path)

    async def recording_started(self, *, call_id: str, kind: str, path: str, channels: int, now: datetime) -> int:
        return await self.repo.add_recording(
            call_id=call_id, kind=kind, path=path, channels=channels, duration_s=0.0, now=now
        )

    async def recording_finished(self, recording_id: int, duration_s: float) -> None:
        await self.repo.update_recording(recording_id, duration_s=duration_s)
        if self.on_recording_finished is not None:
            self.on_recording_finished(recording_id)

    # -- workflow -------------------------------------------------------------------------------
    async def create_case(
        self,
        *,
        channel: str,
        description: str,
        actor: str,
        role: str,
        now: datetime,
        kind: str = "report",
        case_type: str = "normal",
        reporter_phone: str = "",
        address: str = "",
        category: str | None = None,
        grid_cell: str | None = None,
        extra: dict[str, Any] | None = None,
        lat: float | None = None,
        lon: float | None = None,
    ) -> CaseView:
        """Accept a report or consultation from the web, the API or Open311 (受理).

        The grid cell comes from the position (WGS-84 ``lat``/``lon``, or ``extra``'s Open311
        ``location``) when grid polygons are imported, else from the address in the gazetteer;
        reports that skip verification start their 立案 clock at once.
        """
        reporter_phone = check_case_texts(description=description, address=address or "",
                                          reporter_phone=reporter_phone or "",
                                          reporter_name=str((extra or {}).get("reporter_name") or ""))
        ref = await self.reference()
        if category:
            _check_category(ref, category)
        extra = dict(extra or {})
        if lat is not None and lon is not None:
            extra["location"] = {"lat": lat, "long": lon}
        loc = extra.get("location") or {}
        if not grid_cell and ref.geo is not None and loc.get("lat") is not None and loc.get("long") is not None:
            grid_cell = ref.geo.cell_at(float(loc["long"]), float(loc["lat"]))
        if not grid_cell and address:
            grid_cell = ref.gazetteer.grid_cell_for(address)
        deadlines = {}
        if kind == "report" and (channel in workflow.VERIFY_EXEMPT_CHANNELS or case_type == "urgent"):
            due = _route(ref, category, grid_cell, case_type).deadline("register", ref.calendar, now)
            if due is not None and due > now:
                deadlines["register"] = due
        number = await self.repo.allocate_case_number(now.date())
        state, events = workflow.new_case(
            number=number, channel=channel, reporter_phone=reporter_phone or "", description=description,
            category=category, address=address or "", now=now, kind=kind, case_type=case_type,
            grid_cell=grid_cell, actor=actor, role=role, deadlines=deadlines,
        )
        case_id = await self.repo.insert_case_state(state, extra=extra, events=events)
        self.on_event("case_created", {"id": case_id, "number": number, "channel": channel})
        return await self.repo.get_case(case_id)

    async def act(
        self,
        case_id: int,
        action: str,
        *,
        actor: str,
        role: str,
        fields: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
        now: datetime,
        department: str | None = None,
    ) -> tuple[CaseView, list[CaseEvent]]:
        """Perform one workflow action on a case and store the result. ``department``: the
        actor's own department, if they are tied to one (department staff may act only on
        cases dispatched to it).

        Raises NotFound, a WorkflowError (VersionConflict when someone else changed the
        case since ``expected_version`` or between our read and our write).
        """
        fields = dict(fields or {})
        check_action_fields(fields)
        if action == "absorb":
            raise InvalidField("absorb happens as part of merge", "请在相似案卷上使用“合并”", "action")
        if action == "merge":
            # Both sides of a merge change together: the duplicate and the case it joins.
            target = fields.get("merged_into")
            target_id = await self.repo.case_id_for_number(target) if isinstance(target, str) else None
            if target_id is None:
                raise InvalidField(f"no case numbered {target!r} to merge into",
                                   f"找不到要并入的案卷“{target}”", "merged_into")
            views, events = await self._merge(case_id, target_id, actor=actor, role=role, now=now,
                                              comment=str(fields.get("comment") or ""),
                                              expected_version=expected_version)
            return views[0], events
        ref = await self.reference()

        def mutate(states: list[CaseState]):
            new, events = self._apply(ref, states[0], action, actor, role, fields, expected_version, now,
                                      department=department)
            return [new], events

        events, (view,) = await self.repo.update_states([case_id], mutate)
        self._publish(case_id, events)
        return view, events

    def _apply(self, ref: ReferenceData, state: CaseState, action: str, actor: str, role: str,
               fields: dict[str, Any], expected_version: int | None, now: datetime,
               department: str | None = None) -> tuple[CaseState, list[CaseEvent]]:
        """The domain step, with what the reference data adds: routed department,
        the grid's inspector, and a deadline for each step the action starts."""
        fields = _coerce_fields(self.spec, fields)
        t = self.spec.find(action, state.status)
        if t is not None and role in t.roles:
            allowed = set(t.required_fields) | set(t.optional_fields)
            category = fields.get("category") or state.category
            grid = fields.get("grid_cell") or state.grid_cell
            ctype = fields.get("case_type") or state.case_type
            if category and "category" in fields:
                _check_category(ref, str(category))
            route = _route(ref, category, grid, ctype)
            if action == "dispatch" and not fields.get("department") and route.department:
                fields["department"] = route.department
            if action == "send_verify" and not fields.get("inspector") and grid in ref.grid_cells:
                fields["inspector"] = ref.grid_cells[grid].inspector or None
            for step in t.starts:
                key = f"{step}_deadline"
                if key in allowed and fields.get(key) is None:
                    due = route.deadline(step, ref.calendar, now)
                    if due is not None and due > now:
                        fields[key] = due
        command = CaseCommand(action, actor, role, fields, expected_version, department)
        return workflow.apply(self.spec, state, command, now)

    async def merge_cases(
        self,
        case_id: int,
        into_case_id: int,
        *,
        actor: str,
        role: str,
        now: datetime,
        comment: str = "",
        expected_version: int | None = None,
    ) -> tuple[CaseView, CaseView]:
        """Merge a duplicate into an earlier case: ``merge`` on one, ``absorb`` on the other, atomically."""
        views, _events = await self._merge(case_id, into_case_id, actor=actor, role=role, now=now, comment=comment,
                                           expected_version=expected_version)
        return views[0], views[1]

    async def _merge(self, case_id: int, into_case_id: int, *, actor: str, role: str, now: datetime,
                     comment: str, expected_version: int | None) -> tuple[list[CaseView], list[CaseEvent]]:
        if case_id == into_case_id:
            raise InvalidField("a case cannot be merged into itself", "不能合并到本案卷自身", "merged_into")
        ref = await self.reference()
        extra = {"comment": comment} if comment else {}

        def mutate(states: list[CaseState]):
            dup, target = states
            new_dup, ev1 = self._apply(ref, dup, "merge", actor, role, {"merged_into": target.number, **extra},
                                       expected_version, now)
            new_target, ev2 = self._apply(ref, target, "absorb", actor, role,
                                          {"merged_case": dup.number, **extra}, None, now)
            return [new_dup, new_target], (ev1, ev2)

        (ev1, ev2), views = await self.repo.update_states([case_id, into_case_id], mutate)
        self._publish(case_id, ev1)
        self._publish(into_case_id, ev2)
        return views, ev1

    def _publish(self, case_id: int, events: list[CaseEvent]) -> None:
        for e in events:
            self.on_event("case_changed", {"id": case_id, "number": e.case_number, "event": e.name,
                                           "action": e.action, "status": e.after_status, "version": e.version})

    async def case_state(self, case_id: int) -> CaseState:
        return await self.repo.load_state(case_id)

    def available_actions(self, state: CaseState, role: str) -> list[str]:
        return workflow.available_actions(self.spec, state, role)

    async def deadline_report(self, state: CaseState, now: datetime) -> list[dict[str, Any]]:
        """Each step clock with its due time and status (on_time / yellow / overdue / done / late)."""
        ref = await self.reference()
        out = []
        for step, c in state.deadlines.items():
            if c.done_at is not None:
                status = "done" if c.due_at is None or c.done_at <= c.due_at else "late"
            elif c.due_at is None:
                status = "no_limit"
            else:
                status = ref.calendar.deadline_status(c.due_at, now, started_at=c.started_at)
            out.append({"step": step, "label": workflow.STEP_LABELS[step], "started_at": c.started_at,
                        "due_at": c.due_at, "done_at": c.done_at, "status": status})
        return out

    async def suggested_department(self, state: CaseState) -> str | None:
        ref = await self.reference()
        return _route(ref, state.category, state.grid_cell, state.case_type).department

    async def duplicates_for(self, case_id: int, *, window_days: float = 7.0, limit: int = 5
                             ) -> list[tuple[DuplicateSuggestion, CaseView]]:
        """Likely duplicates of a case (same category, nearby, similar text), best first."""
        probe = await self.repo.get_case(case_id)
        category = f"{probe.category_kind}:{probe.category_code}" if probe.category_kind else None
        views = await self.repo.duplicate_candidates(category=category, created_at=probe.created_at,
                                                     window_days=window_days, exclude_id=case_id)
        ref = await self.reference()
        by_number = {v.number: v for v in views}

        def compare() -> list[DuplicateSuggestion]:
            return suggest_duplicates(_DupView.of(probe), [_DupView.of(v) for v in views],
                                      window=timedelta(days=window_days),
                                      nearby=nearby_by_distance(ref.grid_cells.values()), limit=limit)

        # Text comparison grows with the candidates' descriptions: off the event loop that
        # carries the 20 ms media tick.
        found = await asyncio.to_thread(compare)
        return [(s, by_number[s.number]) for s in found]

    async def search(self, **filters) -> list[CaseView]:
        """Cases by status, category, department, inspector, overdue, urgent, text, reporter…"""
        return await self.repo.search_cases(**filters)

    async def evaluate(self, start: datetime, end: datetime, *, group_by: str | None = None,
                       area_level: str = "street", weights: Mapping[str, float] = DEFAULT_WEIGHTS,
                       ) -> list[EvaluationGroup]:
        """Indicators and composite score per group over ``[start, end)``, aggregated in SQL."""
        if group_by is not None and group_by not in GROUP_BY:
            raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}")
        if end <= start:
            raise ValueError("the period must end after it starts")
        counts = await self.repo.evaluation_counts(start, end, group_by, area_level)
        results = evaluate_counts(counts)
        groups = [EvaluationGroup(k, r, composite_score(r, weights)) for k, r in results.items()]
        groups.sort(key=lambda g: (g.key is None, str(g.key)))
        return groups


def evaluation_json(groups, start: datetime, end: datetime, group_by: str | None) -> dict[str, Any]:
    """Evaluation groups as JSON (the API and `hotline evaluate`)."""
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "group_by": group_by,
        "groups": [
            {
                "key": g.key,
                "indicators": [
                    {"code": r.code, "name_zh": r.name_zh, "numerator": r.numerator, "denominator": r.denominator,
                     "value": r.value, "display": r.display, "formula_zh": r.formula_zh}
                    for r in g.results.values()
                ],
                "composite": {"score": g.composite.score, "formula_zh": g.composite.formula_zh,
                              "parts": [{"code": c, "weight": w, "points": p} for c, w, p in g.composite.parts],
                              "missing": list(g.composite.missing)},
            }
            for g in groups
        ],
    }



@dataclass(frozen=True)
class _DupView:
    number: str
    category: str | None
    grid_cell: str | None
    description: str
    address: str
    created_at: datetime
    status: str

    @classmethod
    def of(cls, v: CaseView) -> "_DupView":
        cat = f"{v.category_kind}:{v.category_code}" if v.category_kind else v.category_code
        return cls(v.number, cat, v.grid_cell, v.description, v.address, v.created_at, v.status)


def _route(ref: ReferenceData, category: str | None, grid: str | None, case_type: str | None):
    kind, code = (category.split(":", 1) if category and ":" in category else (None, category))
    return ref.routing.route(kind, code, grid, case_type)


def _check_category(ref: ReferenceData, key: str) -> None:
    kind, _, code = key.partition(":")
    if len(ref.categories) and ref.categories.get(kind, code) is None:
        raise InvalidField(f"unknown category {key!r}", f"未知的案件类别“{key}”", "category")


def _coerce_fields(spec: workflow.WorkflowSpec, fields: dict[str, Any]) -> dict[str, Any]:
    """JSON gives deadlines as ISO text; the domain wants datetimes (naive local time)."""
    out = dict(fields)
    for name, value in fields.items():
        if spec.field_types.get(name) == "datetime" and isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise InvalidField(f"field {name!r} must be an ISO date-time", f"字段“{name}”必须是日期时间",
                                   name) from None
            out[name] = parsed.replace(tzinfo=None) if parsed.tzinfo is None else _to_local(parsed)
    return out


def _to_local(value: datetime) -> datetime:
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)

"""The case workflow (案卷流程): statuses, the transition table, and the pure step function.

Owns the meaning of every case status and action, the rules for who may do what from
which status (read from ``case_core/specs/workflow.yaml``), the case's in-memory state
(``CaseState`` with its append-only history), and ``apply`` — the one function that moves
a case forward and says which events happened. No I/O beyond loading the spec file; time
always comes in as ``now``. The repository stores ``CaseState`` and enforces ``version``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import yaml

from case_core.domain.numbering import InvalidCaseNumber, parse_case_number

__all__ = [
    "STATUS_LABELS", "ACTION_LABELS", "ROLE_LABELS", "CHANNEL_LABELS", "CASE_TYPE_LABELS",
    "KINDS", "STEPS", "STEP_LABELS", "DEFAULT_SPEC_PATH",
    "Transition", "WorkflowSpec", "load_workflow_spec",
    "Application", "StepClock", "HistoryEntry", "CaseState", "CaseCommand", "CaseEvent",
    "WorkflowError", "IllegalTransition", "NotPermitted", "MissingField", "InvalidField",
    "VersionConflict", "GuardFailed", "WorkflowSpecError",
    "new_case", "apply", "available_actions", "render_diagram",
]

DEFAULT_SPEC_PATH = Path(__file__).resolve().parent.parent / "specs" / "workflow.yaml"

# Status names are stored in the database and appear in URLs and JSON: never rename one.
STATUS_LABELS: dict[str, str] = {
    "accepted": "已受理",
    "verifying": "核实中",
    "verified": "已核实",
    "registered": "已立案",
    "dispatched": "已派遣",
    "handling": "处置中",
    "checking": "核查中",
    "checked": "已核查",
    "closed": "已结案",
    "followed_up": "已回访",
    "evaluated": "已评价",
    "declined": "不予立案",
    "void": "已作废",
    "suspended": "挂账",
    "deferred": "缓办",
    "merged": "已合并",
    "direct_answered": "已直办",
}

ACTION_LABELS: dict[str, str] = {
    "accept": "受理",
    "send_verify": "派发核实",
    "verify": "核实",
    "register": "立案",
    "decline": "不予立案",
    "dispatch": "派遣",
    "handle": "签收处置",
    "report_done": "处置反馈",
    "check": "核查",
    "close": "结案",
    "rework": "返工",
    "follow_up": "回访",
    "evaluate": "评价归档",
    "direct_answer": "直办",
    "reopen": "重新启用",
    "apply_send_back": "申请回退",
    "approve_send_back": "同意回退",
    "refuse_send_back": "驳回回退",
    "apply_extension": "申请延期",
    "approve_extension": "批准延期",
    "refuse_extension": "驳回延期",
    "apply_defer": "申请缓办",
    "approve_defer": "批准缓办",
    "refuse_defer": "驳回缓办",
    "apply_suspend": "申请挂账",
    "approve_suspend": "批准挂账",
    "refuse_suspend": "驳回挂账",
    "resume": "恢复办理",
    "apply_void": "申请作废",
    "approve_void": "批准作废",
    "refuse_void": "驳回作废",
    "merge": "合并",
    "absorb": "并入相似案卷",
    "urge": "督办",
    "note": "备注",
    "change_type": "变更案件类型",
}

ROLE_LABELS: dict[str, str] = {
    "agent": "受理员",
    "shift_lead": "值班长",
    "dispatcher": "派遣员",
    "department": "专业部门",
    "inspector": "监督员",
    "commander": "指挥长",
    "supervisor": "班长",
    "admin": "管理员",
}

CHANNEL_LABELS: dict[str, str] = {
    "12319": "12319 城建服务热线",
    "96310": "96310 城管热线",
    "inspector_app": "监督员上报",
    "inspector": "监督员上报（城管通）",
    "website": "网站",
    "wechat": "微信",
    "mayor_line": "市长热线",
    "leader": "领导批示",
    "media": "媒体曝光",
    "video": "视频监控",
    "iot": "物联感知",
}

CASE_TYPE_LABELS: dict[str, str] = {"normal": "一般", "complex": "疑难", "urgent": "突发"}

KINDS: dict[str, str] = {"report": "问题上报", "consultation": "咨询"}

# Timed stages. `case` spans register → close and measures 按期结案.
STEP_LABELS: dict[str, str] = {
    "verify": "核实",
    "register": "立案",
    "dispatch": "派遣",
    "handle": "处置",
    "check": "核查",
    "close": "结案",
    "case": "全流程",
}
STEPS = tuple(STEP_LABELS)

# Inspectors' own reports and urgent cases are confirmed on the spot: no separate 核实.
VERIFY_EXEMPT_CHANNELS = frozenset({"inspector_app", "inspector"})

# Fields a command may set on the case itself (everything else only goes into history).
_STATE_FIELDS = ("department", "inspector", "category", "grid_cell", "case_type",
                 "verify_result", "check_result", "satisfaction", "merged_into")


# --------------------------------------------------------------------------- errors
class WorkflowError(Exception):
    """Base of every refusal by ``apply``; ``message_zh`` is fit to show to staff."""

    code = "workflow_error"

    def __init__(self, message: str, message_zh: str) -> None:
        super().__init__(message)
        self.message = message
        self.message_zh = message_zh


class IllegalTransition(WorkflowError):
    """The action is unknown, or not possible from the case's current status."""

    code = "illegal_transition"


class NotPermitted(WorkflowError):
    """The actor's role may not perform this action."""

    code = "not_permitted"


class MissingField(WorkflowError):
    """A required field (reason, result, photos, …) is absent or empty."""

    code = "missing_field"

    def __init__(self, message: str, message_zh: str, field_name: str) -> None:
        super().__init__(message, message_zh)
        self.field = field_name


class InvalidField(WorkflowError):
    """A field has the wrong type or value, or is not accepted by this action."""

    code = "invalid_field"

    def __init__(self, message: str, message_zh: str, field_name: str) -> None:
        super().__init__(message, message_zh)
        self.field = field_name


class VersionConflict(WorkflowError):
    """Someone else changed the case since the caller read it (optimistic locking)."""

    code = "version_conflict"


class GuardFailed(WorkflowError):
    """The action is possible in principle but the case does not meet its precondition."""

    code = "guard_failed"


class WorkflowSpecError(ValueError):
    """The workflow spec file is malformed; raised at load time, never at run time."""


# ----------------------------------------------------------------------- state types
@dataclass(frozen=True)
class Application:
    """A pending request awaiting approval (send_back, extension, defer, suspend, void)."""

    kind: str
    applicant: str
    role: str
    at: datetime
    reason: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepClock:
    """One timed stage of the case: when it started, when it is due, when it ended."""

    step: str
    started_at: datetime
    due_at: datetime | None = None
    done_at: datetime | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One line of the append-only case history (流转记录).

    ``ended`` maps each timed step this action completed to that step's deadline
    (None: no limit was set), so on-time indicators can be computed from history alone.
    """

    actor: str
    role: str
    action: str
    at: datetime
    comment: str
    before_status: str | None
    after_status: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0
    ended: Mapping[str, datetime | None] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseState:
    """Everything the workflow knows about one case; replaced, never mutated."""

    number: str
    kind: str
    channel: str
    reporter_phone: str
    description: str
    category: str | None
    address: str
    created_at: datetime
    status: str = "accepted"
    version: int = 1
    case_type: str = "normal"
    grid_cell: str | None = None
    department: str | None = None
    inspector: str | None = None
    verify_result: str | None = None
    check_result: str | None = None
    satisfaction: str | None = None
    rework_count: int = 0
    urge_count: int = 0
    pending: tuple[Application, ...] = ()
    deadlines: Mapping[str, StepClock] = field(default_factory=dict)
    resume_status: str | None = None
    merged_into: str | None = None
    merged_from: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    def pending_application(self, kind: str) -> Application | None:
        """The pending application of ``kind``, if any."""
        return next((a for a in self.pending if a.kind == kind), None)


@dataclass(frozen=True)
class CaseCommand:
    """A request to perform ``action`` on a case, as ``actor`` in ``role``."""

    action: str
    actor: str
    role: str
    fields: Mapping[str, object] = field(default_factory=dict)
    expected_version: int | None = None
    # The actor's own department (处置部门 staff); None: not tied to one department.
    department: str | None = None


@dataclass(frozen=True)
class CaseEvent:
    """Something that happened to a case; ``name`` is past tense, e.g. ``CaseDispatched``."""

    name: str
    case_number: str
    action: str
    at: datetime
    actor: str
    role: str
    before_status: str | None
    after_status: str
    version: int
    fields: Mapping[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class Transition:
    """One row of the transition table."""

    name: str
    from_states: tuple[str, ...]
    to_state: str | None  # None keeps the status; "$previous" restores the parked one
    roles: tuple[str, ...]
    required_fields: tuple[str, ...] = ()
    guard: str | None = None
    emits: tuple[str, ...] = ()
    optional_fields: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    starts: tuple[str, ...] = ()
    ends: tuple[str, ...] = ()
    cancels: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkflowSpec:
    """The loaded transition table plus field types; look-ups by (action, status)."""

    transitions: tuple[Transition, ...]
    field_types: Mapping[str, Any]
    final_states: frozenset[str]
    source: str = ""

    def find(self, action: str, status: str) -> Transition | None:
        """The transition for ``action`` from ``status``, or None."""
        for t in self.transitions:
            if t.name == action and status in t.from_states:
                return t
        return None

    @property
    def actions(self) -> tuple[str, ...]:
        """Every action name, in table order, without repeats."""
        return tuple(dict.fromkeys(t.name for t in self.transitions))


_PREVIOUS = "$previous"
_SCALAR_TYPES = {"text", "photos", "datetime", "case_number"}


def load_workflow_spec(path: str | Path | None = None) -> WorkflowSpec:
    """Load and validate the transition table (default: the packaged ``workflow.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_SPEC_PATH
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowSpecError(f"{path}: cannot read workflow spec: {exc}") from None
    except yaml.YAMLError as exc:
        raise WorkflowSpecError(f"{path}: not valid YAML: {exc}") from None
    return _build_spec(raw, str(path))


def _build_spec(raw: Any, source: str) -> WorkflowSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("transitions"), list):
        raise WorkflowSpecError(f"{source}: expected a mapping with a 'transitions' list")
    field_types = raw.get("fields") or {}
    if not isinstance(field_types, dict):
        raise WorkflowSpecError(f"{source}: 'fields' must be a mapping")
    for fname, ftype in field_types.items():
        ok = (isinstance(ftype, str) and ftype in _SCALAR_TYPES) or (
            isinstance(ftype, dict) and isinstance(ftype.get("choice"), list) and ftype["choice"])
        if not ok:
            raise WorkflowSpecError(f"{source}: field {fname!r} has unknown type {ftype!r}")
    field_types.setdefault("comment", "text")
    final = frozenset(raw.get("final") or ())
    _check_names(final, STATUS_LABELS, "final state", source)

    transitions = []
    seen: dict[tuple[str, str], int] = {}
    for i, row in enumerate(raw["transitions"], start=1):
        where = f"{source}: transition #{i}"
        if not isinstance(row, dict):
            raise WorkflowSpecError(f"{where}: expected a mapping")
        unknown = set(row) - {"name", "from", "to", "roles", "required", "optional", "guard",
                              "effects", "starts", "ends", "cancels", "emits"}
        if unknown:
            raise WorkflowSpecError(f"{where}: unknown keys {sorted(unknown)}")
        name = row.get("name")
        if name not in ACTION_LABELS:
            raise WorkflowSpecError(f"{where}: action {name!r} has no label in ACTION_LABELS")
        where = f"{source}: transition {name!r} (#{i})"
        t = Transition(
            name=name,
            from_states=_tuple(row.get("from"), where, "from"),
            to_state=row.get("to"),
            roles=_tuple(row.get("roles"), where, "roles"),
            required_fields=_tuple(row.get("required"), where, "required"),
            guard=row.get("guard"),
            emits=_tuple(row.get("emits"), where, "emits"),
            optional_fields=_tuple(row.get("optional"), where, "optional"),
            effects=_tuple(row.get("effects"), where, "effects"),
            starts=_tuple(row.get("starts"), where, "starts"),
            ends=_tuple(row.get("ends"), where, "ends"),
            cancels=_tuple(row.get("cancels"), where, "cancels"),
        )
        if not t.from_states or not t.roles or not t.emits:
            raise WorkflowSpecError(f"{where}: 'from', 'roles' and 'emits' must not be empty")
        _check_names(t.from_states, STATUS_LABELS, "state", where)
        if t.to_state is not None and t.to_state != _PREVIOUS:
            _check_names([t.to_state], STATUS_LABELS, "state", where)
        _check_names(t.roles, ROLE_LABELS, "role", where)
        _check_names(t.required_fields + t.optional_fields, field_types, "field", where)
        _check_names(t.starts + t.ends + t.cancels, STEP_LABELS, "step", where)
        if t.guard is not None:
            _parse_ref(t.guard, _GUARDS, "guard", where)
        for eff in t.effects:
            _parse_ref(eff, _EFFECTS, "effect", where)
        if t.to_state == _PREVIOUS and not any(
                e == "remember_status" for other in transitions for e in other.effects):
            raise WorkflowSpecError(f"{where}: '$previous' needs an earlier remember_status")
        for state in t.from_states:
            if (name, state) in seen:
                raise WorkflowSpecError(
                    f"{where}: action {name!r} from {state!r} already defined by #{seen[name, state]}")
            seen[name, state] = i
        transitions.append(t)

    spec = WorkflowSpec(tuple(transitions), MappingProxyType(dict(field_types)), final, source)
    _check_applications(spec, source)
    return spec


def _tuple(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise WorkflowSpecError(f"{where}: {key!r} must be a string or a list of strings")


def _check_names(names: Iterable[str], known: Mapping[str, Any], what: str, where: str) -> None:
    for n in names:
        if n not in known:
            raise WorkflowSpecError(f"{where}: unknown {what} {n!r}")


def _parse_ref(ref: str, table: Mapping[str, Any], what: str, where: str) -> tuple[str, str | None]:
    name, _, arg = ref.partition(":")
    if name not in table:
        raise WorkflowSpecError(f"{where}: unknown {what} {ref!r}")
    return name, (arg or None)


def _check_applications(spec: WorkflowSpec, source: str) -> None:
    opened = {e.split(":", 1)[1] for t in spec.transitions for e in t.effects if e.startswith("open:")}
    closed = {e.split(":", 1)[1] for t in spec.transitions for e in t.effects if e.startswith("close:")}
    if opened != closed:
        raise WorkflowSpecError(
            f"{source}: applications opened but never decided: {sorted(opened - closed)}; "
            f"decided but never opened: {sorted(closed - opened)}")


# --------------------------------------------------------------- guards and effects
@dataclass(frozen=True)
class _Guard:
    test: Callable[[CaseState, str | None], bool]
    message_zh: Callable[[CaseState, str | None], str]


_APPLICATION_LABELS = {"send_back": "回退", "extension": "延期", "defer": "缓办",
                       "suspend": "挂账", "void": "作废"}


def _app_label(kind: str | None) -> str:
    return _APPLICATION_LABELS.get(kind or "", kind or "")


_GUARDS: dict[str, _Guard] = {
    "check_passed": _Guard(lambda c, _: c.check_result == "passed",
                           lambda c, _: "核查未通过，不能结案"),
    "verify_confirmed": _Guard(lambda c, _: c.verify_result == "confirmed",
                               lambda c, _: "核实结果为不属实，只能不予立案"),
    "verify_exempt": _Guard(
        lambda c, _: c.kind == "report" and (
            c.channel in VERIFY_EXEMPT_CHANNELS or c.case_type == "urgent"),
        lambda c, _: "市民上报的非突发案卷须先核实再立案"),
    "is_consultation": _Guard(lambda c, _: c.kind == "consultation",
                              lambda c, _: "只有咨询类来电可以直办"),
    "pending": _Guard(lambda c, k: c.pending_application(k) is not None,
                      lambda c, k: f"没有待审批的{_app_label(k)}申请"),
    "no_pending": _Guard(lambda c, k: c.pending_application(k) is None,
                         lambda c, k: f"已有待审批的{_app_label(k)}申请"),
}


def _eff_open(case: CaseState, arg: str, cmd: CaseCommand, fields: dict, now: datetime) -> CaseState:
    extra = {k: v for k, v in fields.items() if k != "reason"}
    app = Application(arg, cmd.actor, cmd.role, now, str(fields.get("reason", "")),
                      MappingProxyType(extra))
    return replace(case, pending=case.pending + (app,))


def _eff_close(case: CaseState, arg: str, cmd: CaseCommand, fields: dict, now: datetime) -> CaseState:
    return replace(case, pending=tuple(a for a in case.pending if a.kind != arg))


def _eff_extend(case: CaseState, arg: str, cmd: CaseCommand, fields: dict, now: datetime) -> CaseState:
    # The approver may override the date; otherwise the applicant's requested date stands.
    key = f"{arg}_deadline"
    new_due = fields.get(key)
    if new_due is None:
        app = case.pending_application("extension")
        new_due = app.fields.get(key) if app is not None else None
    if new_due is None:
        return case
    clocks = dict(case.deadlines)
    old = clocks.get(arg)
    clocks[arg] = replace(old, due_at=new_due) if old else StepClock(arg, now, new_due)
    whole = clocks.get("case")
    if whole is not None and whole.due_at is not None and whole.due_at < new_due:
        clocks["case"] = replace(whole, due_at=new_due)
    return replace(case, deadlines=MappingProxyType(clocks))


def _eff_count_rework(case: CaseState, arg, cmd, fields, now) -> CaseState:
    return replace(case, rework_count=case.rework_count + 1)


def _eff_count_urge(case: CaseState, arg, cmd, fields, now) -> CaseState:
    return replace(case, urge_count=case.urge_count + 1)


def _eff_clear_check(case: CaseState, arg, cmd, fields, now) -> CaseState:
    return replace(case, check_result=None)


def _eff_clear_department(case: CaseState, arg, cmd, fields, now) -> CaseState:
    return replace(case, department=None)


def _eff_remember_status(case: CaseState, arg, cmd, fields, now) -> CaseState:
    return replace(case, resume_status=case.status)


def _eff_add_merged(case: CaseState, arg, cmd, fields, now) -> CaseState:
    return replace(case, merged_from=case.merged_from + (str(fields["merged_case"]),))


_EFFECTS: dict[str, Callable[..., CaseState]] = {
    "open": _eff_open,
    "close": _eff_close,
    "extend": _eff_extend,
    "count_rework": _eff_count_rework,
    "count_urge": _eff_count_urge,
    "clear_check": _eff_clear_check,
    "clear_department": _eff_clear_department,
    "remember_status": _eff_remember_status,
    "add_merged": _eff_add_merged,
}


# ------------------------------------------------------------------ field checking
def _is_empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple)):
        return len(value) == 0
    return False


def _check_value(name: str, ftype: Any, value: object, case: CaseState, now: datetime) -> object:
    def bad(why: str, why_zh: str) -> InvalidField:
        return InvalidField(f"field {name!r}: {why}", f"字段“{name}”{why_zh}", name)

    if isinstance(ftype, dict):
        if value not in ftype["choice"]:
            raise bad(f"must be one of {ftype['choice']}, got {value!r}",
                      f"取值必须是 {'/'.join(ftype['choice'])} 之一")
        return value
    if ftype == "text":
        if not isinstance(value, str):
            raise bad("must be text", "必须是文字")
        return value.strip()
    if ftype == "photos":
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(p, str) and p.strip() for p in value):
            raise bad("must be a list of photo references", "必须是照片列表")
        return tuple(value)
    if ftype == "datetime":
        if not isinstance(value, datetime):
            raise bad("must be a datetime", "必须是日期时间")
        if value <= now:
            raise bad("deadline must be in the future", "时限必须晚于当前时间")
        return value
    if ftype == "case_number":
        try:
            parse_case_number(value)  # type: ignore[arg-type]
        except InvalidCaseNumber:
            raise bad("must be a case number YYYYMMDD-NNNN", "必须是案卷编号") from None
        if value == case.number:
            raise bad("must name another case", "不能是本案卷自身")
        return value
    raise AssertionError(f"unreachable field type {ftype!r}")  # rejected at spec load


def _checked_fields(spec: WorkflowSpec, t: Transition, case: CaseState,
                    given: Mapping[str, object], now: datetime) -> dict[str, object]:
    if not isinstance(given, Mapping):
        raise InvalidField("fields must be a mapping", "字段格式不正确", "fields")
    allowed = set(t.required_fields) | set(t.optional_fields) | {"comment"}
    for name in given:
        if name not in allowed:
            raise InvalidField(f"action {t.name!r} does not take field {name!r}",
                               f"“{ACTION_LABELS[t.name]}”不接受字段“{name}”", str(name))
    for name in t.required_fields:
        if _is_empty(given.get(name)):
            raise MissingField(f"action {t.name!r} needs field {name!r}",
                               f"“{ACTION_LABELS[t.name]}”必须填写“{name}”", name)
    out: dict[str, object] = {}
    for name, value in given.items():
        if _is_empty(value) and name not in t.required_fields:
            continue
        out[name] = _check_value(name, spec.field_types[name], value, case, now)
    return out


# --------------------------------------------------------------------- operations
def new_case(*, number: str, channel: str, reporter_phone: str, description: str,
             category: str | None, address: str, now: datetime, kind: str = "report",
             case_type: str = "normal", grid_cell: str | None = None, actor: str = "",
             role: str = "agent", deadlines: Mapping[str, datetime] | None = None,
             ) -> tuple[CaseState, list[CaseEvent]]:
    """Record a new report or consultation (受理): status ``accepted``, version 1.

    ``deadlines`` optionally starts step clocks at ``now`` (e.g. ``{"register": …}``
    for reports that skip verification).
    """
    def bad(name: str, why: str, why_zh: str) -> InvalidField:
        return InvalidField(f"new case: {name} {why}", why_zh, name)

    try:
        parse_case_number(number)
    except InvalidCaseNumber as exc:
        raise bad("number", exc.reason, exc.message_zh) from None
    if channel not in CHANNEL_LABELS:
        raise bad("channel", f"unknown channel {channel!r}", f"未知的来源渠道“{channel}”")
    if kind not in KINDS:
        raise bad("kind", f"unknown kind {kind!r}", f"未知的案卷种类“{kind}”")
    if case_type not in CASE_TYPE_LABELS:
        raise bad("case_type", f"unknown case type {case_type!r}", f"未知的案件类型“{case_type}”")
    if role not in ROLE_LABELS:
        raise bad("role", f"unknown role {role!r}", f"未知的角色“{role}”")
    if not isinstance(description, str) or not description.strip():
        raise MissingField("new case needs a description", "必须填写问题描述", "description")
    if not isinstance(reporter_phone, str) or not isinstance(address, str):
        raise bad("reporter_phone", "phone and address must be text", "来电号码和地址必须是文字")
    clocks: dict[str, StepClock] = {}
    for step, due in (deadlines or {}).items():
        if step not in STEP_LABELS:
            raise bad("deadlines", f"unknown step {step!r}", f"未知的环节“{step}”")
        if not isinstance(due, datetime) or due <= now:
            raise bad("deadlines", f"deadline for {step!r} must be a later datetime",
                      f"“{STEP_LABELS[step]}”时限必须晚于受理时间")
        clocks[step] = StepClock(step, now, due)
    entry = HistoryEntry(actor, role, "accept", now, "", None, "accepted",
                         MappingProxyType({}), 1)
    case = CaseState(number=number, kind=kind, channel=channel, reporter_phone=reporter_phone,
                     description=description.strip(), category=category or None,
                     address=address.strip(), created_at=now, case_type=case_type,
                     grid_cell=grid_cell or None, deadlines=MappingProxyType(clocks),
                     history=(entry,))
    event = CaseEvent("CaseAccepted", number, "accept", now, actor, role, None, "accepted", 1,
                      MappingProxyType({"kind": kind, "channel": channel}))
    return case, [event]


def apply(spec: WorkflowSpec, case: CaseState, command: CaseCommand,
          now: datetime) -> tuple[CaseState, list[CaseEvent]]:
    """Perform ``command`` on ``case`` at ``now``; return the new state and its events.

    Checks, in order: version, action/status, role (and, for department staff, that the case
    is with their department), fields, guard. Raises a
    ``WorkflowError`` subclass and leaves nothing changed when any check fails.
    """
    if command.expected_version is not None and command.expected_version != case.version:
        raise VersionConflict(
            f"case {case.number} is at version {case.version}, "
            f"command expected {command.expected_version}",
            "案卷已被他人修改，请刷新后重试")
    if command.action not in ACTION_LABELS:
        raise IllegalTransition(f"unknown action {command.action!r}",
                                f"未知的操作“{command.action}”")
    t = spec.find(command.action, case.status)
    if t is None:
        raise IllegalTransition(
            f"cannot {command.action} a case in status {case.status!r}",
            f"案卷处于“{STATUS_LABELS.get(case.status, case.status)}”状态，"
            f"不能“{ACTION_LABELS[command.action]}”")
    if command.role not in t.roles:
        allowed = "、".join(ROLE_LABELS[r] for r in t.roles)
        raise NotPermitted(
            f"role {command.role!r} may not {command.action} (allowed: {', '.join(t.roles)})",
            f"“{ROLE_LABELS.get(command.role, command.role)}”无权“{ACTION_LABELS[t.name]}”"
            f"（仅限{allowed}）")
    if (command.role == "department" and command.department and case.department
            and case.department != command.department):
        raise NotPermitted(
            f"case {case.number} is with department {case.department!r}, "
            f"not {command.department!r}",
            "该案卷已派遣给其他处置部门，本部门不能处理")
    if not isinstance(command.actor, str) or not command.actor.strip():
        raise MissingField("command needs an actor", "必须注明操作人", "actor")
    fields = _checked_fields(spec, t, case, command.fields, now)
    if t.guard is not None:
        gname, garg = t.guard.partition(":")[::2]
        guard = _GUARDS[gname]
        if not guard.test(case, garg or None):
            raise GuardFailed(f"guard {t.guard!r} failed for {command.action} on {case.number}",
                              guard.message_zh(case, garg or None))

    before = case.status
    new = case
    for name in _STATE_FIELDS:
        if name in fields:
            new = replace(new, **{name: fields[name]})
    for ref in t.effects:
        ename, _, earg = ref.partition(":")
        new = _EFFECTS[ename](new, earg or None, command, fields, now)

    if t.to_state is None:
        after = before
    elif t.to_state == _PREVIOUS:
        after = case.resume_status or before
        new = replace(new, resume_status=None)
    else:
        after = t.to_state

    clocks = dict(new.deadlines)
    ended: dict[str, datetime | None] = {}
    for step in t.ends:
        clock = clocks.get(step)
        if clock is not None and clock.done_at is None:
            clocks[step] = replace(clock, done_at=now)
            ended[step] = clock.due_at
    for step in t.cancels:
        clocks.pop(step, None)
    for step in t.starts:
        clocks[step] = StepClock(step, now, fields.get(f"{step}_deadline"))  # type: ignore[arg-type]

    pending = new.pending
    if after != before:
        # An application only makes sense while its decision is still possible.
        pending = tuple(a for a in pending if _decidable(spec, a.kind, after))

    version = case.version + 1
    frozen_fields = MappingProxyType({k: v for k, v in fields.items() if k != "comment"})
    entry = HistoryEntry(command.actor, command.role, t.name, now,
                         str(fields.get("comment", "")), before, after, frozen_fields,
                         version, MappingProxyType(ended))
    new = replace(new, status=after, version=version, pending=pending,
                  deadlines=MappingProxyType(clocks), history=case.history + (entry,))
    events = [CaseEvent(name, case.number, t.name, now, command.actor, command.role,
                        before, after, version, frozen_fields) for name in t.emits]
    return new, events


def _decidable(spec: WorkflowSpec, kind: str, status: str) -> bool:
    return any(f"close:{kind}" in t.effects and status in t.from_states
               for t in spec.transitions)


def available_actions(spec: WorkflowSpec, case: CaseState, role: str) -> list[str]:
    """Actions ``role`` may take on ``case`` now (for the buttons on the case page)."""
    out = []
    for t in spec.transitions:
        if case.status not in t.from_states or role not in t.roles or t.name in out:
            continue
        if t.guard is not None:
            gname, _, garg = t.guard.partition(":")
            if not _GUARDS[gname].test(case, garg or None):
                continue
        out.append(t.name)
    return out


def render_diagram(spec: WorkflowSpec) -> str:
    """The status-changing part of the table as a Mermaid ``stateDiagram-v2``."""
    lines = ["stateDiagram-v2"]
    for state, label in STATUS_LABELS.items():
        lines.append(f"    {state}: {state} {label}")
    lines.append("    [*] --> accepted: accept 受理")
    # Where a parked case can return to: the statuses it may have been parked from.
    parked_from: dict[str, set[str]] = {}
    for t in spec.transitions:
        if "remember_status" in t.effects and t.to_state:
            parked_from.setdefault(t.to_state, set()).update(t.from_states)
    edges: dict[tuple[str, str], list[str]] = {}
    for t in spec.transitions:
        if t.to_state is None:
            continue
        for src in t.from_states:
            targets = (sorted(parked_from.get(src, ())) if t.to_state == _PREVIOUS
                       else [t.to_state])
            for dst in targets:
                label = f"{t.name} {ACTION_LABELS[t.name]}"
                if label not in edges.setdefault((src, dst), []):
                    edges[src, dst].append(label)
    for (src, dst), labels in edges.items():
        lines.append(f"    {src} --> {dst}: {' / '.join(labels)}")
    for state in sorted(spec.final_states):
        lines.append(f"    {state} --> [*]")
    side = [t.name for t in spec.transitions if t.to_state is None]
    lines.append("    note right of handling")
    lines.append("        不改变状态的操作: " + ", ".join(dict.fromkeys(side)))
    lines.append("    end note")
    return "\n".join(lines) + "\n"

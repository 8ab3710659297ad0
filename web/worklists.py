"""Role worklists (待办) and the workflow action forms, server-rendered in Chinese.

Owns `GET /worklists` (the lists of the user's role, with counts), `GET /worklists/{key}`
(one list: urgent first, then oldest first, with the deadline colour, paged), and
`GET|POST /cases/{id}/actions/{action}` (one workflow transition as an HTML form whose
fields come from `case_core/specs/workflow.yaml`). It also adds to the case page, which
`web.app` renders, what the workflow knows: deadlines, the user's actions, a flash line.

Every action goes through `CaseService.act`, so the form says exactly what the JSON API
says when the workflow refuses (403 role, 409 someone else changed it, 422 the rest).
Plain form posts cannot carry the `X-Requested-With` header, so they carry a CSRF token
derived from the session cookie instead (`csrf_token`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from aiohttp import web

from case_core.views import CaseSelection, CaseView, NotFound
from case_core.domain import workflow
from case_core.domain.workflow import (
    ACTION_LABELS,
    CASE_TYPE_LABELS,
    ROLE_LABELS,
    STEP_LABELS,
    CaseCommand,
    GuardFailed,
    IllegalTransition,
    NotPermitted,
    VersionConflict,
    WorkflowError,
)
from web import auth, case_list
from web.app import CTX, JINJA, USER, current_user, page_auth, render
from web.case_api import detail_json, local_now
from web.photos import may_see

PAGE_SIZE = 30

# ------------------------------------------------------------------------ the lists
def _status_in(*statuses: str) -> Callable[[str], CaseSelection]:
    return lambda role: CaseSelection(statuses=statuses)


def _awaiting_register(role: str) -> CaseSelection:
    # Verified citizen reports, plus the reports the workflow lets skip 核实 (see the
    # `verify_exempt` guard): urgent ones and the inspectors' own.
    return CaseSelection(statuses=("verified",), verify_exempt_reports=True)


def _approval_kinds(spec: workflow.WorkflowSpec, role: str) -> list[str]:
    """Application kinds (回退, 延期, …) whose decision the spec gives to ``role``."""
    kinds = []
    for t in spec.transitions:
        if t.guard and t.guard.startswith("pending:") and (role in t.roles or role == "admin"):
            kind = t.guard.split(":", 1)[1]
            if kind not in kinds:
                kinds.append(kind)
    return kinds


def _awaiting_approval(spec: workflow.WorkflowSpec) -> Callable[[str], CaseSelection]:
    def where(role: str) -> CaseSelection:
        # Any status, with a pending application the spec lets `role` decide.
        return CaseSelection(statuses=tuple(workflow.STATUS_LABELS), pending_kinds=tuple(_approval_kinds(spec, role)))

    return where


@dataclass(frozen=True)
class Worklist:
    """One 待办 list: who sees it, which cases are in it, the actions offered per row."""

    key: str
    label: str
    roles: tuple[str, ...]
    statuses: tuple[str, ...]
    actions: tuple[str, ...]
    where: Callable[[str], CaseSelection]  # role → the cases in the list
    hint: str = ""


def build_worklists(spec: workflow.WorkflowSpec) -> tuple[Worklist, ...]:
    return (
        Worklist("accepted", "待受理", ("agent", "shift_lead"), ("accepted",),
                 ("send_verify", "direct_answer"), _status_in("accepted"), "新受理的来电与上报：派发核实、直办咨询或合并"),
        Worklist("verifying", "待核实", ("inspector",), ("verifying",), ("verify",), _status_in("verifying"),
                 "到现场核实市民反映的问题"),
        Worklist("verified", "待立案", ("shift_lead",), ("verified",), ("register", "decline"), _awaiting_register,
                 "已核实的上报，以及免核实的突发、监督员上报"),
        Worklist("registered", "待派遣", ("dispatcher",), ("registered",), ("dispatch",), _status_in("registered"),
                 "已立案，派往责任单位"),
        Worklist("handling", "待处置", ("department",), ("dispatched", "handling"), ("handle", "report_done"),
                 _status_in("dispatched", "handling"), "签收、处置并反馈结果"),
        Worklist("checking", "待核查", ("inspector",), ("checking",), ("check",), _status_in("checking"),
                 "到现场核查处置结果"),
        Worklist("checked", "待结案", ("shift_lead",), ("checked",), ("close", "rework"), _status_in("checked"),
                 "核查完成：结案或返工"),
        Worklist("closed", "待回访", ("agent",), ("closed", "direct_answered"), ("follow_up",),
                 _status_in("closed", "direct_answered"), "回访市民并记录满意度"),
        Worklist("followed_up", "待评价", ("shift_lead", "supervisor"), ("followed_up",), ("evaluate",),
                 _status_in("followed_up"), "回访完成，评价归档"),
        Worklist("approvals", "待审批", ("dispatcher", "commander", "shift_lead"), (), (),
                 _awaiting_approval(spec), "回退、延期、缓办、挂账、作废申请"),
        Worklist("parked", "挂账/缓办", ("commander", "shift_lead"), ("suspended", "deferred"), ("resume",),
                 _status_in("suspended", "deferred"), "已挂账或缓办的案卷，可恢复办理"),
    )


def lists_for(worklists: tuple[Worklist, ...], role: str) -> list[Worklist]:
    return [w for w in worklists if role == "admin" or role in w.roles]


def find_worklist(worklists: tuple[Worklist, ...], key: str) -> Worklist | None:
    """A list by its key, or the list that holds a status (`/worklists/dispatched`)."""
    return next((w for w in worklists if w.key == key), None) or next(
        (w for w in worklists if key in w.statuses), None)


# ---------------------------------------------------------------------- deadlines
DEADLINE_LABELS = {"on_time": "按期", "yellow": "黄灯", "overdue": "超期", "done": "按期完成",
                   "late": "超期完成", "no_limit": "不限时"}


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def current_deadline(view: CaseView, calendar, now: datetime) -> dict[str, Any] | None:
    """The earliest open step deadline of a listed case with its colour, or None."""
    best = None
    for step, clock in (view.state.get("deadlines") or {}).items():
        due = _parse(clock.get("due_at"))
        if due is None or clock.get("done_at"):
            continue
        if best is None or due < best[1]:
            best = (step, due, _parse(clock.get("started_at")) or due)
    if best is None:
        return None
    step, due, started = best
    state = calendar.deadline_status(due, now, started_at=started)
    return {"step": step, "step_label": STEP_LABELS.get(step, step), "due_at": due, "status": state,
            "label": DEADLINE_LABELS[state]}


# ------------------------------------------------------------------------- fields
FIELD_LABELS = {
    "reason": "原因",
    "comment": "备注",
    "result": "处置结果",
    "answer": "答复内容",
    "photos": "照片",
    "department": "处置部门",
    "inspector": "监督员",
    "category": "案件类别",
    "grid_cell": "单元网格",
    "case_type": "案件类型",
    "verify_result": "核实结果",
    "check_result": "核查结果",
    "satisfaction": "满意度",
    "merged_into": "并入案卷编号",
    "merged_case": "相似案卷编号",
    **{f"{step}_deadline": f"{label}时限" for step, label in STEP_LABELS.items()},
}

CHOICE_LABELS = {
    "case_type": CASE_TYPE_LABELS,
    "verify_result": {"confirmed": "属实", "not_confirmed": "不属实"},
    "check_result": {"passed": "通过", "failed": "不通过"},
    "satisfaction": {"satisfied": "满意", "basically_satisfied": "基本满意", "dissatisfied": "不满意",
                     "unreachable": "联系不上"},
}

FIELD_HINTS = {
    "photos": "从手机或电脑选择现场照片，可多张；上传后显示缩略图",
    "category": "输入名称或拼音（如 井盖 / jinggai）后从列表选择",
    "inspector": "留空则按单元网格自动指派",
    "grid_cell": "输入网格名称后从列表选择",
    "merged_into": "输入编号、电话或描述中的词后从列表选择",
    "merged_case": "输入编号、电话或描述中的词后从列表选择",
}

# Fields whose value is a code: chosen with a picker (static/picker.js), never typed.
PICKER_FIELDS = {"category": "category", "grid_cell": "grid_cell", "inspector": "inspector",
                 "department": "department", "merged_into": "case", "merged_case": "case"}

# Long free text gets a textarea; the rest single-line inputs.
_LONG_TEXT = {"reason", "comment", "result", "answer"}


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    widget: str  # textarea, text, select, photos, datetime, picker
    required: bool
    options: tuple[tuple[str, str], ...] = ()
    hint: str = ""
    picker: str = ""  # the picker kind when widget == "picker"


def form_fields(spec: workflow.WorkflowSpec, t: workflow.Transition, departments: dict[str, str],
                suggested_department: str | None) -> list[FormField]:
    """The inputs for one transition: its required, then optional fields, then a comment."""
    out = []
    names = list(t.required_fields) + [n for n in t.optional_fields if n not in t.required_fields]
    names += [] if "comment" in names else ["comment"]
    for name in names:
        ftype = spec.field_types.get(name, "text")
        required = name in t.required_fields
        label = FIELD_LABELS.get(name, name)
        hint = FIELD_HINTS.get(name, "")
        if isinstance(ftype, dict):
            labels = CHOICE_LABELS.get(name, {})
            out.append(FormField(name, label, "select", required,
                                 tuple((v, labels.get(v, v)) for v in ftype["choice"]), hint))
        elif name == "department" and departments:
            auto = departments.get(suggested_department or "", suggested_department)
            first = ("", f"按指挥手册自动派往：{auto}") if auto else ("", "请选择部门")
            out.append(FormField(name, label, "select", required and not auto,
                                 (first, *sorted(departments.items(), key=lambda kv: kv[0])), hint))
        elif name in PICKER_FIELDS:
            out.append(FormField(name, label, "picker", required, (), hint, PICKER_FIELDS[name]))
        elif ftype == "photos":
            out.append(FormField(name, label, "photos", required, (), hint))
        elif ftype == "datetime":
            out.append(FormField(name, label, "datetime", required, (), hint or "留空则按指挥手册计算"))
        else:
            out.append(FormField(name, label, "textarea" if name in _LONG_TEXT else "text", required, (), hint))
    return out


def fields_from_form(form, fields: list[FormField]) -> dict[str, Any]:
    """What the user typed, as workflow fields: empty optional inputs are left out."""
    out: dict[str, Any] = {}
    for f in fields:
        raw = str(form.get(f.name, "")).strip()
        if f.widget == "photos":
            value: Any = [line.strip() for line in raw.splitlines() if line.strip()]
        else:
            value = raw
        if value or f.required:
            out[f.name] = value
    return out


def message_zh(exc: WorkflowError) -> str:
    """The domain's Chinese message with field names replaced by their Chinese labels."""
    text = exc.message_zh
    for name, label in FIELD_LABELS.items():
        text = text.replace(f"“{name}”", f"“{label}”")
    return text


def _http_status(exc: WorkflowError) -> int:
    if isinstance(exc, VersionConflict):
        return 409
    if isinstance(exc, NotPermitted):
        return 403
    return 422


# --------------------------------------------------------------------------- CSRF
def csrf_token(request: web.Request) -> str:
    """Per-session form token: an HMAC of the session cookie under the installation key."""
    cookie = request.cookies.get(auth.SESSION_COOKIE, "")
    digest = hmac.new(request.app[CTX].secret, b"form-csrf:" + cookie.encode(), hashlib.sha256).hexdigest()
    return digest[:32]


def csrf_ok(request: web.Request, form) -> bool:
    if request.headers.get("Authorization", "").startswith("Bearer "):
        return True  # a browser never sends our bearer tokens on its own
    if not request.cookies.get(auth.SESSION_COOKIE):
        return False
    return hmac.compare_digest(str(form.get("csrf_token", "")), csrf_token(request))


# ----------------------------------------------------------------------- handlers
WORKLISTS = web.AppKey("worklists", tuple)
CASE_EXTRAS = web.RequestKey("worklists_case_extras", dict)


def _not_found(request: web.Request, what: str) -> web.Response:
    return render(request, "not_found.html", status=404, user=request[USER], what=what)


@page_auth
async def overview(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    user = request[USER]
    now = local_now(request)
    rows = []
    from web.photos import visible_where  # counts of the cases the user may see

    scope = visible_where(user)
    for w in lists_for(request.app[WORKLISTS], user.role):
        rows.append({"list": w, **await ctx.repo.case_counts(now, selection=w.where(user.role), scope=scope)})
    return render(request, "worklist.html", user=user, overview=rows, role_label=ROLE_LABELS.get(user.role, user.role))


@page_auth
async def worklist(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    user = request[USER]
    lists = request.app[WORKLISTS]
    w = find_worklist(lists, request.match_info["key"])
    if w is None:
        return _not_found(request, "待办列表")
    if w not in lists_for(lists, user.role):
        return render(request, "worklist.html", status=403, user=user, overview=None,
                      error=f"“{w.label}”不是{ROLE_LABELS.get(user.role, user.role)}的待办。",
                      role_label=ROLE_LABELS.get(user.role, user.role))
    try:
        page = max(1, int(request.query.get("page", "1")))
    except ValueError:
        page = 1
    now = local_now(request)
    ref = await ctx.service.reference()
    selection = w.where(user.role)
    # Department staff see their own department's cases; others may narrow the list by hand.
    from web.photos import visible_where  # least privilege, as on /cases and the API

    scope = visible_where(user)
    department = scope.get("department") or request.query.get("department", "")
    # Filters, sorting and paging from the URL as on /cases (web/case_list.py); unless a
    # column is chosen, urgent first, then oldest first.
    lq = dataclasses.replace(case_list.parse_query(request.query), department=department)
    chosen = "sort" in request.query
    counts = await ctx.repo.case_counts(now, selection=selection, scope=scope, f=lq)
    order = lq if chosen else dataclasses.replace(lq, sort="created", dir="asc")
    ids, counts["total"], page = await ctx.repo.case_page(
        order, now, ref.calendar, selection=selection, scope=scope, urgent_first=not chosen, page_size=PAGE_SIZE)
    pages = max(1, math.ceil(counts["total"] / PAGE_SIZE))
    found = {v.id: v for v in await ctx.service.search(case_ids=tuple(ids), limit=len(ids) or 1,
                                                       with_recordings=False)} if ids else {}
    spec = ctx.service.spec
    rows = []
    for case_id in ids:
        v = found.get(case_id)
        if v is None:
            continue
        actions = [(a, ACTION_LABELS[a]) for a in w.actions
                   if (t := spec.find(a, v.status)) is not None and (user.role in t.roles)
                   and not (a == "direct_answer" and v.kind != "consultation")]
        rows.append(listed_row(v, ref, now) | {"actions": actions})
    return render(request, "worklist.html", user=user, overview=None, worklist=w, rows=rows, counts=counts,
                  page=page, pages=pages, role_label=ROLE_LABELS.get(user.role, user.role),
                  department=department, lq=lq, sort_chosen=chosen, own_department=department
                  if user.role == "department" and user.department else None,
                  category_text=category_filter_text(ref, lq.category), deadline_choices=case_list.DEADLINES,
                  statuses=[(s, workflow.STATUS_LABELS[s]) for s in w.statuses],
                  departments=sorted((code, d.name) for code, d in ref.departments.items()))


def category_filter_text(ref, key: str) -> str:
    """The name of the category a `kind:code` filter key names, else the key itself."""
    kind, _, code = key.rpartition(":")
    found = ref.categories.get(kind, code) if kind else None
    return found.name if found else key


def listed_row(view: CaseView, ref, now: datetime,
               category_text: Callable[[Any], str] = lambda c: c.name) -> dict[str, Any]:
    """One case as the case list and the worklists show it: the case, its category (as
    `category_text` words it), its department's name and its current deadline."""
    category = ref.categories.get(view.category_kind, view.category_code) if view.category_code else None
    dept = ref.departments.get(view.department) if view.department else None
    return {"case": view, "category": category_text(category) if category else "",
            "category_label": category.label_zh if category else "",
            "department": dept.name if dept else (view.department or ""),
            "deadline": current_deadline(view, ref.calendar, now)}


async def _form_context(request: web.Request, case_id: int, action: str) -> dict[str, Any]:
    ctx = request.app[CTX]
    service = ctx.service
    state = await service.case_state(case_id)
    view = await service.get_case(case_id)
    t = service.spec.find(action, state.status)
    ref = await service.reference()
    departments = {code: d.name for code, d in ref.departments.items()}
    suggested = await service.suggested_department(state) if t is not None and "department" in (
        t.required_fields + t.optional_fields) else None
    fields = form_fields(service.spec, t, departments, suggested) if t is not None else []
    return {"case": view, "state": state, "transition": t, "fields": fields, "ref": ref}


def named_value(ref, user_names: dict[str, str], field: str, value: Any) -> str | None:
    """What the case page's timeline shows for a stored code: a department, inspector,
    category or grid cell by its name (the code beside it where people quote it); None
    when `field` holds no code or the code is unknown."""
    if not isinstance(value, str) or not value:
        return None
    if field == "department":
        dept = ref.departments.get(value)
        return dept.name if dept else None
    if field == "inspector":
        return user_names.get(value)
    if field == "category":
        try:
            found = ref.categories.by_key(value)
        except ValueError:
            return None
        return f"{found.name}（{found.class_name} · {found.code}）" if found else None
    if field == "grid_cell":
        cell = ref.grid_cells.get(value)
        return f"{cell.name} {cell.grid_id}" if cell and cell.name else None
    return None


def picker_texts(ref, values: dict[str, Any]) -> dict[str, str]:
    """What a picker shows for a code kept in the form (after a refused submit)."""
    out: dict[str, str] = {}
    category = values.get("category") or ""
    if category and ref is not None:
        try:
            found = ref.categories.by_key(category)
        except ValueError:
            found = None
        out["category"] = found.name if found else category
    cell = ref.grid_cells.get(values.get("grid_cell") or "") if ref is not None else None
    if cell is not None:
        out["grid_cell"] = cell.name or cell.grid_id
    dept = ref.departments.get(values.get("department") or "") if ref is not None else None
    if dept is not None:
        out["department"] = dept.name
    return out


def _render_form(request: web.Request, context: dict[str, Any], action: str, *, http_status: int = 200,
                 error: str | None = None, error_field: str | None = None, values: dict[str, Any] | None = None,
                 expected_version: int | None = None, exc: WorkflowError | None = None) -> web.Response:
    case_view = context["case"]
    # Nothing the user can type fixes these, so no form then; a conflict or a field error keeps it.
    blocked = isinstance(exc, (IllegalTransition, NotPermitted, GuardFailed))
    return render(request, "case_action.html", status=http_status, user=request[USER], case=case_view,
                  action=action, action_label=ACTION_LABELS.get(action, action), fields=context["fields"],
                  can_submit=context["transition"] is not None and not blocked, error=error, error_field=error_field,
                  values=values or {}, csrf=csrf_token(request),
                  picker_texts=picker_texts(context.get("ref"), values or {}),
                  expected_version=expected_version if expected_version is not None else case_view.version)


def _case_id(request: web.Request) -> int | None:
    try:
        return int(request.match_info["case_id"])
    except ValueError:
        return None


@page_auth
async def action_form(request: web.Request) -> web.Response:
    """The action's form; refuses up front (403/422) what the workflow would refuse for anyone."""
    case_id, action = _case_id(request), request.match_info["action"]
    if case_id is None or action not in ACTION_LABELS or action == "absorb":
        return _not_found(request, "案卷或操作")
    user = request[USER]
    try:
        context = await _form_context(request, case_id, action)
    except NotFound:
        return _not_found(request, "案卷")
    if not may_see(user, context["case"]):  # department staff: their department's cases only
        return render(request, "not_found.html", status=403, user=user, what="案卷")
    try:
        # A dry run with no fields: the status and role checks come before the field check.
        workflow.apply(request.app[CTX].service.spec, context["state"],
                       CaseCommand(action, user.username, user.role, {}, None), local_now(request))
    except (IllegalTransition, NotPermitted, GuardFailed) as exc:
        return _render_form(request, context, action, http_status=_http_status(exc), error=message_zh(exc), exc=exc)
    except WorkflowError:
        pass  # a missing field: exactly what the form is for
    return _render_form(request, context, action)


@page_auth
async def action_submit(request: web.Request) -> web.Response:
    case_id, action = _case_id(request), request.match_info["action"]
    if case_id is None or action not in ACTION_LABELS or action == "absorb":
        return _not_found(request, "案卷或操作")
    ctx = request.app[CTX]
    user = request[USER]
    form = await request.post()
    try:
        context = await _form_context(request, case_id, action)
    except NotFound:
        return _not_found(request, "案卷")
    if not may_see(user, context["case"]):  # department staff: their department's cases only
        return render(request, "not_found.html", status=403, user=user, what="案卷")
    values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    try:
        expected = int(form.get("expected_version", ""))
    except (TypeError, ValueError):
        return _render_form(request, context, action, http_status=400, values=values,
                            error="表单缺少案卷版本号，请刷新页面后重试。")
    if not csrf_ok(request, form):
        return _render_form(request, context, action, http_status=403, values=values, expected_version=expected,
                            error="表单已过期或来源不明（安全校验失败），请刷新页面后重试。")
    if context["transition"] is None:
        fields: dict[str, Any] = {}
    else:
        fields = fields_from_form(form, context["fields"])
    try:
        await ctx.service.act(case_id, action, actor=user.username, role=user.role, fields=fields,
                              expected_version=expected, now=local_now(request), department=user.department)
    except NotFound:
        return _not_found(request, "案卷")
    except WorkflowError as exc:
        return _render_form(request, context, action, http_status=_http_status(exc), error=message_zh(exc),
                            error_field=getattr(exc, "field", None), values=values, expected_version=expected,
                            exc=exc)
    raise web.HTTPSeeOther(f"/cases/{case_id}?done={action}")


@web.middleware
async def case_page_extras(request: web.Request, handler):
    """Before `web.app` renders the case page, work out its workflow part for case.html."""
    resource = request.match_info.route.resource
    if request.method == "GET" and resource is not None and resource.canonical == "/cases/{case_id}":
        user = await current_user(request)
        case_id = _case_id(request)
        if user is not None and case_id is not None:
            request[USER] = user
            try:
                extras = await detail_json(request, case_id)
            except NotFound:
                extras = None
            if extras is not None:
                ctx = request.app[CTX]
                ref = await ctx.service.reference()
                cell = ref.grid_cells.get(extras.get("grid_cell") or "")
                dept = ref.departments.get(extras.get("department") or "")
                done = request.query.get("done", "")
                names = {u.username: u.display_name or u.username for u in await ctx.repo.list_users()}
                extras.update(
                    action_labels=ACTION_LABELS, role_labels=ROLE_LABELS, deadline_labels=DEADLINE_LABELS,
                    case_type_labels=CASE_TYPE_LABELS, field_labels=FIELD_LABELS, choice_labels=CHOICE_LABELS,
                    grid=cell, department_name=dept.name if dept else None,
                    done_label=ACTION_LABELS.get(done) if done in ACTION_LABELS else None,
                    user_names=names, named=lambda field, value: named_value(ref, names, field, value),
                )
                request[CASE_EXTRAS] = extras
    return await handler(request)


def setup(app: web.Application) -> None:
    app[WORKLISTS] = build_worklists(app[CTX].service.spec)
    app[JINJA].globals["WL_CASE"] = CASE_EXTRAS
    app.middlewares.append(case_page_extras)
    app.router.add_get("/worklists", overview)
    app.router.add_get("/worklists/{key}", worklist)
    app.router.add_get("/cases/{case_id}/actions/{action}", action_form)
    app.router.add_post("/cases/{case_id}/actions/{action}", action_submit)

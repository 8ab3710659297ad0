"""The agent desk (受理台) with its screen pop, and the supervisor wallboard (监控大屏).

Pages are server-rendered; live parts come over the `/ws` WebSocket: `screen_pop` (to the
agent whose phone rings, only), `agent_state`, `wrap_up_started`, and `wallboard` changes.

The screen-pop form saves in one of four ways, each ending the agent's wrap-up:
`POST /api/desk/cases` (登记案卷), `/api/desk/answer` (直办: a consultation answered on the
call), `/api/desk/link` (关联已有案卷: the call is stored on an earlier case) and
`/api/desk/callback` (预约回拨). `POST /api/desk/suggest` reads the description and
suggests category, place, grid cell, phone and urgency. Bad input → 4xx with
`{"error", "message", "fields": {name: 中文说明}}`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import logging

from aiohttp import web

from case_core.views import NotFound
from case_core.domain.workflow import CASE_TYPE_LABELS, STATUS_LABELS, NotPermitted, WorkflowError
from case_core.service import normalize_case_number
from web import timefmt
from web.app import CTX, USER, BodyTooLarge, api_auth, json_error, page_auth, read_json, render

log = logging.getLogger(__name__)

TIMEZONE = ZoneInfo("Asia/Shanghai")
MAX_TEXT = 2000
ANSWER_ROLES = ("agent", "shift_lead")  # who may answer a consultation directly (workflow.yaml)
CALLBACK_HORIZON = timedelta(days=30)

SUPERVISOR_ROLES = ("supervisor", "shift_lead", "commander", "admin")
# Who works the desk's calls: files cases from the screen pop, links, books callbacks, asks
# for suggestions, transfers, consults and controls a call. Department staff, inspectors,
# dispatchers, commanders and admins answer no hotline calls (least privilege, issue 14).
DESK_ROLES = ("agent", "shift_lead", "supervisor")

# JSON body caps per route, by what the body can mean: the forms carry a description and an
# answer of at most MAX_TEXT characters each (×6 when a client escapes them as \uXXXX);
# the call actions carry a call id, a state or a target. Past the cap: 413 before parsing.
FORM_MAX_BYTES = 32 * 1024
ACTION_MAX_BYTES = 4 * 1024


def _desk(request: web.Request):
    desk = request.app[CTX].desk
    if desk is None:
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": "no_acd", "message": "呼叫中心未启用"}, ensure_ascii=False), content_type="application/json"
        )
    return desk


@page_auth
async def desk_page(request: web.Request) -> web.Response:
    desk = request.app[CTX].desk
    user = request[USER]
    status = desk.status(user.username) if desk is not None else None
    dialer = request.app[CTX].followups
    return render(request, "desk.html", user=user, agent=status,
                  pause_reasons=desk.pause_reasons if desk is not None else {},
                  case_types=CASE_TYPE_LABELS, calling_hours=calling_hours_zh(dialer) if dialer else None)


@page_auth
async def wallboard_page(request: web.Request) -> web.Response:
    user = request[USER]
    if user.role not in SUPERVISOR_ROLES:
        return render(request, "not_found.html", status=403, user=user, what="页面（需要班长或管理员权限）")
    return render(request, "wallboard.html", user=user)


@api_auth
async def api_desk_status(request: web.Request) -> web.Response:
    desk = _desk(request)
    status = desk.status(request[USER].username)
    if status is None:
        return json_error(404, "not_an_agent", "您不是受理员，或尚未配置分机。")
    return web.json_response(status)


@api_auth
async def api_desk_state(request: web.Request) -> web.Response:
    desk = _desk(request)
    refused = _desk_role_refusal(request)
    if refused is not None:
        return refused
    body = await _body(request, ACTION_MAX_BYTES, "坐席状态")
    if isinstance(body, web.Response):
        return body
    if not isinstance(body.get("state"), str):
        return json_error(400, "bad_request", "缺少 state")
    try:
        status = desk.set_state(request[USER].username, body["state"], body.get("reason"))
    except desk.Error as exc:
        return json_error(409, "refused", exc.message_zh)
    return web.json_response(status)


def _desk_role_refusal(request: web.Request) -> web.Response | None:
    """None when the user works the desk (DESK_ROLES); else the 403."""
    if request[USER].role in DESK_ROLES:
        return None
    return json_error(403, "forbidden", "只有受理员、值班长或班长可以使用受理台的来电操作")


def _now(request: web.Request) -> datetime:
    """The center's local time, naive (as cases are stored)."""
    desk = request.app[CTX].desk
    if desk is not None:
        return desk.now_dt()
    return datetime.fromtimestamp(request.app[CTX].now(), TIMEZONE).replace(tzinfo=None)


def _dumps(obj: Any) -> str:
    return timefmt.dumps(obj)  # times as ISO 8601 with the center's offset


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _invalid(fields: dict[str, str], status: int = 422, message: str = "表单有误，请修改后再保存") -> web.Response:
    return _json({"error": "invalid", "message": message, "fields": fields}, status)


async def _body(request: web.Request, max_bytes: int = FORM_MAX_BYTES,
                what: str = "受理表单") -> dict[str, Any] | web.Response:
    try:
        body = await read_json(request, max_bytes, what)
    except BodyTooLarge as exc:
        return web.Response(status=413, text=exc.text, content_type="application/json")
    except (ValueError, UnicodeDecodeError):
        return json_error(400, "bad_json", "请求格式不正确")
    if not isinstance(body, dict):
        return json_error(400, "bad_request", "请求格式不正确")
    return body


def _text(body: dict, name: str) -> str:
    value = body.get(name)
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value).strip())


def _check_phone(body: dict, errors: dict, name: str = "reporter_phone", label: str = "来电号码") -> str:
    phone = _text(body, name)
    if phone and not (phone.isdigit() and 3 <= len(phone) <= 20):
        errors[name] = f"{label}只能是3到20位数字"
    return phone


def _check_description(body: dict, errors: dict, empty: str = "请填写问题描述") -> str:
    description = _text(body, "description")
    if not description:
        errors["description"] = empty
    elif len(description) > MAX_TEXT:
        errors["description"] = f"问题描述不能超过{MAX_TEXT}字"
    return description


def _case_extras(body: dict, errors: dict) -> dict[str, Any]:
    """Category, address, grid cell and case type, as the suggestions (识别) filled them in."""
    category = _text(body, "category") or None
    if category and (":" not in category or len(category) > 40):
        errors["category"] = "案件类别格式不正确"
    address = _text(body, "address")
    if len(address) > 200:
        errors["address"] = "地址不能超过200字"
    grid_cell = _text(body, "grid_cell") or None
    if grid_cell and len(grid_cell) > 40:
        errors["grid_cell"] = "单元网格编号不正确"
    case_type = _text(body, "case_type") or "normal"
    if case_type not in CASE_TYPE_LABELS:
        errors["case_type"] = "案件类型只能是一般、疑难或突发"
    return {"category": category, "address": address, "grid_cell": grid_cell, "case_type": case_type}


def _channel(body: dict) -> str:
    return _text(body, "channel") or "12319"


def _workflow_refusal(exc: WorkflowError) -> web.Response:
    if isinstance(exc, NotPermitted):
        return json_error(403, exc.code, exc.message_zh)
    name = getattr(exc, "field", None)
    if name:
        return _json({"error": exc.code, "message": exc.message_zh, "fields": {name: exc.message_zh}}, 422)
    return json_error(422, exc.code, exc.message_zh)


def _wrap_up_done(request: web.Request) -> None:
    desk = request.app[CTX].desk
    if desk is not None:
        desk.wrap_up_done(request[USER].username)


async def _create_from_form(request: web.Request, body: dict, *, kind: str, description: str, phone: str,
                            extras: dict[str, Any]):
    """Accept the form as a case in the agent's name and store the call on it."""
    ctx = request.app[CTX]
    user = request[USER]
    case = await ctx.service.create_case(
        channel=_channel(body),
        description=description,
        actor=user.username,
        role=user.role,
        now=_now(request),
        kind=kind,
        case_type=extras["case_type"],
        reporter_phone=phone,
        address=extras["address"],
        category=extras["category"],
        grid_cell=extras["grid_cell"],
    )
    await ctx.repo.link_call(_text(body, "call_id") or None, case.id)
    # In the background: the first suggestion after a start may still be loading the model.
    task = asyncio.ensure_future(_note_category_correction(request, case.id, description, extras["category"]))
    _CORRECTIONS.add(task)
    task.add_done_callback(_CORRECTIONS.discard)
    return case


_CORRECTIONS: set[asyncio.Task] = set()  # corrections being stored (kept referenced until done)


async def _note_category_correction(request: web.Request, case_id: int, description: str,
                                    chosen: str | None) -> None:
    """A category other than the one suggested for this description is stored as a
    correction (`hotline extract train` learns from it); never fails the saved case."""
    if not chosen:
        return
    from case_core import suggest
    from case_core.corrections import record_correction

    ctx = request.app[CTX]
    try:
        data = await asyncio.to_thread(suggest.suggest_for_text, description,
                                       settings=getattr(ctx, "settings", None))
        await record_correction(ctx.repo.engine, case_id=case_id, text=description,
                                suggested=(data.get("prefill") or {}).get("category"), chosen=chosen,
                                actor=request[USER].username, now=_now(request))
    except Exception:  # noqa: BLE001 - the case is saved; a lost correction only costs training data
        log.exception("could not store the category correction of case %s", case_id)


def _created(case) -> web.Response:
    return _json({"number": case.number, "id": case.id, "status": case.status,
                  "status_label": STATUS_LABELS.get(case.status, case.status)}, 201)


@api_auth
async def api_desk_case(request: web.Request) -> web.Response:
    """Save the screen-pop form (登记案卷): a report becomes an accepted case; wrap-up ends."""
    refused = _desk_role_refusal(request)
    if refused is not None:
        return refused
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    errors: dict[str, str] = {}
    description = _check_description(body, errors)
    kind = body.get("kind", "report") or "report"
    if kind not in ("report", "consultation"):
        errors["kind"] = "类型只能是“反映问题”或“咨询”"
    phone = _check_phone(body, errors)
    extras = _case_extras(body, errors)
    if errors:
        return _invalid(errors)
    try:
        case = await _create_from_form(request, body, kind=kind, description=description, phone=phone, extras=extras)
    except WorkflowError as exc:
        return _workflow_refusal(exc)
    _wrap_up_done(request)
    return _created(case)


@api_auth
async def api_desk_answer(request: web.Request) -> web.Response:
    """直办: record the consultation and the answer given on the call; wrap-up ends."""
    ctx = request.app[CTX]
    user = request[USER]
    if user.role not in ANSWER_ROLES:
        return json_error(403, "not_permitted", "只有受理员或值班长可以直办答复")
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    errors: dict[str, str] = {}
    description = _check_description(body, errors, empty="请填写咨询内容")
    answer = _text(body, "answer")
    if not answer:
        errors["answer"] = "请填写答复内容"
    elif len(answer) > MAX_TEXT:
        errors["answer"] = f"答复内容不能超过{MAX_TEXT}字"
    phone = _check_phone(body, errors)
    extras = _case_extras(body, errors)
    if errors:
        return _invalid(errors)
    try:
        case = await _create_from_form(request, body, kind="consultation", description=description, phone=phone,
                                       extras=extras)
    except WorkflowError as exc:
        return _workflow_refusal(exc)
    try:
        case, _events = await ctx.service.act(
            case.id, "direct_answer", actor=user.username, role=user.role, fields={"answer": answer},
            expected_version=case.version, now=_now(request),
        )
    except WorkflowError as exc:
        # The consultation is kept (accepted); say so, so that nobody registers it twice.
        return _json({"error": exc.code, "number": case.number, "id": case.id,
                      "message": f"咨询已登记为案卷 {case.number}，但直办未完成：{exc.message_zh}",
                      "fields": {"answer": exc.message_zh}}, 422)
    _wrap_up_done(request)
    return _created(case)


@api_auth
async def api_desk_link(request: web.Request) -> web.Response:
    """关联已有案卷: store this call on an earlier case (the caller's or one typed in)."""
    ctx = request.app[CTX]
    refused = _desk_role_refusal(request)
    if refused is not None:
        return refused
    body = await _body(request, ACTION_MAX_BYTES, "关联请求")
    if isinstance(body, web.Response):
        return body
    typed = _text(body, "case_number")
    if not typed:
        return _invalid({"case_number": "请选择或输入要关联的案卷编号"})
    number = normalize_case_number(typed)
    case_id = await ctx.repo.case_id_for_number(number) if len(number) <= 40 else None
    try:
        if case_id is None:
            raise NotFound(number)
        case = await ctx.service.get_case(case_id)
    except NotFound:
        message = f"找不到案卷“{typed[:40]}”，请核对编号"
        return _invalid({"case_number": message}, status=404, message=message)
    from web.photos import may_see  # least privilege: only a case the user may see

    if not may_see(request[USER], case):
        return json_error(403, "forbidden", "该案卷已派遣给其他处置部门，无权关联")
    call_id = _text(body, "call_id") or None
    linked = await ctx.repo.link_call(call_id, case.id)
    user = request[USER]
    caller = _text(body, "reporter_phone") or "来电人"
    try:
        await ctx.service.act(
            case.id, "note", actor=user.username, role=user.role,
            fields={"comment": f"{caller} 再次来电反映此案卷（来电 {call_id or '—'}）"},
            now=_now(request),
        )
        noted = True
    except WorkflowError as exc:
        log.info("link: no history note on %s: %s", case.number, exc)
        noted = False
    _wrap_up_done(request)
    return _json({
        "number": case.number,
        "id": case.id,
        "status": case.status,
        "status_label": STATUS_LABELS.get(case.status, case.status),
        "call_id": call_id,
        "call_linked": linked,
        "history_recorded": noted,
        "message": f"本次来电已关联到案卷 {case.number}（{STATUS_LABELS.get(case.status, case.status)}）"
        if linked else f"已记下案卷 {case.number}（{STATUS_LABELS.get(case.status, case.status)}），本次来电未能存入该案卷",
    })


def parse_local_time(text: str) -> datetime | None:
    """"2026-11-23T15:30" (a datetime-local input), with a space or seconds too → naive local time."""
    text = (text or "").strip()
    if not text or len(text) > 40:
        return None
    try:
        value = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    except ValueError:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(TIMEZONE).replace(tzinfo=None)
    return value


def calling_hours_zh(dialer) -> str:
    hours = dialer.scheduler.policy.calling_hours
    return "、".join(f"{a.strftime('%H:%M')}–{b.strftime('%H:%M')}" for a, b in hours)


def check_callback_time(dialer, text: str, now: datetime, kind: str = "scheduled") -> tuple[datetime | None, str | None]:
    """A callback time as typed: (time, None) or (None, the reason in Chinese)."""
    due = parse_local_time(text)
    if due is None:
        return None, "预约时间格式不正确，请选择日期和时间（年-月-日 时:分）"
    if due <= now:
        return None, "预约时间必须晚于当前时间"
    if due > now + CALLBACK_HORIZON:
        return None, "预约时间不能超过30天以后"
    start = dialer.scheduler.next_calling_time(kind, due)
    if start != due:
        hint = f"，最近可选 {start.strftime('%Y-%m-%d %H:%M')}" if start is not None else ""
        return None, f"预约时间不在外呼时段内（{calling_hours_zh(dialer)}）{hint}"
    return due, None


CALLBACK_ERRORS_ZH = (
    ("needs a number", "来电号码未知，不能回拨"),
    ("needs due_at", "请选择预约时间"),
    ("already exists", "该回拨已存在"),
    ("no callback", "找不到该回拨"),
    ("refused", "回拨被拒绝（号码或时间不符合外呼规则）"),
)
CALLBACK_STATUS_ZH = {"new": "待安排", "pending": "待拨", "dialing": "正在拨打", "answered": "已接通",
                      "failed": "已失败", "cancelled": "已取消"}


def callback_error_zh(exc: Exception) -> str:
    """A `CallbackError` (English, from the scheduler) as the agent should read it."""
    text = str(exc)
    if " is " in text and ", not " in text:  # "callback 'x' is dialing, not pending"
        current = text.split(" is ", 1)[1].split(",", 1)[0].strip()
        return f"该回拨当前{CALLBACK_STATUS_ZH.get(current, current)}，不能执行此操作"
    for needle, message in CALLBACK_ERRORS_ZH:
        if needle in text:
            return message
    return f"回拨操作失败：{text}"


@api_auth
async def api_desk_callback(request: web.Request) -> web.Response:
    """预约回拨: schedule a call to this caller at the chosen time; the agent's phone rings first."""
    ctx = request.app[CTX]
    refused = _desk_role_refusal(request)
    if refused is not None:
        return refused
    body = await _body(request, ACTION_MAX_BYTES, "预约回拨")
    if isinstance(body, web.Response):
        return body
    dialer = ctx.followups
    if dialer is None:
        return json_error(503, "no_dialer", "回拨服务未启用，不能预约回拨")
    errors: dict[str, str] = {}
    number = _text(body, "number") or _text(body, "reporter_phone")
    if not number:
        errors["number"] = "来电号码未知，不能预约回拨"
    elif not (number.isdigit() and 3 <= len(number) <= 20):
        errors["number"] = "回拨号码只能是3到20位数字"
    elif ctx.desk is not None and not (checked := ctx.desk.router.dialplan.check(number)).allowed:
        errors["number"] = checked.message_zh  # [dialplan]: no international or premium numbers
    due, problem = check_callback_time(dialer, _text(body, "due_at"), _now(request))
    if problem:
        errors["due_at"] = problem
    case_number = _text(body, "case_number") or None
    if case_number:
        case_number = normalize_case_number(case_number)
        if len(case_number) > 40 or await ctx.repo.case_id_for_number(case_number) is None:
            errors["case_number"] = f"找不到案卷“{case_number[:40]}”，请核对编号"
    if errors:
        return _invalid(errors)
    try:
        callback_id = await dialer.request(
            kind="scheduled", number=number, due_at=due, case_number=case_number, agent=request[USER].username
        )
    except dialer.Error as exc:
        return _invalid({"due_at": callback_error_zh(exc)}, status=409, message=callback_error_zh(exc))
    _wrap_up_done(request)
    return _json({
        "id": callback_id,
        "number": number,
        "due_at": timefmt.iso(due),
        "case_number": case_number,
        "message": f"已预约 {due.strftime('%Y-%m-%d %H:%M')} 回拨 {number}，届时先振铃您的分机",
    }, 201)


def _category_label(c: dict) -> str:
    kind = {"component": "部件", "matter": "事项"}.get(c.get("kind"), c.get("kind") or "")
    return f"{c.get('name')}（{kind} {c.get('code')}）"


@api_auth
async def api_desk_suggest(request: web.Request) -> web.Response:
    """识别: category (top 3), place, grid cell, phones and urgency read from the description."""
    refused = _desk_role_refusal(request)
    if refused is not None:
        return refused
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    text = _text(body, "text")
    if not text:
        return _invalid({"text": "请先填写问题描述，再点“识别”"}, message="没有可识别的内容")
    if len(text) > MAX_TEXT:
        return _invalid({"text": f"问题描述不能超过{MAX_TEXT}字"}, message="内容过长")
    from case_core import suggest

    settings = getattr(request.app[CTX], "settings", None)
    try:
        data = await asyncio.to_thread(suggest.suggest_for_text, text, settings=settings)
    except suggest.SuggestionDataError as exc:
        return json_error(503, "no_reference_data", f"识别所需的分类或地名数据不可用：{exc}")
    # Only categories a case can be saved under: the suggester also knows the demo district's
    # local codes, which this installation may not have imported.
    ref = await request.app[CTX].service.reference()
    offered = data.get("candidates") or []
    known = [c for c in offered if ref.categories.get(c.get("kind") or "", c.get("code") or "")]
    candidates = [{**c, "label": _category_label(c)} for c in known[:3]]
    urgency = data.get("urgency") or {}
    found = []
    confident = (bool(candidates) and data.get("category_status", "confident") == "confident"
                 and candidates[0].get("key") == offered[0].get("key"))
    if confident:
        found.append("类别")
    if data.get("address") or data.get("grid_id"):
        found.append("地点")
    return _json({
        "category": candidates[0] if confident else None,
        "category_status": data.get("category_status") or ("confident" if candidates else "none"),
        "category_label": candidates[0]["name"] if confident else data.get("category_label"),
        "candidates": candidates,
        "address": data.get("address"),
        "grid_cell": data.get("grid_id"),
        "places": data.get("places") or [],
        "phones": data.get("phones") or [],
        "urgency": urgency,
        "case_type_label": CASE_TYPE_LABELS.get(urgency.get("case_type") or "normal"),
        "prefill": data.get("prefill") or {},
        "message": (("已识别：" + "、".join(found)) if found else "未识别出类别或地点，请手动填写") + (
            "；类别不确定，请从候选中选择" if candidates and not confident else ""),
    })


@api_auth
async def api_wallboard(request: web.Request) -> web.Response:
    if request[USER].role not in SUPERVISOR_ROLES:  # as /wallboard itself: queues, agents, today's cases
        return json_error(403, "forbidden", "只有班长、值班长、指挥长或管理员可以查看监控数据。")
    desk = _desk(request)
    board = desk.acd.wallboard()
    board["cases_today"] = await desk.cases_today()
    return web.json_response(board, dumps=timefmt.dumps)


@api_auth
async def api_transfer(request: web.Request) -> web.Response:
    """转接: blind transfer of the agent's call to a queue, an agent or an outside number."""
    desk = _desk(request)
    refused = _desk_role_refusal(request)
    if refused is not None:
        return refused
    body = await _body(request, ACTION_MAX_BYTES, "转接请求")
    if isinstance(body, web.Response):
        return body
    try:
        desk.transfer(request[USER].username, _text(body, "call_id"), _text(body, "kind"), _text(body, "target"))
    except desk.Error as exc:
        return json_error(409, "refused", exc.message_zh)
    return web.json_response({"message": "已转接"}, status=202)


@api_auth
async def api_consult(request: web.Request) -> web.Response:
    """咨询转接: `action` = start (with kind agent|number and target), complete or cancel."""
    desk = _desk(request)
    refused = _desk_role_refusal(request)
    if refused is not None:
        return refused
    body = await _body(request, ACTION_MAX_BYTES, "咨询转接请求")
    if isinstance(body, web.Response):
        return body
    user, call_id, action = request[USER].username, _text(body, "call_id"), _text(body, "action")
    try:
        if action == "start":
            desk.consult(user, call_id, _text(body, "kind"), _text(body, "target"))
            message = "正在呼叫转接目标，接通后可先与对方沟通"
        elif action == "complete":
            desk.consult_complete(user, call_id)
            message = "已转接，通话已交给对方"
        elif action == "cancel":
            desk.consult_cancel(user, call_id)
            message = "已取消转接，回到来电人"
        else:
            return json_error(400, "bad_request", "action 只能是 start、complete 或 cancel")
    except desk.Error as exc:
        return json_error(409, "refused", exc.message_zh)
    return web.json_response({"message": message}, status=202)


@api_auth
async def api_call_control(request: web.Request) -> web.Response:
    """挂断 / 保持 / 恢复 / 静音 / 取消静音 of the agent's current call (optional `call_id`)."""
    desk = _desk(request)
    refused = _desk_role_refusal(request)
    if refused is not None:
        return refused
    action = request.match_info["action"]
    if action not in desk.CALL_ACTIONS:
        return json_error(404, "unknown_action", "未知的通话操作（hangup、hold、resume、mute、unmute）")
    call_id = ""
    if request.can_read_body:
        body = await _body(request, ACTION_MAX_BYTES, "通话操作")
        if isinstance(body, web.Response):
            return body
        call_id = _text(body, "call_id")
    try:
        result = desk.call_control(request[USER].username, action, call_id)
    except desk.Error as exc:
        return json_error(409, "refused", exc.message_zh)
    result["message"] = {"hangup": "已挂断", "hold": "已保持，来电人正在听等待音", "resume": "已恢复通话",
                         "mute": "已静音，来电人听不到您", "unmute": "已取消静音"}[action]
    return web.json_response(result)


@api_auth
async def api_listen(request: web.Request) -> web.Response:
    """监听: the supervisor's phone rings and then hears the call, unheard."""
    desk = _desk(request)
    user = request[USER]
    if user.role not in SUPERVISOR_ROLES:
        return json_error(403, "forbidden", "只有班长、值班长或管理员可以监听。")
    body = await _body(request, ACTION_MAX_BYTES, "监听请求")
    if isinstance(body, web.Response):
        return body
    call_id = _text(body, "call_id")
    if not call_id:
        return _invalid({"call_id": "请选择要监听的通话"})
    try:
        desk.listen_in(user.username, call_id)
    except desk.Error as exc:
        return json_error(409, "refused", exc.message_zh)
    from web.photos import audit_access

    await audit_access(request, user, "listen_in", f"call:{call_id}")
    return web.json_response({"call_id": call_id, "message": "正在呼叫您的话机，接听后即可监听。"}, status=202)


def _period(request: web.Request) -> tuple[datetime, datetime]:
    """`from`/`to` as ISO dates or date-times (default: today); 400 on anything else."""
    today = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    try:
        start = datetime.fromisoformat(request.query["from"]) if "from" in request.query else today
        end = datetime.fromisoformat(request.query["to"]) if "to" in request.query else start + timedelta(days=1)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad_parameter", "message": "from/to 须为日期，如 2026-11-21"}, ensure_ascii=False),
            content_type="application/json",
        ) from None
    return start, end


def _csv_response(name: str, header: list[str], rows) -> web.Response:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    # BOM: spreadsheet programs on Chinese Windows then read the file as UTF-8.
    return web.Response(
        body=("\ufeff" + out.getvalue()).encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@api_auth
async def api_cdr_csv(request: web.Request) -> web.Response:
    """话单: one row per call leg in the period."""
    if request[USER].role not in SUPERVISOR_ROLES:
        return json_error(403, "forbidden", "只有班长、值班长或管理员可以导出话单。")
    start, end = _period(request)
    rows = await request.app[CTX].repo.call_records(start, end)
    header = ["call_id", "direction", "did", "caller", "started_at", "answered_at", "ended_at", "duration_s",
              "end_reason", "ivr_path", "case_number"]
    body = []
    for r in rows:
        duration = (r["ended_at"] - (r["answered_at"] or r["started_at"])).total_seconds() if r["ended_at"] else ""
        body.append([r["call_id"], r["direction"], r["did"] or "", r["caller"] or "", timefmt.iso(r["started_at"]),
                     timefmt.iso(r["answered_at"]) if r["answered_at"] else "",
                     timefmt.iso(r["ended_at"]) if r["ended_at"] else "",
                     f"{duration:.1f}" if duration != "" else "", r["end_reason"] or "", r["ivr_path"] or "",
                     r["case_number"] or ""])
    return _csv_response(f"cdr-{start:%Y%m%d}.csv", header, body)


@api_auth
async def api_queue_log_csv(request: web.Request) -> web.Response:
    """The queue event log (join, ring, connect, abandon, transfer, complete, callback…)."""
    from web.ports import QUEUE_LOG

    if request[USER].role not in SUPERVISOR_ROLES:
        return json_error(403, "forbidden", "只有班长、值班长或管理员可以导出排队记录。")
    start, end = _period(request)
    events = [e for e in await request.app[QUEUE_LOG].events_since(start) if e["at"] < end]
    header = ["at", "kind", "queue", "call_id", "agent", "caller", "position", "wait_s", "talk_s", "wrap_s", "detail"]
    rows = [[timefmt.iso(e["at"]), *(("" if e[k] is None else e[k]) for k in header[1:])] for e in events]
    return _csv_response(f"queue-log-{start:%Y%m%d}.csv", header, rows)


def setup(app: web.Application) -> None:
    app.router.add_get("/desk", desk_page)
    app.router.add_get("/wallboard", wallboard_page)
    app.router.add_get("/api/desk/status", api_desk_status)
    app.router.add_post("/api/desk/state", api_desk_state)
    app.router.add_post("/api/desk/cases", api_desk_case)
    app.router.add_post("/api/desk/answer", api_desk_answer)
    app.router.add_post("/api/desk/link", api_desk_link)
    app.router.add_post("/api/desk/callback", api_desk_callback)
    app.router.add_post("/api/desk/suggest", api_desk_suggest)
    app.router.add_get("/api/wallboard", api_wallboard)
    app.router.add_post("/api/wallboard/listen", api_listen)
    app.router.add_post("/api/desk/transfer", api_transfer)
    app.router.add_post("/api/desk/consult", api_consult)
    app.router.add_post("/api/desk/call/{action}", api_call_control)
    app.router.add_get("/api/cdr.csv", api_cdr_csv)
    app.router.add_get("/api/queue-log.csv", api_queue_log_csv)

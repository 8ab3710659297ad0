"""The agent desk (受理台) with its screen pop, and the supervisor wallboard (监控大屏).

Pages are server-rendered; live parts come over the `/ws` WebSocket: `screen_pop` (to the
agent whose phone rings, only), `agent_state`, `wrap_up_started`, and `wallboard` changes.
"""

from __future__ import annotations

import json

from aiohttp import web

from callcenter.desk_service import PAUSE_REASONS, DeskError
from web.app import CTX, USER, api_auth, json_error, page_auth, render

SUPERVISOR_ROLES = ("supervisor", "shift_lead", "commander", "admin")


def _desk(request: web.Request):
    desk = request.app[CTX].desk
    if desk is None:
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": "no_acd", "message": "呼叫中心未启用"}), content_type="application/json"
        )
    return desk


@page_auth
async def desk_page(request: web.Request) -> web.Response:
    desk = request.app[CTX].desk
    user = request[USER]
    status = desk.status(user.username) if desk is not None else None
    return render(request, "desk.html", user=user, agent=status, pause_reasons=PAUSE_REASONS)


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
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return json_error(400, "bad_json", "请求格式不正确")
    if not isinstance(body, dict) or not isinstance(body.get("state"), str):
        return json_error(400, "bad_request", "缺少 state")
    try:
        status = desk.set_state(request[USER].username, body["state"], body.get("reason"))
    except DeskError as exc:
        return json_error(409, "refused", exc.message_zh)
    return web.json_response(status)


@api_auth
async def api_desk_case(request: web.Request) -> web.Response:
    """Save the screen-pop form: a report becomes an accepted case; wrap-up ends."""
    ctx = request.app[CTX]
    desk = _desk(request)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return json_error(400, "bad_json", "请求格式不正确")
    if not isinstance(body, dict):
        return json_error(400, "bad_request", "请求格式不正确")
    errors = {}
    description = str(body.get("description", "")).strip()
    if not description:
        errors["description"] = "请填写问题描述"
    elif len(description) > 2000:
        errors["description"] = "问题描述不能超过2000字"
    kind = body.get("kind", "report")
    if kind not in ("report", "consultation"):
        errors["kind"] = "类型只能是“反映问题”或“咨询”"
    phone = str(body.get("reporter_phone", "")).strip()
    if phone and not (phone.isdigit() and 3 <= len(phone) <= 20):
        errors["reporter_phone"] = "来电号码只能是3到20位数字"
    if errors:
        return web.json_response({"error": "invalid", "message": "表单有误，请修改后再保存", "fields": errors}, status=422)
    call_id = body.get("call_id") or None
    number = await ctx.service.file_report(
        channel=str(body.get("channel") or "12319"),
        reporter_phone=phone or None,
        call_id=call_id,
        recording_ids=(),
        variables={},
        now=desk.now_dt(),
        description=description,
        kind=kind,
    )
    desk.wrap_up_done(request[USER].username)
    return web.json_response({"number": number}, status=201)


@api_auth
async def api_wallboard(request: web.Request) -> web.Response:
    desk = _desk(request)
    board = desk.acd.wallboard()
    board["cases_today"] = await desk.cases_today()
    return web.json_response(board, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))


def setup(app: web.Application) -> None:
    app.router.add_get("/desk", desk_page)
    app.router.add_get("/wallboard", wallboard_page)
    app.router.add_get("/api/desk/status", api_desk_status)
    app.router.add_post("/api/desk/state", api_desk_state)
    app.router.add_post("/api/desk/cases", api_desk_case)
    app.router.add_get("/api/wallboard", api_wallboard)

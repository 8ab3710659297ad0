"""SMS routes: Kannel's delivery reports and replies, the outbox, templates, opt-outs.

- `GET /sms/dlr?id=&t=&status=&smsc_id=` — Kannel's dlr-url (no login; the per-message
  token `t` proves the report is about a message we sent).
- `GET /sms/mo?from=&text=&token=` — Kannel sms-service for replies; "退订"/"TD" opts the
  number out. Disabled unless `[sms] inbound_token` is set.
- `GET /api/sms/messages?status=&case_number=&to=&limit=` — the outbox, newest first.
- `GET /api/sms/templates`, `PUT /api/sms/templates/{name}` (admin; the body is the
  template text) — a broken template is refused with 422 and the error.
- `POST /api/sms/opt-outs` `{"number": …}` and `DELETE /api/sms/opt-outs/{number}`.

The routes reach the outbox, templates and opt-outs through `app[SMS]` (`web.ports.Sms`,
set by the composition root from `[sms]`).
"""

from __future__ import annotations

import json
import re
import secrets

from aiohttp import web

from web import timefmt
from web.app import USER, _api_auth, _int_param
from web.case_api import local_now
from web.ports import SMS, Sms

# A reply that is only one of these words (any case, any spacing) means "no more SMS".
_OPT_OUT = re.compile(r"^\s*(退订|取消|TD|T|N|STOP)\s*[。.!！]?\s*$", re.IGNORECASE)
_STAFF_ROLES = ("admin", "agent", "shift_lead", "supervisor")


def _sms(request: web.Request) -> Sms:
    return request.app[SMS]


def _json(body, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": code, "message": message}, status)


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain", charset="utf-8")


async def dlr(request: web.Request) -> web.Response:
    q = request.query
    try:
        msg_id = int(q.get("id", ""))
        code = int(q.get("status", ""))
    except ValueError:
        return _text(400, "id 和 status 必须是整数")
    token = q.get("t", "")
    status = await _sms(request).apply_dlr(msg_id, token, code, now=local_now(request),
                                           smsc_id=q.get("smsc_id") or None)
    if status is None:
        return _text(404, "短信不存在")
    return _text(200, status)


async def mo(request: web.Request) -> web.Response:
    expected = _sms(request).inbound_token
    if not expected or not secrets.compare_digest(request.query.get("token", ""), expected):
        return _text(403, "未启用上行短信，或令牌错误")
    sender = request.query.get("from", "")
    text = request.query.get("text", "")
    if not _OPT_OUT.match(text):
        return _text(200, "")
    try:
        await _sms(request).opt_out(sender, now=local_now(request), source="reply")
    except ValueError:
        return _text(400, "from 不是手机号码")
    # Empty body: with `omit-empty = true` Kannel sends no reply SMS.
    return _text(200, "")


def _staff(handler):
    @_api_auth
    async def wrapped(request: web.Request):
        if request[USER].role not in _STAFF_ROLES:
            return _error(403, "forbidden", "需要受理员、值班长、班长或管理员权限")
        return await handler(request)

    return wrapped


@_staff
async def messages(request: web.Request) -> web.Response:
    q = request.query
    status = q.get("status") or None
    sms = _sms(request)
    if status and status not in sms.statuses:
        return _error(400, "bad_parameter", f"status 只能是 {'、'.join(sms.statuses)} 之一")
    rows = await sms.list_messages(status=status, case_number=q.get("case_number") or None,
                                   to=q.get("to") or None, limit=_int_param(request, "limit", 50, 1, 500))
    return _json([timefmt.with_offsets(m) for m in rows])


@_staff
async def templates(request: web.Request) -> web.Response:
    return _json(_sms(request).templates())


@_api_auth
async def save_template(request: web.Request) -> web.Response:
    if request[USER].role != "admin":
        return _error(403, "forbidden", "需要管理员权限")
    name = request.match_info["name"]
    sms = _sms(request)
    if name not in sms.template_names:
        return _error(404, "not_found", f"没有名为 {name} 的短信模板（可用：{'、'.join(sms.template_names)}）")
    if not sms.templates_editable:
        return _error(409, "no_templates_dir", "要在线修改模板，请先在配置中设置 [sms] templates_dir")
    source = await request.text()
    try:
        sms.save_template(name, source)
    except sms.TemplateError as exc:
        return _error(422, "bad_template", str(exc))
    return _json({"name": name, "source": source, "overridden": True, "problem": None})


@_staff
async def add_opt_out(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        number = str(body["number"])
    except (ValueError, KeyError, TypeError):
        return _error(400, "bad_request", '请求体应为 JSON，如 {"number": "138…"}')
    try:
        n = await _sms(request).opt_out(number, now=local_now(request), source="web")
    except ValueError:
        return _error(422, "bad_number", f"{number} 不是手机号码（11 位，可带 +86）")
    return _json({"number": n, "opted_out": True}, 201)


@_staff
async def remove_opt_out(request: web.Request) -> web.Response:
    try:
        removed = await _sms(request).opt_in(request.match_info["number"])
    except ValueError:
        return _error(422, "bad_number", f"{request.match_info['number']} 不是手机号码（11 位，可带 +86）")
    if not removed:
        return _error(404, "not_found", "该号码未退订")
    return _json({"number": request.match_info["number"], "opted_out": False})


def setup(app: web.Application) -> None:
    app.router.add_get("/sms/dlr", dlr)
    app.router.add_get("/sms/mo", mo)
    app.router.add_get("/api/sms/messages", messages)
    app.router.add_get("/api/sms/templates", templates)
    app.router.add_put("/api/sms/templates/{name}", save_template)
    app.router.add_post("/api/sms/opt-outs", add_opt_out)
    app.router.add_delete("/api/sms/opt-outs/{number}", remove_opt_out)

"""The web side: aiohttp app factory with the case pages, JSON API, recordings and live events.

Server-rendered with jinja2 (zh-CN). People log in with a session cookie; programs use
`Authorization: Bearer <token>` (see `hotline token create USER`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import jinja2
from aiohttp import WSMsgType, web

from case_core.adapters.sqlalchemy_repo import CaseView, NotFound, SqlRepository, UserView
from case_core.domain.workflow import CHANNEL_LABELS, ROLE_LABELS, STATUS_LABELS
from case_core.service import CaseService
from callcenter.features import import_optional
from web import auth, timefmt

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


class EventHub:
    """Fan-out of live events to connected WebSocket clients.

    An event addressed `to_user` (a screen pop, an agent's own state) goes only to that
    user's connections; others go to everyone.
    """

    def __init__(self) -> None:
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def add(self, ws, username: str | None = None, role: str | None = None) -> None:
        self._clients[ws] = (username, role)

    def discard(self, ws) -> None:
        self._clients.pop(ws, None)

    def publish(self, kind: str, data: dict[str, Any] | None, *, to_user: str | None = None,
                to_roles: tuple[str, ...] | None = None) -> None:
        message = json.dumps({"type": kind, **(data or {})}, ensure_ascii=False, default=timefmt.json_default)
        for ws, (username, role) in list(self._clients.items()):
            if ws.closed or (to_user is not None and username != to_user):
                continue
            if to_roles is not None and role not in to_roles:
                continue
            asyncio.ensure_future(_send(ws, message))


async def _send(ws, message: str) -> None:
    try:
        await ws.send_str(message)
    except (ConnectionError, RuntimeError):
        pass


@dataclass
class WebContext:
    repo: SqlRepository
    service: CaseService
    secret: bytes
    now: Callable[[], float]
    hub: EventHub = field(default_factory=EventHub)
    sip_address: str = ""
    desk: Any = None  # callcenter.desk_service.DeskService when the ACD runs
    followups: Any = None  # callcenter.followup.FollowUpDialer: callbacks and follow-up calls
    trunks: dict = field(default_factory=dict)  # trunk name → TrunkRegistration (register = true)
    center_name: str = "12319城建服务热线"  # [center] name: page titles and header
    map_settings: Any = None  # callcenter.config.MapSettings ([map]): base map tiles; None = none
    audit: Any = None  # case_core.audit.AuditLog; None: one on the repository's engine

    def __post_init__(self) -> None:
        if self.audit is None:
            from case_core.audit import AuditLog

            self.audit = AuditLog(self.repo.engine)


CTX = web.AppKey("ctx", WebContext)
USER = web.RequestKey("user", UserView)

# Feature modules that add routes: each has setup(app) and reads CTX from the app.
ROUTE_MODULES = (
    "web.case_api",  # case actions, search, evaluation
    "web.open311",  # Open311 GeoReport v2
    "web.desk",  # agent desk, worklists, wallboard
    "web.notify_api",  # SMS delivery reports, templates, callbacks
    "web.transcripts",  # transcripts of recordings, search
    "web.worklists",  # role worklists and workflow action forms
    "web.callbacks",  # scheduled and past callbacks, follow-up surveys
    "web.pickers",  # what the pickers offer: categories, departments, places, grid cells, transfer targets
    "web.photos",  # case photos: upload, images, thumbnails
    "web.wallboard",  # the wall display's charts of the day and colour thresholds
    "web.geo",  # 地理编码 and the map: locate, grid and cases as GeoJSON, /map
    "web.field",  # the inspectors' phone app /m/: reports, my tasks, steps, positions
)
JINJA = web.AppKey("jinja", jinja2.Environment)


def case_json(case: CaseView) -> dict[str, Any]:
    return {
        "id": case.id,
        "number": case.number,
        "channel": case.channel,
        "kind": case.kind,
        "case_type": case.case_type,
        "reporter_phone": case.reporter_phone,
        "status": case.status,
        "status_label": STATUS_LABELS.get(case.status, case.status),
        "description": case.description,
        "address": case.address,
        "category": (
            {"kind": case.category_kind, "code": case.category_code} if case.category_code else None
        ),
        "created_at": timefmt.iso(case.created_at),
        "updated_at": timefmt.iso(case.updated_at),
        "version": case.version,
        "recordings": [
            {
                "id": r.id,
                "kind": r.kind,
                "url": f"/recordings/{r.id}.wav",
                "duration_s": round(r.duration_s, 2),
                "channels": r.channels,
            }
            for r in case.recordings
        ],
    }


def json_error(status: int, code: str, message: str) -> web.Response:
    """`{"error", "message"}` with the Chinese message as UTF-8, not \\u-escaped."""
    return web.json_response({"error": code, "message": message}, status=status,
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def current_user(request: web.Request) -> UserView | None:
    ctx = request.app[CTX]
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return await ctx.repo.user_for_token(header[len("Bearer "):].strip())
    session = auth.read_session(ctx.secret, request.cookies.get(auth.SESSION_COOKIE), ctx.now())
    if session is None:
        return None
    return await ctx.repo.get_user(session["u"])


def render(request: web.Request, template: str, status: int = 200, **values) -> web.Response:
    env = request.app[JINJA]
    html = env.get_template(template).render(
        request=request, status_labels=STATUS_LABELS, channel_labels=CHANNEL_LABELS, role_labels=ROLE_LABELS,
        **values
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)


# -- handlers ------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/cases")


async def login_form(request: web.Request) -> web.Response:
    return render(request, "login.html", next=request.query.get("next", "/cases"), error=None)


async def login_submit(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    target = str(form.get("next", "/cases"))
    if not target.startswith("/") or target.startswith("//"):
        target = "/cases"
    if not username or not password:
        return render(request, "login.html", status=400, next=target, error="请输入用户名和密码。")
    user = await ctx.repo.check_password(username, password)
    if user is None:
        return render(request, "login.html", status=401, next=target, error="用户名或密码错误。")
    response = web.HTTPFound(target)
    response.set_cookie(
        auth.SESSION_COOKIE,
        auth.make_session(ctx.secret, user.username, ctx.now()),
        httponly=True,
        samesite="Strict",
        max_age=auth.SESSION_TTL_S,
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPFound("/login")
    response.del_cookie(auth.SESSION_COOKIE)
    raise response


def page_auth(handler):
    async def wrapped(request: web.Request):
        user = await current_user(request)
        if user is None:
            raise web.HTTPFound(f"/login?next={request.path_qs}")
        request[USER] = user
        return await handler(request)

    return wrapped


def api_auth(handler):
    async def wrapped(request: web.Request):
        user = await current_user(request)
        if user is None:
            return json_error(401, "unauthorized", "未登录或令牌无效：请先登录，或在 Authorization 头中提供有效的 Bearer 令牌")
        if not _csrf_ok(request):
            return json_error(403, "csrf", "跨站请求被拒绝（缺少 X-Requested-With 头或来源不符）")
        request[USER] = user
        return await handler(request)

    return wrapped


def _csrf_ok(request: web.Request) -> bool:
    """Cookie-authenticated writes must come from our own pages.

    A bearer token is never sent by a browser on its own, so token requests pass. For the
    session cookie (SameSite=Strict already) we also require the custom X-Requested-With
    header, which a cross-site form cannot send, and a matching Origin when one is given.
    """
    if request.method in ("GET", "HEAD", "OPTIONS") or request.headers.get("Authorization", "").startswith("Bearer "):
        return True
    if request.headers.get("X-Requested-With") != "fetch":
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin.split("://", 1)[-1] == request.host


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad_parameter", "message": f"参数 {name} 必须是整数"}, ensure_ascii=False),
            content_type="application/json",
        ) from None
    return max(low, min(high, value))


def _filters(request: web.Request) -> dict[str, Any]:
    return {
        "limit": _int_param(request, "limit", 50, 1, 500),
        "offset": _int_param(request, "offset", 0, 0, 10_000_000),
        "status": request.query.get("status") or None,
        "reporter_phone": request.query.get("reporter_phone") or None,
        "channel": request.query.get("channel") or None,
        "text": request.query.get("q") or None,
    }


@page_auth
async def cases_page(request: web.Request) -> web.Response:
    from web.case_list import list_context  # filters, sorting and paging in the URL

    return render(request, "cases.html", user=request[USER], **await list_context(request))


@page_auth
async def case_page(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        case = await ctx.service.get_case(int(request.match_info["case_id"]))
    except (NotFound, ValueError):
        return render(request, "not_found.html", status=404, user=request[USER], what="案卷")
    from web.photos import may_see

    if not may_see(request[USER], case):  # department staff: their department's cases only
        return render(request, "not_found.html", status=403, user=request[USER], what="案卷")
    return render(request, "case.html", case=case, user=request[USER])


@api_auth
async def api_trunks(request: web.Request) -> web.Response:
    """Outbound registration of each carrier trunk: state, reason, expiry, next attempt."""
    out = []
    for name, client in request.app[CTX].trunks.items():
        st = client.status
        out.append({"name": name, "state": st.state, "detail": st.detail, "failures": st.failures,
                    "expires_at": _epoch_iso(st.expires_at), "next_attempt_at": _epoch_iso(st.next_attempt_at)})
    return web.json_response(out, dumps=timefmt.dumps)


def _epoch_iso(seconds: float | None) -> str | None:
    return None if seconds is None else timefmt.iso(datetime.fromtimestamp(seconds, timefmt.local_zone()))


async def recording(request: web.Request) -> web.StreamResponse:
    user = await current_user(request)
    if user is None:
        return json_error(401, "unauthorized", "请先登录，或提供 Bearer 令牌")
    ctx = request.app[CTX]
    try:
        rec = await ctx.repo.get_recording(int(request.match_info["rec_id"]))
    except (NotFound, ValueError):
        return json_error(404, "not_found", "录音不存在")
    from web.photos import may_see_recording  # department staff: their department's cases only

    if not await may_see_recording(request, user, rec.case_id, rec.call_id):
        return json_error(403, "forbidden", "该录音属于其他处置部门的案卷，无权收听")
    path = Path(rec.path)
    if not path.is_file():
        return json_error(410, "gone", "录音文件已不存在（可能已按保存期限删除）")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


async def live(request: web.Request) -> web.WebSocketResponse:
    user = await current_user(request)
    if user is None:
        raise web.HTTPUnauthorized(text="请先登录")
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    hub = request.app[CTX].hub
    hub.add(ws, user.username, user.role)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        hub.discard(ws)
    return ws


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
_HTTP_ZH = {404: "没有这个接口", 405: "该接口不支持此请求方法", 413: "请求体过大"}


@web.middleware
async def errors_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        # aiohttp's own refusals (no such route, wrong method) are English plain text.
        if exc.status >= 400 and request.path.startswith("/api/") and exc.content_type != "application/json":
            return json_error(exc.status, _HTTP_CODES.get(exc.status, "error"),
                              _HTTP_ZH.get(exc.status, f"请求失败（HTTP {exc.status}）"))
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if request.path.startswith("/api/"):
            return json_error(500, "internal_error", "服务器内部错误，请稍后重试（详情见服务器日志）")
        return web.Response(text="服务器内部错误，请稍后重试。", status=500, content_type="text/plain", charset="utf-8")


def create_app(ctx: WebContext) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=2 * 1024 * 1024)
    app[CTX] = ctx
    app[JINJA] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=jinja2.select_autoescape(["html"])
    )
    app[JINJA].filters["dt"] = timefmt.page  # YYYY-MM-DD HH:MM, the one date format on pages
    app[JINJA].globals["center_name"] = ctx.center_name
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", index)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/logout", logout)
    app.router.add_get("/cases", cases_page)
    app.router.add_get("/cases/{case_id}", case_page)
    app.router.add_get("/recordings/{rec_id}.wav", recording)
    app.router.add_get("/api/trunks", api_trunks)
    app.router.add_get("/ws", live)
    app.router.add_static("/static", STATIC)
    for module_name in ROUTE_MODULES:
        module = import_optional(module_name)
        if module is not None:
            module.setup(app)
    return app


# Older private names used by feature modules.
_api_auth, _page_auth, _current_user, _render, _json_error = api_auth, page_auth, current_user, render, json_error

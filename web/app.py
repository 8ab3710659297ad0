"""The web side: aiohttp app factory with the case pages, JSON API, recordings and live events.

Server-rendered with jinja2 (zh-CN). People log in with a session cookie; programs use
`Authorization: Bearer <token>` (see `hotline token create USER`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import jinja2
from aiohttp import WSMsgType, web

from case_core.ports import CaseRepository
from case_core.views import CaseView, NotFound, UserView
from case_core.domain.workflow import CHANNEL_LABELS, ROLE_LABELS, STATUS_LABELS
from case_core.service import CaseService
from web import auth, timefmt
from web.ports import CallbackDialer, Desk

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


class EventHub:
    """Fan-out of live events to connected WebSocket clients.

    An event addressed `to_user` (a screen pop, an agent's own state) goes only to that
    user's connections; one addressed `to_roles` only to those roles. Others go to every
    user who may see what they are about (least privilege): an event naming a case (`id` of
    `case_*` events, `case_id` of transcript events) reaches a user held to some cases
    (`web.photos.visible_where`: department staff) only when that case is theirs, looked up
    once per event through `case_of`; an event naming no case does not reach such users.
    """

    def __init__(self, case_of: Callable[[int], Any] | None = None) -> None:
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.case_of = case_of  # async case id → CaseView (CaseService.get_case), set by WebContext
        self._pending: set[asyncio.Future] = set()

    def add(self, ws, username: str | None = None, role: str | None = None,
            where: dict[str, Any] | None = None) -> None:
        """`where`: the case fields this user's cases must have (`visible_where`); None or {} = all."""
        self._clients[ws] = (username, role, dict(where or {}))

    def discard(self, ws) -> None:
        self._clients.pop(ws, None)

    def publish(self, kind: str, data: dict[str, Any] | None, *, to_user: str | None = None,
                to_roles: tuple[str, ...] | None = None) -> None:
        message = json.dumps({"type": kind, **(data or {})}, ensure_ascii=False, default=timefmt.json_default)
        held: list[tuple[Any, dict[str, Any]]] = []
        for ws, (username, role, where) in list(self._clients.items()):
            if ws.closed or (to_user is not None and username != to_user):
                continue
            if to_roles is not None and role not in to_roles:
                continue
            if where and to_user is None and to_roles is None:
                held.append((ws, where))
                continue
            asyncio.ensure_future(_send(ws, message))
        case_id = event_case_id(kind, data or {})
        if held and case_id is not None and self.case_of is not None:
            task = asyncio.ensure_future(self._send_if_visible(case_id, held, message))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _send_if_visible(self, case_id: int, held: list[tuple[Any, dict[str, Any]]], message: str) -> None:
        try:
            case = await self.case_of(case_id)
        except NotFound:
            return
        except Exception:  # a database hiccup: the event is not sent to the held clients
            log.warning("live events: case %s not looked up; held clients miss the event", case_id, exc_info=True)
            return
        for ws, where in held:
            if not ws.closed and all(getattr(case, name, None) == value for name, value in where.items()):
                await _send(ws, message)


def event_case_id(kind: str, data: dict[str, Any]) -> int | None:
    """The case a live event is about: `id` of case events, `case_id` of the others; None = no case."""
    value = data.get("id") if kind.startswith("case_") else data.get("case_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def _send(ws, message: str) -> None:
    try:
        await ws.send_str(message)
    except (ConnectionError, RuntimeError):
        pass


@dataclass
class WebContext:
    # The case repository the composition root (or a test) built: `CaseRepository` and
    # `CaseQueries` of case_core.ports, plus users and tokens (`SqlRepository`).
    repo: CaseRepository
    service: CaseService
    secret: bytes
    now: Callable[[], float]
    hub: EventHub = field(default_factory=EventHub)
    sip_address: str = ""
    desk: Desk | None = None  # callcenter.desk_service.DeskService when the ACD runs
    followups: CallbackDialer | None = None  # callcenter.callbacks.dialer.FollowUpDialer: callbacks and follow-up calls
    trunks: dict = field(default_factory=dict)  # trunk name → TrunkRegistration (register = true)
    center_name: str = "12319城建服务热线"  # [center] name: page titles and header
    map_settings: Any = None  # callcenter.config.MapSettings ([map]): base map tiles; None = none
    audit: Any = None  # case_core.audit.AuditLog; None: one on the repository's engine
    auth_settings: auth.AuthSettings = field(default_factory=auth.AuthSettings)  # [web] login/session keys
    auth_store: Any = None  # sessions, tokens, password checks (AuthStore); None: the repository's `auth_store()`
    throttle: Any = None  # web.login_throttle.LoginThrottle

    def __post_init__(self) -> None:
        if self.audit is None:
            from case_core.audit import AuditLog

            self.audit = AuditLog(self.repo.engine)
        if self.auth_store is None:
            self.auth_store = self.repo.auth_store()
        if self.throttle is None:
            from web.login_throttle import LoginThrottle

            self.throttle = LoginThrottle(self.auth_settings.throttle_rules())
        if self.hub.case_of is None:
            self.hub.case_of = self.service.get_case
        # Users created or re-passworded through the repository hash in the login's pool
        # (niced threads in the server), never on the event loop.
        self.repo.hash_password = self.auth_store.hash_password

    def local_now(self) -> datetime:
        """`now()` as naive local time, as the tables store it."""
        return datetime.fromtimestamp(self.now(), timefmt.local_zone()).replace(tzinfo=None)


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
    "web.cluster_api",  # cluster nodes: list, drain, resume (issue 17)
    "web.sip_admin",  # bans of the SIP port's defence: list, lift by hand (admins)
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


TOKEN_SCOPE = web.RequestKey("token_scope", str)
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


async def current_user(request: web.Request) -> UserView | None:
    """The user of the request's bearer token or session cookie; None when neither is valid.

    A `read` token used for anything but reading is refused here (403), so every route that
    asks who the user is enforces it.
    """
    if USER in request:
        return request[USER]
    ctx = request.app[CTX]
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        found = await ctx.auth_store.token_user(header[len("Bearer "):].strip(), ctx.local_now())
        if found is None:
            return None
        user, scope = found
        request[TOKEN_SCOPE] = scope
        if scope == "read" and request.method not in _SAFE_METHODS:
            raise web.HTTPForbidden(
                text=json.dumps({"error": "token_scope", "message": "该令牌只能读取（scope read），不能修改数据"},
                                ensure_ascii=False), content_type="application/json")
        return user
    return await ctx.auth_store.session_user(request.cookies.get(auth.SESSION_COOKIE), ctx.local_now(),
                                             idle_s=ctx.auth_settings.session_idle_s)


def require_admin(request: web.Request) -> web.Response | None:
    """None when the request's user is an admin (with an `admin`-scope token, if a token); else the refusal."""
    user = request[USER]
    if user.role != "admin" or request.get(TOKEN_SCOPE, "admin") != "admin":
        return json_error(403, "forbidden", "仅系统管理员可以查看（令牌须为 admin 范围）")
    return None


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
    return render(request, "login.html", next=auth.normalise_next(request.query.get("next")), error=None)


def _wait_text(seconds: int) -> str:
    return f"{seconds} 秒" if seconds < 120 else f"{(seconds + 59) // 60} 分钟"


async def login_submit(request: web.Request) -> web.Response:
    """Log in from the form (HTML answers) or with a JSON body (JSON answers, for programs).

    Failures are throttled per user name and per source: past the limit the answer is 429
    with Retry-After, before any password is checked.
    """
    ctx = request.app[CTX]
    settings = ctx.auth_settings
    as_json = request.content_type == "application/json"
    if as_json:
        try:
            form = await request.json()
        except ValueError:
            form = None
        if not isinstance(form, dict):
            return json_error(400, "bad_json", "请求体必须是 JSON 对象：{\"username\", \"password\"}")
    else:
        form = await request.post()
    username = str(form.get("username", "")).strip()[:64]
    password = str(form.get("password", ""))[:1024]
    target = auth.normalise_next(form.get("next"))
    source = auth.client_address(request, settings.trust_proxy)

    def refuse(status: int, code: str, message: str, retry_after: int | None = None) -> web.Response:
        if as_json:
            response = json_error(status, code, message)
        else:
            response = render(request, "login.html", status=status, next=target, error=message)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    if not username or not password:
        return refuse(400, "missing_credentials", "请输入用户名和密码。")
    verdict = ctx.throttle.check(username, source, ctx.now())
    if not verdict.allowed:
        if verdict.first:  # one entry per lock, not one per refused request of a flood
            await ctx.audit.record("", "login_throttled", username, source,
                                   {"by": verdict.key, "retry_after_s": verdict.retry_after_s}, ctx.local_now())
        return refuse(429, "too_many_attempts",
                      f"登录失败次数过多，请在 {_wait_text(verdict.retry_after_s)}后再试。", verdict.retry_after_s)
    user = await ctx.auth_store.verify_login(username, password)
    if user is None:
        verdict = ctx.throttle.failed(username, source, ctx.now())
        detail = {} if verdict.allowed else {"locked": verdict.key, "retry_after_s": verdict.retry_after_s}
        await ctx.audit.record("", "login_failed", username, source, detail, ctx.local_now())
        return refuse(401, "bad_credentials", "用户名或密码错误。")
    ctx.throttle.succeeded(username, source, ctx.now())
    session_id = await ctx.auth_store.create_session(
        user, ctx.local_now(), absolute_s=settings.session_max_s, source_ip=source,
        user_agent=request.headers.get("User-Agent", ""))
    await ctx.audit.record(user.username, "login", user.username, source, {}, ctx.local_now())
    if as_json:
        response = web.json_response({"user": user.username, "role": user.role, "next": target})
    else:
        response = web.HTTPFound(target)
    auth.set_session_cookie(response, request, session_id, settings)
    if as_json:
        return response
    raise response


async def logout(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    session_id = request.cookies.get(auth.SESSION_COOKIE)
    user = await current_user(request) if session_id else None
    if await ctx.auth_store.revoke_session(session_id, ctx.local_now()) and user is not None:
        await ctx.audit.record(user.username, "logout", user.username,
                               auth.client_address(request, ctx.auth_settings.trust_proxy), {}, ctx.local_now())
    response = web.HTTPFound("/login")
    response.del_cookie(auth.SESSION_COOKIE, path="/")
    raise response


def page_auth(handler):
    async def wrapped(request: web.Request):
        user = await current_user(request)
        if user is None:
            raise web.HTTPFound(f"/login?next={quote(request.path_qs, safe='/?=&%:,')}")
        request[USER] = user
        if auth.unbound_department(user):  # sees no case (fail closed): say why
            return render(request, "no_department.html", status=403, user=user, message=auth.NO_DEPARTMENT_MESSAGE)
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
        if auth.unbound_department(user):  # sees no case (fail closed): say why
            return json_error(403, "no_department", auth.NO_DEPARTMENT_MESSAGE)
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


class BodyTooLarge(web.HTTPRequestEntityTooLarge):
    """413 with the `{"error", "message"}` JSON of the API (the middleware passes JSON through)."""

    def __init__(self, max_bytes: int, what: str) -> None:
        limit = f"{max_bytes // 1024} KB" if max_bytes >= 1024 else f"{max_bytes} 字节"
        super().__init__(max_bytes, max_bytes + 1, content_type="application/json",
                         text=json.dumps({"error": "too_large", "message": f"请求体过大：{what}最多 {limit}"},
                                         ensure_ascii=False))


async def read_json(request: web.Request, max_bytes: int, what: str = "该接口的数据") -> Any:
    """The request's JSON body, refused (413, zh-CN) past `max_bytes` before it is parsed.

    Each JSON route passes its own cap, sized by what its body can mean (a form of a few
    texts of at most a few thousand characters, a position, a call id); the app-wide cap
    (2 MiB) is for photos. Raises ValueError (or UnicodeDecodeError) for a body that is not JSON.
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyTooLarge(max_bytes, what)
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise BodyTooLarge(max_bytes, what)
    return json.loads(raw.decode("utf-8"))


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


TRUNK_ROLES = ("admin", "supervisor")  # carrier state is operations data, not desk data


@api_auth
async def api_trunks(request: web.Request) -> web.Response:
    """Outbound registration of each carrier trunk: state, reason, expiry, next attempt (admins, supervisors)."""
    if request[USER].role not in TRUNK_ROLES:
        return json_error(403, "forbidden", "只有系统管理员或班长可以查看中继注册状态")
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
    from web.photos import audit_access, may_see_recording  # department staff: their department's cases only

    if not await may_see_recording(request, user, rec.case_id, rec.call_id):
        return json_error(403, "forbidden", "该录音属于其他处置部门的案卷，无权收听")
    path = Path(rec.path)
    if not path.is_file():
        return json_error(410, "gone", "录音文件已不存在（可能已按保存期限删除）")
    await audit_access(request, user, "recording_download", f"recording:{rec.id}",
                       {"case_id": rec.case_id, "call_id": rec.call_id})
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


# An open WebSocket re-checks its session or token this often and closes (code 4401) once
# it ended: a logout, a revocation or a disabled user also cuts the live events.
LIVE_RECHECK_S = 30.0
WS_SESSION_ENDED = 4401


async def _credentials_ended(request: web.Request) -> bool:
    ctx = request.app[CTX]
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return await ctx.auth_store.token_user(header[len("Bearer "):].strip(), ctx.local_now()) is None
    return await ctx.auth_store.session_user(request.cookies.get(auth.SESSION_COOKIE), ctx.local_now(),
                                             idle_s=ctx.auth_settings.session_idle_s, touch=False) is None


async def _close_when_ended(request: web.Request, ws: web.WebSocketResponse) -> None:
    while not ws.closed:
        await asyncio.sleep(LIVE_RECHECK_S)
        try:
            ended = await _credentials_ended(request)
        except Exception:  # a database hiccup: keep the socket, try again later
            log.warning("live events: session re-check failed", exc_info=True)
            continue
        if ended:
            await ws.close(code=WS_SESSION_ENDED, message="会话已结束，请重新登录".encode())
            return


async def live(request: web.Request) -> web.WebSocketResponse:
    user = await current_user(request)
    if user is None:
        raise web.HTTPUnauthorized(text="请先登录")
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    hub = request.app[CTX].hub
    from web.photos import visible_where  # department staff: their department's case events only

    hub.add(ws, user.username, user.role, visible_where(user))
    watcher = asyncio.ensure_future(_close_when_ended(request, ws))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        watcher.cancel()
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


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """CSP (no inline script), frame-ancestors, nosniff, Referrer-Policy on every answer."""
    ctx = request.app[CTX]
    tiles = auth.tile_origin(getattr(ctx.map_settings, "tile_url", "") or "")
    for name, value in auth.security_headers(request.path, tiles).items():
        response.headers.setdefault(name, value)


@api_auth
async def api_audit(request: web.Request) -> web.Response:
    """The audit log for admins: `actor`, `action`, `since` (ISO time or date), `limit`, `offset`."""
    refused = require_admin(request)
    if refused is not None:
        return refused
    since = None
    raw = request.query.get("since")
    if raw:
        try:
            since = datetime.fromisoformat(raw)
        except ValueError:
            return json_error(400, "bad_parameter", "参数 since 必须是 ISO 8601 时间，例如 2026-12-07 或 2026-12-07T08:00:00+08:00")
        if since.tzinfo is not None:
            since = since.astimezone(timefmt.local_zone()).replace(tzinfo=None)
    limit = _int_param(request, "limit", 100, 1, 1000)
    offset = _int_param(request, "offset", 0, 0, 10_000_000)
    rows, total = await request.app[CTX].audit.query(
        actor=request.query.get("actor") or None, action=request.query.get("action") or None,
        since=since, limit=limit, offset=offset)
    return web.json_response({"total": total, "limit": limit, "offset": offset,
                              "entries": [r.as_json() for r in rows]}, dumps=timefmt.dumps)


def create_app(ctx: WebContext) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=2 * 1024 * 1024)
    app[CTX] = ctx
    app.on_response_prepare.append(_security_headers)
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
    app.router.add_get("/api/audit", api_audit)
    app.router.add_get("/ws", live)
    app.router.add_static("/static", STATIC)
    for module_name in ROUTE_MODULES:
        module = _route_module(module_name)
        if module is not None:
            module.setup(app)
    return app


def _route_module(name: str):
    """A feature module of ROUTE_MODULES, or None while that module is not installed."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


# Older private names used by feature modules.
_api_auth, _page_auth, _current_user, _render, _json_error = api_auth, page_auth, current_user, render, json_error

"""The inspectors' phone app (城管通) at `/m/` and its JSON: reports, my tasks, step submissions,
positions. A PWA: manifest, a service worker that keeps the app shell for offline use, and
an IndexedDB queue on the phone (`static/m/app.js`) that sends each submission exactly once.

- `POST /api/field/reports` (multipart: `photo` 1..n, `lat`, `lon`, `category`, `description`,
  `captured_at`, `idempotency_key`) → 201 `{"case_id", "number", "grid_cell"}`; the same key
  again → the same answer (`Idempotent-Replayed: true`), never a second case.
- `GET /api/field/tasks[?lat=&lon=]` → my 核实/核查 tasks with positions, most urgent and
  nearest first.
- `POST /api/field/tasks/{case_id}` (multipart: `result`, `note`, `photo` 0..n, `lat`, `lon`,
  `captured_at`, `idempotency_key`, `expected_version`) → the step done (核实 or 核查, whichever
  the case is waiting for).
- `POST /api/field/position` (`lat`, `lon`, `accuracy`) while on duty (opt-in on the phone);
  `GET /api/field/positions` → FeatureCollection of inspectors seen recently (for the map),
  `?lat=&lon=` → nearest first with `distance_m`.
"""

from __future__ import annotations

import json
from html import escape as html_escape
import math
import weakref
from datetime import datetime
from typing import Any

from aiohttp import web

from case_core.views import NotFound
from case_core.domain.workflow import WorkflowError
from case_core.field import FieldError, FieldReport, FieldService, StepSubmission
from case_core.photos import PhotoError
from web import timefmt
from web.app import CTX, STATIC, USER, BodyTooLarge, api_auth, json_error, read_json
from web.photos import PHOTOS

FIELD = web.AppKey("field_service", FieldService)
FIELD_ROLES = frozenset({"inspector", "admin"})
MAX_PHOTOS = 9
M_DIR = STATIC / "m"
# Caps on what is not a photo (photos keep [storage] photo_max_mb): a position is a few
# numbers; a report or step form is a few texts of at most 8,000 characters (UTF-8, or
# percent-encoded: 9 bytes a character).
POSITION_MAX_BYTES = 4 * 1024
FORM_MAX_BYTES = 96 * 1024
POSITION_INTERVAL_S = 60.0   # [inspectors] position_interval_s, set by bootstrap


def _json(body: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.json_response(timefmt.with_offsets(body), status=status, dumps=timefmt.dumps, headers=headers)


_services: "weakref.WeakKeyDictionary[web.Application, FieldService]" = weakref.WeakKeyDictionary()


def position_max_age_s() -> float:
    """Inspectors seen within this are on duty (5 position intervals, at least 10 minutes)."""
    return max(600.0, POSITION_INTERVAL_S * 5)


def field_service(request: web.Request) -> FieldService:
    return _service(request)


def _service(request: web.Request) -> FieldService:
    """The app's FieldService (`app[FIELD]` when set, else made on first use: the photo store
    is put on the app after the routes)."""
    app = request.app
    if FIELD in app:
        return app[FIELD]
    if app not in _services:
        ctx = app[CTX]
        _services[app] = FieldService(ctx.service, app.get(PHOTOS), ctx.repo.engine)
    return _services[app]


def _now(request: web.Request) -> datetime:
    from web.case_api import local_now

    return local_now(request)


def _float(form: dict, name: str, low: float, high: float, required: bool = True) -> float | None:
    raw = (form.get(name) or "").strip()
    if not raw and not required:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FieldError("bad_parameter", f"{name} 必须是数值（WGS-84 经纬度）" if name in ("lat", "lon")
                         else f"{name} 必须是数值", 400) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise FieldError("bad_parameter", f"{name} 超出范围 {low:g}…{high:g}", 400)
    return value


def _when(form: dict, name: str = "captured_at") -> datetime | None:
    raw = (form.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError("bad_parameter", f"{name} 应为 ISO 8601 时间，如 2026-11-23T09:00:00+08:00", 400) from None
    if value.tzinfo is not None:
        value = value.astimezone(timefmt.local_zone()).replace(tzinfo=None)
    return value


async def _multipart(request: web.Request, max_bytes: int) -> tuple[dict[str, str], list[bytes]]:
    if request.content_type == "application/x-www-form-urlencoded":   # no photo attached
        from urllib.parse import parse_qsl

        if request.content_length is not None and request.content_length > FORM_MAX_BYTES:
            raise BodyTooLarge(FORM_MAX_BYTES, "表单")
        raw = await request.content.read(FORM_MAX_BYTES + 1)
        if len(raw) > FORM_MAX_BYTES:
            raise BodyTooLarge(FORM_MAX_BYTES, "表单")
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise FieldError("bad_request", "表单不是 UTF-8 编码", 400) from None
        return {k: v[:8000] for k, v in pairs}, []
    if not request.content_type.startswith("multipart/"):
        raise FieldError("bad_request", "请以 multipart/form-data 提交", 400)
    reader = await request.multipart()
    form: dict[str, str] = {}
    photos: list[bytes] = []
    while (part := await reader.next()) is not None:
        if part.name == "photo":
            if len(photos) >= MAX_PHOTOS:
                raise FieldError("too_many_photos", f"最多 {MAX_PHOTOS} 张照片", 400)
            buf = bytearray()
            while chunk := await part.read_chunk(64 * 1024):
                buf += chunk
                if len(buf) > max_bytes:
                    raise FieldError("too_large", f"照片超过 {max_bytes // (1024 * 1024)} MB 上限", 413)
            if buf:
                photos.append(bytes(buf))
        elif part.name:
            text = bytearray()
            while chunk := await part.read_chunk(8 * 1024):
                text += chunk
                if len(text) > FORM_MAX_BYTES:
                    raise BodyTooLarge(FORM_MAX_BYTES, "表单字段")
            form[part.name] = bytes(text).decode(part.get_charset(default="utf-8"), errors="replace")[:8000]
        else:
            await part.release()
    return form, photos


def _field_user(request: web.Request):
    user = request[USER]
    if user.role not in FIELD_ROLES:
        raise FieldError("forbidden", "仅监督员可使用城管通", 403)
    return user


def _errors(handler):
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except FieldError as exc:
            return json_error(exc.status, exc.code, exc.message_zh)
        except PhotoError as exc:
            return json_error(exc.status, exc.code, exc.message_zh)
        except NotFound:
            return json_error(404, "not_found", "案卷不存在")
        except WorkflowError as exc:
            from web.worklists import message_zh

            return json_error(409 if exc.code == "version_conflict" else 422, exc.code, message_zh(exc))
    return wrapped


def _max_bytes(request: web.Request) -> int:
    photos = request.app.get(PHOTOS)
    return photos.max_bytes if photos is not None else 10 * 1024 * 1024


@api_auth
@_errors
async def post_report(request: web.Request) -> web.Response:
    user = _field_user(request)
    form, photos = await _multipart(request, _max_bytes(request))
    category = (form.get("category") or "").strip()
    if category:
        ref = await request.app[CTX].service.reference()
        kind, _, code = category.partition(":")
        if ref.categories.get(kind, code) is None:
            raise FieldError("bad_category", "案件类别不存在，请从列表中选择", 400)
    report = FieldReport(
        idempotency_key=form.get("idempotency_key", ""), lat=_float(form, "lat", -90, 90),
        lon=_float(form, "lon", -180, 180), category=category, description=form.get("description", ""),
        captured_at=_when(form))
    answer, replayed = await _service(request).report(user, report, photos=photos, now=_now(request))
    return _json(answer, 201, {"Idempotent-Replayed": "true" if replayed else "false"})


@api_auth
@_errors
async def get_tasks(request: web.Request) -> web.Response:
    user = _field_user(request)
    q = dict(request.query)
    lat = _float(q, "lat", -90, 90, required=False)
    lon = _float(q, "lon", -180, 180, required=False)
    if (lat is None) != (lon is None):
        raise FieldError("bad_parameter", "lat 和 lon 须同时提供", 400)
    return _json(await _service(request).tasks(user, now=_now(request), lat=lat, lon=lon))


@api_auth
@_errors
async def post_step(request: web.Request) -> web.Response:
    user = _field_user(request)
    try:
        case_id = int(request.match_info["case_id"])
    except ValueError:
        raise NotFound() from None
    form, photos = await _multipart(request, _max_bytes(request))
    version = (form.get("expected_version") or "").strip()
    sub = StepSubmission(
        idempotency_key=form.get("idempotency_key", ""), case_id=case_id, result=(form.get("result") or "").strip(),
        note=form.get("note", ""), lat=_float(form, "lat", -90, 90, required=False),
        lon=_float(form, "lon", -180, 180, required=False), captured_at=_when(form),
        expected_version=int(version) if version.isdigit() else None)
    if not sub.result:
        raise FieldError("result_required", "请选择核实/核查结果", 400)
    answer, replayed = await _service(request).submit_step(user, sub, photos=photos, now=_now(request))
    return _json(answer, 200, {"Idempotent-Replayed": "true" if replayed else "false"})


@api_auth
@_errors
async def post_position(request: web.Request) -> web.Response:
    user = _field_user(request)
    try:
        body = await read_json(request, POSITION_MAX_BYTES, "位置上报")
    except (ValueError, UnicodeDecodeError):
        raise FieldError("bad_json", "请求体不是有效的 JSON", 400) from None
    form = {k: str(v) for k, v in (body or {}).items() if v is not None} if isinstance(body, dict) else {}
    lat, lon = _float(form, "lat", -90, 90), _float(form, "lon", -180, 180)
    acc = _float(form, "accuracy", 0, 100_000, required=False)
    await _service(request).record_position(user, lat, lon, acc, _now(request))
    return _json({"ok": True, "interval_s": POSITION_INTERVAL_S})


@api_auth
@_errors
async def get_positions(request: web.Request) -> web.Response:
    from web.geo import MAP_ROLES

    if request[USER].role not in MAP_ROLES:
        raise FieldError("forbidden", "仅派遣员、指挥长、班长可查看监督员位置", 403)
    q = dict(request.query)
    lat = _float(q, "lat", -90, 90, required=False)
    lon = _float(q, "lon", -180, 180, required=False)
    service, now = _service(request), _now(request)
    max_age = position_max_age_s()
    rows = (await service.nearest_inspectors(lat, lon, now=now, max_age_s=max_age) if lat is not None and lon is not None
            else await service.positions(now=now, max_age_s=max_age))
    users = {u.username: u.display_name for u in await request.app[CTX].repo.list_users()}
    features = [{"type": "Feature", "id": r["username"],
                 "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                 "properties": {"username": r["username"], "name": users.get(r["username"], r["username"]),
                                "at": r["at"], "accuracy_m": r["accuracy_m"],
                                **({"distance_m": r["distance_m"]} if "distance_m" in r else {})}}
                for r in rows]
    return _json({"type": "FeatureCollection", "features": features})


# -- the app shell ------------------------------------------------------------------------------
async def app_shell(request: web.Request) -> web.Response:
    """The single page of the phone app. It asks /api/field/* itself and sends people without a
    session to /login?next=/m/; the service worker keeps this page for offline use."""
    html = (M_DIR / "index.html").read_text(encoding="utf-8").replace("{{ center_name }}", html_escape(request.app[CTX].center_name))
    html = html.replace("{{ position_interval_s }}", f"{POSITION_INTERVAL_S:g}")
    return web.Response(text=html, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def service_worker(request: web.Request) -> web.Response:
    return web.Response(text=(M_DIR / "sw.js").read_text(encoding="utf-8"), content_type="application/javascript",
                        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/m/"})


async def manifest(request: web.Request) -> web.Response:
    name = request.app[CTX].center_name
    body = {"name": f"城管通 · {name}", "short_name": "城管通", "lang": "zh-CN", "start_url": "/m/", "scope": "/m/",
            "display": "standalone", "orientation": "portrait", "background_color": "#ffffff",
            "theme_color": "#0b4f8a",
            "icons": [{"src": "/static/m/icon-192.png", "sizes": "192x192", "type": "image/png"},
                      {"src": "/static/m/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any maskable"}]}
    return web.Response(text=json.dumps(body, ensure_ascii=False), content_type="application/manifest+json",
                        charset="utf-8")


async def to_app(request: web.Request) -> web.Response:
    raise web.HTTPFound("/m/")


def setup(app: web.Application) -> None:
    app.router.add_post("/api/field/reports", post_report)
    app.router.add_get("/api/field/tasks", get_tasks)
    app.router.add_post("/api/field/tasks/{case_id}", post_step)
    app.router.add_post("/api/field/position", post_position)
    app.router.add_get("/api/field/positions", get_positions)
    app.router.add_get("/m", to_app)
    app.router.add_get("/m/", app_shell)
    app.router.add_get("/m/sw.js", service_worker)
    app.router.add_get("/m/manifest.webmanifest", manifest)


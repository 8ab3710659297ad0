"""Open311 GeoReport v2 at /open311/v2/: services, service definitions and service requests.

Apps and websites report into the same workflow as the phone: a POSTed request becomes
a case accepted on the `website` channel through `CaseService.create_case`. Service
codes are category keys with a dash (`component-01002`); service_request_id is the
case number. Reads are public unless `[open311] public_read = false`; an anonymous reader
never sees the reporter's phone, name or e-mail, and sees the description and address only
when `public_description` / `public_address` say so. Without `public_address` the anonymous
reader's `lat`/`long` are rounded to `PUBLIC_DECIMALS` (3 decimals: ~100 m, a block, not a
door; the grid cell is shown as before), and `media_url` (a photo may show the reporter or
their home) only with `public_media`. A reader with an api_key (query field
or bearer header) sees all of it, exactly, within `web.photos.visible_where` (department staff: their
department's cases). POST needs an api_key (a bearer token from `hotline token create`, as
form field or header).
Spec: https://wiki.open311.org/GeoReport_v2
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET

from aiohttp import web

from case_core.views import CaseView
from case_core.domain.categories import KIND_LABELS, Category
from case_core.domain.workflow import STATUS_LABELS, WorkflowError
from case_core.service import CLOSED_STATUSES
from web.settings import Open311Settings
from web.app import CTX
from web.case_api import TIMEZONE, local_now
from web.photos import visible_where

OPEN311 = web.AppKey("open311", Open311Settings)  # [open311]; the defaults when unset

CHANNEL = "website"
# GeoReport field names, in the spec's order (used for JSON keys and XML elements alike).
SERVICE_FIELDS = ("service_code", "service_name", "description", "metadata", "type", "keywords", "group")
REQUEST_FIELDS = ("service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url")
POST_RESPONSE_FIELDS = ("service_request_id", "service_notice", "account_id")
MAX_REQUESTS = 1000


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def service_code(c: Category) -> str:
    return f"{c.kind}-{c.code}"


def _parse_code(code: str) -> tuple[str, str]:
    kind, sep, num = code.replace(":", "-").partition("-")
    return (kind, num) if sep else ("", "")


def _w3c(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=TIMEZONE).isoformat(timespec="seconds")


def _parse_w3c(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name} 应为 W3C 日期时间，如 2026-11-23T09:00:00+08:00") from None
    return value.astimezone(TIMEZONE).replace(tzinfo=None) if value.tzinfo else value


def _render(request: web.Request, root: str, item: str, rows: list[dict[str, Any]], status: int = 200):
    if request.match_info.get("fmt") == "xml":
        top = ET.Element(root)
        for row in rows:
            el = ET.SubElement(top, item)
            for key, value in row.items():
                child = ET.SubElement(el, key)
                if isinstance(value, bool):
                    child.text = "true" if value else "false"
                elif isinstance(value, list):
                    for v in value:
                        ET.SubElement(child, "attribute").text = str(v)
                elif value is not None:
                    child.text = str(value)
        body = ET.tostring(top, encoding="unicode", xml_declaration=False)
        return web.Response(text='<?xml version="1.0" encoding="utf-8"?>' + body, status=status,
                            content_type="text/xml", charset="utf-8")
    return web.Response(text=json.dumps(rows, ensure_ascii=False), status=status,
                        content_type="application/json", charset="utf-8")


def _errors(request: web.Request, status: int, description: str) -> web.Response:
    return _render(request, "errors", "error", [{"code": status, "description": description}], status)


def _handler(fn):
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await fn(request)
        except Open311Error as exc:
            return _errors(request, exc.status, exc.description)

    return wrapped


async def _categories(request: web.Request):
    return (await request.app[CTX].service.reference()).categories


def _service_json(c: Category) -> dict[str, Any]:
    return {"service_code": service_code(c), "service_name": c.name, "description": c.label_zh, "metadata": False,
            "type": "realtime", "keywords": c.class_name, "group": f"{KIND_LABELS[c.kind]}/{c.class_name}"}


@_handler
async def services(request: web.Request) -> web.Response:
    return _render(request, "services", "service", [_service_json(c) for c in await _categories(request)])


@_handler
async def service_definition(request: web.Request) -> web.Response:
    kind, code = _parse_code(request.match_info["code"])
    if (await _categories(request)).get(kind, code) is None:
        raise Open311Error(404, f"没有服务代码 {request.match_info['code']}")
    body = {"service_code": f"{kind}-{code}", "attributes": []}
    if request.match_info.get("fmt") == "xml":
        return web.Response(
            text='<?xml version="1.0" encoding="utf-8"?><service_definition>'
                 f"<service_code>{kind}-{code}</service_code><attributes/></service_definition>",
            content_type="text/xml", charset="utf-8")
    return web.Response(text=json.dumps(body), content_type="application/json")


PUBLIC_DECIMALS = 3  # anonymous readers' lat/long without `public_address`: ~110 m north-south


def public_coordinate(value: Any, exact: bool) -> Any:
    """A latitude or longitude as an anonymous reader may see it: exact, or rounded to ~100 m."""
    if exact or value is None:
        return value
    try:
        return round(float(value), PUBLIC_DECIMALS)
    except (TypeError, ValueError):
        return None


class _Reader:
    """Who reads: `scope` the search filters they are held to, `full` whether they see the
    description and address (a key holder) or only what `[open311]` makes public."""

    def __init__(self, scope: dict[str, Any], description: bool, address: bool, media: bool = True) -> None:
        self.scope, self.description, self.address, self.media = scope, description, address, media


async def _reader(request: web.Request) -> _Reader:
    settings = request.app.get(OPEN311) or Open311Settings()
    key = request.query.get("api_key", "")
    header = request.headers.get("Authorization", "")
    if not key and header.startswith("Bearer "):
        key = header[len("Bearer "):].strip()
    ctx = request.app[CTX]
    found = await ctx.auth_store.token_user(key, ctx.local_now()) if key else None  # not expired nor revoked
    user = found[0] if found else None
    if user is not None:
        return _Reader(visible_where(user), True, True)
    if key:
        raise Open311Error(403, "api_key 无效")
    if not settings.public_read:
        raise Open311Error(401, "查询服务请求需要 api_key")
    return _Reader({}, settings.public_description, settings.public_address, settings.public_media)


async def _request_json(request: web.Request, case: CaseView, reader: _Reader) -> dict[str, Any]:
    ref = await request.app[CTX].service.reference()
    cat = ref.categories.get(case.category_kind or "", case.category_code or "")
    dept = ref.departments.get(case.department or "")
    location = case.state.get("location") or {}
    due = ((case.state.get("deadlines") or {}).get("case") or {}).get("due_at")
    return {
        "service_request_id": case.number,
        "status": "closed" if case.status in CLOSED_STATUSES else "open",
        "status_notes": STATUS_LABELS.get(case.status, case.status),
        "service_name": cat.name if cat else None,
        "service_code": f"{case.category_kind}-{case.category_code}" if case.category_kind else None,
        "description": case.description if reader.description else None,
        "agency_responsible": dept.name if dept else case.department,
        "service_notice": None,
        "requested_datetime": _w3c(case.created_at),
        "updated_datetime": _w3c(case.updated_at),
        "expected_datetime": _w3c(datetime.fromisoformat(due)) if due else None,
        "address": (case.address or None) if reader.address else None,
        "address_id": None,
        "zipcode": None,
        "lat": public_coordinate(location.get("lat", case.lat), reader.address),
        "long": public_coordinate(location.get("long", case.lon), reader.address),
        "media_url": case.state.get("media_url") if reader.media else None,
        # Extension: the grid cell (单元网格) the position or address was located in.
        "grid_cell": case.grid_cell,
    }


@_handler
async def get_requests(request: web.Request) -> web.Response:
    q = request.query
    service = request.app[CTX].service
    reader = await _reader(request)
    if q.get("service_request_id"):
        # The spec: with ids given, every other filter is ignored.
        cases = []
        for number in q["service_request_id"].split(",")[:MAX_REQUESTS]:
            cases += await service.search(number=number.strip(), limit=1, with_recordings=False, **reader.scope)
    else:
        end = _parse_w3c("end_date", q["end_date"]) if q.get("end_date") else None
        start = _parse_w3c("start_date", q["start_date"]) if q.get("start_date") else None
        if start is None and end is None:
            start = local_now(request) - timedelta(days=90)
        if start is not None and end is not None and end <= start:
            raise Open311Error(400, "end_date 必须晚于 start_date")
        statuses: tuple[str, ...] | None = None
        if q.get("status"):
            wanted = {s.strip() for s in q["status"].split(",")}
            if not wanted <= {"open", "closed"}:
                raise Open311Error(400, "status 只能是 open、closed 或两者（open,closed）")
            if wanted == {"open"}:
                statuses = tuple(s for s in STATUS_LABELS if s not in CLOSED_STATUSES)
            elif wanted == {"closed"}:
                statuses = tuple(CLOSED_STATUSES)
        codes = [c.strip() for c in q.get("service_code", "").split(",") if c.strip()] or [None]
        cases = []
        for code in codes:
            category = None
            if code is not None:
                kind, num = _parse_code(code)
                if not kind or not num:
                    raise Open311Error(400, f"服务代码 {code} 格式不正确（如 event-010101）")
                category = f"{kind}:{num}"
            cases += await service.search(status=statuses, category=category, created_from=start,
                                          created_to=end + timedelta(seconds=1) if end else None,
                                          limit=MAX_REQUESTS, with_recordings=False, **reader.scope)
        cases.sort(key=lambda c: (c.created_at, c.id), reverse=True)
        cases = cases[:MAX_REQUESTS]
    return _render(request, "service_requests", "request", [await _request_json(request, c, reader) for c in cases])


@_handler
async def get_request(request: web.Request) -> web.Response:
    reader = await _reader(request)
    found = await request.app[CTX].service.search(number=request.match_info["request_id"], limit=1,
                                                  with_recordings=False, **reader.scope)
    if not found:
        raise Open311Error(404, f"没有服务请求 {request.match_info['request_id']}")
    return _render(request, "service_requests", "request", [await _request_json(request, found[0], reader)])


def _float(form, name: str) -> float | None:
    raw = form.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError:
        raise Open311Error(400, f"{name} 必须是数字") from None


@_handler
async def post_request(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    form = await request.post()
    key = str(form.get("api_key") or "")
    header = request.headers.get("Authorization", "")
    if not key and header.startswith("Bearer "):
        key = header[len("Bearer "):].strip()
    found = await ctx.auth_store.token_user(key, ctx.local_now()) if key else None  # not expired nor revoked
    if found is None:
        raise Open311Error(403, "缺少 api_key 或 api_key 无效")
    user, scope = found
    if scope == "read":
        raise Open311Error(403, "该 api_key 只能读取（scope read），不能提交")
    code = str(form.get("service_code") or "")
    if not code:
        raise Open311Error(400, "缺少 service_code")
    kind, num = _parse_code(code)
    if (await _categories(request)).get(kind, num) is None:
        raise Open311Error(404, f"没有服务代码 {code}")
    lat, lon = _float(form, "lat"), _float(form, "long")
    address = str(form.get("address_string") or "").strip()
    if (lat is None or lon is None) and not address and not form.get("address_id"):
        raise Open311Error(400, "缺少位置：请提供 lat 和 long、address_string 或 address_id")
    if lat is not None and not -90 <= lat <= 90 or lon is not None and not -180 <= lon <= 180:
        raise Open311Error(400, "lat/long 超出范围")
    description = str(form.get("description") or "").strip()
    if not description:
        raise Open311Error(400, "缺少 description（问题描述）")
    extra: dict[str, Any] = {"source": "open311"}
    if lat is not None and lon is not None:
        extra["location"] = {"lat": lat, "long": lon}
    if form.get("media_url"):
        extra["media_url"] = str(form["media_url"])
    name = " ".join(str(form.get(k) or "").strip() for k in ("last_name", "first_name")).strip()
    if name:
        extra["reporter_name"] = name
    if form.get("email"):
        email = str(form["email"]).strip()
        if len(email) > 254 or "@" not in email:
            raise Open311Error(400, "email 不是有效的电子邮件地址")
        extra["reporter_email"] = email
    if form.get("media_url") and len(str(form["media_url"])) > 2000:
        raise Open311Error(400, "media_url 过长（最多2000字符）")
    try:
        view = await ctx.service.create_case(
            channel=CHANNEL, description=description, actor=user.username, role=user.role,
            now=local_now(request), reporter_phone=str(form.get("phone") or ""), address=address,
            category=f"{kind}:{num}", extra=extra,
        )
    except WorkflowError as exc:
        raise Open311Error(400, exc.message_zh) from None
    row = {"service_request_id": view.number, "service_notice": "已受理，将在规定时限内处理", "account_id": None}
    return _render(request, "service_requests", "request", [row], status=201)


def setup(app: web.Application) -> None:
    base = "/open311/v2"
    app.router.add_get(base + "/services.{fmt:json|xml}", services)
    app.router.add_get(base + "/services/{code}.{fmt:json|xml}", service_definition)
    app.router.add_get(base + "/requests.{fmt:json|xml}", get_requests)
    app.router.add_post(base + "/requests.{fmt:json|xml}", post_request)
    app.router.add_get(base + "/requests/{request_id}.{fmt:json|xml}", get_request)

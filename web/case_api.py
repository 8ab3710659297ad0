"""JSON API for the case workflow: create, search, detail, actions, duplicates, evaluation, categories.

Bearer token or session (see `web.app._api_auth`); the acting user's role is the
authenticated user's role. Workflow refusals carry the domain's Chinese message.
Routes are documented in `case_core/API.md`.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from case_core.views import CaseView, NotFound
from case_core.domain import workflow
from case_core.domain.categories import KIND_LABELS
from case_core.domain.evaluation import DEFAULT_WEIGHTS, GROUP_BY
from case_core.domain.reference import AREA_LEVELS
from case_core.domain.workflow import NotPermitted, VersionConflict, WorkflowError
from case_core.service import evaluation_json
from web import timefmt
from web.app import CTX, USER, _api_auth, _int_param, case_json

# WebContext.now gives epoch seconds; cases are stored in the center's local time.
TIMEZONE = ZoneInfo("Asia/Shanghai")


def local_now(request: web.Request) -> datetime:
    return datetime.fromtimestamp(request.app[CTX].now(), TIMEZONE).replace(tzinfo=None)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return timefmt.iso(value)  # ISO 8601 with the center's offset
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _error(status: int, code: str, message: str, **more: Any) -> web.Response:
    return _json({"error": code, "message": message, **more}, status)


def _workflow_error(exc: WorkflowError, **more: Any) -> web.Response:
    extra = {"field": exc.field} if hasattr(exc, "field") else {}
    if isinstance(exc, VersionConflict):
        return _error(409, exc.code, exc.message_zh, detail=exc.message, **more)
    if isinstance(exc, NotPermitted):
        return _error(403, exc.code, exc.message_zh, detail=exc.message)
    return _error(422, exc.code, exc.message_zh, detail=exc.message, **extra)


# A case or an action is a few texts of at most a few thousand characters (case_core.domain.bounds):
# a larger body is refused before it is parsed (the app-wide cap is 2 MiB, for photos).
MAX_JSON_BODY = 64 * 1024


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise _too_large()
    raw = await request.content.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise _too_large()
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=_dumps({"error": "bad_json", "message": "请求体不是有效的 JSON"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=_dumps({"error": "bad_json", "message": "请求体必须是 JSON 对象"}),
                                 content_type="application/json")
    return body


def _too_large() -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        MAX_JSON_BODY, MAX_JSON_BODY + 1, content_type="application/json",
        text=_dumps({"error": "too_large", "message": f"请求体过大：案卷数据最多 {MAX_JSON_BODY // 1024} KB"}))


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=_dumps({"error": "bad_parameter", "message": message}),
                              content_type="application/json")


def _case_id(request: web.Request) -> int:
    try:
        return int(request.match_info["case_id"])
    except ValueError:
        raise web.HTTPNotFound(text=_dumps({"error": "not_found", "message": "案卷不存在"}),
                               content_type="application/json") from None


def _history_json(case: CaseView) -> list[dict[str, Any]]:
    return [
        {"seq": h.seq, "action": h.action, "action_label": workflow.ACTION_LABELS.get(h.action, h.action),
         "actor": h.actor, "role": h.role, "at": h.at, "comment": h.comment, "before_status": h.before_status,
         "after_status": h.after_status,
         # deadlines the workflow stored in the fields are naive ISO text: give them the offset too
         "fields": timefmt.with_offsets(dict(h.fields), ("_deadline",))}
        for h in case.history
    ]


def _summary_json(case: CaseView) -> dict[str, Any]:
    body = case_json(case)
    body.update({
        "urgent": case.case_type == "urgent",
        "department": case.department,
        "grid_cell": case.grid_cell,
        "lat": case.lat,
        "lon": case.lon,
        "inspector": case.inspector,
        "due_at": case.due_at,
    })
    return body


async def detail_json(request: web.Request, case_id: int) -> dict[str, Any]:
    """The case with history, deadlines, pending applications and the caller's actions."""
    ctx = request.app[CTX]
    service = ctx.service
    case = await service.get_case(case_id)
    state = await service.case_state(case_id)
    role = request[USER].role
    now = local_now(request)
    body = _summary_json(case)
    body["history"] = _history_json(case)
    body["deadlines"] = await service.deadline_report(state, now)
    body["overdue"] = case.due_at is not None and case.due_at < now
    body["pending_applications"] = [
        {"kind": a.kind, "applicant": a.applicant, "role": a.role, "at": a.at, "reason": a.reason,
         "fields": dict(a.fields)}
        for a in state.pending
    ]
    body.update({"rework_count": state.rework_count, "urge_count": state.urge_count,
                 "merged_into": state.merged_into, "merged_from": list(state.merged_from),
                 "verify_result": state.verify_result, "check_result": state.check_result,
                 "satisfaction": state.satisfaction})
    body["suggested_department"] = await service.suggested_department(state)
    actions = []
    for name in service.available_actions(state, role):
        t = service.spec.find(name, state.status)
        actions.append({"action": name, "label": workflow.ACTION_LABELS[name],
                        "required": list(t.required_fields), "optional": list(t.optional_fields),
                        "url": f"/api/cases/{case_id}/actions/{name}"})
    body["available_actions"] = actions
    from web.photos import detail_extras  # category_name, photos, recordings with transcripts

    body.update(await detail_extras(request, case))
    return body


# -- handlers --------------------------------------------------------------------------------
@_api_auth
async def case_detail(request: web.Request) -> web.Response:
    from web.photos import may_see

    try:
        case_id = _case_id(request)
        if not may_see(request[USER], await request.app[CTX].service.get_case(case_id)):
            return _error(403, "forbidden", "该案卷已派遣给其他处置部门，无权查看")
        return _json(await detail_json(request, case_id))
    except NotFound:
        return _error(404, "not_found", "案卷不存在")


def _flag(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise _bad(f"参数 {name} 只能是 true 或 false")


@_api_auth
async def case_search(request: web.Request) -> web.Response:
    cases = await request.app[CTX].service.search(**search_filters(request))
    return _json([_summary_json(c) for c in cases])


def search_filters(request: web.Request, *, default_limit: int = 50, max_limit: int = 500) -> dict[str, Any]:
    """The query parameters of `GET /api/cases` (also `GET /api/geo/cases`) as search arguments."""
    q = request.query
    statuses = tuple(s for s in q.get("status", "").split(",") if s)
    for s in statuses:
        if s not in workflow.STATUS_LABELS:
            raise _bad(f"未知的状态 {s!r}")
    now = local_now(request)
    from web.photos import visible_where  # least privilege: never more than the user may see

    return dict(
        limit=_int_param(request, "limit", default_limit, 1, max_limit),
        offset=_int_param(request, "offset", 0, 0, 10_000_000),
        status=statuses or None,
        category=q.get("category") or None,
        department=q.get("department") or None,
        inspector=q.get("inspector") or None,
        overdue_at=now if _flag(request, "overdue") else None,
        urgent=_flag(request, "urgent"),
        text=q.get("q") or None,
        reporter_phone=q.get("reporter_phone") or None,
        channel=q.get("channel") or None,
        oldest_first=q.get("order") == "oldest",
    ) | visible_where(request[USER])


@_api_auth
async def create_case(request: web.Request) -> web.Response:
    body = await _json_body(request)
    user = request[USER]
    text = lambda name: body.get(name) if isinstance(body.get(name), str) else None  # noqa: E731
    for name in ("description", "channel", "kind", "case_type", "reporter_phone", "address", "category",
                 "grid_cell"):
        if name in body and body[name] is not None and not isinstance(body[name], str):
            raise _bad(f"参数 {name} 必须是文本")
    lat, lon = body.get("lat"), body.get("lon")
    if (lat is None) != (lon is None):
        raise _bad("lat 和 lon 须同时提供")
    if lat is not None:
        if isinstance(lat, bool) or isinstance(lon, bool) or not isinstance(lat, (int, float)) \
                or not isinstance(lon, (int, float)) or not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise _bad("lat/lon 必须是 WGS-84 经纬度数值（纬度 -90…90，经度 -180…180）")
    service = request.app[CTX].service
    try:
        view = await service.create_case(
            lat=lat, lon=lon,
            channel=text("channel") or "12319", description=text("description") or "", actor=user.username,
            role=user.role, now=local_now(request), kind=text("kind") or "report",
            case_type=text("case_type") or "normal", reporter_phone=text("reporter_phone") or "",
            address=text("address") or "", category=text("category") or None, grid_cell=text("grid_cell") or None,
        )
    except WorkflowError as exc:
        return _workflow_error(exc)
    out = await detail_json(request, view.id)
    out["duplicates"] = await _duplicates(request, view.id)
    return _json(out, 201)


async def _duplicates(request: web.Request, case_id: int) -> list[dict[str, Any]]:
    from web.photos import may_see

    found = await request.app[CTX].service.duplicates_for(case_id)
    return [{"id": v.id, "number": v.number, "status": v.status, "description": v.description,
             "score": s.score, "location": s.location, "reasons": list(s.reasons)} for s, v in found
            if may_see(request[USER], v)]


@_api_auth
async def case_duplicates(request: web.Request) -> web.Response:
    from web.photos import may_see

    try:
        case_id = _case_id(request)
        if not may_see(request[USER], await request.app[CTX].service.get_case(case_id)):
            return _error(403, "forbidden", "该案卷已派遣给其他处置部门，无权查看")
        return _json(await _duplicates(request, case_id))
    except NotFound:
        return _error(404, "not_found", "案卷不存在")


@_api_auth
async def case_action(request: web.Request) -> web.Response:
    case_id = _case_id(request)
    action = request.match_info["action"]
    body = await _json_body(request)
    fields = body.get("fields", {})
    if not isinstance(fields, dict):
        raise _bad("fields 必须是 JSON 对象")
    if "comment" in body and "comment" not in fields:
        fields = {**fields, "comment": body["comment"]}
    expected = body.get("expected_version")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)):
        raise _bad("expected_version 必须是整数")
    user = request[USER]
    service = request.app[CTX].service
    try:
        _view, events = await service.act(case_id, action, actor=user.username, role=user.role, fields=fields,
                                          expected_version=expected, now=local_now(request),
                                          department=user.department)
    except NotFound:
        return _error(404, "not_found", "案卷不存在")
    except VersionConflict as exc:
        current = (await service.get_case(case_id)).version
        return _workflow_error(exc, current_version=current)
    except WorkflowError as exc:
        return _workflow_error(exc)
    out = await detail_json(request, case_id)
    out["events"] = [{"name": e.name, "action": e.action, "at": e.at, "before_status": e.before_status,
                      "after_status": e.after_status, "version": e.version} for e in events]
    return _json(out)


def _when(request: web.Request, name: str) -> datetime:
    raw = request.query.get(name)
    if not raw:
        raise _bad(f"缺少参数 {name}（YYYY-MM-DD 或 ISO 8601 日期时间）")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(f"参数 {name} 应为 YYYY-MM-DD 或 ISO 8601 日期时间") from None
    return value.astimezone(TIMEZONE).replace(tzinfo=None) if value.tzinfo else value


def _weights(raw: str | None) -> dict[str, float]:
    if not raw:
        return DEFAULT_WEIGHTS
    out = {}
    for part in raw.split(","):
        code, _, w = part.partition(":")
        try:
            out[code.strip()] = float(w)
        except ValueError:
            raise _bad("weights 的格式应为 on_time_handle_rate:3,satisfaction_rate:2") from None
    return out


def _evaluation_problem_zh(exc: ValueError) -> str:
    """The evaluation core's refusal (English, for the log) as the user reads it."""
    text = str(exc)
    code = text.split("'")[1] if text.count("'") >= 2 else ""
    if "end after it starts" in text:
        return "结束日期不能早于开始日期"
    if "unknown indicator" in text:
        return f"weights 中有未知的指标 {code}"
    if "is a count" in text:
        return f"{code} 是计数指标，只有比率可以加权"
    if "must not be negative" in text:
        return f"{code} 的权重不能为负数"
    return f"评价参数有误（{text}）"


@_api_auth
async def evaluation(request: web.Request) -> web.Response:
    start, end = _when(request, "start"), _when(request, "end")
    group_by = request.query.get("group_by") or None
    if group_by is not None and group_by not in GROUP_BY:
        raise _bad(f"group_by 只能是 {'、'.join(GROUP_BY)} 之一")
    area_level = request.query.get("area_level", "street")
    if area_level != "grid" and area_level not in AREA_LEVELS:
        raise _bad("area_level 只能是 district、street、community 或 grid")
    try:
        groups = await request.app[CTX].service.evaluate(start, end, group_by=group_by, area_level=area_level,
                                                         weights=_weights(request.query.get("weights")))
    except ValueError as exc:
        raise _bad(_evaluation_problem_zh(exc)) from None
    return _json(timefmt.with_offsets(evaluation_json(groups, start, end, group_by), ("start", "end")))


@_api_auth
async def categories(request: web.Request) -> web.Response:
    ref = await request.app[CTX].service.reference()
    kind = request.query.get("kind") or None
    text = request.query.get("q", "").strip()
    if text:
        # Ranked for the pickers: name, pinyin (jinggai), initials, class name, code.
        from web.pickers import category_index

        try:
            limit = max(1, min(500, int(request.query.get("limit", "30"))))
        except ValueError:
            raise _bad("limit 必须是数字") from None
        return _json([m.to_dict() for m in category_index(ref.categories).search(text, kind=kind, limit=limit)])
    cats = [c for c in ref.categories if kind is None or c.kind == kind]
    from web.pickers import category_index

    spelt = category_index(ref.categories).spellings()   # pinyin/initials: the phone searches offline
    return _json([{"key": c.key, "kind": c.kind, "kind_label": KIND_LABELS[c.kind], "code": c.code,
                   "class_code": c.class_code, "class_name": c.class_name, "name": c.name,
                   "label_zh": c.label_zh, "pinyin": spelt.get(c.key, ("", ""))[0],
                   "initials": spelt.get(c.key, ("", ""))[1]} for c in cats])


def setup(app: web.Application) -> None:
    app.router.add_get("/api/cases", case_search)
    app.router.add_get("/api/cases/{case_id}", case_detail)
    app.router.add_post("/api/cases", create_case)
    app.router.add_get("/api/cases/{case_id}/duplicates", case_duplicates)
    app.router.add_post("/api/cases/{case_id}/actions/{action}", case_action)
    app.router.add_get("/api/evaluation", evaluation)
    app.router.add_get("/api/categories", categories)

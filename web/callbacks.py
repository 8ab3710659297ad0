"""Scheduled and past callbacks (回拨 / 回访) for agents and supervisors.

`/callbacks` lists queue callbacks, agent-scheduled callbacks and follow-up survey calls
with their attempts and outcomes, filtered by status / kind / own; each open callback can
be rescheduled (改期), cancelled (取消) or called at once (立即回拨). JSON twins:

| method + URL | body / query | answer |
|---|---|---|
| `GET /api/callbacks` | `status`, `kind`, `mine=1`, `limit` | `{"callbacks": [item…], "count"}` |
| `GET /api/callbacks/{id}` | | item |
| `POST /api/callbacks/{id}/reschedule` | `{"due_at": "2026-11-24T09:30"}` | 200 item; 422 bad time |
| `POST /api/callbacks/{id}/cancel` | | 200 item |
| `POST /api/callbacks/{id}/call-now` | | 200 item (dialling, or queued behind busy lines) |

Refusals: 403 role / another agent's callback, 404 unknown id, 409 wrong state or outside
calling hours, 503 no dialer; all with `message` in Chinese.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from web import timefmt
from web.app import CTX, USER, api_auth, json_error, page_auth, render
from web.desk import CALLBACK_STATUS_ZH, _body, _json, calling_hours_zh, callback_error_zh, check_callback_time
from web.desk import _now as local_now

CALLBACK_ROLES = ("agent", "shift_lead", "supervisor", "commander", "admin")
MANAGER_ROLES = ("shift_lead", "supervisor", "commander", "admin")
STATUS_LABELS = CALLBACK_STATUS_ZH
KIND_LABELS = {"queue": "排队回拨", "scheduled": "预约回拨", "follow_up": "回访"}
OUTCOME_LABELS = {"answered": "接通", "busy": "占线", "no_answer": "无人接听", "failed": "呼叫失败", None: "拨打中"}
RESULT_LABELS = {
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "dissatisfied": "不满意",
    "unreachable": "联系不上",
    "max_attempts": "多次未接通",
    "deadline": "超过回拨期限",
    "no_calling_time": "没有可用的外呼时段",
    "refused": "被拒绝",
}
LIST_LIMIT = 200


def _fmt(value: Any) -> str | None:
    return timefmt.page(value) or None


def _iso(value: Any) -> str | None:
    return timefmt.iso(value)


def _may_change(user, item: dict) -> bool:
    return user.role in MANAGER_ROLES or item.get("agent") in (None, "", user.username)


def _item(raw: dict, user, dialer, case_ids: dict[str, int]) -> dict[str, Any]:
    live = dialer.state.callbacks.get(raw["id"])
    status = raw["status"]
    can = _may_change(user, raw)
    return {
        "id": raw["id"],
        "kind": raw["kind"],
        "kind_label": KIND_LABELS.get(raw["kind"], raw["kind"]),
        "number": raw["number"],
        "case_number": raw.get("case_number"),
        "case_id": case_ids.get(raw.get("case_number") or ""),
        "agent": raw.get("agent"),
        "status": status,
        "status_label": STATUS_LABELS.get(status, status),
        "due_at": _iso(raw.get("due_at")),
        "due_at_text": _fmt(raw.get("due_at")),
        "deadline": _iso(raw.get("deadline")),
        "deadline_text": _fmt(raw.get("deadline")),
        "attempts": [
            {**timefmt.with_offsets(a), "outcome_label": OUTCOME_LABELS.get(a.get("outcome"), a.get("outcome")),
             "started_at_text": _fmt(a.get("started_at")), "ended_at_text": _fmt(a.get("ended_at"))}
            for a in raw.get("attempts") or []
        ],
        "result": raw.get("result"),
        "result_label": RESULT_LABELS.get(raw.get("result"), raw.get("result")) if raw.get("result") else None,
        "created_at": _iso(raw.get("created_at")),
        "updated_at": _iso(raw.get("updated_at")),
        "actions": {
            "reschedule": can and live is not None and live.status in ("pending", "failed"),
            "cancel": can and live is not None and live.status == "pending",
            "call_now": can and live is not None and live.status == "pending",
        },
    }


async def _case_ids(repo, numbers) -> dict[str, int]:
    return await repo.case_ids_for_numbers(numbers)


async def _row(dialer, callback_id: str) -> dict | None:
    return await dialer.get(callback_id)


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _Invalid(Exception):
    """A bad value typed by the user (422 under `due_at`)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _filters(request: web.Request) -> dict[str, Any]:
    status = request.query.get("status") or None
    kind = request.query.get("kind") or None
    if status is not None and status not in STATUS_LABELS:
        raise Refused(400, f"未知的回拨状态“{status[:20]}”")
    if kind is not None and kind not in KIND_LABELS:
        raise Refused(400, f"未知的回拨类型“{kind[:20]}”")
    try:
        limit = max(1, min(500, int(request.query.get("limit") or LIST_LIMIT)))
    except ValueError:
        raise Refused(400, "limit 必须是整数") from None
    return {"status": status, "kind": kind, "mine": request.query.get("mine") in ("1", "true", "on"),
            "limit": limit}


async def _list(request: web.Request, dialer, f: dict[str, Any]) -> list[dict]:
    user = request[USER]
    fetch = f["limit"] if not (f["kind"] or f["mine"]) else 1000
    rows = await dialer.list(limit=fetch, status=f["status"])
    rows = [r for r in rows if (not f["kind"] or r["kind"] == f["kind"])
            and (not f["mine"] or r.get("agent") == user.username)][: f["limit"]]
    case_ids = await _case_ids(request.app[CTX].repo, (r.get("case_number") for r in rows))
    return [_item(r, user, dialer, case_ids) for r in rows]


def _role_ok(user) -> bool:
    return user.role in CALLBACK_ROLES


# -- page ------------------------------------------------------------------------------------
@page_auth
async def callbacks_page(request: web.Request) -> web.Response:
    user = request[USER]
    if not _role_ok(user):
        return render(request, "not_found.html", status=403, user=user, what="页面（需要受理员、班长或管理员权限）")
    dialer = request.app[CTX].followups
    values: dict[str, Any] = {"user": user, "status_labels_cb": STATUS_LABELS, "kind_labels": KIND_LABELS,
                              "items": [], "error": None, "enabled": dialer is not None,
                              "calling_hours": calling_hours_zh(dialer) if dialer else None,
                              "f": {"status": None, "kind": None, "mine": False}}
    if dialer is None:
        return render(request, "callbacks.html", **values)
    try:
        f = _filters(request)
    except Refused as exc:
        values["error"] = exc.message
        return render(request, "callbacks.html", status=exc.status, **values)
    values["f"] = f
    items = await _list(request, dialer, f)
    # The page puts what is still to be dialled first, the soonest at the top (the API keeps
    # the latest change first); the rest follows as changed.
    waiting = sorted((i for i in items if i["status"] in ("dialing", "pending", "new")),
                     key=lambda i: (i["status"] != "dialing", i["due_at"] or ""))
    values["items"] = waiting + [i for i in items if i not in waiting]
    values["agent_names"] = {u.username: u.display_name or u.username
                             for u in await request.app[CTX].repo.list_users()}
    return render(request, "callbacks.html", **values)


# -- JSON ------------------------------------------------------------------------------------
def _dialer_or_refuse(request: web.Request):
    user = request[USER]
    if not _role_ok(user):
        raise Refused(403, "只有受理员、班长或管理员可以查看回拨")
    dialer = request.app[CTX].followups
    if dialer is None:
        raise Refused(503, "回拨服务未启用")
    return dialer


def _refusal(exc: Refused) -> web.Response:
    codes = {400: "bad_parameter", 403: "not_permitted", 404: "not_found", 409: "refused", 422: "invalid",
             503: "no_dialer"}
    return json_error(exc.status, codes.get(exc.status, "refused"), exc.message)


@api_auth
async def api_list(request: web.Request) -> web.Response:
    try:
        dialer = _dialer_or_refuse(request)
        f = _filters(request)
    except Refused as exc:
        return _refusal(exc)
    items = await _list(request, dialer, f)
    return _json({"callbacks": items, "count": len(items), "calling_hours": calling_hours_zh(dialer)})


async def _one(request: web.Request, dialer) -> dict:
    row = await _row(dialer, request.match_info["callback_id"])
    if row is None:
        raise Refused(404, "找不到该回拨")
    return row


async def _answer(request: web.Request, dialer, callback_id: str, **more) -> web.Response:
    row = await _row(dialer, callback_id)
    case_ids = await _case_ids(request.app[CTX].repo, [row.get("case_number")])
    return _json({**_item(row, request[USER], dialer, case_ids), **more})


@api_auth
async def api_get(request: web.Request) -> web.Response:
    try:
        dialer = _dialer_or_refuse(request)
        row = await _one(request, dialer)
    except Refused as exc:
        return _refusal(exc)
    return await _answer(request, dialer, row["id"])


def _changeable(request: web.Request, dialer, row: dict, what: str):
    if not _may_change(request[USER], row):
        raise Refused(403, f"这是受理员 {row.get('agent')} 预约的回拨，只有本人或班长可以{what}")
    if row["id"] not in dialer.state.callbacks:
        label = STATUS_LABELS.get(row["status"], row["status"])
        if row["status"] == "new":
            raise Refused(409, f"该回拨尚未排入外呼计划（{label}），请稍后再试")
        raise Refused(409, f"该回拨{label}，不能{what}；如需再次回拨请重新预约")


async def _change(request: web.Request, what: str, act) -> web.Response:
    dialer = request.app[CTX].followups
    refused_by_scheduler = dialer.Error if dialer is not None else ()
    try:
        dialer = _dialer_or_refuse(request)
        row = await _one(request, dialer)
        _changeable(request, dialer, row, what)
        message = await act(dialer, row)
    except Refused as exc:
        return _refusal(exc)
    except refused_by_scheduler as exc:
        return json_error(409, "refused", callback_error_zh(exc))
    return await _answer(request, dialer, row["id"], message=message)


@api_auth
async def api_reschedule(request: web.Request) -> web.Response:
    body = await _body(request)
    if isinstance(body, web.Response):
        return body

    async def act(dialer, row):
        due, problem = check_callback_time(dialer, str(body.get("due_at") or ""), local_now(request), row["kind"])
        if problem:
            raise _Invalid(problem)
        await dialer.reschedule(row["id"], due)
        return f"已改期到 {due.strftime('%Y-%m-%d %H:%M')}"

    try:
        return await _change(request, "改期", act)
    except _Invalid as exc:
        return _json({"error": "invalid", "message": exc.message, "fields": {"due_at": exc.message}}, 422)


@api_auth
async def api_cancel(request: web.Request) -> web.Response:
    async def act(dialer, row):
        await dialer.cancel(row["id"])
        return "已取消回拨"

    return await _change(request, "取消", act)


@api_auth
async def api_call_now(request: web.Request) -> web.Response:
    async def act(dialer, row):
        now = dialer.now_dt()
        start = dialer.scheduler.next_calling_time(row["kind"], now)
        if start != now:
            hint = f"；最近可在 {start.strftime('%Y-%m-%d %H:%M')} 拨出，可改期到该时间" if start else ""
            raise Refused(409, f"现在不在外呼时段内（{calling_hours_zh(dialer)}），不能立即回拨{hint}")
        await dialer.call_now(row["id"])
        live = dialer.state.callbacks.get(row["id"])
        if live is not None and live.status == "dialing":
            return f"正在回拨 {row['number']}" + ("，请先接听您的分机" if row["kind"] == "scheduled" else "")
        return "外呼线路已满，空闲后立即拨出"

    return await _change(request, "立即回拨", act)


def setup(app: web.Application) -> None:
    app.router.add_get("/callbacks", callbacks_page)
    app.router.add_get("/api/callbacks", api_list)
    app.router.add_get("/api/callbacks/{callback_id}", api_get)
    app.router.add_post("/api/callbacks/{callback_id}/reschedule", api_reschedule)
    app.router.add_post("/api/callbacks/{callback_id}/cancel", api_cancel)
    app.router.add_post("/api/callbacks/{callback_id}/call-now", api_call_now)

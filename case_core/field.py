"""The inspectors' phone app (城管通) on the server side: reports (上报), my tasks (核实/核查),
step submissions, and inspectors' positions — each phone submission exactly once.

    field = FieldService(case_service, photo_service, engine)
    result = await field.report(user, FieldReport(...), photos=[jpeg, ...], now=now)
    tasks = await field.tasks(user, now=now, lat=32.04, lon=118.77)

A phone that was offline sends its queue again when the connection returns, perhaps twice
(the answer to the first attempt may have been lost). Every submission carries an
idempotency key; `field_submissions` (migration 0015) holds each key with what it made,
so a repeat returns the same case and never files a second one. The key row is written
first, in its own transaction: of two racing repeats one inserts it and files the case,
the other finds it (in progress → `InProgress`, the phone retries later).
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, DateTime, Float, Integer, String, Table, Text, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from case_core.adapters.orm import metadata
from case_core.domain import workflow
from case_core.photos import PhotoService

__all__ = ["FieldError", "InProgress", "FieldReport", "StepSubmission", "FieldService", "field_submissions",
           "inspector_positions", "TASK_STEPS", "distance_m"]

field_submissions = Table(
    "field_submissions",
    metadata,
    Column("idempotency_key", String(100), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("case_id", Integer),
    Column("response_json", Text),
    Column("created_at", DateTime(timezone=False), nullable=False),
)

inspector_positions = Table(
    "inspector_positions",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("accuracy_m", Float),
    Column("at", DateTime(timezone=False), nullable=False),
)

CHANNEL = "inspector"
# Status of a case → (the step an inspector does there, its action, result field, photo stage).
TASK_STEPS = {
    "verifying": ("verify", "verify", "verify_result", "before"),
    "checking": ("check", "check", "check_result", "after"),
}
_DEADLINE_RANK = {"overdue": 0, "yellow": 1, "on_time": 2}


class FieldError(ValueError):
    """A submission that cannot be accepted: `code` for programs, `message_zh` for people."""

    def __init__(self, code: str, message_zh: str, status: int = 422) -> None:
        super().__init__(message_zh)
        self.code, self.message_zh, self.status = code, message_zh, status


class InProgress(FieldError):
    def __init__(self) -> None:
        super().__init__("in_progress", "同一提交正在处理中，请稍后重试", 409)


@dataclass(frozen=True)
class FieldReport:
    idempotency_key: str
    lat: float
    lon: float
    category: str
    description: str
    captured_at: datetime | None = None


@dataclass(frozen=True)
class StepSubmission:
    idempotency_key: str
    case_id: int
    result: str
    note: str = ""
    lat: float | None = None
    lon: float | None = None
    captured_at: datetime | None = None
    expected_version: int | None = None


_DEADLINE_LABELS = {"on_time": "按期", "yellow": "黄灯", "overdue": "超期"}


def _deadline(view, calendar, now: datetime) -> dict[str, Any] | None:
    """The earliest open step deadline and its colour (黄灯 at 80 % of the working time), as the worklists show it."""
    best = None
    for clock in (view.state.get("deadlines") or {}).values():
        due = clock.get("due_at")
        if not due or clock.get("done_at"):
            continue
        due = datetime.fromisoformat(due) if isinstance(due, str) else due
        if best is None or due < best[0]:
            started = clock.get("started_at")
            best = (due, datetime.fromisoformat(started) if isinstance(started, str) and started else due)
    if best is None:
        return None
    status = calendar.deadline_status(best[0], now, started_at=best[1])
    return {"due_at": best[0], "status": status, "label": _DEADLINE_LABELS.get(status, status)}


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine; plenty for 'nearest' within a city)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(min(1.0, math.sqrt(a)))


def check_key(key: str) -> str:
    key = (key or "").strip()
    if not 8 <= len(key) <= 100 or any(c.isspace() for c in key):
        raise FieldError("bad_idempotency_key", "idempotency_key 须为 8–100 个字符、不含空白（手机端自动生成）", 400)
    return key


class FieldService:
    def __init__(self, cases, photos: PhotoService | None, engine: AsyncEngine) -> None:
        self.cases = cases            # case_core.service.CaseService
        self.photos = photos
        self.engine = engine

    # -- idempotency -------------------------------------------------------------------------
    async def _claim(self, key: str, username: str, kind: str, now: datetime) -> dict | None:
        """None when this key is new (now claimed); else the earlier answer."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(field_submissions).values(
                    idempotency_key=key, username=username, kind=kind, created_at=now.replace(microsecond=0)))
            return None
        except IntegrityError:
            async with self.engine.connect() as conn:
                row = (await conn.execute(select(field_submissions).where(
                    field_submissions.c.idempotency_key == key))).first()
        if row is None:                       # claimed and released meanwhile: try once more
            return await self._claim(key, username, kind, now)
        if row.username != username or row.kind != kind:
            raise FieldError("key_reused", "该 idempotency_key 已用于另一项提交", 409)
        if row.response_json is None:
            raise InProgress()
        return json.loads(row.response_json)

    async def _finish(self, key: str, case_id: int, response: dict) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(field_submissions).where(field_submissions.c.idempotency_key == key)
                               .values(case_id=case_id, response_json=json.dumps(response, ensure_ascii=False)))

    async def _release(self, key: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(field_submissions).where(field_submissions.c.idempotency_key == key))

    async def _check_photos(self, photos: list[bytes]) -> None:
        """Every photo is a real image (stored once, by hash) before anything is filed; decoding
        runs off the event loop, as PhotoService.add does."""
        if self.photos is None:
            raise FieldError("unavailable", "本进程未配置照片存储", 503)
        loop = asyncio.get_running_loop()
        for data in photos:
            await loop.run_in_executor(None, self.photos.files.put, data)

    # -- reports (上报) ------------------------------------------------------------------------
    async def report(self, user, report: FieldReport, *, photos: list[bytes], now: datetime) -> tuple[dict, bool]:
        """File an inspector's report; `(answer, replayed)` — replayed when the key was seen before."""
        key = check_key(report.idempotency_key)
        if not photos:
            raise FieldError("photo_required", "至少需要一张现场照片", 400)
        if not report.description.strip():
            raise FieldError("description_required", "请填写问题描述", 400)
        earlier = await self._claim(key, user.username, "report", now)
        if earlier is not None:
            return earlier, True
        try:
            ref = await self.cases.reference()
            if ref.geo is None:
                raise FieldError("no_grid", "尚未导入单元网格边界，无法按位置确定网格", 503)
            grid = ref.geo.cell_at(report.lon, report.lat)
            if grid is None:
                raise FieldError("outside_grid", "该位置不在任何单元网格内，请确认定位后重试", 422)
            await self._check_photos(photos)
            extra: dict[str, Any] = {"source": "field_app", "idempotency_key": key}
            if report.captured_at is not None:
                extra["captured_at"] = report.captured_at.isoformat(timespec="seconds")
            road = ref.geo.nearest_road(report.lon, report.lat)
            view = await self.cases.create_case(
                channel=CHANNEL, description=report.description.strip()[:4000], actor=user.username,
                role=user.role, now=now, category=report.category or None, grid_cell=grid,
                address=f"{road}附近" if road else "", lat=report.lat, lon=report.lon, extra=extra)
            for data in photos:
                await self.photos.add(view.id, data, stage="report", actor=user.username, now=now)
        except BaseException:
            await self._release(key)   # nothing filed: the phone may send the same key again
            raise
        answer = {"case_id": view.id, "number": view.number, "grid_cell": grid}
        await self._finish(key, view.id, answer)
        return answer, False

    # -- my tasks (核实/核查) ---------------------------------------------------------------------
    async def tasks(self, user, *, now: datetime, lat: float | None = None, lon: float | None = None
                    ) -> list[dict[str, Any]]:
        ref = await self.cases.reference()
        # Mine, and the unassigned ones in my duty grid: a 核查 of a case that skipped 核实 (an
        # inspector's own report, an urgent one) has no inspector of its own, and the desk's
        # 待核查 list shows it to every inspector — the phone would otherwise show it to none.
        duty = tuple(sorted(gid for gid, cell in ref.grid_cells.items() if cell.inspector == user.username))
        views = await self.cases.search(status=tuple(TASK_STEPS), inspector=user.username, limit=500,
                                        with_recordings=False, unassigned_in_cells=duty or None)
        out = []
        for v in views:
            step, action, _field, _stage = TASK_STEPS[v.status]
            clat, clon, located = v.lat, v.lon, "gps"
            if (clat is None or clon is None) and v.grid_cell and ref.geo is not None and ref.geo.centre(v.grid_cell):
                clon, clat = ref.geo.centre(v.grid_cell)
                located = "grid"
            elif clat is None:
                located = None
            dl = _deadline(v, ref.calendar, now)
            dist = distance_m(lat, lon, clat, clon) if lat is not None and lon is not None and clat is not None else None
            cat = ref.categories.get(v.category_kind or "", v.category_code or "") if v.category_code else None
            out.append({
                "id": v.id, "number": v.number, "status": v.status, "step": step, "action": action,
                "step_label": workflow.STEP_LABELS.get(step, step), "description": v.description,
                "address": v.address, "category_name": cat.name if cat else "", "grid_cell": v.grid_cell,
                "lat": clat, "lon": clon, "located": located, "version": v.version,
                "urgent": v.case_type == "urgent",
                "deadline": None if dl is None else {"due_at": dl["due_at"], "status": dl["status"],
                                                    "label": dl["label"]},
                "distance_m": None if dist is None else round(dist),
            })
        # Most urgent first (超期, 黄灯, 突发), then the nearest, then the earliest due.
        far = float("inf")
        out.sort(key=lambda t: (_DEADLINE_RANK.get((t["deadline"] or {}).get("status"), 3) - (0.5 if t["urgent"] else 0),
                                t["distance_m"] if t["distance_m"] is not None else far,
                                (t["deadline"] or {}).get("due_at") or datetime.max, t["id"]))
        return out

    async def submit_step(self, user, sub: StepSubmission, *, photos: list[bytes], now: datetime
                          ) -> tuple[dict, bool]:
        """核实/核查 from the phone: photos stored, then the workflow action with result and note."""
        key = check_key(sub.idempotency_key)
        earlier = await self._claim(key, user.username, "step", now)
        if earlier is not None:
            return earlier, True
        try:
            view = await self.cases.get_case(sub.case_id)
            if view.status not in TASK_STEPS:
                raise FieldError("not_a_task", "该案卷当前不在核实或核查环节", 409)
            if view.inspector and view.inspector != user.username:
                raise FieldError("not_yours", "该任务已指派给其他监督员", 403)
            step, action, result_field, stage = TASK_STEPS[view.status]
            if photos:
                await self._check_photos(photos)
            urls = [(await self.photos.add(view.id, data, stage=stage, actor=user.username, now=now)).url
                    for data in photos]
            fields: dict[str, Any] = {result_field: sub.result}
            if urls:
                fields["photos"] = urls
            comment = sub.note.strip()
            where = []
            if sub.lat is not None and sub.lon is not None:
                where.append(f"位置 {sub.lat:.6f},{sub.lon:.6f}")
            if sub.captured_at is not None:
                where.append(f"拍摄于 {sub.captured_at:%Y-%m-%d %H:%M}")
            if where:
                comment = (comment + "（" + "，".join(where) + "）").strip()
            if comment:
                fields["comment"] = comment
            await self.cases.act(view.id, action, actor=user.username, role=user.role, fields=fields, now=now,
                                 expected_version=sub.expected_version)
            after = await self.cases.get_case(view.id)
        except BaseException:
            await self._release(key)
            raise
        answer = {"case_id": after.id, "number": after.number, "status": after.status, "step": step}
        await self._finish(key, after.id, answer)
        return answer, False

    # -- positions (opt-in) ---------------------------------------------------------------------
    async def record_position(self, user, lat: float, lon: float, accuracy_m: float | None, now: datetime) -> None:
        row = {"lat": lat, "lon": lon, "accuracy_m": accuracy_m, "at": now.replace(microsecond=0)}
        async with self.engine.begin() as conn:
            done = await conn.execute(update(inspector_positions)
                                      .where(inspector_positions.c.username == user.username).values(**row))
            if done.rowcount == 0:
                await conn.execute(insert(inspector_positions).values(username=user.username, **row))

    async def positions(self, *, now: datetime, max_age_s: float) -> list[dict[str, Any]]:
        since = now - timedelta(seconds=max_age_s)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(inspector_positions).where(inspector_positions.c.at >= since)
                                       .order_by(inspector_positions.c.username))).all()
        return [dict(r._mapping) for r in rows]

    async def nearest_inspectors(self, lat: float, lon: float, *, now: datetime, max_age_s: float
                                 ) -> list[dict[str, Any]]:
        """On-duty inspectors (a position within max_age_s), nearest first, with distance_m."""
        out = [{**p, "distance_m": round(distance_m(lat, lon, p["lat"], p["lon"]))}
               for p in await self.positions(now=now, max_age_s=max_age_s)]
        return sorted(out, key=lambda p: (p["distance_m"], p["username"]))

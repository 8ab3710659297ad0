"""The inspectors' phone API on SQLite and PostgreSQL: a report with photos becomes an
`inspector` case in the cell of its position that goes straight to 立案; the same idempotency
key gives the same case (also when sent twice at once); my tasks in urgency/distance order;
a 核实 submitted from the phone moves the case on; positions for the map."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from PIL import Image

from case_core.photos import PhotoFiles, PhotoService
from tests.integration.web.city_env import DEMO, GEO_FILES, ROUTING_FILES, city_repo
from web.app import WebContext, create_app
from web.photos import PHOTOS

NOW = datetime(2026, 11, 23, 10, 0)
USERS = {"inspector1": "inspector", "inspector2": "inspector", "agent1": "agent", "dispatcher1": "dispatcher"}
CELL_A, CELL_B = "320102001001001", "320102001001002"


def _centre(gid: str) -> tuple[float, float]:
    doc = json.loads((DEMO / "grid_cells.geojson").read_text(encoding="utf-8"))
    ring = next(f for f in doc["features"] if f["properties"]["grid_id"] == gid)["geometry"]["coordinates"][0]
    return (ring[0][0] + ring[2][0]) / 2, (ring[0][1] + ring[2][1]) / 2


def jpeg(colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
async def env(db_url, tmp_path, aiohttp_client):
    repo, service = await city_repo(db_url, GEO_FILES + ROUTING_FILES, USERS, NOW)
    ts = NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    app = create_app(WebContext(repo=repo, service=service, secret=b"k" * 32, now=lambda: ts))
    app[PHOTOS] = PhotoService(PhotoFiles(tmp_path / "photos", 1024 * 1024), repo.engine)
    client = await aiohttp_client(app)
    tokens = {name: await repo.create_token(name, NOW) for name in USERS}

    class Env:
        service_ = service

        async def send(self, method, path, user="inspector1", **kw):
            resp = await client.request(method, path, headers={"Authorization": f"Bearer {tokens[user]}"}, **kw)
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp, body

        async def report(self, key, *, lat, lon, photos=1, user="inspector1", category="component:01002",
                         description="污水井盖破损", captured_at="2026-11-23T09:58:00+08:00"):
            form = aiohttp.FormData()
            for i in range(photos):
                form.add_field("photo", jpeg((200, 30 + i, 30)), filename=f"p{i}.jpg", content_type="image/jpeg")
            for k, v in (("lat", lat), ("lon", lon), ("category", category), ("description", description),
                         ("captured_at", captured_at), ("idempotency_key", key)):
                form.add_field(k, str(v))
            return await self.send("POST", "/api/field/reports", user, data=form)

    yield Env()
    await repo.close()


async def test_a_report_is_filed_once_in_the_cell_of_its_position(env):
    """201 with case_id/number/grid_cell; channel inspector, photos stored as 上报, position and
    capture time kept; the same key again → the same case, no second one; it skips 核实."""
    lon, lat = _centre(CELL_B)
    resp, body = await env.report("key-report-0001", lat=lat, lon=lon, photos=2)
    assert resp.status == 201, body
    assert body["grid_cell"] == CELL_B and body["number"] and resp.headers["Idempotent-Replayed"] == "false"
    again, same = await env.report("key-report-0001", lat=lat, lon=lon, photos=2)
    assert again.status == 201 and same == body and again.headers["Idempotent-Replayed"] == "true"
    resp2, other = await env.report("key-report-0002", lat=lat, lon=lon)
    assert other["case_id"] != body["case_id"]
    _r, case = await env.send("GET", f"/api/cases/{body['case_id']}", "agent1")
    assert case["channel"] == "inspector" and (case["lat"], case["lon"], case["grid_cell"]) == (lat, lon, CELL_B)
    assert case["category"] == {"kind": "component", "code": "01002"}
    assert "register" in case["available_actions"] or case["status"] == "accepted"
    state = await env.service_.case_state(body["case_id"])
    assert "register" in state.deadlines            # the 立案 clock runs at once: no 核实 step
    _r, photos = await env.send("GET", f"/api/cases/{body['case_id']}/photos", "agent1")
    assert [p["stage"] for p in photos] == ["report", "report"]
    _r, listed = await env.send("GET", "/api/cases?channel=inspector", "agent1")
    assert sorted(c["id"] for c in listed) == sorted([body["case_id"], other["case_id"]])
    view = await env.service_.get_case(body["case_id"])
    assert view.state["captured_at"] == "2026-11-23T09:58:00"


async def test_the_same_key_sent_twice_at_once_makes_one_case(env):
    """Two simultaneous sends of one queued report: one case; the other answer is that case or 409 (retry)."""
    lon, lat = _centre(CELL_A)
    (r1, b1), (r2, b2) = await asyncio.gather(env.report("key-race-0001", lat=lat, lon=lon),
                                              env.report("key-race-0001", lat=lat, lon=lon))
    assert sorted([r1.status, r2.status]) in ([201, 201], [201, 409])
    ok = [b for r, b in ((r1, b1), (r2, b2)) if r.status == 201]
    assert all(b == ok[0] for b in ok)
    _r, listed = await env.send("GET", "/api/cases?channel=inspector", "agent1")
    assert len(listed) == 1


async def test_bad_reports_file_nothing(env):
    """No photo, outside every cell, a non-image, an unknown category, a short key → 4xx in
    Chinese; nothing filed, and the key may be used again once the problem is fixed."""
    lon, lat = _centre(CELL_A)
    cases = [
        (dict(photos=0), 400, "照片"),
        (dict(lat=39.9, lon=116.39), 422, "不在任何单元网格内"),
        (dict(category="component:99999"), 400, "类别"),
    ]
    for change, status, words in cases:
        args = {"lat": lat, "lon": lon, **change}
        resp, body = await env.report("key-bad-00001", **args)
        assert resp.status == status and words in body["message"], body
    resp, body = await env.report("short", lat=lat, lon=lon)
    assert resp.status == 400 and "idempotency_key" in body["message"]
    form = aiohttp.FormData()
    form.add_field("photo", b"not an image", filename="x.jpg", content_type="image/jpeg")
    for k, v in (("lat", lat), ("lon", lon), ("description", "井盖"), ("idempotency_key", "key-bad-00001")):
        form.add_field(k, str(v))
    resp, body = await env.send("POST", "/api/field/reports", data=form)
    assert resp.status in (400, 415, 422) and body["message"]
    _r, listed = await env.send("GET", "/api/cases?channel=inspector", "agent1")
    assert listed == []
    resp, body = await env.report("key-bad-00001", lat=lat, lon=lon)     # fixed: the key files now
    assert resp.status == 201
    resp, body = await env.report("key-agent-0001", lat=lat, lon=lon, user="agent1")
    assert resp.status == 403


async def test_my_tasks_and_a_verify_done_from_the_phone(env):
    """Cases sent to 核实 for inspector1 are its tasks (not inspector2's), nearest first among
    equally urgent; submitting 核实 with a photo moves the case to verified, once per key."""
    svc = env.service_
    ids = {}
    for gid in (CELL_A, "320102003003003"):
        lon, lat = _centre(gid)
        view = await svc.create_case(channel="12319", description=f"路灯不亮 {gid}", actor="agent1", role="agent",
                                     now=NOW, lat=lat, lon=lon)
        await svc.act(view.id, "send_verify", actor="agent1", role="agent", fields={"inspector": "inspector1"}, now=NOW)
        ids[gid] = view.id
    near_lon, near_lat = _centre("320102003003002")           # next to the second cell
    resp, tasks = await env.send("GET", f"/api/field/tasks?lat={near_lat}&lon={near_lon}")
    assert resp.status == 200
    assert [t["id"] for t in tasks] == [ids["320102003003003"], ids[CELL_A]]
    assert tasks[0]["step"] == "verify" and tasks[0]["step_label"] == "核实"
    assert tasks[0]["distance_m"] < tasks[1]["distance_m"] and tasks[0]["deadline"]["status"] == "on_time"
    _r, theirs = await env.send("GET", "/api/field/tasks", "inspector2")
    assert theirs == []

    case_id = ids[CELL_A]
    form = aiohttp.FormData()
    form.add_field("photo", jpeg(), filename="v.jpg", content_type="image/jpeg")
    for k, v in (("result", "confirmed"), ("note", "现场确认，灯杆 3 号不亮"), ("lat", "32.0445"), ("lon", "118.7734"),
                 ("captured_at", "2026-11-23T09:59:00+08:00"), ("idempotency_key", "key-step-0001")):
        form.add_field(k, v)
    resp, body = await env.send("POST", f"/api/field/tasks/{case_id}", data=form)
    assert resp.status == 200, body
    assert body["status"] == "verified"
    form2 = aiohttp.FormData()
    for k, v in (("result", "confirmed"), ("idempotency_key", "key-step-0001")):
        form2.add_field(k, v)
    resp, again = await env.send("POST", f"/api/field/tasks/{case_id}", data=form2)
    assert resp.status == 200 and again == body and resp.headers["Idempotent-Replayed"] == "true"
    _r, case = await env.send("GET", f"/api/cases/{case_id}", "agent1")
    verify = [h for h in case["history"] if h["action"] == "verify"]
    assert len(verify) == 1 and verify[0]["fields"]["verify_result"] == "confirmed"
    assert verify[0]["fields"]["photos"][0].startswith("/api/photos/")
    assert "现场确认" in verify[0]["comment"] and "拍摄于 2026-11-23 09:59" in verify[0]["comment"]
    _r, tasks = await env.send("GET", "/api/field/tasks")
    assert [t["id"] for t in tasks] == [ids["320102003003003"]]
    form3 = aiohttp.FormData()
    for k, v in (("result", "confirmed"), ("idempotency_key", "key-step-0002")):
        form3.add_field(k, v)
    resp, body = await env.send("POST", f"/api/field/tasks/{ids['320102003003003']}", "inspector2", data=form3)
    assert resp.status == 403


async def test_a_check_with_no_inspector_of_its_own_goes_to_the_phone_of_the_cells_inspector(env):
    """An inspector's own report skips 核实, so its case has no inspector; once the department
    reports it done, the 核查 is on the phone of the inspector of its grid cell (not of the one
    who reported it from another street), who does it from there."""
    svc = env.service_
    lon, lat = _centre(CELL_A)                                  # inspector1's duty cell
    resp, body = await env.report("key-own-000001", lat=lat, lon=lon, user="inspector2")
    assert resp.status == 201, body
    case_id = body["case_id"]
    await svc.act(case_id, "register", actor="shiftlead1", role="shift_lead", now=NOW)
    view, _ = await svc.act(case_id, "dispatch", actor="dispatcher1", role="dispatcher", now=NOW)
    dept = view.department
    await svc.act(case_id, "handle", actor="dept", role="department", department=dept, now=NOW)
    view, _ = await svc.act(case_id, "report_done", actor="dept", role="department", department=dept, now=NOW,
                            fields={"result": "井盖已更换", "photos": ["a.jpg"]})
    assert (view.status, view.inspector) == ("checking", None)

    _r, tasks = await env.send("GET", "/api/field/tasks")
    assert [(t["id"], t["step"]) for t in tasks] == [(case_id, "check")]
    _r, theirs = await env.send("GET", "/api/field/tasks", "inspector2")
    assert theirs == []
    form = aiohttp.FormData()
    for k, v in (("result", "passed"), ("note", "已更换新井盖"), ("idempotency_key", "key-check-0001")):
        form.add_field(k, v)
    resp, body = await env.send("POST", f"/api/field/tasks/{case_id}", data=form)
    assert resp.status == 200, body
    assert body["status"] == "checked"


async def test_positions_show_on_duty_inspectors_nearest_first(env):
    """Inspectors post positions; a dispatcher lists them nearest to a case first; agents may not."""
    a_lon, a_lat = _centre(CELL_A)
    b_lon, b_lat = _centre("320102003003003")
    for user, lat, lon in (("inspector1", b_lat, b_lon), ("inspector2", a_lat, a_lon)):
        resp, body = await env.send("POST", "/api/field/position", user, json={"lat": lat, "lon": lon, "accuracy": 8})
        assert resp.status == 200 and body["ok"]
    resp, fc = await env.send("GET", f"/api/field/positions?lat={a_lat}&lon={a_lon}", "dispatcher1")
    assert resp.status == 200
    assert [f["id"] for f in fc["features"]] == ["inspector2", "inspector1"]
    assert fc["features"][0]["properties"]["distance_m"] < 5
    resp, _ = await env.send("GET", "/api/field/positions", "agent1")
    assert resp.status == 403
    # Sending a case to 核实: the picker offers the on-duty inspector nearest to the case first.
    view = await env.service_.create_case(channel="12319", description="井盖缺失", actor="agent1", role="agent",
                                          now=NOW, lat=b_lat, lon=b_lon)
    resp, offered = await env.send("GET", f"/api/reference/inspectors?case_id={view.id}&grid_cell={view.grid_cell}",
                                   "agent1")
    assert [(u["username"], u["on_duty"]) for u in offered] == [("inspector1", True), ("inspector2", True)]
    assert offered[0]["distance_m"] < 5 < offered[1]["distance_m"]

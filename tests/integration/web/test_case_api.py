"""The case workflow JSON API (web/case_api.py) through aiohttp's test client on SQLite."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from tests.integration.case_core.test_workflow_orm import demo_reference
from web.app import WebContext, create_app

NOW = datetime(2026, 11, 23, 10, 0)  # a Monday, local time
ROLES = {"agent1": "agent", "lead1": "shift_lead", "disp1": "dispatcher", "dept1": "department",
         "insp1": "inspector", "cmd1": "commander", "admin": "admin"}


@pytest.fixture
async def ctx(sqlite_url):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    for name, role in ROLES.items():  # department staff are bound to a department (else they see nothing)
        await repo.create_user(username=name, password="pw-123456", role=role, now=NOW,
                               department="municipal" if role == "department" else None)
    service = CaseService(repo, reference=demo_reference())
    now_ts = NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    yield WebContext(repo=repo, service=service, secret=b"k" * 32, now=lambda: now_ts)
    await repo.close()


@pytest.fixture
async def api(aiohttp_client, ctx):
    client = await aiohttp_client(create_app(ctx))
    tokens = {name: await ctx.repo.create_token(name, NOW) for name in ROLES}

    class Api:
        async def call(self, method, path, user="agent1", **kw):
            resp = await client.request(method, path, headers={"Authorization": f"Bearer {tokens[user]}"}, **kw)
            return resp.status, (await resp.json() if resp.content_type == "application/json" else await resp.text())

        async def act(self, case, action, user, fields=None, version=None):
            body = {"fields": fields or {}, "expected_version": version if version is not None else case["version"]}
            return await self.call("POST", f"/api/cases/{case['id']}/actions/{action}", user, json=body)

    return Api()


async def create(api, **body):
    status, case = await api.call("POST", "/api/cases", json={"description": "长江路污水井盖缺失",
                                                              "address": "长江路12号", **body})
    assert status == 201, case
    return case


async def test_create_returns_the_case_with_actions_for_the_callers_role(api):
    """POST /api/cases accepts a report; the detail lists history and what an agent may do next."""
    case = await create(api, category="component:01002", reporter_phone="13800000001")
    assert case["status"] == "accepted" and case["version"] == 1 and case["number"].startswith("20261123-")
    assert case["category"] == {"kind": "component", "code": "01002"}
    assert [h["action"] for h in case["history"]] == ["accept"]
    assert case["history"][0]["actor"] == "agent1"
    assert {"send_verify", "apply_void"} <= {a["action"] for a in case["available_actions"]}
    _, as_dispatcher = await api.call("GET", f"/api/cases/{case['id']}", "disp1")
    assert {a["action"] for a in as_dispatcher["available_actions"]} == {"apply_void", "note"}


async def test_whole_workflow_over_http_with_deadlines(api):
    """A case goes accept→…→close over the API, each step by its role; deadlines come from routing rules."""
    case = await create(api, category="component:01002")
    steps = [("send_verify", "agent1", {}), ("verify", "insp1", {"verify_result": "confirmed"}),
             ("register", "lead1", {}), ("dispatch", "disp1", {}), ("handle", "dept1", {}),
             ("report_done", "dept1", {"result": "已更换", "photos": ["a.jpg"]}),
             ("check", "insp1", {"check_result": "passed"}), ("close", "lead1", {"comment": "处置到位"})]
    for action, user, fields in steps:
        status, case = await api.act(case, action, user, fields)
        assert status == 200, (action, case)
        assert case["events"][0]["action"] == action
    assert case["status"] == "closed" and case["version"] == 9
    assert case["department"] == "municipal"  # suggested by the demo routing rules
    clocks = {d["step"]: d for d in case["deadlines"]}
    assert clocks["handle"]["due_at"] == "2026-11-26T10:00:00+08:00"  # 3 working days, with the offset
    assert clocks["handle"]["status"] == "done"
    assert [h["action"] for h in case["history"]][-1] == "close"


async def test_workflow_errors_map_to_http_statuses(api):
    """Wrong role 403, stale version 409, missing field 422 with the zh message, bad JSON 400, no case 404."""
    case = await create(api)
    status, body = await api.act(case, "send_verify", "disp1")
    assert status == 403 and "无权" in body["message"]
    status, body = await api.act(case, "send_verify", "agent1", version=7)
    assert status == 409 and body["current_version"] == 1
    status, body = await api.act(case, "decline", "lead1")
    assert status == 422 and body["error"] == "missing_field" and "reason" in body["message"]
    status, body = await api.act(case, "close", "lead1")
    assert status == 422 and body["error"] == "illegal_transition" and "已受理" in body["message"]
    status, body = await api.call("POST", f"/api/cases/{case['id']}/actions/send_verify", data=b"{not json")
    assert status == 400 and body["error"] == "bad_json"
    status, _ = await api.act({"id": 999, "version": 1}, "send_verify", "agent1")
    assert status == 404
    _, fresh = await api.call("GET", f"/api/cases/{case['id']}")
    assert fresh["version"] == 1 and fresh["status"] == "accepted"


async def test_search_filters_over_http(api):
    """GET /api/cases filters by status, urgent and text; an unknown status is a 400."""
    a = await create(api, description="路灯不亮", case_type="urgent")
    await create(api, description="垃圾满溢")
    _, found = await api.call("GET", "/api/cases?urgent=true")
    assert [c["id"] for c in found] == [a["id"]] and found[0]["urgent"] is True
    _, found = await api.call("GET", "/api/cases?q=垃圾&status=accepted")
    assert [c["description"] for c in found] == ["垃圾满溢"]
    status, body = await api.call("GET", "/api/cases?status=nonsense")
    assert status == 400 and "nonsense" in body["message"]


async def test_merge_through_the_action_endpoint_and_duplicates(api):
    """A second report of the same problem is suggested as a duplicate, and merging updates both cases."""
    first = await create(api, category="component:01002", grid_cell="320102001002001")
    second = await create(api, category="component:01002", grid_cell="320102001002001",
                          description="长江路污水井盖不见了")
    assert [d["id"] for d in second["duplicates"]] == [first["id"]]
    status, merged = await api.act(second, "merge", "agent1", {"merged_into": first["number"]})
    assert status == 200 and merged["status"] == "merged" and merged["merged_into"] == first["number"]
    _, target = await api.call("GET", f"/api/cases/{first['id']}")
    assert target["merged_from"] == [second["number"]] and target["history"][-1]["action"] == "absorb"


async def test_evaluation_figures_with_formulas(api):
    """GET /api/evaluation gives numerator, denominator, value and formula per indicator, plus a score."""
    case = await create(api, channel="inspector_app")
    await api.act(case, "register", "lead1")
    status, body = await api.call("GET", "/api/evaluation?start=2026-11-01&end=2026-11-24&group_by=role")
    assert status == 200, body
    groups = {g["key"]: g for g in body["groups"]}
    lead = {i["code"]: i for i in groups["shift_lead"]["indicators"]}
    assert lead["register_count"]["numerator"] == 1
    assert lead["on_time_register_rate"] == {**lead["on_time_register_rate"], "numerator": 1, "denominator": 1,
                                             "value": 1.0}
    assert lead["on_time_register_rate"]["formula_zh"].startswith("按时立案率 =")
    assert groups["shift_lead"]["composite"]["score"] == 100.0
    status, body = await api.call("GET", "/api/evaluation?start=2026-11-01")
    assert status == 400 and "end" in body["message"]


async def test_categories_list_and_search(api):
    """GET /api/categories lists the GB/T 47678.5 directory and searches it by name."""
    _, cats = await api.call("GET", "/api/categories")
    assert len(cats) > 300 and {"key", "kind", "code", "name", "class_name"} <= set(cats[0])
    # pinyin and initials, so that the phone app (/m/) can search its cached copy offline
    manhole = next(c for c in cats if c["key"] == "component:01002")
    assert (manhole["name"], manhole["pinyin"], manhole["initials"]) == ("污水井盖", "wushuijinggai", "wsjg")
    _, found = await api.call("GET", "/api/categories?q=井盖")
    assert found and all("井盖" in c["name"] or "井盖" in c["class_name"] for c in found)


async def test_case_texts_and_bodies_are_bounded_by_meaning(api):
    """A 4,001-character description, a phone that is not one and an over-long comment get 422 with
    the Chinese reason and the field; a 70 KB body gets 413 before it is parsed; nothing is stored."""
    status, body = await api.call("POST", "/api/cases", json={"description": "井" * 4001, "address": "长江路"})
    assert status == 422 and body["field"] == "description" and "不能超过4000字" in body["message"]
    status, body = await api.call("POST", "/api/cases", json={"description": "井盖", "reporter_phone": "匿名"})
    assert status == 422 and body["field"] == "reporter_phone"
    status, body = await api.call("POST", "/api/cases", json={"description": "井盖", "note": "x" * 70_000})
    assert status == 413 and body["error"] == "too_large" and "请求体过大" in body["message"]
    status, found = await api.call("GET", "/api/cases")
    assert status == 200 and found == []
    case = await create(api, description="井" * 4000, reporter_phone="025-8334 5678")
    status, body = await api.act(case, "note", "agent1", {"comment": "好" * 4001})
    assert status == 422 and body["field"] == "comment"

"""Screen-pop form actions (web/desk.py): 登记案卷 with suggestions, 直办, 关联已有案卷, 预约回拨, 识别 —
through aiohttp's test client on SQLite, with a real ACD driver and a real callback dialer on fakes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from twisted.internet.task import Clock

from callcenter import acd
from callcenter.calls.acd_driver import AcdDriver, default_config
from callcenter.calls.ports import CallInfo
from callcenter.desk_service import DeskService
from callcenter.dialplan import DialPlan
from callcenter.callbacks.dialer import FollowUpDialer
from callcenter.callbacks.scheduler import CallbackPolicy, CallbackScheduler
from case_core.adapters import migrate, orm
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.domain.calendar import WorkCalendar
from case_core.service import CaseService
from tests.integration.case_core.test_workflow_orm import demo_reference
from web.app import WebContext, create_app

NOW = datetime(2026, 11, 23, 10, 0)  # a Monday, local time, inside calling hours
TZ = ZoneInfo("Asia/Shanghai")
CALLER = "13800001111"
FETCH = {"X-Requested-With": "fetch"}


@dataclass
class Profile:
    username: str
    extension: str
    skills: dict


class FakeCall:
    """One live call as the desk's call control finds it (no agent leg here)."""

    def __init__(self, call_id: str):
        self.call_id = call_id
        self.agent = None


class FakeRouter:
    """The ACD's CallControl port and the desk's call finder; records callbacks the dialer places."""

    def __init__(self, clock):
        self.clock = clock
        self.calls: dict[str, FakeCall] = {}
        self.placed: list[tuple] = []
        self.dialplan = DialPlan()  # the default [dialplan]: what transfers to a number are checked against

    def find(self, call_id):
        return self.calls.setdefault(call_id, FakeCall(call_id))

    def deliver(self, call_id, event) -> bool:
        """The CallControl port: a call that has its own `deliver` (a test's) decides; others take every event."""
        call = self.find(call_id)
        return call.deliver(event) if hasattr(call, "deliver") else True

    def describe(self, call_id):
        call = self.calls.get(call_id)
        return call.describe() if hasattr(call, "describe") else CallInfo(call_id, CALLER, "12319")

    def place_agent_callback(self, callback_id, number, agent, on_outcome) -> bool:
        self.placed.append((callback_id, number, agent))
        return True


@pytest.fixture
async def env(sqlite_url):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    for name, role in {"agent1": "agent", "lead1": "shift_lead", "dispatcher1": "dispatcher"}.items():
        await repo.create_user(username=name, password="pw-123456", role=role, now=NOW)
    service = CaseService(repo, reference=demo_reference())
    clock = Clock()
    clock.rightNow = NOW.replace(tzinfo=TZ).timestamp()
    router = FakeRouter(clock)
    tasks: list = []

    def spawn(coro):
        tasks.append(asyncio.ensure_future(coro))

    now_dt = lambda: datetime.fromtimestamp(clock.seconds(), TZ).replace(tzinfo=None)  # noqa: E731
    driver = AcdDriver(default_config([Profile("agent1", "1001", {})]), clock=clock, tz=TZ, calls=router,
                       publish=lambda *a, **k: None, record=_noop, spawn=spawn)
    desk = DeskService(acd_driver=driver, repo=repo, router=router, now_dt=now_dt)
    dialer = FollowUpDialer(engine=repo.engine, scheduler=CallbackScheduler(CallbackPolicy(), WorkCalendar()),
                            router=router, service=service, clock=clock, now_dt=now_dt, spawn=spawn)
    ctx = WebContext(repo=repo, service=service, secret=b"k" * 32, now=clock.seconds, desk=desk, followups=dialer)
    yield ctx
    dialer.stop()
    driver.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    await repo.close()


async def _noop(_event) -> None:
    return None


@pytest.fixture
async def client(aiohttp_client, env):
    c = await aiohttp_client(create_app(env))
    resp = await c.post("/login", data={"username": "agent1", "password": "pw-123456", "next": "/desk"})
    assert resp.status == 200
    return c


async def in_wrap_up(ctx, call_id="call-1") -> None:
    """Take a call end to end so that agent1 is in wrap-up (话后处理), with the call in the calls table."""
    await ctx.repo.call_started(call_id=call_id, direction="inbound", did="12319", caller=CALLER, now=NOW)
    driver = ctx.desk.acd
    for event in (acd.AgentLoggedIn("agent1"),
                  acd.CallerJoined("report", call_id, CALLER), acd.AgentAnswered("agent1", call_id),
                  acd.CallEnded("agent1", call_id)):
        assert driver.handle(event), event
    assert ctx.desk.status("agent1")["status"] == "wrap_up"


async def post(client, path, body):
    resp = await client.post(path, json=body, headers=FETCH)
    return resp.status, await resp.json()


async def call_case_id(ctx, call_id="call-1"):
    async with ctx.repo.engine.connect() as conn:
        return (await conn.execute(select(orm.calls.c.case_id).where(orm.calls.c.call_id == call_id))).scalar_one()


async def earlier_case(ctx):
    return await ctx.service.create_case(channel="12319", description="长江路路灯不亮", actor="agent1", role="agent",
                                         now=NOW - timedelta(days=2), reporter_phone=CALLER, address="长江路12号")


# -- 登记案卷 ----------------------------------------------------------------------------------------
async def test_register_keeps_suggested_category_and_place_and_ends_wrap_up(client, env):
    """Saving the form stores category, address and grid cell, links the call and ends wrap-up."""
    await in_wrap_up(env)
    status, body = await post(client, "/api/desk/cases", {
        "call_id": "call-1", "channel": "12319", "reporter_phone": CALLER, "kind": "report",
        "description": "长江路12号门口井盖丢了", "category": "component:01002", "address": "长江路12号",
        "case_type": "urgent"})
    assert status == 201, body
    case = await env.service.get_case(body["id"])
    assert (case.number, case.category_code, case.address, case.case_type) == (
        body["number"], "01002", "长江路12号", "urgent")
    assert await call_case_id(env) == case.id
    assert env.desk.status("agent1")["status"] == "ready"


async def test_register_with_unknown_category_names_the_field(client, env):
    """A category that the directory does not know is a 422 with the Chinese reason under `category`."""
    status, body = await post(client, "/api/desk/cases", {"description": "井盖丢了", "category": "component:99999"})
    assert status == 422
    assert "未知的案件类别" in body["fields"]["category"]


# -- 直办 ---------------------------------------------------------------------------------------------
async def test_direct_answer_records_an_answered_consultation(client, env):
    """直办 creates a consultation, applies direct_answer with the typed answer and ends wrap-up."""
    await in_wrap_up(env)
    status, body = await post(client, "/api/desk/answer", {
        "call_id": "call-1", "reporter_phone": CALLER, "description": "垃圾分类投放时间是几点？",
        "answer": "每天早7点至9点、晚6点至8点"})
    assert status == 201, body
    case = await env.service.get_case(body["id"])
    assert (case.kind, case.status, body["status_label"]) == ("consultation", "direct_answered", "已直办")
    answered = [h for h in case.history if h.action == "direct_answer"]
    assert answered and answered[0].fields["answer"] == "每天早7点至9点、晚6点至8点"
    assert answered[0].actor == "agent1"
    assert env.desk.status("agent1")["status"] == "ready"


async def test_direct_answer_without_answer_is_refused_and_files_nothing(client, env):
    """An empty answer is a 422 “请填写答复内容”; no case is created and wrap-up goes on."""
    await in_wrap_up(env)
    status, body = await post(client, "/api/desk/answer", {"description": "几点收垃圾？", "answer": "  "})
    assert status == 422
    assert body["fields"] == {"answer": "请填写答复内容"}
    assert await env.repo.count_cases() == 0
    assert env.desk.status("agent1")["status"] == "wrap_up"


async def test_direct_answer_is_refused_for_a_dispatcher(aiohttp_client, env):
    """Only agents and shift leads may answer directly: a dispatcher gets a 403 in Chinese."""
    c = await aiohttp_client(create_app(env))
    await c.post("/login", data={"username": "dispatcher1", "password": "pw-123456", "next": "/desk"})
    status, body = await post(c, "/api/desk/answer", {"description": "几点收垃圾？", "answer": "早7点"})
    assert status == 403
    assert body["message"] == "只有受理员或值班长可以直办答复"


# -- 关联已有案卷 ---------------------------------------------------------------------------------------
async def test_link_stores_the_call_on_an_earlier_case(client, env):
    """Linking to the caller's earlier case points the call at it and ends wrap-up."""
    earlier = await earlier_case(env)
    await in_wrap_up(env)
    status, body = await post(client, "/api/desk/link", {"call_id": "call-1", "case_number": earlier.number})
    assert status == 200, body
    assert (body["number"], body["call_linked"]) == (earlier.number, True)
    assert earlier.number in body["message"]
    assert await call_case_id(env) == earlier.id
    assert env.desk.status("agent1")["status"] == "ready"
    assert body["history_recorded"] is True
    history = (await env.repo.get_case(earlier.id)).history
    assert history[-1].action == "note" and "再次来电" in history[-1].comment


async def test_link_accepts_a_number_typed_as_digits_only(client, env):
    """A case number keyed without the dash (as on a phone) is found."""
    earlier = await earlier_case(env)
    await env.repo.call_started(call_id="call-9", direction="inbound", did="12319", caller=CALLER, now=NOW)
    status, body = await post(client, "/api/desk/link",
                              {"call_id": "call-9", "case_number": earlier.number.replace("-", "")})
    assert status == 200, body
    assert body["id"] == earlier.id


async def test_link_to_an_unknown_case_number_is_a_404(client, env):
    """An unknown case number is a 404 with “找不到案卷” under `case_number`; the call stays unlinked."""
    await in_wrap_up(env)
    status, body = await post(client, "/api/desk/link", {"call_id": "call-1", "case_number": "20261123-9999"})
    assert status == 404
    assert body["fields"]["case_number"].startswith("找不到案卷“20261123-9999”")
    assert await call_case_id(env) is None
    assert env.desk.status("agent1")["status"] == "wrap_up"


async def test_link_without_a_number_asks_for_one(client, env):
    """An empty case number is a 422 asking the agent to choose or type one."""
    status, body = await post(client, "/api/desk/link", {"call_id": "call-1", "case_number": ""})
    assert status == 422
    assert body["fields"]["case_number"] == "请选择或输入要关联的案卷编号"


# -- 预约回拨 ----------------------------------------------------------------------------------------
async def test_schedule_callback_creates_a_scheduled_callback_for_this_agent(client, env):
    """预约回拨 stores a scheduled callback to the caller at the chosen time, for this agent; wrap-up ends."""
    earlier = await earlier_case(env)
    await in_wrap_up(env)
    status, body = await post(client, "/api/desk/callback", {
        "call_id": "call-1", "number": CALLER, "due_at": "2026-11-24T09:30", "case_number": earlier.number})
    assert status == 201, body
    [row] = await env.followups.list()
    assert (row["id"], row["kind"], row["number"], row["agent"], row["status"], row["case_number"]) == (
        body["id"], "scheduled", CALLER, "agent1", "pending", earlier.number)
    assert row["due_at"] == datetime(2026, 11, 24, 9, 30)
    assert env.desk.status("agent1")["status"] == "ready"


@pytest.mark.parametrize("due_at, expected", [
    ("明天上午", "预约时间格式不正确"),
    ("2026-11-23T09:00", "预约时间必须晚于当前时间"),
    ("2026-11-23T22:00", "预约时间不在外呼时段内"),
    ("2027-03-01T10:00", "预约时间不能超过30天以后"),
])
async def test_schedule_callback_with_a_bad_time_is_refused(client, env, due_at, expected):
    """A malformed, past, out-of-hours or too distant time is a 422 with the reason under `due_at`."""
    status, body = await post(client, "/api/desk/callback", {"number": CALLER, "due_at": due_at})
    assert status == 422
    assert body["fields"]["due_at"].startswith(expected)
    assert await env.followups.list() == []


async def test_schedule_callback_for_an_unknown_case_or_number_is_refused(client, env):
    """An unknown case number and a non-numeric phone are each named in Chinese; nothing is scheduled."""
    status, body = await post(client, "/api/desk/callback",
                              {"number": "12ab", "due_at": "2026-11-24T09:30", "case_number": "20261123-9999"})
    assert status == 422
    assert body["fields"]["number"] == "回拨号码只能是3到20位数字"
    assert body["fields"]["case_number"].startswith("找不到案卷")
    assert await env.followups.list() == []


async def test_schedule_callback_to_an_international_number_is_refused(client, env):
    """The [dialplan] refuses a callback abroad at scheduling time, with the reason under `number`."""
    status, body = await post(client, "/api/desk/callback", {"number": "0044207946000", "due_at": "2026-11-24T09:30"})
    assert status == 422
    assert "禁止外呼" in body["fields"]["number"]
    assert await env.followups.list() == []


async def test_schedule_callback_without_a_dialer_says_so(aiohttp_client, env):
    """With follow-ups disabled the desk answers 503 “回拨服务未启用”."""
    env.followups = None
    c = await aiohttp_client(create_app(env))
    await c.post("/login", data={"username": "agent1", "password": "pw-123456", "next": "/desk"})
    status, body = await post(c, "/api/desk/callback", {"number": CALLER, "due_at": "2026-11-24T09:30"})
    assert status == 503
    assert "回拨服务未启用" in body["message"]


# -- 识别 ---------------------------------------------------------------------------------------------
async def test_suggest_reads_category_place_phone_and_urgency(client):
    """识别 returns up to three categories, the address with its grid cell, the phone and the urgency."""
    status, body = await post(client, "/api/desk/suggest",
                              {"text": "长江路12号门口的井盖丢了，很危险，我电话13912345678"})
    assert status == 200, body
    assert body["category"]["name"] and "井盖" in body["category"]["label"]
    assert 1 <= len(body["candidates"]) <= 3
    assert (body["address"], body["phones"], body["urgency"]["case_type"]) == ("长江路12号", ["13912345678"], "urgent")
    assert body["grid_cell"] and len(body["grid_cell"]) == 15


async def test_suggest_without_text_asks_for_a_description(client):
    """识别 on an empty description is a 422 asking for the description first."""
    status, body = await post(client, "/api/desk/suggest", {"text": ""})
    assert status == 422
    assert body["fields"]["text"] == "请先填写问题描述，再点“识别”"


# -- page and screen pop ------------------------------------------------------------------------------
async def test_desk_page_offers_all_form_actions(client):
    """The desk page has the register, 直办, link, callback and 识别 controls and a link to the callbacks list."""
    page = await (await client.get("/desk")).text()
    for text in ("登记案卷", "btn-answer", "btn-link", "btn-callback", "btn-suggest", 'href="/callbacks"',
                 "外呼时段 08:30–12:00、13:30–20:00"):
        assert text in page


async def test_screen_pop_lists_earlier_cases_with_their_status_label(env):
    """The screen pop's earlier cases carry the Chinese status label (for the 关联 picker)."""
    earlier = await earlier_case(env)

    class Call:
        call_id, caller, did, ivr_path = "call-2", CALLER, "12319", ("1",)

    data = await env.desk.screen_pop("agent1", Call())
    assert data["earlier_cases"] == [{"id": earlier.id, "number": earlier.number, "status": "accepted",
                                      "status_label": "已受理", "description": "长江路路灯不亮",
                                      "created_at": earlier.created_at.strftime("%Y-%m-%d %H:%M")}]

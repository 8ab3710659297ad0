"""The callbacks page and its JSON twins (web/callbacks.py): list with attempts and outcomes, filters,
改期 / 取消 / 立即回拨 — aiohttp's test client on SQLite with a real FollowUpDialer and a fake router."""

from __future__ import annotations

import asyncio
import html
from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.task import Clock

from callcenter.callbacks.dialer import FollowUpDialer
from callcenter.callbacks.scheduler import CallbackPolicy, CallbackScheduler
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.domain.calendar import WorkCalendar
from case_core.service import CaseService
from tests.integration.case_core.test_workflow_orm import demo_reference
from web.app import WebContext, create_app

NOW = datetime(2026, 11, 23, 10, 0)  # a Monday, local time, inside calling hours
TZ = ZoneInfo("Asia/Shanghai")
FETCH = {"X-Requested-With": "fetch"}
USERS = {"agent1": "agent", "agent2": "agent", "boss": "supervisor", "dispatcher1": "dispatcher"}


class FakeRouter:
    """Records the agent callbacks the dialer places and keeps their outcome callbacks."""

    def __init__(self):
        self.placed: list[tuple[str, str, str]] = []
        self.outcomes: dict[str, object] = {}

    def place_agent_callback(self, callback_id, number, agent, on_outcome) -> bool:
        self.placed.append((callback_id, number, agent))
        self.outcomes[callback_id] = on_outcome
        return True


class Env:
    def __init__(self, ctx, clock, router, tasks):
        self.ctx, self.clock, self.router, self.tasks = ctx, clock, router, tasks

    @property
    def dialer(self) -> FollowUpDialer:
        return self.ctx.followups

    def set_time(self, when: datetime) -> None:
        self.clock.rightNow = when.replace(tzinfo=TZ).timestamp()

    async def settle(self) -> None:
        while self.tasks:
            await self.tasks.pop(0)


@pytest.fixture
async def env(sqlite_url):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    for name, role in USERS.items():
        await repo.create_user(username=name, password="pw-123456", role=role, now=NOW)
    service = CaseService(repo, reference=demo_reference())
    clock = Clock()
    router = FakeRouter()
    tasks: list = []
    now_dt = lambda: datetime.fromtimestamp(clock.seconds(), TZ).replace(tzinfo=None)  # noqa: E731
    dialer = FollowUpDialer(engine=repo.engine, scheduler=CallbackScheduler(CallbackPolicy(), WorkCalendar()),
                            router=router, service=service, clock=clock, now_dt=now_dt,
                            spawn=lambda coro: tasks.append(asyncio.ensure_future(coro)))
    ctx = WebContext(repo=repo, service=service, secret=b"k" * 32, now=clock.seconds, followups=dialer)
    e = Env(ctx, clock, router, tasks)
    e.set_time(NOW)
    yield e
    dialer.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    await repo.close()


async def login(aiohttp_client, env, user="agent1"):
    c = await aiohttp_client(create_app(env.ctx))
    resp = await c.post("/login", data={"username": user, "password": "pw-123456", "next": "/callbacks"},
                        allow_redirects=False)
    assert resp.status == 302
    return c


async def post(client, path, body=None):
    resp = await client.post(path, json=body or {}, headers=FETCH)
    return resp.status, await resp.json()


async def scheduled(env, number="13800001111", due=datetime(2026, 11, 24, 9, 30), agent="agent1", case_number=None):
    return await env.dialer.request(kind="scheduled", number=number, due_at=due, case_number=case_number,
                                    agent=agent)


def url(callback_id: str, action: str = "") -> str:
    return f"/api/callbacks/{quote(callback_id, safe='')}" + (f"/{action}" if action else "")


# -- list -----------------------------------------------------------------------------------------
async def test_page_lists_a_scheduled_callback_with_its_buttons(aiohttp_client, env):
    """The page shows kind, number, agent, status, due time and the 改期/取消/立即回拨 buttons."""
    cid = await scheduled(env)
    client = await login(aiohttp_client, env)
    resp = await client.get("/callbacks")
    page = html.unescape(await resp.text())
    assert resp.status == 200
    assert f'data-id="{cid}"' in page
    for text in ("预约回拨", "13800001111", "agent1", "待拨", "11-24 09:30", ">改期<", ">取消<", ">立即回拨<"):
        assert text in page, text
    # The agent by display name once there is one, not by username.
    await env.ctx.repo.update_user("agent1", display_name="李受理")
    page = html.unescape(await (await client.get("/callbacks")).text())
    assert "<td>李受理</td>" in page and "<td>agent1</td>" not in page


async def test_api_lists_callbacks_with_case_link_and_filters_by_status(aiohttp_client, env):
    """/api/callbacks returns items with the case id; ?status=cancelled leaves out pending ones."""
    case = await env.ctx.service.create_case(channel="12319", description="路灯不亮", actor="agent1", role="agent",
                                             now=NOW, reporter_phone="13800001111")
    kept = await scheduled(env, case_number=case.number)
    gone = await scheduled(env, number="13900002222")
    await env.dialer.cancel(gone)
    client = await login(aiohttp_client, env)
    resp = await client.get("/api/callbacks")
    body = await resp.json()
    assert resp.status == 200
    by_id = {c["id"]: c for c in body["callbacks"]}
    assert by_id[kept]["case_id"] == case.id and by_id[kept]["actions"] == {
        "reschedule": True, "cancel": True, "call_now": True}
    assert by_id[gone]["status_label"] == "已取消" and not any(by_id[gone]["actions"].values())
    only = await (await client.get("/api/callbacks?status=cancelled")).json()
    assert [c["id"] for c in only["callbacks"]] == [gone]


async def test_unknown_status_filter_is_a_400_in_chinese(aiohttp_client, env):
    """A status filter that does not exist is refused with a Chinese message, on the page and in JSON."""
    client = await login(aiohttp_client, env)
    resp = await client.get("/api/callbacks?status=lost")
    assert resp.status == 400
    assert (await resp.json())["message"] == "未知的回拨状态“lost”"
    page = await client.get("/callbacks?status=lost")
    assert page.status == 400 and "未知的回拨状态" in html.unescape(await page.text())


async def test_mine_filter_shows_only_my_callbacks(aiohttp_client, env):
    """?mine=1 keeps the callbacks this agent scheduled."""
    mine = await scheduled(env)
    await scheduled(env, number="13900002222", agent="agent2")
    client = await login(aiohttp_client, env)
    body = await (await client.get("/api/callbacks?mine=1")).json()
    assert [c["id"] for c in body["callbacks"]] == [mine]


# -- 改期 ------------------------------------------------------------------------------------------
async def test_reschedule_moves_the_due_time(aiohttp_client, env):
    """改期 to a valid time answers 200 and stores the new due time."""
    cid = await scheduled(env)
    client = await login(aiohttp_client, env)
    status, body = await post(client, url(cid, "reschedule"), {"due_at": "2026-11-25T14:00"})
    assert status == 200, body
    assert (body["due_at"], body["status"], body["message"]) == ("2026-11-25T14:00:00+08:00", "pending", "已改期到 2026-11-25 14:00")
    [row] = await env.dialer.list()
    assert row["due_at"] == datetime(2026, 11, 25, 14, 0)


@pytest.mark.parametrize("due_at, expected", [
    ("", "预约时间格式不正确"),
    ("2026-11-25 25:00", "预约时间格式不正确"),
    ("2026-11-22T10:00", "预约时间必须晚于当前时间"),
    ("2026-11-25T12:30", "预约时间不在外呼时段内（08:30–12:00、13:30–20:00），最近可选 2026-11-25 13:30"),
])
async def test_reschedule_to_a_bad_time_is_a_422(aiohttp_client, env, due_at, expected):
    """A malformed, past or out-of-hours time is refused under `due_at`; the callback keeps its time."""
    cid = await scheduled(env)
    client = await login(aiohttp_client, env)
    status, body = await post(client, url(cid, "reschedule"), {"due_at": due_at})
    assert status == 422
    assert body["fields"]["due_at"].startswith(expected)
    [row] = await env.dialer.list()
    assert row["due_at"] == datetime(2026, 11, 24, 9, 30)


# -- 取消 ------------------------------------------------------------------------------------------
async def test_cancel_then_cancel_again(aiohttp_client, env):
    """取消 makes the callback cancelled; a second 取消 is a 409 saying it is already cancelled."""
    cid = await scheduled(env)
    client = await login(aiohttp_client, env)
    status, body = await post(client, url(cid, "cancel"))
    assert status == 200 and body["status"] == "cancelled" and body["message"] == "已取消回拨"
    status, body = await post(client, url(cid, "cancel"))
    assert status == 409
    assert body["message"] == "该回拨当前已取消，不能执行此操作"


async def test_another_agents_callback_cannot_be_cancelled_but_a_supervisor_may(aiohttp_client, env):
    """agent2 may not cancel agent1's callback (403); the supervisor may."""
    cid = await scheduled(env)
    other = await login(aiohttp_client, env, "agent2")
    status, body = await post(other, url(cid, "cancel"))
    assert status == 403 and "agent1" in body["message"]
    boss = await login(aiohttp_client, env, "boss")
    status, body = await post(boss, url(cid, "cancel"))
    assert status == 200 and body["status"] == "cancelled"


async def test_unknown_callback_is_a_404(aiohttp_client, env):
    """An id that does not exist is a 404 “找不到该回拨”."""
    client = await login(aiohttp_client, env)
    status, body = await post(client, url("scheduled:nope", "cancel"))
    assert status == 404
    assert body["message"] == "找不到该回拨"


# -- 立即回拨 and outcomes ---------------------------------------------------------------------------
async def test_call_now_places_the_call_and_the_outcome_shows_as_an_attempt(aiohttp_client, env):
    """立即回拨 rings the agent first via the router; a no-answer outcome appears as an attempt on the page."""
    cid = await scheduled(env)
    client = await login(aiohttp_client, env)
    status, body = await post(client, url(cid, "call-now"))
    assert status == 200, body
    assert body["status"] == "dialing" and body["message"].startswith("正在回拨 13800001111")
    assert env.router.placed == [(cid, "13800001111", "agent1")]
    env.router.outcomes[cid]("no_answer")
    await env.settle()
    item = await (await client.get(url(cid))).json()
    assert [(a["number"], a["outcome"], a["outcome_label"]) for a in item["attempts"]] == [(1, "no_answer", "无人接听")]
    page = html.unescape(await (await client.get("/callbacks")).text())
    assert "10:00 无人接听" in page


async def test_call_now_outside_calling_hours_is_refused(aiohttp_client, env):
    """At 22:00 立即回拨 is a 409 naming the calling hours, and nothing is dialled."""
    cid = await scheduled(env)
    env.set_time(datetime(2026, 11, 23, 22, 0))
    client = await login(aiohttp_client, env)
    status, body = await post(client, url(cid, "call-now"))
    assert status == 409
    assert body["message"].startswith("现在不在外呼时段内（08:30–12:00、13:30–20:00），不能立即回拨")
    assert env.router.placed == []


async def test_failed_survey_result_is_shown_in_chinese(aiohttp_client, env):
    """A callback that failed after its last attempt shows 已失败 and the reason 多次未接通."""
    env.dialer.scheduler = CallbackScheduler(CallbackPolicy(max_attempts=1), WorkCalendar())
    cid = await scheduled(env)
    client = await login(aiohttp_client, env)
    await post(client, url(cid, "call-now"))
    env.router.outcomes[cid]("busy")
    await env.settle()
    item = await (await client.get(url(cid))).json()
    assert (item["status_label"], item["result_label"], item["actions"]["reschedule"]) == ("已失败", "多次未接通", True)


# -- access -------------------------------------------------------------------------------------
async def test_a_dispatcher_may_not_see_callbacks(aiohttp_client, env):
    """A dispatcher gets a 403 page and a 403 JSON answer."""
    client = await login(aiohttp_client, env, "dispatcher1")
    assert (await client.get("/callbacks")).status == 403
    resp = await client.get("/api/callbacks")
    assert resp.status == 403 and "只有受理员" in (await resp.json())["message"]


async def test_without_a_dialer_the_page_says_it_is_off(aiohttp_client, env):
    """With follow-ups disabled the page says so and the API answers 503."""
    env.ctx.followups = None
    client = await login(aiohttp_client, env)
    page = html.unescape(await (await client.get("/callbacks")).text())
    assert "回拨服务未启用" in page
    resp = await client.get("/api/callbacks")
    assert resp.status == 503


async def test_page_lists_the_next_callback_to_dial_first(aiohttp_client, env):
    """Waiting callbacks come soonest first on the page, whatever was scheduled last."""
    soon = await scheduled(env, number="13800001111", due=datetime(2026, 11, 24, 9, 30))
    env.clock.advance(60)
    later = await scheduled(env, number="13800002222", due=datetime(2026, 11, 25, 10, 0))
    client = await login(aiohttp_client, env)
    page = await (await client.get("/callbacks")).text()
    assert page.index(f'data-id="{soon}"') < page.index(f'data-id="{later}"')

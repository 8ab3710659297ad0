"""GET /api/wallboard/today (web/wallboard.py): the charts of the day from the queue log,
the [wallboard] thresholds and display names, for supervisors only."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from callcenter.acd_store import queue_events
from callcenter.config import WallboardSettings
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from callcenter.bootstrap import install_web_stores
from web.app import WebContext, create_app
from web.wallboard import WALLBOARD_SETTINGS

NOW = datetime(2026, 11, 23, 10, 7)  # local time


@pytest.fixture
async def api(db_url, aiohttp_client):
    migrate.upgrade(sync_url(db_url))
    repo = SqlRepository(make_engine(db_url))
    await repo.create_user(username="boss", password="pw-123456", role="supervisor", display_name="王班长", now=NOW)
    await repo.create_user(username="agent1", password="pw-123456", role="agent", display_name="李受理", now=NOW)
    rows = [  # yesterday's call is left out; two today at 08:05 and 09:50
        {"at": NOW - timedelta(days=1), "kind": "connect", "wait_s": 3.0, "agent": "agent1"},
        {"at": NOW.replace(hour=8, minute=5), "kind": "connect", "wait_s": 5.0, "agent": "agent1"},
        {"at": NOW.replace(hour=9, minute=50), "kind": "connect", "wait_s": 40.0, "agent": "agent1"},
        {"at": NOW.replace(hour=9, minute=52), "kind": "abandon", "wait_s": 20.0},
        {"at": NOW.replace(hour=9, minute=53), "kind": "join"},
    ]
    async with repo.engine.begin() as conn:
        for i, r in enumerate(rows):
            await conn.execute(insert(queue_events).values(queue="report", call_id=f"c{i}", **r))
    ctx = WebContext(repo=repo, service=CaseService(repo), secret=b"k" * 32,
                     now=lambda: NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp())
    app = create_app(ctx)
    app[WALLBOARD_SETTINGS] = WallboardSettings(longest_wait_red_s=45.0)
    install_web_stores(app, repo.engine)
    client = await aiohttp_client(app)
    tokens = {u: await repo.create_token(u, NOW) for u in ("boss", "agent1")}

    async def get(user):
        resp = await client.get("/api/wallboard/today", headers={"Authorization": f"Bearer {tokens[user]}"})
        return resp.status, await resp.json()

    yield get
    await repo.close()


async def test_intervals_of_today_from_the_queue_log(api):
    status, body = await api("boss")
    assert status == 200 and body["day"] == "2026-11-23" and body["interval_s"] == 900
    starts = [i["start"] for i in body["intervals"]]
    assert starts[0] == "08:00" and starts[-1] == "10:00" and len(starts) == 9
    by_start = {i["start"]: i for i in body["intervals"]}
    assert (by_start["08:00"]["offered"], by_start["08:00"]["answered"], by_start["08:00"]["service_level"]) == (1, 1, 1.0)
    late = by_start["09:45"]
    assert (late["offered"], late["answered"], late["abandoned"], late["service_level"]) == (2, 1, 1, 0.0)
    assert late["service_level_cum"] == 0.5 and by_start["10:00"]["service_level_cum"] == 0.5
    assert body["thresholds"]["longest_wait_red_s"] == 45.0 and body["thresholds"]["waiting_red"] == 6
    assert body["names"]["agent1"] == "李受理"
    assert body["answered_by_agent"] == {"agent1": 2}  # today's, not yesterday's


async def test_only_supervisors_see_it(api):
    status, body = await api("agent1")
    assert status == 403 and body["error"] == "forbidden"


class _Driver:
    """The part of the ACD driver the wallboard reads: its clock, time zone and queue log."""

    def __init__(self, now: datetime, log=()):
        from collections import deque

        from callcenter import acd

        self.tz = now.tzinfo
        self._now = now
        self.log = deque(log, maxlen=20000)
        config = acd.AcdConfig.build([acd.QueueConfig(name="report", strategy="longest_idle", members={})], [])
        self.state = acd.new_state(config, now)

    def now(self) -> datetime:
        return self._now


class _Desk:
    def __init__(self, driver):
        self.acd = driver


async def test_a_restarted_hotline_counts_the_whole_day_in_its_queue_figures(db_url, aiohttp_client):
    """After a restart the queue figures (接通, 放弃, 15秒服务水平) include the calls stored before
    it, as the charts do; a line already in memory is not counted twice."""
    from callcenter.acd.actions import QueueEventLogged
    from callcenter.acd.stats import wallboard

    tz = ZoneInfo("Asia/Shanghai")
    migrate.upgrade(sync_url(db_url))
    repo = SqlRepository(make_engine(db_url))
    rows = [
        {"at": NOW - timedelta(days=1), "kind": "connect", "wait_s": 3.0, "call_id": "old"},
        {"at": NOW.replace(hour=8, minute=5), "kind": "connect", "wait_s": 5.0, "call_id": "a"},
        {"at": NOW.replace(hour=9, minute=50), "kind": "connect", "wait_s": 40.0, "call_id": "b"},
        {"at": NOW.replace(hour=9, minute=52), "kind": "abandon", "wait_s": 20.0, "call_id": "c"},
        {"at": NOW.replace(hour=10, minute=6), "kind": "connect", "wait_s": 2.0, "call_id": "d"},
    ]
    async with repo.engine.begin() as conn:
        for r in rows:
            await conn.execute(insert(queue_events).values(queue="report", **r))
    # Call d was logged by this run (in memory) and written through the write queue (stored).
    since_start = QueueEventLogged(at=NOW.replace(hour=10, minute=6, tzinfo=tz), kind="connect", queue="report",
                                   call="d", wait_s=2.0)
    driver = _Driver(NOW.replace(tzinfo=tz), [since_start])
    ctx = WebContext(repo=repo, service=CaseService(repo), secret=b"k" * 32,
                     now=lambda: NOW.replace(tzinfo=tz).timestamp())
    ctx.desk = _Desk(driver)
    app = create_app(ctx)
    install_web_stores(app, repo.engine)
    await aiohttp_client(app)  # starting the app restores the log
    try:
        assert [(r.call, r.kind) for r in driver.log] == [("a", "connect"), ("b", "connect"), ("c", "abandon"),
                                                          ("d", "connect")]
        assert all(r.at.tzinfo is tz for r in driver.log)
        midnight = driver.now().replace(hour=0, minute=0)
        [report] = wallboard(driver.state, list(driver.log), driver.now(), midnight).queues
        assert (report.offered, report.answered, report.abandoned) == (4, 3, 1)
        assert report.service_level_15s == pytest.approx(2 / 3)
    finally:
        await repo.close()

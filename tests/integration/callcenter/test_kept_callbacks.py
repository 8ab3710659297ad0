"""Kept-place callbacks survive a stop (SQLite and PostgreSQL): stored when the caller keeps
their place, put back at that place by the next driver, marked done once, and moved to the
scheduled-callback list after `callback_max_tries` failed tries or past their deadline."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from twisted.internet.task import Clock

from callcenter import acd
from callcenter.calls.acd_driver import AcdDriver, default_config
from callcenter.acd_store import AgentProfile
from callcenter.calls.ports import CallInfo
from callcenter.desk_service import DeskService
from callcenter.callbacks.dialer import callbacks_table
from callcenter.kept_callbacks import KeptCallbackStore, kept_callbacks

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=TZ)
PROFILES = [AgentProfile("agent1", "1001", {}), AgentProfile("agent2", "1002", {})]


class FakeRouter:
    """The CallControl port: records callbacks the ACD places; live callers accept every event."""

    def __init__(self, clock):
        self.clock = clock
        self.placed: list[tuple[str, str, str]] = []
        self.delivered: list[tuple[str, object]] = []

    def deliver(self, call_id, event) -> bool:
        self.delivered.append((call_id, event))
        return True

    def describe(self, call_id):
        return CallInfo(call_id, None, "12319")

    def find(self, call_id):  # the desk's call control: no live call here
        return None

    def place_callback(self, call_id, number, agent_id, extension, queue, ring_timeout_s) -> bool:
        self.placed.append((call_id, number, agent_id))
        return True


class Hotline:
    """One run of the ACD driver over the database, as the bootstrap starts it."""

    async def settle(self):
        while pending := [t for t in self.tasks if not t.done()]:
            await asyncio.gather(*pending)

    def handle(self, event):
        assert self.driver.handle(event), event

    def advance(self, seconds):
        self.clock.advance(seconds)

    async def stop(self):
        self.driver.stopping = True
        self.driver.stop()
        await self.settle()


class _Tasks(list):
    def append_task(self, coro):
        self.append(asyncio.ensure_future(coro))


async def _noop(_event):
    return None


@pytest.fixture
def clock():
    c = Clock()
    c.rightNow = T0.timestamp()
    return c


def _hotline(engine, clock, **kw) -> Hotline:
    h = Hotline.__new__(Hotline)
    h.tasks = _Tasks()
    h.clock = clock
    h.router = FakeRouter(clock)
    h.store = KeptCallbackStore(engine, TZ)
    h.driver = AcdDriver(default_config(PROFILES, callback_offer_after_s=30), clock=clock, tz=TZ,
                         calls=h.router, publish=lambda *a, **k: None, record=_noop, spawn=h.tasks.append_task)
    h.driver.keep_places(h.store, max_tries=kw.get("max_tries", 2), retry_s=60)
    return h


async def _rows(engine, table):
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in (await conn.execute(select(table))).all()]


async def _keep_three_places(engine, clock) -> Hotline:
    """agent1 talks to c0; c1, c2, c3 queue behind and all three keep their place."""
    h = _hotline(engine, clock)
    h.handle(acd.AgentLoggedIn("agent1"))
    h.handle(acd.CallerJoined("report", "c0", "13800000000"))
    h.handle(acd.AgentAnswered("agent1", "c0"))
    for i in (1, 2, 3):
        h.advance(10)
        h.handle(acd.CallerJoined("report", f"c{i}", f"1390000000{i}"))
    h.advance(30)
    for i in (3, 1, 2):  # accepted in another order than they joined
        h.handle(acd.CallbackRequested(f"c{i}", f"1390000000{i}"))
    await h.settle()
    return h


async def test_kept_places_come_back_in_their_original_order_after_a_stop(engine, clock):
    """Three callers keep their place; the hotline stops; the next start puts them back in
    join order, and a ready agent calls the first back."""
    h = await _keep_three_places(engine, clock)
    rows = sorted(await _rows(engine, kept_callbacks), key=lambda r: r["joined_at"])
    assert [(r["call_id"], r["number"], r["queue"], r["state"], r["tries"]) for r in rows] == [
        (f"c{i}", f"1390000000{i}", "report", "pending", 0) for i in (1, 2, 3)]
    assert [r["joined_at"] for r in rows] == [(T0 + timedelta(seconds=10 * i)).replace(tzinfo=None)
                                              for i in (1, 2, 3)]
    await h.stop()

    clock.advance(120)
    h2 = _hotline(engine, clock)
    assert await h2.driver.restore_kept() == 3
    assert [e.call for e in h2.driver.state.queue_entries("report")] == ["c1", "c2", "c3"]
    assert {e.status for e in h2.driver.state.entries.values()} == {"callback"}
    # 示闲 on the desk: logging in offers the first kept place at once, and that is no error.
    desk = DeskService(acd_driver=h2.driver, repo=None, router=h2.router, now_dt=lambda: T0)
    assert desk.set_state("agent2", "ready")["status"] == "dialing"
    assert h2.router.placed == [("c1", "13900000001", "agent2")]
    await h2.stop()


async def test_answered_callback_is_done_once_and_never_restored(engine, clock):
    """Answered → `done`; a later start restores only the others; replaying the answer changes
    nothing (the row is no longer pending)."""
    h = await _keep_three_places(engine, clock)
    await h.stop()
    h2 = _hotline(engine, clock)
    await h2.driver.restore_kept()
    h2.handle(acd.AgentLoggedIn("agent2"))
    h2.handle(acd.CallbackAnswered("c1"))
    await h2.settle()
    row = await h2.store.get("c1")
    assert (row["state"], row["outcome"]) == ("done", "answered")
    assert not await h2.store.finish("c1", "done", "answered", T0)  # exactly once
    await h2.stop()

    h3 = _hotline(engine, clock)
    assert await h3.driver.restore_kept() == 2
    assert sorted(h3.driver.state.entries) == ["c2", "c3"]
    assert sorted(r["call_id"] for r in await _rows(engine, kept_callbacks) if r["state"] == "pending") == ["c2", "c3"]
    await h3.stop()


async def test_failed_tries_retry_then_move_to_the_scheduled_list_once(engine, clock):
    """A failed try waits callback_retry_s and comes back at its place; after max_tries the
    place becomes one scheduled callback (status new, the last agent), and the kept row is
    `moved` — a restart in between counts what was counted, never twice."""
    h = await _keep_three_places(engine, clock)
    h.handle(acd.CallEnded("agent1", "c0"))
    h.advance(31)  # wrap-up over: agent1 calls c1 back
    assert h.router.placed[-1] == ("c1", "13900000001", "agent1")
    h.handle(acd.CallbackFailed("c1", "busy"))
    await h.settle()
    row = await h.store.get("c1")
    assert (row["state"], row["tries"], row["last_agent"]) == ("pending", 1, "agent1")
    assert "c1" not in h.driver.state.entries  # waiting for the retry
    await h.stop()  # stops before the retry: the place must not be lost

    h2 = _hotline(engine, clock)
    await h2.driver.restore_kept()
    assert [e.call for e in h2.driver.state.queue_entries("report")] == ["c1", "c2", "c3"]
    h2.handle(acd.AgentLoggedIn("agent2"))
    assert h2.router.placed == [("c1", "13900000001", "agent2")]
    h2.handle(acd.CallbackFailed("c1", "no answer"))
    await h2.settle()
    row = await h2.store.get("c1")
    assert (row["state"], row["tries"], row["outcome"]) == ("moved", 2, "kept:c1")
    [scheduled] = await _rows(engine, callbacks_table)
    assert (scheduled["id"], scheduled["kind"], scheduled["number"], scheduled["status"], scheduled["agent"]) == (
        "kept:c1", "scheduled", "13900000001", "new", "agent2")
    assert await h2.store.failed("c1", "agent2", "busy", T0, 2) is None  # not pending any more
    h2.advance(120)  # no retry for a moved place
    assert "c1" not in h2.driver.state.entries
    await h2.stop()
    assert len(await _rows(engine, callbacks_table)) == 1


async def test_a_place_past_its_deadline_moves_to_the_scheduled_list(engine, clock):
    """Down longer than callback_expiry_s (4 h): on start the place expires at the first tick
    and becomes a scheduled callback instead of being dropped."""
    h = await _keep_three_places(engine, clock)
    await h.stop()
    clock.advance(5 * 3600)
    h2 = _hotline(engine, clock)
    await h2.driver.restore_kept()
    h2.advance(0.001)  # the timer armed at the (past) deadline
    await h2.settle()
    assert h2.driver.state.entries == {}
    states = {r["call_id"]: r["state"] for r in await _rows(engine, kept_callbacks)}
    assert states == {"c1": "moved", "c2": "moved", "c3": "moved"}
    assert sorted(r["id"] for r in await _rows(engine, callbacks_table)) == ["kept:c1", "kept:c2", "kept:c3"]
    await h2.stop()


async def test_storing_the_same_place_twice_keeps_one_row(engine):
    """`add` is idempotent on the call id."""
    store = KeptCallbackStore(engine, TZ)
    place = acd.KeptPlace(call="c9", queue="report", caller="139", number="139", joined_at=T0,
                          requested_at=T0, expires_at=T0 + timedelta(hours=4))
    assert await store.add(place, T0)
    assert not await store.add(place, T0)
    assert [p.call for p in await store.pending()] == ["c9"]
    assert (await store.pending())[0].joined_at == T0

"""The follow-up dialer on a fake clock: attempts, retry spacing, persistence across a restart."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select

from callcenter.callbacks.dialer import FollowUpDialer, callbacks_table, make_scheduler
from callcenter.config import from_mapping
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from tests.fakes import FakeReactor

START = datetime(2026, 11, 23, 10, 0)  # a Monday, inside calling hours


class FakeRouter:
    """Records placed calls; the test decides how each attempt ends."""

    def __init__(self):
        self.placed: list[dict] = []

    def place_ivr_call(self, *, number, flow_name, variables, on_outcome, on_survey=None, ring_timeout_s=None):
        self.placed.append({"number": number, "flow": flow_name, "on_outcome": on_outcome, "on_survey": on_survey})
        return object()


class Harness:
    def __init__(self, engine, settings):
        self.clock = FakeReactor()
        self.clock.advance(0)
        self.router = FakeRouter()
        self.tasks: list = []
        self.dialer = FollowUpDialer(
            engine=engine, scheduler=make_scheduler(settings), router=self.router, service=None,
            clock=self.clock, now_dt=lambda: START + timedelta(seconds=self.clock.seconds()),
            spawn=lambda coro: self.tasks.append(asyncio.ensure_future(coro)), poll_s=1.0,
        )

    async def run(self, seconds: float) -> None:
        """Advance the fake clock in small steps, letting the dialer's tasks run."""
        for _ in range(int(seconds * 10)):
            self.clock.advance(0.1)
            await asyncio.sleep(0)
            if self.tasks:
                await asyncio.gather(*self.tasks)
                self.tasks.clear()


@pytest.fixture
async def engine(sqlite_url):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    yield repo.engine
    await repo.close()


SETTINGS = from_mapping({"followup": {"delay_s": 5.0, "busy_retry_s": 60.0, "no_answer_retry_s": 120.0,
                                      "max_attempts": 3, "calling_hours": "08:00-20:00"}})


async def _request(engine, callback_id="follow_up:20261123-0001:v5"):
    async with engine.begin() as conn:
        await conn.execute(insert(callbacks_table).values(
            id=callback_id, kind="follow_up", number="13900001111", case_number="20261123-0001",
            status="new", attempts_json="[]", created_at=START, updated_at=START))


async def test_busy_then_no_answer_are_retried_at_their_spacings_then_answered(engine):
    """busy → +60 s → no answer → +120 s → answered; every attempt stored with its outcome."""
    await _request(engine)
    h = Harness(engine, SETTINGS)
    await h.dialer.start()
    await h.run(6)
    assert len(h.router.placed) == 1 and h.router.placed[0]["flow"] == "survey"
    h.router.placed[0]["on_outcome"]("busy")
    await h.run(59)
    assert len(h.router.placed) == 1  # not before the spacing
    await h.run(2)
    assert len(h.router.placed) == 2
    h.router.placed[1]["on_outcome"]("no_answer")
    await h.run(119)
    assert len(h.router.placed) == 2
    await h.run(2)
    assert len(h.router.placed) == 3
    h.router.placed[2]["on_outcome"]("answered")
    await h.run(1)
    async with engine.connect() as conn:
        row = (await conn.execute(select(callbacks_table))).one()
    assert row.status == "answered"
    assert [a["outcome"] for a in __import__("json").loads(row.attempts_json)] == ["busy", "no_answer", "answered"]
    h.dialer.stop()


async def test_an_attempt_cut_by_a_crash_counts_and_is_retried_after_restart(engine):
    """A callback left 'dialing' by a dead process is resumed: that attempt counts as failed, then it is retried."""
    await _request(engine)
    first = Harness(engine, SETTINGS)
    await first.dialer.start()
    await first.run(6)
    assert len(first.router.placed) == 1
    first.dialer.stop()  # the process dies mid-call: no outcome ever reported
    second = Harness(engine, SETTINGS)
    await second.dialer.start()
    await second.run(2)
    # Resumed with the interrupted attempt counted; the retry waits for the 'failed' spacing (default 300 s).
    assert len(second.router.placed) == 0
    cb = second.dialer.state.callbacks["follow_up:20261123-0001:v5"]
    assert [a.outcome for a in cb.attempts] == ["failed"]
    await second.run(300)
    assert len(second.router.placed) == 1
    second.dialer.stop()

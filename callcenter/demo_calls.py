"""The demo city's call history: two weeks of calls to 12319/96310 with their queue log, so
the wallboard's charts of the day, the CDR export and the queue log have figures the moment
the hotline starts (`hotline demo seed --city`).

`plan_calls` is pure (fixed seed, time as a parameter): calls arrive on weekdays between
08:30 and 17:30 (fewer at weekends), wait in one of the queues (反映问题/咨询/人工服务), and are
answered by agent1 or agent2 (most within 15 s) or abandoned. `seed_calls` stores them in
one transaction; a second run adds nothing (call IDs start with ``demo-city-``).
"""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta

from sqlalchemy import func, insert, select

PREFIX = "demo-city-"
SEED = 96310
DAYS = 14
AGENTS = (("agent1", "1001"), ("agent2", "1002"))
QUEUES = (("report", "1", 55), ("consult", "3", 30), ("general", "0", 15))


def plan_calls(now: datetime, *, days: int = DAYS, seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """Rows for the ``calls`` table and the ``queue_events`` table, all before ``now``."""
    rng = random.Random(seed)
    phones = [f"13{rng.randint(0, 9)}{rng.randint(10000000, 99999999)}" for _ in range(400)]
    calls: list[dict] = []
    events: list[dict] = []
    for back in range(days, -1, -1):
        day = (now - timedelta(days=back)).date()
        t = datetime.combine(day, time(8, 30))
        close = datetime.combine(day, time(17, 30))
        mean_gap_s = 200 if day.weekday() < 5 else 600
        n = 0
        while True:
            t += timedelta(seconds=rng.expovariate(1 / mean_gap_s))
            if t >= close or t >= now:
                break
            n += 1
            call_id = f"{PREFIX}{day:%Y%m%d}-{n:04d}"
            caller = rng.choice(phones)
            queue, digit, _w = rng.choices(QUEUES, [q[2] for q in QUEUES])[0]
            started = t.replace(microsecond=0)
            joined = started + timedelta(seconds=rng.uniform(15, 45))   # welcome and menu
            abandoned = rng.random() < 0.07
            wait = rng.uniform(12, 90) if abandoned else min(rng.expovariate(1 / 8), 110)
            left = joined + timedelta(seconds=wait)
            base = {"queue": queue, "call_id": call_id, "caller": caller, "position": 1, "detail": None,
                    "talk_s": None, "wrap_s": None}
            events.append({**base, "at": joined, "kind": "join", "agent": None, "wait_s": None})
            if abandoned:
                events.append({**base, "at": left, "kind": "abandon", "agent": None, "wait_s": round(wait, 1)})
                ended, path, reason = left, digit, "remote:BYE"
            else:
                agent, ext = rng.choice(AGENTS)
                talk = rng.uniform(50, 420)
                events.append({**base, "at": left, "kind": "connect", "agent": agent, "wait_s": round(wait, 1)})
                ended, path, reason = left + timedelta(seconds=talk), f"{digit} agent:{ext}", "remote:BYE"
            if ended >= now:
                events = [e for e in events if e["call_id"] != call_id]
                break
            calls.append({"call_id": call_id, "direction": "inbound", "did": "12319" if rng.random() < 0.8 else "96310",
                          "caller": caller, "started_at": started, "answered_at": started,
                          "ended_at": ended.replace(microsecond=0), "end_reason": reason, "ivr_path": path})
    for e in events:
        e["at"] = e["at"].replace(microsecond=0)
    return calls, events


async def seed_calls(engine, now: datetime) -> int:
    """Store the planned calls unless an earlier seed did; returns how many were added."""
    from callcenter.acd_store import queue_events
    from case_core.adapters import orm

    async with engine.begin() as conn:
        have = (await conn.execute(select(func.count()).select_from(orm.calls)
                                   .where(orm.calls.c.call_id.like(f"{PREFIX}%")))).scalar_one()
        if have:
            return 0
        calls, events = plan_calls(now)
        if calls:
            await conn.execute(insert(orm.calls), calls)
        if events:
            await conn.execute(insert(queue_events), events)
    return len(calls)

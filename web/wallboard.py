"""The wall display's data beyond the live figures of `GET /api/wallboard` (web/desk.py).

`GET /api/wallboard/today` (supervisors) →
  {"day": "YYYY-MM-DD", "interval_s": 900,
   "intervals": [{"start": "HH:MM", "offered", "answered", "abandoned", "service_level",
                  "service_level_cum"}, ...],       # from the queue log (acd_store.queue_events)
   "thresholds": {"waiting_amber", "waiting_red", "longest_wait_amber_s", ...},  # [wallboard]
   "names": {"agent1": "张三", ...},               # display names of the staff
   "answered_by_agent": {"agent1": 12, ...}}       # calls each agent answered today (queue log)

The charts start at 08:00, or earlier when the day's first call came earlier (and cover
at least the last two hours).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter

from aiohttp import web

from web.ports import QUEUE_LOG
from web.settings import WallboardSettings
from web.app import CTX, USER, api_auth, json_error

__all__ = ["WALLBOARD_SETTINGS", "INTERVAL_S", "setup"]

WALLBOARD_SETTINGS = web.AppKey("wallboard_settings", WallboardSettings)
INTERVAL_S = 900
SUPERVISOR_ROLES = ("supervisor", "shift_lead", "commander", "admin")
DAY_VIEW_START = dt.time(8, 0)


@api_auth
async def today(request: web.Request) -> web.Response:
    if request[USER].role not in SUPERVISOR_ROLES:
        return json_error(403, "forbidden", "需要班长或管理员权限")
    from web.case_api import local_now

    ctx = request.app[CTX]
    now = local_now(request)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    queue_log = request.app[QUEUE_LOG]
    records = await queue_log.events_since(midnight)
    def floor(t: dt.datetime) -> dt.datetime:
        return midnight + dt.timedelta(seconds=((t - midnight).total_seconds() // INTERVAL_S) * INTERVAL_S)

    first = min((r["at"] for r in records), default=now)
    # At least the last two hours, so that a few intervals give the day its shape.
    start = floor(max(midnight, min(midnight.replace(hour=DAY_VIEW_START.hour, minute=DAY_VIEW_START.minute),
                                    now - dt.timedelta(hours=2), first)))
    series = queue_log.day_series(records, start, now, INTERVAL_S)
    settings = request.app.get(WALLBOARD_SETTINGS) or WallboardSettings()
    names = {u.username: u.display_name or u.username for u in await ctx.repo.list_users()}
    # The agents' 接听 column counts today, whatever the process's uptime (the ACD's own
    # counter starts with the process and never resets at midnight).
    answered = Counter(r["agent"] for r in records if r["kind"] == "connect" and r["agent"] and r["at"] <= now)
    body = {"day": now.strftime("%Y-%m-%d"), "interval_s": INTERVAL_S, "intervals": [i.to_dict() for i in series],
            "thresholds": dataclasses.asdict(settings), "names": names, "answered_by_agent": dict(answered)}
    return web.json_response(body, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def restore_todays_queue_log(app: web.Application) -> None:
    """Put today's stored queue log back in the running ACD's memory, so that after a
    restart the queue figures (接通, 放弃, 放弃率, 15秒服务水平 …) count the whole day as the
    charts of `GET /api/wallboard/today` do, not only the calls since the restart."""
    ctx = app[CTX]
    desk = getattr(ctx, "desk", None)
    driver = getattr(desk, "acd", None)
    queue_log = app.get(QUEUE_LOG)
    if driver is None or queue_log is None:
        return
    now = driver.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    stored = await queue_log.logged_since(midnight.replace(tzinfo=None), driver.tz)
    # Lines logged since the start may be in memory and, through the write queue, stored too.
    held = {(r.kind, r.call, r.at) for r in driver.log}
    earlier = [r for r in stored if (r.kind, r.call, r.at) not in held]
    room = len(earlier) if driver.log.maxlen is None else max(0, driver.log.maxlen - len(driver.log))
    # extendleft on a full deque would push out the newest lines: keep the latest that fit.
    driver.log.extendleft(reversed(earlier[len(earlier) - room:] if room else []))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/wallboard/today", today)
    app.on_startup.append(restore_todays_queue_log)

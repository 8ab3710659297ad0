"""Outbound calls back to citizens (回拨 / 回访): the scheduler and its dialer.

- `scheduler.py` — the pure callback scheduler: `step(state, event, now) -> (state, actions)`
  for queue callbacks that keep their place, scheduled callbacks (预约回拨) and follow-up
  surveys (回访); calling hours, working days, retries, concurrency.
- `dialer.py` — `FollowUpDialer`, the adapter that persists the schedule (`callbacks` table),
  places the calls through the call router and reports outcomes (the web's `CallbackDialer`).

The ACD's kept-place queue callbacks are stored by `callcenter/kept_callbacks.py` (an ACD
adapter), which hands the ones it gives up to this dialer's `callbacks` table.

This package imports nothing at import time, so the pure scheduler stays import-light.
"""

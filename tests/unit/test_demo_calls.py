"""The demo city's call history (callcenter.demo_calls.plan_calls): deterministic, all in the
past, every queue outcome preceded by its join, and a day whose wallboard chart is not trivial."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from callcenter.acd.series import day_series
from callcenter.demo_calls import plan_calls

NOW = datetime(2026, 12, 7, 16, 20)  # a Monday afternoon


def test_calls_are_deterministic_past_and_consistent():
    calls, events = plan_calls(NOW)
    assert (calls, events) == plan_calls(NOW)
    assert calls and all(c["started_at"] < c["ended_at"] < NOW for c in calls)
    assert all(e["at"] < NOW for e in events)
    joins = {e["call_id"]: e["at"] for e in events if e["kind"] == "join"}
    outcomes = [e for e in events if e["kind"] != "join"]
    assert set(joins) == {c["call_id"] for c in calls} == {e["call_id"] for e in outcomes}
    assert all(joins[e["call_id"]] <= e["at"] for e in outcomes)
    assert len({c["call_id"] for c in calls}) == len(calls)


def test_today_has_a_meaningful_wallboard_chart():
    _calls, events = plan_calls(NOW)
    today = NOW.replace(hour=8, minute=0, second=0)
    series = day_series(events, today, NOW)
    offered = sum(i.offered for i in series)
    assert offered >= 50 and 0 < sum(i.abandoned for i in series) < offered * 0.2
    assert 0.5 < series[-1].service_level_cum < 1.0
    assert Counter(e["queue"] for e in events).keys() == {"report", "consult", "general"}

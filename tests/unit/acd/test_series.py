"""The wallboard's charts of the day (callcenter/acd/series.py) from a real engine run's log."""

from __future__ import annotations

import datetime as dt

import pytest

from callcenter import acd
from callcenter.acd.series import day_series

from .helpers import Run, at, config, queue


def test_intervals_count_offered_answered_abandoned_and_service_level():
    """c1 answered after 10 s in the first 60 s interval; c3 abandons and c2 is answered after
    71 s in the second: per-interval and cumulative service level follow."""
    run = Run(config(queue(members=("a1",), wrap_up_s=0), agents=1))
    run(0, acd.AgentLoggedIn("a1"))
    run(0, acd.CallerJoined("report", "c1", "1"))
    run(10, acd.AgentAnswered("a1", "c1"))
    run(11, acd.CallerJoined("report", "c2", "2"))
    run(12, acd.CallerJoined("report", "c3", "3"))
    run(65, acd.CallerAbandoned("c3"))
    run(70, acd.CallEnded("a1", "c1"))
    run(71, acd.Tick())
    run(82, acd.AgentAnswered("a1", "c2"))
    series = day_series(run.log, at(0), at(150), interval_s=60)
    assert [(i.offered, i.answered, i.abandoned) for i in series] == [(1, 1, 0), (2, 1, 1), (0, 0, 0)]
    assert [i.service_level for i in series] == [1.0, 0.0, None]
    assert [i.service_level_cum for i in series] == [1.0, 0.5, 0.5]
    assert series[1].to_dict()["start"] == at(60).strftime("%H:%M")


def test_records_as_rows_other_queues_and_other_days_are_left_out():
    day = dt.datetime(2026, 11, 23)
    rows = [{"at": day - dt.timedelta(minutes=1), "kind": "abandon", "queue": "report"},
            {"at": day + dt.timedelta(minutes=1), "kind": "connect", "queue": "report", "wait_s": 3.0},
            {"at": day + dt.timedelta(minutes=2), "kind": "connect", "queue": "consult", "wait_s": 30.0},
            {"at": day + dt.timedelta(minutes=3), "kind": "connect", "queue": "report", "wait_s": 40.0,
             "detail": "callback"},
            {"at": day + dt.timedelta(minutes=4), "kind": "join", "queue": "report"}]
    [first] = day_series(rows, day, day + dt.timedelta(minutes=10), queue="report")
    assert (first.offered, first.answered, first.abandoned, first.service_level) == (2, 2, 0, 1.0)
    assert len(day_series(rows, day, day + dt.timedelta(hours=10, minutes=5))) == 41
    with pytest.raises(ValueError):
        day_series(rows, day, day, interval_s=0)

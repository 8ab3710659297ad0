"""Wallboard figures, ETA and the queue log's CSV export."""

from __future__ import annotations

import csv
import io

import pytest

from callcenter import acd

from .helpers import Run, at, config, queue


@pytest.fixture
def day():
    """One agent, four callers: answered at 10 s and 20 s, one abandoned, one callback."""
    run = Run(config(queue(members=("a1",), wrap_up_s=10), agents=2))
    run(0, acd.AgentLoggedIn("a1"))
    run(0, acd.CallerJoined("report", "c1", "1"))
    run(10, acd.AgentAnswered("a1", "c1"))           # waited 10 s
    run(11, acd.CallerJoined("report", "c2", "2"))
    run(12, acd.CallerJoined("report", "c3", "3"))
    run(13, acd.CallerJoined("report", "c4", "4"))
    run(14, acd.CallbackRequested("c4", "4"))
    run(15, acd.CallerAbandoned("c3"))
    run(70, acd.CallEnded("a1", "c1"))                # talk 60
    run(80, acd.Tick())                               # wrap 10 → AHT 70; c2 rings
    run(82, acd.AgentAnswered("a1", "c2"))           # waited 71 s
    run(100, acd.CallEnded("a1", "c2"))              # talk 18, in wrap-up until 110
    return run


def test_queue_figures(day):
    """Answered, abandoned, rates, 15 s service level, ASA and AHT follow the glossary."""
    (q,) = acd.queue_stats(day.state, day.log, at(105))
    assert (q.answered, q.abandoned, q.offered, q.overflowed) == (2, 1, 3, 0)
    assert q.answer_rate == pytest.approx(2 / 3)
    assert q.abandon_rate == pytest.approx(1 / 3)
    assert q.service_level_15s == 0.5
    assert q.asa_s == pytest.approx((10 + 71) / 2)
    assert q.aht_s == 70.0  # c2's wrap-up has not ended: not counted yet
    assert (q.waiting, q.callbacks_waiting, q.longest_wait_s) == (0, 1, 0.0)


def test_callback_connect_counts_as_answered_but_not_in_asa(day):
    """A kept-place callback that connects is answered; its wait stays out of ASA and SL."""
    day(110, acd.Tick())                              # wrap-up ends, c4 is dialled
    day(120, acd.CallbackAnswered("c4"))
    (q,) = acd.queue_stats(day.state, day.log, at(121))
    assert q.answered == 3
    assert q.asa_s == pytest.approx((10 + 71) / 2)
    assert q.service_level_15s == 0.5
    assert q.aht_s == pytest.approx((70 + 28) / 2)


def test_since_limits_the_log(day):
    """Records before `since` are ignored (today's figures)."""
    (q,) = acd.queue_stats(day.state, day.log, at(105), since=at(16))
    assert (q.answered, q.abandoned) == (1, 0)


def test_longest_wait_counts_callers_on_the_line(day):
    """Longest wait is over callers on the line; kept places are counted apart."""
    day(101, acd.CallerJoined("report", "c5", "5"))
    (q,) = acd.queue_stats(day.state, day.log, at(131))
    assert (q.waiting, q.longest_wait_s) == (1, 30.0)


def test_wallboard_agents_by_status_and_time_in_status(day):
    """The wallboard lists each agent's status and seconds in it, and counts per status."""
    board = acd.wallboard(day.state, day.log, at(105))
    a1, a2 = board.agents
    assert (a1.status, a1.time_in_status_s, a1.calls_taken, a1.call) == ("wrap_up", 5.0, 2, "c2")
    assert (a2.status, a2.time_in_status_s) == ("logged_out", 105.0)
    assert board.agents_by_status["wrap_up"] == 1 and board.agents_by_status["logged_out"] == 1
    assert sum(board.agents_by_status.values()) == 2


def test_empty_queue_has_no_rates():
    """With nothing offered the rates are None, not zero or a division error."""
    run = Run(config(queue()))
    (q,) = acd.queue_stats(run.state, [], at(1))
    assert (q.answer_rate, q.service_level_15s, q.asa_s, q.aht_s) == (None, None, None, None)


def test_csv_export_round_trips(day):
    """The CSV has a header and one row per record, with ISO times and empty Nones."""
    text = acd.log_to_csv(day.log)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(day.log)
    assert list(rows[0]) == list(acd.stats.CSV_COLUMNS)
    connect = next(r for r in rows if r["kind"] == "connect")
    assert connect == {**connect, "at": "2025-03-03T09:00:10+08:00", "call": "c1", "agent": "a1",
                       "wait_s": "10", "talk_s": "", "queue": "report"}


def test_eta_from_recent_handle_time_and_staffed_agents():
    """ETA is position × AHT ÷ staffed agents, rounded up to minutes; None when unstaffed."""
    run = Run(config(queue(members=("a1", "a2"), default_aht_s=200)))
    assert acd.estimate_wait_s(run.state, "report", 1) is None
    run(0, acd.AgentLoggedIn("a1"))
    run(0, acd.AgentLoggedIn("a2"))
    assert acd.estimate_wait_s(run.state, "report", 3) == 300  # 3 × 200 / 2 = 300
    run(1, acd.CallerJoined("report", "c1", "1"))
    run(2, acd.AgentAnswered("a1", "c1"))
    run(32, acd.CallEnded("a1", "c1"))                 # handled in 30 s
    assert acd.estimate_wait_s(run.state, "report", 1) == 60
    assert acd.estimate_wait_s(run.state, "report", 5) == 120  # 5 × 30 / 2 = 75 s → 2 min

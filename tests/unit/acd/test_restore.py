"""Kept-place callbacks put back into their queues (after a restart) keep their place."""

from __future__ import annotations

import pytest

from callcenter import acd
from tests.unit.acd.helpers import Run, at, config, of, queue


def _place(call: str, joined: float, *, q: str = "report", priority: int = 0,
           expires: float = 4 * 3600) -> acd.KeptPlace:
    return acd.KeptPlace(call=call, queue=q, caller=f"1390000{call[-1]}", number=f"1390000{call[-1]}",
                         joined_at=at(joined), requested_at=at(joined + 30), expires_at=at(expires),
                         priority=priority)


def test_restored_callbacks_are_ordered_by_original_place_among_live_callers():
    """A restart brings kept places back in whatever order the store returns them; live
    callers who joined in between are served after earlier places and before later ones."""
    run = Run(config(queue()))
    run(100, acd.CallerJoined("report", "live1", "1381"))   # joined at 100
    run(300, acd.CallerJoined("report", "live2", "1382"))   # joined at 300
    run(400, acd.CallbacksRestored((_place("k3", 350), _place("k1", 50), _place("k2", 200))))
    order = [e.call for e in run.state.queue_entries("report")]
    assert order == ["k1", "live1", "k2", "live2", "k3"]
    assert [run.state.position(c) for c in order] == [1, 2, 3, 4, 5]
    assert {e.call: e.status for e in run.state.entries.values()} == {
        "k1": "callback", "k2": "callback", "k3": "callback", "live1": "waiting", "live2": "waiting"}
    restored = [r for r in run.log if r.kind == "callback_restored"]
    assert [(r.call, r.position) for r in restored] == [("k3", 5), ("k1", 1), ("k2", 3)]
    # A caller joining after the restore goes last.
    run(401, acd.CallerJoined("report", "live3", "1383"))
    assert [e.call for e in run.state.queue_entries("report")][-1] == "live3"


def test_first_kept_place_is_dialled_first_when_an_agent_is_ready():
    """The earliest place gets the first ready agent: PlaceCallback with the stored number."""
    run = Run(config(queue()))
    run(10, acd.CallbacksRestored((_place("k2", 5), _place("k1", 1))))
    actions = run(11, acd.AgentLoggedIn("a1"))
    assert of(actions, acd.PlaceCallback) == [acd.PlaceCallback("k1", "13900001", "a1", "report")]
    assert run.state.entries["k1"].status == "dialing"
    run(12, acd.CallbackAnswered("k1"))
    assert "k1" not in run.state.entries
    assert [r.detail for r in run.log if r.kind == "connect"] == ["callback"]


def test_restoring_a_call_already_queued_is_refused():
    """The same kept place twice would call the citizen twice: IllegalEvent, state unchanged."""
    run = Run(config(queue()))
    run(1, acd.CallbacksRestored((_place("k1", 0),)))
    before = run.state
    with pytest.raises(acd.IllegalEvent, match="already queued"):
        run(2, acd.CallbacksRestored((_place("k1", 0),)))
    assert run.state is before
    with pytest.raises(acd.IllegalEvent, match="twice"):
        acd.CallbacksRestored((_place("k2", 0), _place("k2", 0)))
    with pytest.raises(acd.IllegalEvent, match="unknown queue"):
        run(3, acd.CallbacksRestored((_place("k3", 0, q="nope"),)))


def test_priority_still_comes_before_the_original_place():
    """An urgent live caller stays ahead of an older, ordinary kept place."""
    run = Run(config(queue()))
    run(100, acd.CallerJoined("report", "urgent", "1381", priority=1))
    run(200, acd.CallbacksRestored((_place("k1", 10),)))
    assert [e.call for e in run.state.queue_entries("report")] == ["urgent", "k1"]


def test_a_place_restored_after_its_expiry_expires_on_the_next_tick():
    """A kept place whose callback deadline passed while the hotline was down is logged
    callback_expired (the driver moves it to the scheduled-callback list)."""
    run = Run(config(queue()))
    run(5000, acd.CallbacksRestored((_place("k1", 0, expires=4000),)))
    assert acd.next_deadline(run.state) <= at(5000)
    run(5000, acd.Tick())
    assert "k1" not in run.state.entries
    assert [r.kind for r in run.log][-1] == "callback_expired"

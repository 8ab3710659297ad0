"""Estimated wait for "您前面还有N位，预计等待M分钟".

With n staffed agents each freeing up every AHT seconds on average, the caller at
position p is served after about p × AHT / n. AHT is the mean of the queue's recent
handle times (talk + wrap-up), or the queue's `default_aht_s` before the first call.
Rounded up to whole minutes (at least one) so small changes do not re-announce.
"""

from __future__ import annotations

import math

from callcenter.acd.model import AcdState

__all__ = ["RECENT_HANDLE_SAMPLES", "STAFFED", "recent_aht_s", "staffed_agents",
           "estimate_wait_s", "wait_s"]

RECENT_HANDLE_SAMPLES = 20
STAFFED = ("ready", "ringing", "dialing", "on_call", "wrap_up")


def recent_aht_s(state: AcdState, queue: str) -> float:
    samples = state.recent_handle_s.get(queue, ())
    if not samples:
        return float(state.config.queues[queue].default_aht_s)
    return sum(samples) / len(samples)


def wait_s(position: int, aht_s: float, staffed: int) -> int | None:
    """The estimate itself, for a queue whose AHT and staffed count are already known (the
    engine computes those once per queue and step, not once per caller)."""
    if staffed == 0:
        return None
    minutes = math.ceil(position * aht_s / staffed / 60)
    return 60 * max(1, minutes)


def staffed_agents(state: AcdState, queue: str) -> int:
    members = state.config.queues[queue].members
    return sum(1 for a in members if state.agents[a].status in STAFFED)


def estimate_wait_s(state: AcdState, queue: str, position: int) -> int | None:
    """Seconds (a whole number of minutes) until `position` is served; None if unstaffed."""
    n = staffed_agents(state, queue)
    if n == 0:
        return None
    return wait_s(position, recent_aht_s(state, queue), n)

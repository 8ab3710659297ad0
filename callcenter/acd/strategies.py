"""Queue strategies: which free agents to ring for a caller.

Every strategy but `skills_penalty` first keeps only the lowest penalty tier among the
free candidates (as Asterisk does), then orders that tier; `skills_penalty` ranks by the
required skill's level, then penalty. Ties fall back to longest idle, then to the order
members are listed in the queue, so the choice is always deterministic.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from callcenter.acd.model import Agent, QueueConfig

__all__ = ["choose_agents", "skill_level"]

_NEVER = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)


def skill_level(agent: Agent, skill: str | None) -> int:
    return 0 if skill is None else agent.skills.get(skill, 0)


def _idle_key(agent: Agent) -> tuple[bool, _dt.datetime]:
    # Never having taken a call counts as idle the longest.
    end = agent.last_call_end
    return (end is not None, _NEVER if end is None else end)


def _member_order(queue: QueueConfig) -> dict[str, int]:
    """Member id → its place in the queue's list; kept on the (immutable) queue config, as
    it is asked for on every decision."""
    order = queue.__dict__.get("_member_order")
    if order is None:
        order = {a: i for i, a in enumerate(queue.members)}
        object.__setattr__(queue, "_member_order", order)
    return order


def choose_agents(queue: QueueConfig, candidates: Sequence[Agent], rr_last: str | None,
                  skill: str | None) -> list[Agent]:
    """The agents to ring: one, or every candidate of the first tier for `ring_all`.

    `candidates` are free members that have the required skills; `rr_last` is the agent
    this queue rang last (round-robin memory); `skill` is the skill ranked by
    `skills_penalty` (the caller's, else the queue's).
    """
    if not candidates:
        return []
    member_order = _member_order(queue)

    def penalty(a: Agent) -> int:
        return queue.members[a.id]

    if queue.strategy == "skills_penalty":
        ranked = sorted(candidates, key=lambda a: (-skill_level(a, skill), penalty(a),
                                                   _idle_key(a), member_order[a.id]))
        return ranked[:1]
    top = min(penalty(a) for a in candidates)
    tier = [a for a in candidates if penalty(a) == top]
    if queue.strategy == "ring_all":
        return sorted(tier, key=lambda a: member_order[a.id])
    if queue.strategy == "longest_idle":
        return [min(tier, key=lambda a: (_idle_key(a), member_order[a.id]))]
    if queue.strategy == "fewest_calls":
        return [min(tier, key=lambda a: (a.calls_taken, _idle_key(a), member_order[a.id]))]
    # round_robin: the first candidate after the one rung last, in member order.
    start = member_order.get(rr_last, -1) + 1 if rr_last is not None else 0
    n = len(member_order)
    return [min(tier, key=lambda a: (member_order[a.id] - start) % n)]

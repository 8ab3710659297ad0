"""Automatic call distributor: queues, agents and strategies as a pure core.

`step(state, event, now) -> (state, actions)` applies one event; `next_deadline(state)`
says when to `Tick`. The agent and queue-entry state machines are tables in `tables`
(`render_table()` draws them); strategies in `strategies`; wallboard figures and the
queue log's CSV in `stats`; the "预计等待" estimate in `eta`. No I/O and no clock here:
the driver (SIP/media, web) performs the actions and feeds back events.
"""

from callcenter.acd.actions import *  # noqa: F401,F403
from callcenter.acd.actions import __all__ as _actions
from callcenter.acd.engine import CALLBACK_RECHECK_S, next_deadline, step
from callcenter.acd.eta import estimate_wait_s
from callcenter.acd.events import *  # noqa: F401,F403
from callcenter.acd.events import __all__ as _events
from callcenter.acd.model import *  # noqa: F401,F403
from callcenter.acd.model import __all__ as _model
from callcenter.acd.stats import (
    AgentSnapshot,
    QueueStats,
    Wallboard,
    agent_snapshots,
    log_to_csv,
    queue_stats,
    wallboard,
)
from callcenter.acd.tables import AGENT_TRANSITIONS, ENTRY_TRANSITIONS, render_table

__all__ = [
    *_model, *_events, *_actions,
    "step", "next_deadline", "CALLBACK_RECHECK_S", "estimate_wait_s",
    "QueueStats", "AgentSnapshot", "Wallboard", "queue_stats", "agent_snapshots", "wallboard",
    "log_to_csv", "AGENT_TRANSITIONS", "ENTRY_TRANSITIONS", "render_table",
]

"""Cluster membership as other nodes see it (pure: time is a parameter).

A node writes its row in `cluster_nodes` every `[cluster] heartbeat_s`; the row holds the
state asked of it (`up`, or `draining` after `hotline cluster drain`). A node whose last
heartbeat is older than `down_after_s` is `down` whatever was asked: it crashed, was killed
or lost the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["ASKABLE", "NodeRow", "node_state", "describe"]

# States an operator may ask of a node; "down" is only ever observed.
ASKABLE = ("up", "draining")


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    state: str
    sip: str
    web: str
    started_at: datetime
    heartbeat_at: datetime
    active_calls: int


def node_state(asked: str, heartbeat_at: datetime, now: datetime, down_after_s: float) -> str:
    """"down" when silent longer than down_after_s, else the state asked of it."""
    if (now - heartbeat_at).total_seconds() > down_after_s:
        return "down"
    return asked if asked in ASKABLE else "up"


def describe(rows: list[NodeRow], now: datetime, down_after_s: float, *, me: str = "") -> list[dict]:
    """GET /api/cluster's node list, by node id."""
    out = []
    for r in sorted(rows, key=lambda r: r.node_id):
        out.append({
            "node_id": r.node_id,
            "state": node_state(r.state, r.heartbeat_at, now, down_after_s),
            "asked": r.state,
            "sip": r.sip,
            "web": r.web,
            "started_at": r.started_at,
            "last_heartbeat": r.heartbeat_at,
            "heartbeat_age_s": round(max(0.0, (now - r.heartbeat_at).total_seconds()), 1),
            "active_calls": r.active_calls,
            "self": r.node_id == me,
        })
    return out

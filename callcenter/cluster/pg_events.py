"""Live events across cluster nodes with PostgreSQL LISTEN/NOTIFY.

Every node's browsers are connected to that node's websocket hub (`web.app.EventHub`). A
cluster node wraps the hub's `publish`: the event goes to its own browsers as before and
is NOTIFYed on channel `hotline_events`; every other node LISTENs and hands it to its hub,
so a screen pop for agent1 reaches agent1's browser whichever node it is connected to, and
case and wallboard changes reach every supervisor's page. NOTIFY is transactional and
ordered per sender; a payload over PostgreSQL's 8,000-byte limit is not forwarded (logged).
A lost database connection is retried; events published meanwhile reach local browsers only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

log = logging.getLogger(__name__)

__all__ = ["CHANNEL", "ClusterEvents", "fan_out"]

CHANNEL = "hotline_events"
MAX_PAYLOAD = 7900


class ClusterEvents:
    def __init__(self, dsn: str, node_id: str, deliver: Callable[..., None], *, retry_s: float = 1.0):
        self.dsn = dsn
        self.node_id = node_id
        self.deliver = deliver  # the local hub's own publish(kind, data, to_user=, to_roles=)
        self.retry_s = retry_s
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=10000)
        self._task: asyncio.Task | None = None
        self._conn = None
        self.sent = 0
        self.received = 0
        self.dropped = 0

    def send(self, kind: str, data: dict | None, to_user: str | None = None,
             to_roles: tuple[str, ...] | None = None) -> None:
        payload = json.dumps({"o": self.node_id, "k": kind, "d": data or {}, "u": to_user,
                              "r": list(to_roles) if to_roles is not None else None},
                             ensure_ascii=False, default=str)
        if len(payload.encode()) > MAX_PAYLOAD:
            self.dropped += 1
            log.warning("cluster event %s not forwarded: %d bytes", kind, len(payload.encode()))
            return
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped += 1

    def _on_notify(self, conn, pid, channel, payload: str) -> None:
        try:
            ev = json.loads(payload)
        except ValueError:
            return
        if ev.get("o") == self.node_id:
            return
        self.received += 1
        roles = tuple(ev["r"]) if ev.get("r") is not None else None
        self.deliver(ev["k"], ev.get("d") or {}, to_user=ev.get("u"), to_roles=roles)

    async def _connect(self):
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        await conn.add_listener(CHANNEL, self._on_notify)
        return conn

    async def start(self) -> None:
        self._conn = await self._connect()
        self._task = asyncio.ensure_future(self._sender())

    async def _sender(self) -> None:
        while True:
            payload = await self._queue.get()
            while True:
                try:
                    if self._conn is None or self._conn.is_closed():
                        self._conn = await self._connect()
                    await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
                    self.sent += 1
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.warning("cluster events: NOTIFY failed; reconnecting", exc_info=True)
                    self._conn = None
                    await asyncio.sleep(self.retry_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()


def fan_out(hub: Any, events: ClusterEvents) -> None:
    """Make hub.publish also NOTIFY the other nodes (their LISTEN delivers to the original)."""
    local = hub.publish

    def publish(kind: str, data: dict | None, *, to_user: str | None = None,
                to_roles: tuple[str, ...] | None = None) -> None:
        local(kind, data, to_user=to_user, to_roles=to_roles)
        events.send(kind, data, to_user, to_roles)

    events.deliver = local
    hub.publish = publish

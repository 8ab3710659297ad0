"""This node in the cluster: heartbeat, drain, and the agents' phones registered at Kamailio.

- `ClusterNode` writes this node's `cluster_nodes` row every `[cluster] heartbeat_s` (SIP and
  web address, live calls) and reads back the state asked of it: `draining` makes the node
  answer OPTIONS with 503 (Kamailio's dispatcher stops sending it calls) and refuse new
  INVITEs with 503 (Kamailio fails them over), while calls already up go on to their end.
  The same loop reloads the agents' bindings from Kamailio's usrloc table.
- `KamailioBindings` is that usrloc view: which extensions have a live binding at Kamailio.
- `ClusterRegistrar` answers `bindings_for_user` with the local registrar's bindings plus,
  for a phone registered at Kamailio, one binding `sip:EXT@<proxy>` reached through the
  proxy, so the router rings it through Kamailio (which looks the contact up and relays).
- `ask_state` / `list_nodes` serve `hotline cluster drain|resume|list` and `/api/cluster`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Callable

from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.cluster.membership import ASKABLE, NodeRow, describe
from callcenter.sip.registrar import Binding
from case_core.adapters import orm

log = logging.getLogger(__name__)

__all__ = ["ClusterNode", "ClusterRegistrar", "KamailioBindings", "ask_state", "list_nodes"]


class UnknownNode(LookupError):
    pass


async def list_nodes(engine: AsyncEngine, now: datetime, down_after_s: float, *, me: str = "") -> list[dict]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(orm.cluster_nodes))).all()
    return describe([NodeRow(**r._mapping) for r in rows], now, down_after_s, me=me)


async def ask_state(engine: AsyncEngine, node_id: str, state: str) -> None:
    """Ask a node to drain or to take calls again; it acts at its next heartbeat."""
    if state not in ASKABLE:
        raise ValueError(f"state must be one of {ASKABLE}, not {state!r}")
    async with engine.begin() as conn:
        result = await conn.execute(
            update(orm.cluster_nodes).where(orm.cluster_nodes.c.node_id == node_id).values(state=state))
    if result.rowcount == 0:
        raise UnknownNode(node_id)


class KamailioBindings:
    """Extensions with a binding in Kamailio's usrloc table `location` (shared database)."""

    def __init__(self, proxy: str):
        host, _, port = proxy.rpartition(":")
        self.proxy = proxy
        self.source = (host, int(port))
        self.users: frozenset[str] = frozenset()
        self.available = False  # the table exists (Kamailio created it)

    async def refresh(self, conn) -> None:
        try:
            rows = (await conn.execute(text("SELECT DISTINCT username FROM location"))).all()
        except DBAPIError:
            # No usrloc table yet (Kamailio's schema not loaded): no phone is registered there.
            if self.available:
                log.warning("Kamailio's usrloc table `location` cannot be read; agents' phones at %s are unknown",
                            self.proxy)
            self.available = False
            self.users = frozenset()
            raise
        self.available = True
        self.users = frozenset(r[0] for r in rows)

    def bindings_for_user(self, user: str) -> list[Binding]:
        if user not in self.users:
            return []
        # Kamailio looks the contact up (received/path, forking to every phone of the user).
        return [Binding(contact=f"sip:{user}@{self.proxy}", expires_at=float("inf"), call_id="", cseq=0,
                        source=self.source)]


class ClusterRegistrar:
    """The local registrar (REGISTERs sent straight to this node) plus Kamailio's bindings."""

    def __init__(self, local, remote: KamailioBindings):
        self._local = local
        self._remote = remote

    def bindings_for_user(self, user: str, now: float) -> list[Binding]:
        return self._local.bindings_for_user(user, now) + self._remote.bindings_for_user(user)

    def __getattr__(self, name: str):
        return getattr(self._local, name)


class ClusterNode:
    """This node's row in `cluster_nodes`; see the module docstring."""

    def __init__(self, engine: AsyncEngine, *, node_id: str, heartbeat_s: float, down_after_s: float,
                 now_dt: Callable[[], datetime], sip: str = "", web: str = "",
                 active_calls: Callable[[], int] = lambda: 0, bindings: KamailioBindings | None = None):
        self.engine = engine
        self.node_id = node_id
        self.heartbeat_s = heartbeat_s
        self.down_after_s = down_after_s
        self.now_dt = now_dt
        self.sip = sip
        self.web = web
        self.active_calls = active_calls
        self.bindings = bindings
        self.state = "up"
        self.on_state: list[Callable[[str], None]] = []
        self._task: asyncio.Task | None = None
        self.beats = 0
        self.failures = 0

    @property
    def draining(self) -> bool:
        return self.state == "draining"

    async def join(self) -> None:
        """Write (or take over) this node's row; a node asked to drain before a restart stays drained."""
        now = self.now_dt()
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(orm.cluster_nodes.c.state)
                                      .where(orm.cluster_nodes.c.node_id == self.node_id))).first()
            values = dict(sip=self.sip, web=self.web, started_at=now, heartbeat_at=now, active_calls=0)
            if row is None:
                await conn.execute(orm.cluster_nodes.insert().values(node_id=self.node_id, state="up", **values))
            else:
                await conn.execute(update(orm.cluster_nodes)
                                   .where(orm.cluster_nodes.c.node_id == self.node_id).values(**values))
                self._set_state(row.state)
        if self.bindings is not None:
            await self._refresh_bindings()
        log.info("cluster node %s joined (state %s)", self.node_id, self.state)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def beat(self) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(orm.cluster_nodes).where(orm.cluster_nodes.c.node_id == self.node_id)
                .values(heartbeat_at=self.now_dt(), active_calls=self.active_calls())
                .returning(orm.cluster_nodes.c.state))
            state = result.scalar_one_or_none()
        if state is None:  # the row was deleted by hand: write it again
            await self.join()
        else:
            self._set_state(state)
        if self.bindings is not None:
            await self._refresh_bindings()
        self.beats += 1

    async def nodes(self) -> list[dict]:
        return await list_nodes(self.engine, self.now_dt(), self.down_after_s, me=self.node_id)

    async def ask(self, node_id: str, state: str) -> None:
        await ask_state(self.engine, node_id, state)
        if node_id == self.node_id:
            self._set_state(state)  # at once here; other nodes at their next heartbeat

    async def _refresh_bindings(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await self.bindings.refresh(conn)
        except DBAPIError:
            pass

    def _set_state(self, state: str) -> None:
        state = state if state in ASKABLE else "up"
        if state == self.state:
            return
        log.warning("cluster node %s: %s → %s", self.node_id, self.state, state)
        self.state = state
        for hook in self.on_state:
            hook(state)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.beat()
            except Exception:  # the database may be away for a while: keep beating
                self.failures += 1
                log.warning("cluster heartbeat of %s failed", self.node_id, exc_info=self.failures < 3)

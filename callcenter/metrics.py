"""Prometheus metrics of one hotline process (`GET /metrics`, text exposition format).

Two kinds of figures:

* Things that happen — SIP messages, RTP ticks, finished calls, screen pops, event-loop lag —
  are counted as they happen into plain dicts and small fixed-bucket histograms. The hot paths
  (one SIP datagram, one 20 ms media tick) pay a dict increment or a `bisect`, no lock and no
  prometheus_client object; nothing is counted per RTP packet.
* Things that are — active calls, queues, agents, the transcription pool, cases, the SMS
  outbox, callbacks — are read at scrape time by a custom collector from the state the
  process already keeps. The database figures come from one UNION query whose result is
  cached `db_ttl_s` seconds, so a storm of scrapes costs at most one query per period.

Each `HotlineMetrics` has its own `CollectorRegistry` (tests build several apps in one
process). The pure cores never import this module; the bootstrap wires it to them through
plain callables (`SipEndpoint.on_message`, `RtpEngine.on_lag`, `CallRouter.on_call_ended`).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import platform
import socket
import time
from datetime import datetime
from typing import Any, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from callcenter.acd.model import AGENT_STATUSES

log = logging.getLogger(__name__)

__all__ = ["HotlineMetrics", "Histogram", "sip_start_line", "call_outcome", "CONTENT_TYPE_LATEST",
           "METRIC_NAMES", "SIP_METHODS", "AGENT_STATES"]

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hotline12319")
    except PackageNotFoundError:
        return "unknown"


VERSION = _version()

# SIP methods counted by name; anything else is "other" (a peer must not grow our label set).
SIP_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE",
                         "PRACK", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"})
# Same order as callcenter.acd.model.AGENT_STATUSES (copied: importing the ACD is not needed here).
AGENT_STATES = AGENT_STATUSES  # the ACD model's own list, so the two cannot drift
CALL_OUTCOMES = ("agent", "message", "ivr", "abandoned", "callback", "unanswered", "rejected",
                 "outbound_answered", "outbound_unanswered")

# Bucket bounds in seconds.
TICK_LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
LOOP_LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SCREEN_POP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

LOOP_PROBE_S = 0.5
# A scrape waits this long for the database figures, then answers without them.
DB_TIMEOUT_S = 5.0
# callcenter.callbacks.dialer's callbacks.status values.
CALLBACK_STATES = ("new", "pending", "dialing", "answered", "failed", "cancelled")

# Every family this module exposes (README "Monitoring"; the dashboard test checks against
# the real exposition, this list documents it).
METRIC_NAMES = (
    "hotline_build_info", "hotline_active_calls", "hotline_calls_total", "hotline_queue_waiting",
    "hotline_queue_callbacks_waiting", "hotline_queue_longest_wait_seconds", "hotline_agents",
    "hotline_screen_pop_seconds", "hotline_rtp_tick_lag_seconds", "hotline_rtp_legs",
    "hotline_rtp_frames_skipped_total", "hotline_sip_messages_total", "hotline_sip_rejected_total",
    "hotline_sip_dropped_total", "hotline_sip_bans_total", "hotline_sip_banned_sources",
    "hotline_sip_connections", "hotline_sip_connections_refused_total", "hotline_cases",
    "hotline_cases_overdue", "hotline_sms_outbox", "hotline_callbacks", "hotline_callbacks_due",
    "hotline_transcription_queue_depth", "hotline_transcription_running",
    "hotline_transcription_completed_total", "hotline_transcription_paused",
    "hotline_transcription_rtf", "hotline_event_loop_lag_seconds", "hotline_metrics_db_query_seconds",
)


class Histogram:
    """Cumulative-on-export histogram with fixed bounds: `observe` is one bisect and two adds."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


def sip_start_line(data: bytes) -> tuple[str, str]:
    """(method, status) of a SIP datagram, read from its first line and CSeq without parsing:
    a request gives ("INVITE", ""), a response ("INVITE", "200") with the method from CSeq.
    Unknown or unreadable methods are "other"; keep-alive CRLFs are ("keepalive", "")."""
    if data[:7] == b"SIP/2.0":
        status = data[8:11]
        status_s = status.decode("ascii", "replace") if status.isdigit() else "other"
        at = data.find(b"\nCSeq:")
        if at < 0:
            at = data.lower().find(b"\ncseq:")
        method = "other"
        if at >= 0:
            end = data.find(b"\n", at + 6)
            parts = data[at + 6:end if end >= 0 else None].split()
            if len(parts) >= 2:
                method = parts[1].decode("ascii", "replace")
        return (method if method in SIP_METHODS else "other"), status_s
    if not data.strip():
        return "keepalive", ""
    space = data.find(b" ", 0, 16)
    method = data[:space].decode("ascii", "replace") if space > 0 else "other"
    return (method if method in SIP_METHODS else "other"), ""


def call_outcome(call) -> tuple[str, str]:
    """(direction, outcome) of a call that just ended (a `callcenter.calls.Call`)."""
    if str(call.did).startswith("outbound:"):
        return "outbound", "outbound_answered" if call.answered_at is not None else "outbound_unanswered"
    if call.answered_at is None:
        return "inbound", "unanswered"
    if call.bridged_agent is not None:
        return "inbound", "agent"
    if call.callback_requested:
        return "inbound", "callback"
    if call.queue is not None:
        return "inbound", "abandoned"
    if call.ivr_recording_ids or call.msg_rec is not None:
        return "inbound", "message"
    return "inbound", "ivr"


class HotlineMetrics:
    """The metrics of one hotline. `sources` is read at scrape time (a `Hotline`, or a test's
    stand-in with the same attributes: router, acd, rtp, sip, transcription, stt_status)."""

    content_type = CONTENT_TYPE_LATEST  # of `exposition()`: web.ports.MetricsExposition

    def __init__(self, sources: Any, *, node: str = "", engine=None, now_dt: Callable[[], datetime] | None = None,
                 db_ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.sources = sources
        self.node = node or socket.gethostname()
        self.engine = engine
        self.now_dt = now_dt or datetime.now
        self.db_ttl_s = db_ttl_s
        self.clock = clock
        self.sip_messages: dict[tuple[str, str, str], int] = {}
        self.calls: dict[tuple[str, str], int] = {}
        self.tick_lag = Histogram(TICK_LAG_BUCKETS)
        self.loop_lag = Histogram(LOOP_LAG_BUCKETS)
        self.screen_pops: dict[str, Histogram] = {}
        self._db: dict[str, Any] | None = None
        self._db_at: float | None = None
        self._db_query_s = 0.0
        self._db_lock = asyncio.Lock()
        self._loop_probe: asyncio.Task | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # -- observed as they happen -------------------------------------------------------------
    def sip_message(self, data: bytes, direction: str) -> None:
        """One SIP datagram in or out (SipEndpoint.on_message)."""
        method, status = sip_start_line(data)
        key = (direction, method, status)
        self.sip_messages[key] = self.sip_messages.get(key, 0) + 1

    def call_ended(self, call) -> None:
        """A call left the router (CallRouter.on_call_ended)."""
        key = call_outcome(call)
        self.calls[key] = self.calls.get(key, 0) + 1

    def timed_screen_pop(self, lookup: Callable):
        """Wrap the desk's screen-pop lookup (the ACD calls it as the agent's phone starts
        ringing): its duration is the time until the whole pop, history included, is out."""

        async def timed(agent: str, call):
            kind = "callback" if type(call).__name__ == "CallbackCall" else "call"
            started = self.clock()
            try:
                return await lookup(agent, call)
            finally:
                hist = self.screen_pops.get(kind)
                if hist is None:
                    hist = self.screen_pops[kind] = Histogram(SCREEN_POP_BUCKETS)
                hist.observe(self.clock() - started)

        return timed

    def start_loop_probe(self, interval_s: float = LOOP_PROBE_S) -> None:
        """Measure how late the event loop wakes a sleeper (event-loop lag)."""
        if self._loop_probe is None:
            self._loop_probe = asyncio.ensure_future(self._probe_loop(interval_s))

    async def _probe_loop(self, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(interval_s)
            self.loop_lag.observe(max(0.0, loop.time() - asked - interval_s))

    async def stop(self) -> None:
        if self._loop_probe is not None:
            self._loop_probe.cancel()
            try:
                await self._loop_probe
            except asyncio.CancelledError:
                pass
            self._loop_probe = None

    # -- scrape ----------------------------------------------------------------------------------
    async def exposition(self) -> bytes:
        """The text exposition, database figures refreshed when older than `db_ttl_s`."""
        await self.refresh_db()
        return generate_latest(self.registry)

    async def refresh_db(self) -> None:
        if self.engine is None:
            return
        async with self._db_lock:  # concurrent scrapes share one query
            if self._db_at is not None and self.clock() - self._db_at < self.db_ttl_s:
                return
            started = time.perf_counter()
            try:
                self._db = await asyncio.wait_for(db_figures(self.engine, self.now_dt()), DB_TIMEOUT_S)
            except Exception:  # a slow or failing database must not fail the scrape: drop its figures
                log.warning("metrics: database figures unavailable", exc_info=True)
                self._db = None
            self._db_query_s = time.perf_counter() - started
            self._db_at = self.clock()

    def collect(self):
        src = self.sources
        info = InfoMetricFamily("hotline_build", "The hotline's version and node (one per process).")
        info.add_metric([], {"version": VERSION, "node": self.node, "python": platform.python_version()})
        yield info
        yield from self._calls(getattr(src, "router", None))
        yield from self._acd(getattr(src, "acd", None))
        yield from self._media(getattr(src, "rtp", None))
        yield self._sip()
        yield from self._sip_defence(getattr(src, "sip", None))
        yield from self._stt(src)
        yield from self._db_families()
        yield _histogram("hotline_event_loop_lag_seconds",
                         "How late the event loop woke a 0.5 s sleeper (SIP, media and web share it).",
                         [], [([], self.loop_lag)])
        pops = HistogramMetricFamily(
            "hotline_screen_pop_seconds",
            "From an agent's phone starting to ring to the whole screen pop (history included) being sent.",
            labels=["kind"])
        for kind in ("call", "callback"):
            hist = self.screen_pops.get(kind) or Histogram(SCREEN_POP_BUCKETS)
            pops.add_metric([kind], hist.buckets(), hist.sum)
        yield pops

    def _calls(self, router):
        active = GaugeMetricFamily("hotline_active_calls", "Calls with a citizen in progress.", labels=["direction"])
        counts = {"inbound": 0, "outbound": 0}
        if router is not None:
            for call in list(router.calls.values()):
                counts["outbound" if str(call.did).startswith("outbound:") else "inbound"] += 1
            counts["outbound"] += len(router.callbacks)
        for direction, n in counts.items():
            active.add_metric([direction], n)
        yield active
        total = CounterMetricFamily("hotline_calls", "Calls ended, by direction and outcome.",
                                    labels=["direction", "outcome"])
        calls = dict(self.calls)
        if router is not None and router.rejected:
            calls[("inbound", "rejected")] = calls.get(("inbound", "rejected"), 0) + router.rejected
        for outcome in CALL_OUTCOMES:
            direction = "outbound" if outcome.startswith("outbound") else "inbound"
            total.add_metric([direction, outcome], calls.get((direction, outcome), 0))
        yield total

    def _acd(self, driver):
        waiting = GaugeMetricFamily("hotline_queue_waiting", "Callers on the line in the queue.", labels=["queue"])
        kept = GaugeMetricFamily("hotline_queue_callbacks_waiting",
                                 "Callers who hung up keeping their place (callback pending).", labels=["queue"])
        longest = GaugeMetricFamily("hotline_queue_longest_wait_seconds",
                                    "Wait of the longest-waiting caller on the line.", labels=["queue"])
        agents = GaugeMetricFamily("hotline_agents", "Agents by state.", labels=["state"])
        by_state = dict.fromkeys(AGENT_STATES, 0)
        if driver is not None:
            state, now = driver.state, driver.now()
            for name in state.config.queues:
                entries = [e for e in state.entries.values() if e.queue == name]
                on_line = [e for e in entries if e.status in ("waiting", "ringing")]
                waiting.add_metric([name], len(on_line))
                kept.add_metric([name], len(entries) - len(on_line))
                longest.add_metric([name], max(((now - e.joined_at).total_seconds() for e in on_line), default=0.0))
            for agent in state.agents.values():
                by_state[agent.status] = by_state.get(agent.status, 0) + 1
        for name, n in by_state.items():
            agents.add_metric([name], n)
        yield from (waiting, kept, longest, agents)

    def _media(self, rtp):
        yield _histogram("hotline_rtp_tick_lag_seconds",
                         "How late each 20 ms media tick fired after its due time.", [], [([], self.tick_lag)])
        legs = GaugeMetricFamily("hotline_rtp_legs", "RTP sessions open (one per call leg).")
        legs.add_metric([], len(rtp.legs) if rtp is not None else 0)
        yield legs
        skipped = CounterMetricFamily("hotline_rtp_frames_skipped",
                                      "Frames not sent because the loop stalled longer than the catch-up allows.")
        skipped.add_metric([], rtp.frames_skipped if rtp is not None else 0)
        yield skipped

    def _sip(self):
        family = CounterMetricFamily("hotline_sip_messages", "SIP datagrams in and out, by method and status "
                                     "(status empty for requests).", labels=["direction", "method", "status"])
        for (direction, method, status), n in sorted(self.sip_messages.items()):
            family.add_metric([direction, method, status], n)
        return family

    def _sip_defence(self, sip):
        """Bad input and the defence's drops and bans, read from the SIP endpoint at scrape time."""
        rejected = CounterMetricFamily("hotline_sip_rejected", "Bad SIP messages: answered with an error "
                                       "status, or dropped unanswerable (status=\"dropped\").", labels=["status"])
        dropped = CounterMetricFamily("hotline_sip_dropped", "SIP datagrams dropped unread by the defence: from a "
                                      "banned source, over the flood rate, or from a scanner.", labels=["reason"])
        bans = CounterMetricFamily("hotline_sip_bans", "SIP sources banned, by reason (flood, digest, scanner).",
                                   labels=["reason"])
        banned = GaugeMetricFamily("hotline_sip_banned_sources", "SIP sources banned now.")
        defence = getattr(sip, "defence", None)
        for status, n in sorted((getattr(sip, "rejected", None) or {}).items()):
            rejected.add_metric([status], n)
        for reason, n in sorted((defence.dropped if defence is not None else {}).items()):
            dropped.add_metric([reason], n)
        for reason in ("flood", "digest", "scanner"):
            bans.add_metric([reason], (getattr(sip, "bans", None) or {}).get(reason, 0))
        banned.add_metric([], defence.banned_count() if defence is not None else 0)
        yield from (rejected, dropped, bans, banned)
        yield from self._sip_streams(sip)

    def _sip_streams(self, sip):
        """SIP over TCP/TLS: connections open now and refused at accept, by transport."""
        open_now = GaugeMetricFamily("hotline_sip_connections", "SIP connections (TCP, TLS) open now.",
                                     labels=["transport"])
        refused = CounterMetricFamily("hotline_sip_connections_refused", "SIP connections refused at accept: over "
                                      "stream_max_per_source from one IP (per_source), over stream_max_connections "
                                      "(total), or from a banned or flooding source (defence).",
                                      labels=["transport", "reason"])
        counts = {"tcp": 0, "tls": 0}
        for conn in list((getattr(sip, "streams", None) or {}).values()):
            name = conn.factory.transport_name.lower()
            counts[name] = counts.get(name, 0) + 1
        for transport, n in sorted(counts.items()):
            open_now.add_metric([transport], n)
        seen = dict(getattr(sip, "streams_refused", None) or {})
        for transport in ("tcp", "tls"):
            for reason in ("per_source", "total", "defence"):
                seen.setdefault((transport, reason), 0)
        for (transport, reason), n in sorted(seen.items()):
            refused.add_metric([transport, reason], n)
        yield from (open_now, refused)

    def _stt(self, src):
        stats: dict = {}
        status = getattr(src, "stt_status", None)
        if callable(status):
            try:
                stats = status() or {}
            except Exception:
                log.warning("metrics: stt status failed", exc_info=True)
        for name, key, doc, kind in (
            ("hotline_transcription_queue_depth", "queued", "Recordings waiting for transcription.", "gauge"),
            ("hotline_transcription_running", "running", "Transcriptions running now.", "gauge"),
            ("hotline_transcription_completed", "completed", "Transcriptions finished since start.", "counter"),
            ("hotline_transcription_paused", "paused", "1 while batch transcription yields to calls.", "gauge"),
        ):
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc)
            family.add_metric([], float(stats.get(key) or 0))
            yield family

    def _db_families(self):
        from callcenter.notify.outbox import STATUSES as SMS_STATES
        from case_core.domain.workflow import STATUS_LABELS

        db = self._db or {}
        # Every known status has a series (0 when none), so a count that drops to 0 shows as 0.
        cases = GaugeMetricFamily("hotline_cases", "Cases by workflow status.", labels=["status"])
        for status, n in sorted({**dict.fromkeys(STATUS_LABELS, 0), **db.get("case", {})}.items()):
            cases.add_metric([status], n)
        yield cases
        overdue = GaugeMetricFamily("hotline_cases_overdue", "Open cases whose current step is past its deadline (超期).")
        overdue.add_metric([], db.get("overdue", 0))
        yield overdue
        sms = GaugeMetricFamily("hotline_sms_outbox", "SMS outbox messages by state.", labels=["state"])
        for state, n in sorted({**dict.fromkeys(SMS_STATES, 0), **db.get("sms", {})}.items()):
            sms.add_metric([state], n)
        yield sms
        callbacks = GaugeMetricFamily("hotline_callbacks", "Callbacks and follow-up calls by status.",
                                      labels=["status"])
        for status, n in sorted({**dict.fromkeys(CALLBACK_STATES, 0), **db.get("callback", {})}.items()):
            callbacks.add_metric([status], n)
        yield callbacks
        due = GaugeMetricFamily("hotline_callbacks_due", "Callbacks waiting whose time has come.")
        due.add_metric([], db.get("callback_due", 0))
        yield due
        rtf = GaugeMetricFamily("hotline_transcription_rtf",
                                "Real-time factor (processing ÷ audio time) of the last 20 transcriptions.")
        if db.get("rtf") is not None:
            rtf.add_metric([], db["rtf"])
        yield rtf
        query = GaugeMetricFamily("hotline_metrics_db_query_seconds",
                                  "How long the last (cached) database query for these metrics took.")
        query.add_metric([], self._db_query_s)
        yield query


def _histogram(name: str, doc: str, labels: list[str], series) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, hist in series:
        family.add_metric(values, hist.buckets(), hist.sum)
    return family


async def db_figures(engine, now: datetime) -> dict[str, Any]:
    """Cases by status, overdue cases, SMS by state, callbacks by status and due, recent RTF:
    one UNION ALL statement, so one round trip and one snapshot."""
    from sqlalchemy import Float, cast, func, literal, null, select, union_all

    from callcenter.callbacks.dialer import callbacks_table as cb
    from callcenter.notify.outbox import sms_outbox as sms
    from callcenter.stt.store import transcript_jobs as jobs
    from case_core.adapters.orm import cases

    recent = (select(jobs.c.rtf).where(jobs.c.status == "done", jobs.c.rtf.is_not(None))
              .order_by(jobs.c.finished_at.desc()).limit(20).subquery())
    n = func.count()
    none = cast(null(), Float)  # PostgreSQL wants the column's type in every branch
    query = union_all(
        select(literal("case"), cases.c.status, n, none).group_by(cases.c.status),
        select(literal("overdue"), literal(""), n, none).select_from(cases).where(cases.c.due_at < now),
        select(literal("sms"), sms.c.status, n, none).group_by(sms.c.status),
        select(literal("callback"), cb.c.status, n, none).group_by(cb.c.status),
        select(literal("callback_due"), literal(""), n, none).select_from(cb)
        .where(cb.c.status.in_(("new", "pending")), cb.c.due_at <= now),
        select(literal("rtf"), literal(""), func.count(recent.c.rtf), cast(func.avg(recent.c.rtf), Float)),
    )
    out: dict[str, Any] = {"case": {}, "sms": {}, "callback": {}, "overdue": 0, "callback_due": 0, "rtf": None}
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    for kind, key, count, value in rows:
        if kind in ("case", "sms", "callback"):
            out[kind][str(key)] = int(count)
        elif kind == "rtf":
            out["rtf"] = float(value) if count else None
        else:
            out[kind] = int(count)
    return out

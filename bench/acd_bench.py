"""Queue decisions per second of the pure ACD core (callcenter.acd), against a naive ACD.

Workload, per strategy: 50 agents (penalties 0-2, skill "report" at levels 1-3, all
ready), 200 callers in the system at all times (every 10th urgent). After the first 200
CallerJoined, every cycle is: the agent rung first answers (AgentAnswered), the agent on
a call longest hangs up (CallEnded; no wrap-up, so it is ready again and the ACD rings the
next caller), a new caller joins (CallerJoined). Every event is one `step` = one queue
decision; a fake clock advances --dt-ms per event.

Implementations, in the same run, interleaved, best of --repeat:
- `core`: `acd.step` with the strategy alone (queue config: members, strategy, skill).
- `core_driver`: the same plus `acd.next_deadline` after every step, as the hotline's
  driver (callcenter/acd_driver.py) does.
- `core_hotline_config`: `step` + `next_deadline` with the hotline's queue settings
  (acd_driver.default_config: position announcements every 30 s, max wait 300 s, callback
  offer at 30 s, leave when empty) - what the server runs.
- `naive`: a mutable ACD that, on every decision, re-sorts the waiting callers and all 50
  agents by the strategy's key (busy ones included) and takes the first free one(s).
Every implementation must ring the same agents for the same callers in the same order
(`same_decisions`), so they do the same work.

Server scenario (`server_config_150_waiting`): the server's own queue settings
(callcenter.acd_driver.default_config: 3 queues, longest idle, 30 s wrap-up, announcements,
callback offers, max wait, leave when empty), 50 agents all busy and ~150 callers waiting;
calls end, wrap-ups close, agents answer, callers join and abandon, and the driver's timer
ticks whenever `next_deadline` is due. Each `step` + `next_deadline` is timed alone
(median, p90 in µs), for the current engine and for `baseline`, a verbatim copy of the
engine before the per-step indexing work (at the end of this file), interleaved in the
same run; both must produce the same actions and deadlines for every event.

    .venv/bin/python bench/acd_bench.py [--cycles 1000] [--repeat 2]
    .venv/bin/python bench/acd_bench.py --strategies ""      # server scenario only

Prints one JSON document on stdout, a summary on stderr. Not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callcenter import acd  # noqa: E402

AGENTS = 50
CALLERS = 200
SKILL = "report"
QUEUE = "report"
T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def agent_configs(n: int) -> list[acd.AgentConfig]:
    return [acd.AgentConfig(id=f"agent{i}", extension=str(1000 + i), skills={SKILL: 1 + i % 3})
            for i in range(1, n + 1)]


def queue_config(strategy: str, agents: list[acd.AgentConfig], hotline: bool) -> acd.QueueConfig:
    members = {a.id: int(a.extension) % 3 for a in agents}  # penalties 0..2
    if not hotline:
        return acd.QueueConfig(name=QUEUE, strategy=strategy, members=members, skill=SKILL)
    # as callcenter.acd_driver.default_config, with wrap-up off so CallEnded frees the agent
    return acd.QueueConfig(name=QUEUE, strategy=strategy, members=members, skill=SKILL,
                           max_wait_s=300, overflow=acd.OverflowTarget("voicemail"),
                           join_empty=False, leave_when_empty=True, wrap_up_s=0,
                           ring_timeout_s=20, announce_interval_s=30, callback_offer_after_s=30)


# ------------------------------------------------------------------------- implementations


class Core:
    """The pure core; `apply` returns the rings (agent, call) and stops (agent, call)."""

    def __init__(self, strategy: str, n_agents: int, *, hotline: bool = False,
                 deadline: bool = False):
        agents = agent_configs(n_agents)
        config = acd.AcdConfig.build([queue_config(strategy, agents, hotline)], agents)
        self.state = acd.new_state(config, T0)
        self.deadline = deadline
        for a in agents:
            self.apply(acd.AgentLoggedIn(a.id), T0)  # logged in = ready

    def apply(self, event, now):
        self.state, actions = acd.step(self.state, event, now)
        if self.deadline:
            acd.next_deadline(self.state)
        rings, stops = [], []
        for a in actions:
            if type(a) is acd.RingAgent:
                rings.append((a.agent, a.call))
            elif type(a) is acd.StopRinging:
                stops.append((a.agent, a.call))
        return rings, stops


_NEVER = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


class Naive:
    """A straightforward mutable ACD with the core's strategy semantics: every decision
    re-sorts the waiting callers, then all agents by the strategy's key."""

    def __init__(self, strategy: str, n_agents: int):
        self.strategy = strategy
        self.agents = {}
        for i, a in enumerate(agent_configs(n_agents)):
            self.agents[a.id] = {"id": a.id, "order": i, "penalty": int(a.extension) % 3,
                                 "level": a.skills[SKILL], "status": "ready", "calls": 0,
                                 "last_end": None, "call": None}
        self.waiting: list[dict] = []
        self.ringing: dict[str, list[str]] = {}  # call -> agents ringing
        self.rr_last: str | None = None
        self.seq = 0

    @staticmethod
    def _idle(a):
        return (a["last_end"] is not None, _NEVER if a["last_end"] is None else a["last_end"])

    def _key(self, a):
        s = self.strategy
        if s == "skills_penalty":
            return (-a["level"], a["penalty"], self._idle(a), a["order"])
        if s == "longest_idle":
            return (a["penalty"], self._idle(a), a["order"])
        if s == "fewest_calls":
            return (a["penalty"], a["calls"], self._idle(a), a["order"])
        if s == "round_robin":
            start = self.agents[self.rr_last]["order"] + 1 if self.rr_last else 0
            return (a["penalty"], (a["order"] - start) % len(self.agents))
        return (a["penalty"], a["order"])  # ring_all

    def _dispatch(self, now):
        rings = []
        while True:
            self.waiting.sort(key=lambda c: (-c["priority"], c["seq"]))
            if not self.waiting:
                return rings
            ranked = sorted(self.agents.values(), key=self._key)
            free = [a for a in ranked if a["status"] == "ready"]
            if not free:
                return rings
            caller = self.waiting.pop(0)
            if self.strategy == "ring_all":
                chosen = [a for a in free if a["penalty"] == free[0]["penalty"]]
            else:
                chosen = free[:1]
            self.rr_last = chosen[-1]["id"]
            for a in chosen:
                a["status"], a["call"] = "ringing", caller["call"]
                rings.append((a["id"], caller["call"]))
            self.ringing[caller["call"]] = [a["id"] for a in chosen]

    def apply(self, event, now):
        stops = []
        if type(event) is acd.CallerJoined:
            self.seq += 1
            self.waiting.append({"call": event.call, "priority": event.priority, "seq": self.seq})
        elif type(event) is acd.AgentAnswered:
            a = self.agents[event.agent]
            a["status"], a["calls"] = "on_call", a["calls"] + 1
            for other in self.ringing.pop(event.call):
                if other != event.agent:
                    self.agents[other]["status"], self.agents[other]["call"] = "ready", None
                    stops.append((other, event.call))
        elif type(event) is acd.CallEnded:
            a = self.agents[event.agent]
            a["status"], a["call"], a["last_end"] = "ready", None, now
        return self._dispatch(now), stops


# ------------------------------------------------------------------------- workload


def run(impl, cycles: int, callers: int, dt_ms: float) -> tuple[float, int, list]:
    """Drive impl through the workload; returns (seconds, events, ring decisions)."""
    step_dt = dt.timedelta(milliseconds=dt_ms)
    now = T0
    ringing: deque = deque()  # (agent, call) in ring order
    on_call: deque = deque()
    decisions: list = []
    n_joined = 0
    events = 0

    def feed(event):
        nonlocal now, events
        now += step_dt
        events += 1
        rings, stops = impl.apply(event, now)
        ringing.extend(rings)
        decisions.extend(rings)
        for s in stops:
            ringing.remove(s)

    def join():
        nonlocal n_joined
        n_joined += 1
        feed(acd.CallerJoined(QUEUE, f"c{n_joined}", f"1380000{n_joined:04d}",
                              priority=1 if n_joined % 10 == 0 else 0))

    gc.collect()
    t = time.perf_counter()
    for _ in range(callers):
        join()
    for _ in range(cycles):
        agent, call = ringing.popleft()
        feed(acd.AgentAnswered(agent, call))
        on_call.append((agent, call))
        agent, call = on_call.popleft()
        feed(acd.CallEnded(agent, call))
        join()
    return time.perf_counter() - t, events, decisions


# ------------------------------------------------------------------------- server scenario


def load_baseline():
    """The baseline engine as a module (`step`, `next_deadline`), from the copies below."""
    import types

    mods = {}
    for name, src in (("tables", _BASELINE_TABLES), ("strategies", _BASELINE_STRATEGIES),
                      ("eta", _BASELINE_ETA), ("engine", _BASELINE_ENGINE)):
        for dep in mods:
            src = src.replace(f"callcenter.acd.{dep} ", f"acd_baseline_{dep} ")
        mod = types.ModuleType(f"acd_baseline_{name}")
        sys.modules[mod.__name__] = mod
        exec(compile(src, f"<baseline {name}.py>", "exec"), mod.__dict__)
        mods[name] = mod
    return mods["engine"]


def server_config(n_agents: int) -> acd.AcdConfig:
    """What the server runs: callcenter.acd_driver.default_config (3 queues, everyone in each)."""
    from types import SimpleNamespace

    from callcenter.acd_driver import default_config

    profiles = [SimpleNamespace(username=a.id, extension=a.extension, skills=a.skills, role="agent")
                for a in agent_configs(n_agents)]
    return default_config(profiles)


class ServerWorkload:
    """A plateau: every agent busy (ringing, talking or in 30 s wrap-up), ~`waiting` callers
    waiting in the server's three queues. One cycle: the longest call ends (wrap-up), the
    longest wrap-up is closed once more than 5 agents are in it (the agent is rung for the
    next caller), the agent rung answers, a new caller joins; every 7th cycle a waiting
    caller abandons (and one more joins). Before every event the driver's timer fires
    (`Tick`) while `next_deadline` is due, as acd_driver does. The clock advances
    `dt_s` per event, so callers wait long enough for callback offers and re-announcements.
    """

    QUEUES = ("report", "report", "report", "report", "report", "report", "report",
              "consult", "consult", "general")

    def __init__(self, engine, n_agents: int, waiting: int, dt_s: float):
        self.engine = engine
        self.dt = dt.timedelta(seconds=dt_s)
        self.state = acd.new_state(server_config(n_agents), T0)
        self.now = T0
        self.joined = 0
        self.deadline = None
        self.times: list[int] = []  # ns per handled event (step + next_deadline)
        self.trace: list = []  # (actions, deadline) per event
        self.timed = False
        self.ticks = 0
        for a in self.state.config.agents:
            self.feed(acd.AgentLoggedIn(a))
        for _ in range(n_agents + waiting):
            self.join()
            self.answer()

    def answer(self) -> None:
        for agent in self.by_status("ringing"):
            self.feed(acd.AgentAnswered(agent.id, agent.call.call))

    def by_status(self, status: str) -> list:
        return sorted((a for a in self.state.agents.values() if a.status == status),
                      key=lambda a: (a.since, a.id))

    def handle(self, event, now) -> None:
        t = time.perf_counter_ns()
        self.state, actions = self.engine.step(self.state, event, now)
        self.deadline = self.engine.next_deadline(self.state)
        t = time.perf_counter_ns() - t
        if self.timed:
            self.times.append(t)
        self.trace.append((actions, self.deadline))

    def feed(self, event) -> None:
        self.now += self.dt
        while self.deadline is not None and self.deadline <= self.now:
            self.ticks += 1
            self.handle(acd.Tick(), max(self.deadline, self.state.now))
        self.handle(event, self.now)

    def join(self) -> None:
        self.joined += 1
        n = self.joined
        self.feed(acd.CallerJoined(self.QUEUES[n % len(self.QUEUES)], f"c{n}",
                                   f"1380000{n:04d}", priority=1 if n % 10 == 0 else 0))

    def cycle(self, i: int) -> None:
        on_call = self.by_status("on_call")
        if on_call:
            self.feed(acd.CallEnded(on_call[0].id, on_call[0].call.call))
        wrap = self.by_status("wrap_up")
        if len(wrap) > 5:
            self.feed(acd.WrapUpDone(wrap[0].id))
        self.answer()
        self.join()
        if i % 7 == 0:
            waiting = sorted((e for e in self.state.entries.values() if e.status == "waiting"),
                             key=lambda e: e.seq)
            if waiting:
                self.feed(acd.CallerAbandoned(waiting[len(waiting) // 2].call))
                self.join()


def run_server(engine, args):
    w = ServerWorkload(engine, args.agents, args.server_waiting, args.server_dt_s)
    for i in range(args.server_warmup):
        w.cycle(i)
    waiting = []
    gc.collect()
    w.timed = True
    for i in range(args.server_warmup, args.server_warmup + args.server_cycles):
        w.cycle(i)
        waiting.append(sum(1 for e in w.state.entries.values() if e.status == "waiting"))
    return w, waiting


def server_scenario(args) -> dict:
    """Baseline (copy of the engine before this work) against the current engine, same events."""
    engines = {"baseline": load_baseline(), "current": acd}
    times: dict[str, list[int]] = {name: [] for name in engines}
    traces: dict[str, list] = {}
    info = {}
    for _ in range(args.repeat):
        for name, engine in engines.items():  # interleaved
            w, waiting = run_server(engine, args)
            times[name] += w.times
            traces[name] = w.trace
            info = {"events_timed": len(w.times), "ticks": w.ticks,
                    "waiting_median": statistics.median(waiting),
                    "waiting_min": min(waiting), "waiting_max": max(waiting)}
    out: dict = {"params": {"agents": args.agents, "waiting": args.server_waiting,
                            "dt_s": args.server_dt_s, "cycles": args.server_cycles,
                            "config": "callcenter.acd_driver.default_config"}, **info}
    for name, ts in times.items():
        ts = sorted(ts)
        out[name] = {"median_us": round(ts[len(ts) // 2] / 1000, 1),
                     "p90_us": round(ts[int(len(ts) * 0.9)] / 1000, 1),
                     "max_us": round(ts[-1] / 1000, 1),
                     "mean_us": round(sum(ts) / len(ts) / 1000, 1)}
    out["same_actions_and_deadlines"] = traces["baseline"] == traces["current"]
    out["speedup_median"] = round(out["baseline"]["median_us"] / out["current"]["median_us"], 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=AGENTS)
    ap.add_argument("--callers", type=int, default=CALLERS)
    ap.add_argument("--cycles", type=int, default=1000, help="answer/end/join cycles per run")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dt-ms", type=float, default=10.0, help="fake clock advance per event")
    ap.add_argument("--strategies", default=",".join(acd.STRATEGIES),
                    help="strategies of the throughput workload ('' to skip it)")
    ap.add_argument("--server-waiting", type=int, default=150,
                    help="server scenario: callers waiting (0 to skip the scenario)")
    ap.add_argument("--server-cycles", type=int, default=400, help="server scenario: timed cycles")
    ap.add_argument("--server-warmup", type=int, default=200,
                    help="server scenario: untimed cycles first (callers reach callback offers)")
    ap.add_argument("--server-dt-s", type=float, default=0.25,
                    help="server scenario: fake clock advance per event")
    args = ap.parse_args(argv)
    impls = {
        "core": lambda s: Core(s, args.agents),
        "core_driver": lambda s: Core(s, args.agents, deadline=True),
        "core_hotline_config": lambda s: Core(s, args.agents, hotline=True, deadline=True),
        "naive": lambda s: Naive(s, args.agents),
    }
    doc = {"machine": {"python": platform.python_version(), "cores": os.cpu_count(),
                       "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
           "params": {"agents": args.agents, "callers": args.callers, "cycles": args.cycles,
                      "repeat": args.repeat, "dt_ms": args.dt_ms,
                      "events_per_run": args.callers + 3 * args.cycles,
                      "unit": "events (= queue decisions: one acd.step each) per CPU second "
                              "(process time; wall_events_per_s beside it), best of repeat"},
           "strategies": {}}
    if args.server_waiting > 0:
        server = doc["server_config_150_waiting" if args.server_waiting == 150
                     else f"server_config_{args.server_waiting}_waiting"] = server_scenario(args)
        print(f"server config, {args.agents} agents, ~{server['waiting_median']} waiting: "
              f"step+next_deadline median {server['baseline']['median_us']} us (baseline) -> "
              f"{server['current']['median_us']} us (current), p90 {server['baseline']['p90_us']}"
              f" -> {server['current']['p90_us']} us; same actions and deadlines: "
              f"{server['same_actions_and_deadlines']}", file=sys.stderr, flush=True)
    for strategy in [s for s in args.strategies.split(",") if s]:
        best: dict[str, dict] = {}
        ring_seqs: dict[str, list] = {}
        for _ in range(args.repeat):
            for name, make in impls.items():  # interleaved: same conditions for all
                impl = make(strategy)
                c0 = time.process_time()
                secs, events, decisions = run(impl, args.cycles, args.callers, args.dt_ms)
                cpu = time.process_time() - c0
                ring_seqs[name] = decisions
                # CPU time, not wall time: the machine is shared, and the core is single-threaded
                r = {"events_per_s": round(events / cpu), "cycles_per_s": round(args.cycles / cpu),
                     "us_per_event": round(1e6 * cpu / events, 1),
                     "wall_events_per_s": round(events / secs), "ring_decisions": len(decisions)}
                if name not in best or r["events_per_s"] > best[name]["events_per_s"]:
                    best[name] = r
        ref = ring_seqs["core"]
        best["same_decisions"] = all(seq == ref for seq in ring_seqs.values())
        best["core_over_naive"] = round(best["core"]["events_per_s"] / best["naive"]["events_per_s"], 2)
        best["hotline_config_over_naive"] = round(
            best["core_hotline_config"]["events_per_s"] / best["naive"]["events_per_s"], 2)
        doc["strategies"][strategy] = best
        print(f"{strategy:15} core {best['core']['events_per_s']:>7}/s  driver "
              f"{best['core_driver']['events_per_s']:>7}/s  hotline config "
              f"{best['core_hotline_config']['events_per_s']:>7}/s  naive "
              f"{best['naive']['events_per_s']:>7}/s  same decisions: {best['same_decisions']}",
              file=sys.stderr, flush=True)
    rates = [v["core_hotline_config"]["events_per_s"] for v in doc["strategies"].values()]
    doc["hotline_config_events_per_s_min"] = min(rates) if rates else None
    doc["hotline_config_events_per_s_median"] = round(statistics.median(rates)) if rates else None
    doc["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(doc, indent=1))
    return 0


# ------------------------------------------------------------------------- baseline engine
# A verbatim copy of the ACD logic modules (engine, eta, strategies, tables) as they were
# before the per-step indexing work (commit 1ec8957), run against the same events in the same
# process as the reference: "baseline" in the server scenario. Model, events and actions are
# shared with the current package (the values they exchange must stay the same).
_BASELINE_TABLES = r'''"""The ACD's two state machines as data: agents and queue entries (callers).

Each row is (from status, trigger, guard, to status, actions emitted). Triggers are event
class names (`AgentAnswered`) or, in lower case, things the ACD itself decides
(`call_offered`) or times out (`ring_timeout`). The engine looks every transition up
here — a (status, trigger) pair with no row is an illegal event — and `render_table`
draws the docs from the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from callcenter.acd.model import AGENT_STATUSES, ENTRY_STATUSES, IllegalEvent

__all__ = ["Transition", "AGENT_TRANSITIONS", "ENTRY_TRANSITIONS", "GONE", "lookup",
           "render_table"]

GONE = "gone"  # the entry has left the queue


@dataclass(frozen=True)
class Transition:
    source: str
    trigger: str
    target: str
    guard: str | None = None
    emits: tuple[str, ...] = ()
    note: str = ""


_T = Transition
_WRAP = "wrap_up_s > 0"
_NO_WRAP = "wrap_up_s = 0"
_PAUSE = "pause_on_no_answer"
_NO_PAUSE = "not pause_on_no_answer"

AGENT_TRANSITIONS: tuple[Transition, ...] = (
    _T("logged_out", "AgentLoggedIn", "ready"),
    _T("ready", "AgentPaused", "paused"),
    _T("ready", "AgentLoggedOut", "logged_out"),
    _T("ready", "call_offered", "ringing", emits=("RingAgent", "log ring"),
       note="chosen by the queue strategy"),
    _T("ready", "callback_assigned", "dialing", emits=("PlaceCallback", "log callback_placed"),
       note="a kept-place callback's turn came"),
    _T("ringing", "AgentAnswered", "on_call",
       emits=("StopRinging (other agents)", "Bridge", "log connect")),
    _T("ringing", "AgentNoAnswer", "paused", _PAUSE, ("log no_answer",), 'reason "no_answer"'),
    _T("ringing", "AgentNoAnswer", "ready", _NO_PAUSE, ("log no_answer",)),
    _T("ringing", "ring_timeout", "paused", _PAUSE, ("StopRinging", "log no_answer"),
       'reason "no_answer"'),
    _T("ringing", "ring_timeout", "ready", _NO_PAUSE, ("StopRinging", "log no_answer")),
    _T("ringing", "ring_withdrawn", "ready", emits=("StopRinging",),
       note="caller gone, or another agent answered (ring_all)"),
    _T("ringing", "AgentPaused", "paused", emits=("StopRinging", "log ring_cancelled")),
    _T("ringing", "AgentLoggedOut", "logged_out", emits=("StopRinging", "log ring_cancelled")),
    _T("dialing", "CallbackAnswered", "on_call", emits=("Bridge", "log connect")),
    _T("dialing", "CallbackFailed", "ready", emits=("log callback_failed",)),
    _T("on_call", "CallEnded", "wrap_up", _WRAP, ("StartWrapUp", "log complete")),
    _T("on_call", "CallEnded", "ready", _NO_WRAP, ("log complete", "log wrap_up")),
    _T("on_call", "TransferRequested", "wrap_up", _WRAP,
       ("Unbridge", "TransferToNumber or rejoin", "log transfer", "StartWrapUp")),
    _T("on_call", "TransferRequested", "ready", _NO_WRAP,
       ("Unbridge", "TransferToNumber or rejoin", "log transfer", "log wrap_up")),
    _T("wrap_up", "WrapUpDone", "ready", emits=("EndWrapUp", "log wrap_up")),
    _T("wrap_up", "wrap_up_expired", "ready", emits=("EndWrapUp", "log wrap_up")),
    _T("wrap_up", "AgentReady", "ready", emits=("EndWrapUp", "log wrap_up")),
    _T("wrap_up", "AgentPaused", "paused", emits=("EndWrapUp", "log wrap_up")),
    _T("wrap_up", "AgentLoggedOut", "logged_out", emits=("EndWrapUp", "log wrap_up")),
    _T("paused", "AgentReady", "ready"),
    _T("paused", "AgentPaused", "paused", note="new reason"),
    _T("paused", "AgentLoggedOut", "logged_out"),
)

ENTRY_TRANSITIONS: tuple[Transition, ...] = (
    _T("waiting", "call_offered", "ringing", emits=("RingAgent ×1, or ×n for ring_all",)),
    _T("waiting", "CallerAbandoned", GONE, emits=("log abandon",)),
    _T("waiting", "CallerLeft", GONE, emits=("log exit",)),
    _T("waiting", "CallbackRequested", "callback", emits=("log callback",),
       note="keeps its place; the caller hangs up"),
    _T("waiting", "max_wait", GONE, emits=("Overflow", "log overflow")),
    _T("waiting", "leave_empty", GONE, "leave_when_empty", ("Overflow", "log overflow")),
    _T("waiting", "callback_offer_due", "waiting", emits=("OfferCallback", "log callback_offer")),
    _T("waiting", "position_changed", "waiting", "announce interval passed",
       ("AnnouncePosition",)),
    _T("ringing", "AgentAnswered", GONE, emits=("Bridge", "log connect")),
    _T("ringing", "no_answer", "ringing", "other agents still ringing",
       note="AgentNoAnswer or ring_timeout of one agent"),
    _T("ringing", "no_answer", "waiting", "last agent ringing",
       note="offered to the next agent at once"),
    _T("ringing", "ring_cancelled", "ringing", "other agents still ringing"),
    _T("ringing", "ring_cancelled", "waiting", "last agent ringing"),
    _T("ringing", "CallerAbandoned", GONE, emits=("StopRinging", "log abandon")),
    _T("ringing", "CallerLeft", GONE, emits=("StopRinging", "log exit")),
    _T("callback", "callback_assigned", "dialing", "within calling hours",
       ("PlaceCallback", "log callback_placed")),
    _T("callback", "callback_expired", GONE, emits=("log callback_expired",)),
    _T("callback", "CallerLeft", GONE, emits=("log exit",), note="callback cancelled"),
    _T("dialing", "CallbackAnswered", GONE, emits=("Bridge", "log connect")),
    _T("dialing", "CallbackFailed", GONE, emits=("log callback_failed",)),
)

_TABLES = {"agent": (AGENT_TRANSITIONS, AGENT_STATUSES),
           "entry": (ENTRY_TRANSITIONS, ENTRY_STATUSES)}


def lookup(machine: str, who: str, status: str, trigger: str,
           guards: Mapping[str, bool] | None = None) -> Transition:
    """The row for (status, trigger) whose guard holds; `IllegalEvent` if there is none."""
    rows, _ = _TABLES[machine]
    matching = [r for r in rows if r.source == status and r.trigger == trigger]
    if not matching:
        allowed = sorted({r.trigger for r in rows if r.source == status})
        raise IllegalEvent(f"{machine} {who} is {status}: {trigger} is not allowed "
                           f"(allowed: {', '.join(allowed) or 'nothing'})")
    for row in matching:
        if row.guard is None or (guards or {}).get(row.guard, False):
            return row
    raise IllegalEvent(f"{machine} {who} is {status}: no guard of {trigger} holds "
                       f"({', '.join(str(r.guard) for r in matching)})")


def render_table(machine: str = "agent") -> str:
    """The machine as a Markdown table (from, trigger, guard, to, actions), for docs."""
    if machine not in _TABLES:
        raise ValueError(f"machine must be one of {sorted(_TABLES)}, got {machine!r}")
    rows, statuses = _TABLES[machine]
    order = {s: i for i, s in enumerate(statuses)}
    lines = ["| from | trigger | guard | to | actions | note |",
             "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: order[r.source]):  # stable: keeps row order per status
        cells = (r.source, r.trigger, r.guard or "", r.target, ", ".join(r.emits), r.note)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
'''

_BASELINE_STRATEGIES = r'''"""Queue strategies: which free agents to ring for a caller.

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


def choose_agents(queue: QueueConfig, candidates: Sequence[Agent], rr_last: str | None,
                  skill: str | None) -> list[Agent]:
    """The agents to ring: one, or every candidate of the first tier for `ring_all`.

    `candidates` are free members that have the required skills; `rr_last` is the agent
    this queue rang last (round-robin memory); `skill` is the skill ranked by
    `skills_penalty` (the caller's, else the queue's).
    """
    if not candidates:
        return []
    member_order = {a: i for i, a in enumerate(queue.members)}

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
'''

_BASELINE_ETA = r'''"""Estimated wait for "您前面还有N位，预计等待M分钟".

With n staffed agents each freeing up every AHT seconds on average, the caller at
position p is served after about p × AHT / n. AHT is the mean of the queue's recent
handle times (talk + wrap-up), or the queue's `default_aht_s` before the first call.
Rounded up to whole minutes (at least one) so small changes do not re-announce.
"""

from __future__ import annotations

import math

from callcenter.acd.model import AcdState

__all__ = ["RECENT_HANDLE_SAMPLES", "STAFFED", "recent_aht_s", "staffed_agents",
           "estimate_wait_s"]

RECENT_HANDLE_SAMPLES = 20
STAFFED = ("ready", "ringing", "dialing", "on_call", "wrap_up")


def recent_aht_s(state: AcdState, queue: str) -> float:
    samples = state.recent_handle_s.get(queue, ())
    if not samples:
        return float(state.config.queues[queue].default_aht_s)
    return sum(samples) / len(samples)


def staffed_agents(state: AcdState, queue: str) -> int:
    members = state.config.queues[queue].members
    return sum(1 for a in members if state.agents[a].status in STAFFED)


def estimate_wait_s(state: AcdState, queue: str, position: int) -> int | None:
    """Seconds (a whole number of minutes) until `position` is served; None if unstaffed."""
    n = staffed_agents(state, queue)
    if n == 0:
        return None
    minutes = math.ceil(position * recent_aht_s(state, queue) / n / 60)
    return 60 * max(1, minutes)
'''

_BASELINE_ENGINE = r'''"""The pure ACD: `step(state, event, now) -> (state, actions)` and `next_deadline(state)`.

This module applies events to agents and queue entries through the transition tables in
`callcenter.acd.tables`, then, after every event, lets callers leave empty queues, offers
waiting callers to free agents (strategies) and announces positions. Timeouts (ring,
wrap-up, max wait, callback offer and expiry, announcements) fire only on `Tick`; the
driver arms one timer at `next_deadline(state)` (which may already be due: tick at once).

Dispatch order: across all queues, callers are served by priority (higher first), then
join order; each free agent is offered to at most one caller; a caller who asked for a
callback keeps their place and is dialled when their turn comes (within calling hours),
with the chosen agent reserved (`dialing`) meanwhile.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import replace

from callcenter.acd import actions as act
from callcenter.acd import events as ev
from callcenter.acd.eta import RECENT_HANDLE_SAMPLES, STAFFED, estimate_wait_s
from callcenter.acd.model import (
    AcdState,
    Agent,
    CallInfo,
    IllegalEvent,
    QueueConfig,
    QueueEntry,
)
from callcenter.acd.strategies import choose_agents
from callcenter.acd.tables import GONE, lookup

__all__ = ["step", "next_deadline", "CALLBACK_RECHECK_S"]

# A callback whose turn came outside calling hours is looked at again this often.
CALLBACK_RECHECK_S = 60

_FREE_AFTER = ("ready", "paused", "logged_out")


def _secs(later: _dt.datetime, earlier: _dt.datetime) -> float:
    return (later - earlier).total_seconds()


class _Run:
    """One step's working copy: plain dicts in, a new frozen state out."""

    def __init__(self, state: AcdState, now: _dt.datetime):
        self.cfg = state.config
        self.agents = dict(state.agents)
        self.entries = dict(state.entries)
        self.rr_last = dict(state.rr_last)
        self.recent = dict(state.recent_handle_s)
        self.seq = state.seq
        self.now = now
        self.actions: list[act.Action] = []

    def freeze(self) -> AcdState:
        return AcdState(config=self.cfg, agents=self.agents, entries=self.entries,
                        rr_last=self.rr_last, recent_handle_s=self.recent, seq=self.seq,
                        now=self.now)

    def emit(self, *actions: act.Action) -> None:
        self.actions.extend(actions)

    def log(self, kind: str, queue: str, call: str, **fields) -> None:
        self.emit(act.QueueEventLogged(at=self.now, kind=kind, queue=queue, call=call, **fields))

    # --- lookups that turn bad references into clear errors ---------------------------

    def agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise IllegalEvent(f"unknown agent {agent_id!r}") from None

    def entry(self, call: str) -> QueueEntry:
        try:
            return self.entries[call]
        except KeyError:
            raise IllegalEvent(f"call {call!r} is not in any queue") from None

    def agent_with_call(self, agent_id: str, call: str) -> Agent:
        agent = self.agent(agent_id)
        if agent.call is None or agent.call.call != call:
            current = agent.call.call if agent.call else None
            raise IllegalEvent(f"agent {agent_id} is {agent.status} with call {current!r}, "
                               f"not {call!r}")
        return agent

    def position(self, entry: QueueEntry) -> int:
        return 1 + sum(1 for e in self.entries.values()
                       if e.queue == entry.queue and e.order_key < entry.order_key)

    # --- transitions ---------------------------------------------------------------------

    def move_agent(self, agent_id: str, trigger: str, **changes) -> Agent:
        agent = self.agents[agent_id]
        queue = self.cfg.queues[agent.call.queue] if agent.call else None
        guards = {
            "wrap_up_s > 0": bool(queue and queue.wrap_up_s > 0),
            "wrap_up_s = 0": not (queue and queue.wrap_up_s > 0),
            "pause_on_no_answer": bool(queue and queue.pause_on_no_answer),
            "not pause_on_no_answer": not (queue and queue.pause_on_no_answer),
        }
        row = lookup("agent", agent_id, agent.status, trigger, guards)
        if row.target in _FREE_AFTER:
            changes.setdefault("call", None)
        if row.target != "paused":
            changes["pause_reason"] = None
        if row.target != "wrap_up":
            changes["wrap_up_until"] = None
        new = replace(agent, status=row.target, since=self.now, **changes)
        self.agents[agent_id] = new
        return new

    def move_entry(self, call: str, trigger: str, guards: dict[str, bool] | None = None,
                   **changes) -> QueueEntry | None:
        entry = self.entries[call]
        row = lookup("entry", call, entry.status, trigger, guards)
        if row.target == GONE:
            del self.entries[call]
            return None
        new = replace(entry, status=row.target, **changes)
        self.entries[call] = new
        return new

    def drop_ringing_agent(self, entry: QueueEntry, agent_id: str, trigger: str) -> None:
        """Take one agent off a ringing caller; the caller waits again if none is left."""
        left = tuple(a for a in entry.ringing if a != agent_id)
        guards = {"other agents still ringing": bool(left), "last agent ringing": not left}
        self.move_entry(entry.call, trigger, guards, ringing=left,
                        ring_until=entry.ring_until if left else None,
                        tried=entry.tried + (agent_id,))

    def withdraw_ring(self, entry: QueueEntry, keep: str | None = None) -> None:
        for agent_id in entry.ringing:
            if agent_id != keep:
                self.emit(act.StopRinging(agent_id, entry.call))
                self.move_agent(agent_id, "ring_withdrawn")

    # --- handling, wrap-up -----------------------------------------------------------------

    def end_talk(self, agent: Agent, trigger: str) -> Agent:
        """CallEnded or a transfer: the agent goes to wrap-up, or straight to ready."""
        info = agent.call
        queue = self.cfg.queues[info.queue]
        talk_s = _secs(self.now, info.connected_at)
        info = replace(info, ended_at=self.now, talk_s=talk_s)
        self.agents[agent.id] = replace(agent, call=info)
        if queue.wrap_up_s > 0:
            until = self.now + _dt.timedelta(seconds=queue.wrap_up_s)
            agent = self.move_agent(agent.id, trigger, call=info, wrap_up_until=until,
                                    last_call_end=self.now)
            self.emit(act.StartWrapUp(agent.id, info.call, until))
            return agent
        agent = self.move_agent(agent.id, trigger, last_call_end=self.now)
        self.record_handled(agent.id, info)
        return agent

    def record_handled(self, agent_id: str, info: CallInfo) -> None:
        wrap_s = _secs(self.now, info.ended_at)
        self.log("wrap_up", info.queue, info.call, agent=agent_id, caller=info.caller,
                 wrap_s=wrap_s)
        samples = self.recent.get(info.queue, ()) + (info.talk_s + wrap_s,)
        self.recent[info.queue] = samples[-RECENT_HANDLE_SAMPLES:]

    def leave_wrap_up(self, agent: Agent, trigger: str, **changes) -> None:
        info = agent.call
        self.move_agent(agent.id, trigger, **changes)
        self.emit(act.EndWrapUp(agent.id, info.call))
        self.record_handled(agent.id, info)

    def cancel_ring(self, agent: Agent) -> None:
        """The ringing agent paused or logged out: stop, and offer the caller again."""
        entry = self.entries[agent.call.call]
        self.emit(act.StopRinging(agent.id, entry.call))
        self.log("ring_cancelled", entry.queue, entry.call, agent=agent.id, caller=entry.caller)
        self.drop_ringing_agent(entry, agent.id, "ring_cancelled")

    # --- joining and leaving ---------------------------------------------------------------

    def eligible(self, agent: Agent, queue: QueueConfig, skill: str | None) -> bool:
        if agent.id not in queue.members:
            return False
        if queue.skill is not None and agent.skills.get(queue.skill, 0) < queue.min_skill_level:
            return False
        return skill is None or agent.skills.get(skill, 0) >= 1

    def staffed(self, queue: QueueConfig, skill: str | None) -> bool:
        return any(a.status in STAFFED and self.eligible(a, queue, skill)
                   for a in self.agents.values())

    def join(self, queue_name: str, call: str, caller: str, priority: int, skill: str | None,
             detail: str | None = None, visited: tuple[str, ...] = ()) -> None:
        queue = self.cfg.queues[queue_name]
        if not queue.join_empty and not self.staffed(queue, skill):
            self.overflow(queue, call, caller, priority, skill, "join_empty", self.now, visited)
            return
        if queue.max_len is not None and \
                sum(1 for e in self.entries.values() if e.queue == queue_name) >= queue.max_len:
            self.overflow(queue, call, caller, priority, skill, "max_len", self.now, visited)
            return
        self.seq += 1
        entry = QueueEntry(call=call, queue=queue_name, caller=caller, priority=priority,
                           skill=skill, joined_at=self.now, seq=self.seq)
        self.entries[call] = entry
        self.log("join", queue_name, call, caller=caller, position=self.position(entry),
                 detail=detail)

    def overflow(self, queue: QueueConfig, call: str, caller: str, priority: int,
                 skill: str | None, reason: str, joined_at: _dt.datetime,
                 visited: tuple[str, ...]) -> None:
        target = queue.overflow
        visited = visited + (queue.name,)
        # A chain that comes back to a queue already tried ends in voicemail.
        looping = target.kind == "queue" and target.name in visited
        target_text = "voicemail" if looping else str(target)
        self.log("overflow", queue.name, call, caller=caller, wait_s=_secs(self.now, joined_at),
                 detail=f"{reason}>{target_text}")
        self.emit(act.Overflow(call, target_text, reason))
        if target.kind == "queue" and not looping:
            self.join(target.name, call, caller, priority, None,
                      detail=f"overflow from {queue.name}", visited=visited)

    def call_in_progress(self, call: str) -> bool:
        return call in self.entries or any(
            a.call is not None and a.call.call == call and a.status in ("ringing", "dialing",
                                                                         "on_call")
            for a in self.agents.values())

    # --- after every event ----------------------------------------------------------------

    def leave_empty_queues(self) -> None:
        for entry in sorted(self.entries.values(), key=lambda e: e.order_key):
            queue = self.cfg.queues[entry.queue]
            if (queue.leave_when_empty and entry.status == "waiting"
                    and entry.pinned_agent is None and not self.staffed(queue, entry.skill)):
                self.move_entry(entry.call, "leave_empty", {"leave_when_empty": True})
                self.overflow(queue, entry.call, entry.caller, entry.priority, entry.skill,
                              "leave_empty", entry.joined_at, ())

    def dispatch(self) -> None:
        free = {a.id for a in self.agents.values() if a.status == "ready"}
        pending = sorted((e for e in self.entries.values() if e.status in ("waiting", "callback")),
                         key=lambda e: e.order_key)
        open_for_callbacks = None
        for entry in pending:
            if not free:
                return
            if entry.status == "callback":
                if open_for_callbacks is None:
                    open_for_callbacks = bool(self.cfg.calling_hours(self.now))
                if not open_for_callbacks:
                    continue
            queue = self.cfg.queues[entry.queue]
            if entry.pinned_agent is not None:
                candidates = [self.agents[entry.pinned_agent]] \
                    if entry.pinned_agent in free else []
            else:
                candidates = [self.agents[a] for a in queue.members
                              if a in free and self.eligible(self.agents[a], queue, entry.skill)]
                untried = [a for a in candidates if a.id not in entry.tried]
                candidates = untried or candidates
            if entry.pinned_agent is not None:
                chosen = candidates
            else:
                chosen = choose_agents(queue, candidates, self.rr_last.get(queue.name),
                                       entry.skill or queue.skill)
            if not chosen:
                continue
            self.rr_last[queue.name] = chosen[-1].id
            info = CallInfo(call=entry.call, queue=entry.queue, caller=entry.caller,
                            priority=entry.priority, joined_at=entry.joined_at)
            if entry.status == "callback":
                agent = chosen[0]
                free.discard(agent.id)
                self.move_agent(agent.id, "callback_assigned", call=info)
                self.move_entry(entry.call, "callback_assigned", {"within calling hours": True},
                                ringing=(agent.id,))
                self.emit(act.PlaceCallback(entry.call, entry.callback_number, agent.id,
                                            entry.queue))
                self.log("callback_placed", entry.queue, entry.call, agent=agent.id,
                         caller=entry.caller, detail=entry.callback_number)
                continue
            for agent in chosen:
                free.discard(agent.id)
                self.move_agent(agent.id, "call_offered", call=info)
                self.emit(act.RingAgent(agent.id, entry.call, queue.ring_timeout_s,
                                        agent.extension, entry.queue, entry.caller))
                self.log("ring", entry.queue, entry.call, agent=agent.id, caller=entry.caller)
            self.move_entry(entry.call, "call_offered", ringing=tuple(a.id for a in chosen),
                            ring_until=self.now + _dt.timedelta(seconds=queue.ring_timeout_s))

    def announce(self) -> None:
        state = self.freeze()
        for name, queue in self.cfg.queues.items():
            if queue.announce_interval_s is None:
                continue
            for position, entry in enumerate(state.queue_entries(name), start=1):
                if entry.status != "waiting":
                    continue
                eta = estimate_wait_s(state, name, position)
                due = entry.announced_at is None or \
                    _secs(self.now, entry.announced_at) >= queue.announce_interval_s
                if (position, eta) != entry.announced and due:
                    self.move_entry(entry.call, "position_changed",
                                    {"announce interval passed": True},
                                    announced=(position, eta), announced_at=self.now)
                    self.emit(act.AnnouncePosition(entry.call, position, eta))

    # --- timeouts (Tick) -----------------------------------------------------------------

    def fire_timeouts(self) -> None:
        now = self.now
        for entry in sorted(self.entries.values(), key=lambda e: e.order_key):
            if entry.status == "ringing" and entry.ring_until <= now:
                for agent_id in entry.ringing:
                    self.emit(act.StopRinging(agent_id, entry.call))
                    self.log("no_answer", entry.queue, entry.call, agent=agent_id,
                             caller=entry.caller, detail="timeout")
                    self.move_agent(agent_id, "ring_timeout", pause_reason="no_answer")
                    entry = self.entries[entry.call]
                    self.drop_ringing_agent(entry, agent_id, "no_answer")
        for agent in sorted(self.agents.values(), key=lambda a: a.id):
            if agent.status == "wrap_up" and agent.wrap_up_until <= now:
                self.leave_wrap_up(agent, "wrap_up_expired")
        for entry in sorted(self.entries.values(), key=lambda e: e.order_key):
            queue = self.cfg.queues[entry.queue]
            if entry.status == "callback" and entry.callback_expires_at <= now:
                self.move_entry(entry.call, "callback_expired")
                self.log("callback_expired", entry.queue, entry.call, caller=entry.caller,
                         wait_s=_secs(now, entry.joined_at), detail=entry.callback_number)
            elif entry.status == "waiting" and queue.max_wait_s is not None \
                    and _secs(now, entry.joined_at) >= queue.max_wait_s:
                self.move_entry(entry.call, "max_wait")
                self.overflow(queue, entry.call, entry.caller, entry.priority, entry.skill,
                              "max_wait", entry.joined_at, ())
            elif entry.status == "waiting" and not entry.callback_offered \
                    and queue.callback_offer_after_s is not None \
                    and _secs(now, entry.joined_at) >= queue.callback_offer_after_s:
                self.move_entry(entry.call, "callback_offer_due", callback_offered=True)
                self.emit(act.OfferCallback(entry.call))
                self.log("callback_offer", entry.queue, entry.call, caller=entry.caller)


# --- event handlers -----------------------------------------------------------------------


def _agent_logged_in(run: _Run, e: ev.AgentLoggedIn) -> None:
    run.agent(e.agent)
    run.move_agent(e.agent, "AgentLoggedIn")


def _agent_left_ready(run: _Run, agent_id: str, trigger: str, **changes) -> None:
    """AgentReady / AgentPaused / AgentLoggedOut from whatever the agent was doing."""
    agent = run.agent(agent_id)
    if agent.status == "ringing":
        run.cancel_ring(agent)
        run.move_agent(agent_id, trigger, **changes)
    elif agent.status == "wrap_up":
        run.leave_wrap_up(agent, trigger, **changes)
    else:
        run.move_agent(agent_id, trigger, **changes)


def _agent_logged_out(run: _Run, e: ev.AgentLoggedOut) -> None:
    _agent_left_ready(run, e.agent, "AgentLoggedOut")


def _agent_ready(run: _Run, e: ev.AgentReady) -> None:
    _agent_left_ready(run, e.agent, "AgentReady")


def _agent_paused(run: _Run, e: ev.AgentPaused) -> None:
    _agent_left_ready(run, e.agent, "AgentPaused", pause_reason=e.reason)


def _caller_joined(run: _Run, e: ev.CallerJoined) -> None:
    if e.queue not in run.cfg.queues:
        raise IllegalEvent(f"unknown queue {e.queue!r}")
    if run.call_in_progress(e.call):
        raise IllegalEvent(f"call {e.call!r} is already queued or connected")
    run.join(e.queue, e.call, e.caller, e.priority, e.skill)


def _caller_gone(run: _Run, call: str, trigger: str, kind: str, detail: str | None) -> None:
    entry = run.entry(call)
    position = run.position(entry)
    run.move_entry(call, trigger)  # checks the entry may leave this way before any action
    run.withdraw_ring(entry)
    run.log(kind, entry.queue, call, caller=entry.caller, position=position,
            wait_s=_secs(run.now, entry.joined_at), detail=detail)


def _caller_abandoned(run: _Run, e: ev.CallerAbandoned) -> None:
    _caller_gone(run, e.call, "CallerAbandoned", "abandon", None)


def _caller_left(run: _Run, e: ev.CallerLeft) -> None:
    _caller_gone(run, e.call, "CallerLeft", "exit", e.reason)


def _agent_answered(run: _Run, e: ev.AgentAnswered) -> None:
    agent = run.agent_with_call(e.agent, e.call)
    entry = run.entry(e.call)
    run.move_entry(e.call, "AgentAnswered")
    run.withdraw_ring(entry, keep=e.agent)
    run.move_agent(e.agent, "AgentAnswered", call=replace(agent.call, connected_at=run.now),
                   calls_taken=agent.calls_taken + 1)
    run.emit(act.Bridge(e.call, e.agent))
    run.log("connect", entry.queue, e.call, agent=e.agent, caller=entry.caller,
            wait_s=_secs(run.now, entry.joined_at))


def _agent_no_answer(run: _Run, e: ev.AgentNoAnswer) -> None:
    run.agent_with_call(e.agent, e.call)
    entry = run.entry(e.call)
    run.move_agent(e.agent, "AgentNoAnswer", pause_reason="no_answer")
    run.log("no_answer", entry.queue, e.call, agent=e.agent, caller=entry.caller)
    run.drop_ringing_agent(entry, e.agent, "no_answer")


def _call_ended(run: _Run, e: ev.CallEnded) -> None:
    agent = run.agent_with_call(e.agent, e.call)
    if agent.status != "on_call":
        run.move_agent(e.agent, "CallEnded")  # raises: not allowed in this status
    info = agent.call
    run.log("complete", info.queue, e.call, agent=e.agent, caller=info.caller,
            talk_s=_secs(run.now, info.connected_at), detail=f"{e.hung_up_by}_hung_up")
    run.end_talk(agent, "CallEnded")


def _wrap_up_done(run: _Run, e: ev.WrapUpDone) -> None:
    agent = run.agent(e.agent)
    if agent.status != "wrap_up":
        run.move_agent(e.agent, "WrapUpDone")  # raises
    run.leave_wrap_up(agent, "WrapUpDone")


def _callback_requested(run: _Run, e: ev.CallbackRequested) -> None:
    entry = run.entry(e.call)
    queue = run.cfg.queues[entry.queue]
    run.move_entry(e.call, "CallbackRequested", callback_number=e.number,
                   callback_requested_at=run.now,
                   callback_expires_at=run.now + _dt.timedelta(seconds=queue.callback_expiry_s))
    run.log("callback", entry.queue, e.call, caller=entry.caller, position=run.position(entry),
            wait_s=_secs(run.now, entry.joined_at), detail=e.number)


def _callback_answered(run: _Run, e: ev.CallbackAnswered) -> None:
    entry = run.entry(e.call)
    run.move_entry(e.call, "CallbackAnswered")
    agent = run.agents[entry.ringing[0]]
    run.move_agent(agent.id, "CallbackAnswered", call=replace(agent.call, connected_at=run.now),
                   calls_taken=agent.calls_taken + 1)
    run.emit(act.Bridge(e.call, agent.id))
    run.log("connect", entry.queue, e.call, agent=agent.id, caller=entry.caller,
            wait_s=_secs(run.now, entry.joined_at), detail="callback")


def _callback_failed(run: _Run, e: ev.CallbackFailed) -> None:
    entry = run.entry(e.call)
    run.move_entry(e.call, "CallbackFailed")
    run.move_agent(entry.ringing[0], "CallbackFailed")
    run.log("callback_failed", entry.queue, e.call, agent=entry.ringing[0], caller=entry.caller,
            wait_s=_secs(run.now, entry.joined_at), detail=e.reason)


def _transfer_requested(run: _Run, e: ev.TransferRequested) -> None:
    agent = run.agent_with_call(e.agent, e.call)
    if agent.status != "on_call":
        run.move_agent(e.agent, "TransferRequested")  # raises
    if e.kind == "queue" and e.target not in run.cfg.queues:
        raise IllegalEvent(f"transfer to unknown queue {e.target!r}")
    if e.kind == "agent":
        target = run.agent(e.target)
        if target.id == e.agent or target.status == "logged_out":
            raise IllegalEvent(f"cannot transfer to agent {e.target}: "
                               f"{'the same agent' if target.id == e.agent else 'logged out'}")
    info = agent.call
    run.emit(act.Unbridge(e.call, e.agent))
    run.log("transfer", info.queue, e.call, agent=e.agent, caller=info.caller,
            talk_s=_secs(run.now, info.connected_at), detail=f"{e.kind}:{e.target}")
    run.end_talk(agent, "TransferRequested")
    if e.kind == "number":
        run.emit(act.TransferToNumber(e.call, e.target))
    elif e.kind == "queue":
        run.join(e.target, e.call, info.caller, info.priority, None,
                 detail=f"transfer from {e.agent}")
    else:
        # Straight to one agent: bypasses join rules, waits for that agent only.
        run.seq += 1
        entry = QueueEntry(call=e.call, queue=info.queue, caller=info.caller,
                           priority=info.priority, skill=None, joined_at=run.now, seq=run.seq,
                           pinned_agent=e.target)
        run.entries[e.call] = entry
        run.log("join", info.queue, e.call, caller=info.caller, position=run.position(entry),
                detail=f"transfer from {e.agent} to {e.target}")


def _tick(run: _Run, e: ev.Tick) -> None:
    run.fire_timeouts()


_HANDLERS = {
    ev.AgentLoggedIn: _agent_logged_in,
    ev.AgentLoggedOut: _agent_logged_out,
    ev.AgentReady: _agent_ready,
    ev.AgentPaused: _agent_paused,
    ev.CallerJoined: _caller_joined,
    ev.CallerAbandoned: _caller_abandoned,
    ev.CallerLeft: _caller_left,
    ev.AgentAnswered: _agent_answered,
    ev.AgentNoAnswer: _agent_no_answer,
    ev.CallEnded: _call_ended,
    ev.WrapUpDone: _wrap_up_done,
    ev.CallbackRequested: _callback_requested,
    ev.CallbackAnswered: _callback_answered,
    ev.CallbackFailed: _callback_failed,
    ev.TransferRequested: _transfer_requested,
    ev.Tick: _tick,
}


def step(state: AcdState, event: ev.Event, now: _dt.datetime) -> tuple[AcdState, list[act.Action]]:
    """Apply one event at `now`; returns the new state and the actions, in order.

    Raises `IllegalEvent` (and leaves `state` untouched, being immutable) for unknown
    agents/calls/queues, events not allowed in the current status, or time going back.
    """
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise IllegalEvent(f"not an ACD event: {event!r}")
    if not isinstance(now, _dt.datetime) or now.tzinfo is None:
        raise IllegalEvent(f"now must be an aware datetime, got {now!r}")
    if state.now is not None and now < state.now:
        raise IllegalEvent(f"time went backwards: {now.isoformat()} < {state.now.isoformat()}")
    run = _Run(state, now)
    handler(run, event)
    run.leave_empty_queues()
    run.dispatch()
    run.announce()
    return run.freeze(), run.actions


def next_deadline(state: AcdState) -> _dt.datetime | None:
    """When the driver should send the next `Tick` (None: nothing is timed)."""
    deadlines: list[_dt.datetime] = []
    for agent in state.agents.values():
        if agent.status == "wrap_up":
            deadlines.append(agent.wrap_up_until)
    callbacks_blocked = False
    for name, queue in state.config.queues.items():
        for position, entry in enumerate(state.queue_entries(name), start=1):
            if entry.status == "ringing":
                deadlines.append(entry.ring_until)
            elif entry.status == "callback":
                deadlines.append(entry.callback_expires_at)
                callbacks_blocked = True
            elif entry.status == "waiting":
                if queue.max_wait_s is not None:
                    deadlines.append(entry.joined_at + _dt.timedelta(seconds=queue.max_wait_s))
                if queue.callback_offer_after_s is not None and not entry.callback_offered:
                    deadlines.append(entry.joined_at
                                     + _dt.timedelta(seconds=queue.callback_offer_after_s))
                if queue.announce_interval_s is not None and entry.announced_at is not None \
                        and entry.announced != (position, estimate_wait_s(state, name, position)):
                    deadlines.append(entry.announced_at
                                     + _dt.timedelta(seconds=queue.announce_interval_s))
    if callbacks_blocked and state.now is not None and not state.config.calling_hours(state.now) \
            and any(a.status == "ready" for a in state.agents.values()):
        deadlines.append(state.now + _dt.timedelta(seconds=CALLBACK_RECHECK_S))
    return min(deadlines, default=None)
'''


if __name__ == "__main__":
    sys.exit(main())

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
(median, p90 in µs), for the current engine and for `baseline`, the code of the
engine before the per-step indexing work (read from git history), interleaved in the
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


BASELINE_COMMIT = "1ec8957"  # the ACD before its per-step indexing work
BASELINE_MODULES = ("tables", "strategies", "eta", "engine")


def load_baseline():
    """The baseline engine as a module (`step`, `next_deadline`): the ACD logic modules as
    they were at BASELINE_COMMIT, read from git history (no copy kept in the tree). Model,
    events and actions are shared with the current package."""
    import subprocess
    import types

    root = Path(__file__).resolve().parents[1]
    mods = {}
    for name in BASELINE_MODULES:
        try:
            src = subprocess.run(
                ["git", "-C", str(root), "show", f"{BASELINE_COMMIT}:callcenter/acd/{name}.py"],
                check=True, capture_output=True, text=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise SystemExit(f"acd_bench: the baseline needs git history with {BASELINE_COMMIT} ({exc})") from None
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

    from callcenter.calls.acd_driver import default_config

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


if __name__ == "__main__":
    sys.exit(main())

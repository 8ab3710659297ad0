"""Keep speech recognition off the core that runs the media tick.

Why: recognition (Whisper, vosk) streams a model through the caches. Even at the lowest CPU
priority (SCHED_IDLE), a worker that the kernel places on the media core evicts the tick's
working set between two 20 ms ticks, so every tick runs slower and later: at 400 calls the
p99 RTP jitter went from 3.9 ms to 7.1 ms with one Whisper worker busy (`bench/sip_load.py
--targets hotline,hotline_stt --pin`), and p50 more than doubled. With the worker kept on the
other core the two were within the run-to-run noise. The scheduler alone does not keep them
apart: a CPU running only SCHED_IDLE work counts as idle when the server wakes, so the server
lands right on the worker's core.

So the server and its recognition workers get disjoint CPU sets. ``plan`` decides (pure);
``pin_process`` and ``pin_self`` apply (adapters). The setting is ``[stt] cpus``:

- ``"auto"`` (default): if the server was started on a subset of the machine's CPUs (taskset,
  systemd ``CPUAffinity=``), the workers get the other CPUs and the server stays where it was
  put. Otherwise, with two or more CPUs, the server keeps the highest-numbered CPU it may use
  and the workers get the rest. With one CPU nothing is pinned (the workers still run at
  idle priority).
- a CPU list such as ``"0"`` or ``"0-2,5"``: the workers run there; the server runs on the
  CPUs it may use minus those (not pinned if that leaves none).
- ``"off"``: nothing is pinned; the kernel places everything.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["CpuPlan", "parse_cpu_list", "format_cpu_list", "plan", "machine_cpus",
           "pin_process", "pin_self", "settle_worker", "background_thread", "BACKGROUND_NICE"]

# Helper threads of the server (recording writer, database work) run this much nicer than
# the event loop's thread, so that the loop wins the core when its tick is due.
BACKGROUND_NICE = 5


@dataclass(frozen=True)
class CpuPlan:
    """``media``: CPUs to pin the server process to (None: leave it); ``workers``: CPUs for
    recognition worker processes (None: leave them where the kernel puts them)."""

    media: frozenset[int] | None
    workers: frozenset[int] | None
    reason: str

    def describe(self) -> str:
        if self.media is None and self.workers is None:
            return f"CPU placement: none ({self.reason})"
        media = format_cpu_list(self.media) if self.media is not None else "as started"
        workers = format_cpu_list(self.workers) if self.workers is not None else "anywhere"
        return f"CPU placement: media on {media}, speech recognition on {workers} ({self.reason})"


def parse_cpu_list(text: str) -> frozenset[int]:
    """``"0-2,5"`` → {0, 1, 2, 5}; raises ValueError on anything else (empty included)."""
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            raise ValueError(f"empty item in CPU list {text!r}")
        low, sep, high = part.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ValueError(f"{part!r} is not a CPU number or range (like 0-2)")
        a, b = int(low), int(high) if sep else int(low)
        if b < a:
            raise ValueError(f"range {part!r} runs backwards")
        cpus.update(range(a, b + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: frozenset[int] | set[int]) -> str:
    """{0, 1, 2, 5} → ``"0-2,5"``."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def plan(setting: str, allowed: frozenset[int], online: frozenset[int]) -> CpuPlan:
    """Where the server (``media``) and the recognition workers go.

    ``allowed``: the CPUs the server process may run on now; ``online``: the machine's CPUs.
    Raises ValueError for a CPU list that names CPUs the machine does not have.
    """
    setting = setting.strip().lower()
    if setting == "off":
        return CpuPlan(None, None, "[stt] cpus = off")
    if setting != "auto":
        workers = parse_cpu_list(setting)
        missing = workers - online
        if missing:
            raise ValueError(f"CPU {format_cpu_list(missing)} is not online "
                             f"(this machine has {format_cpu_list(online)})")
        media = allowed - workers
        if not media:
            return CpuPlan(None, workers, "the listed CPUs are all the server may use: shared")
        return CpuPlan(media if media != allowed else None, workers, f"[stt] cpus = {setting}")
    if len(online) < 2:
        return CpuPlan(None, None, "one CPU: recognition shares it at idle priority")
    if allowed < online:
        return CpuPlan(None, online - allowed, "the server was started on a subset of the CPUs")
    if len(allowed) < 2:
        return CpuPlan(None, None, "one CPU: recognition shares it at idle priority")
    media = frozenset({max(allowed)})
    return CpuPlan(media, allowed - media, "[stt] cpus = auto")


# ---------------------------------------------------------------- adapters (Linux)
def machine_cpus() -> tuple[frozenset[int], frozenset[int]]:
    """(CPUs this process may use, CPUs online); both the same where affinity is unknown."""
    try:
        allowed = frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = frozenset(range(os.cpu_count() or 1))
    try:
        online = parse_cpu_list(Path("/sys/devices/system/cpu/online").read_text().strip())
    except (OSError, ValueError):
        online = frozenset(range(os.cpu_count() or 1)) | allowed
    # In a container the cgroup's cpuset, not the host's CPU list, is what a worker may use.
    usable = _cgroup_cpuset()
    if usable and allowed <= usable:
        online &= usable
    return allowed, online | allowed


def _cgroup_cpuset() -> frozenset[int] | None:
    """The CPUs this process's cgroup may use (v2, else v1), or None when not limited/known."""
    candidates = ["/sys/fs/cgroup/cpuset.cpus.effective", "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
                  "/sys/fs/cgroup/cpuset/cpuset.cpus"]
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if path not in ("", "/") and (hierarchy == "0" or "cpuset" in controllers.split(",")):
                base = "/sys/fs/cgroup" if hierarchy == "0" else "/sys/fs/cgroup/cpuset"
                name = "cpuset.cpus.effective" if hierarchy == "0" else "cpuset.effective_cpus"
                candidates.insert(0, f"{base}{path}/{name}")
    except (OSError, ValueError):
        pass
    for candidate in candidates:
        try:
            text = Path(candidate).read_text().strip()
        except OSError:
            continue
        if text:
            try:
                return parse_cpu_list(text)
            except ValueError:
                continue
    return None


def pin_process(cpus: frozenset[int]) -> bool:
    """Pin every thread of this process (Linux affinity is per thread; threads started later
    inherit it from the thread that starts them). False where that is not possible."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    ok = True
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError as exc:  # a thread that just ended, or a cgroup that forbids it
            if tid in (0, os.getpid()):
                log.warning("cannot pin the server to CPU %s: %s", format_cpu_list(cpus), exc)
                ok = False
    return ok


def pin_self(cpus: frozenset[int] | tuple[int, ...] | None) -> None:
    """In a worker process: run on ``cpus`` (None: anywhere the machine allows, not the
    parent's pinning, which a spawned child inherits)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    try:
        os.sched_setaffinity(0, cpus if cpus else machine_cpus()[1])
    except OSError:
        pass


def background_thread() -> None:
    """ThreadPoolExecutor initializer: make the calling thread nicer than the event loop's
    (Linux keeps a nice value per thread). A helper that holds the GIL when preempted gets
    the core back as soon as the loop waits for the GIL, so this cannot invert priorities."""
    import threading

    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE))
    except (AttributeError, OSError):
        pass


def settle_worker(cpus: frozenset[int] | None, *, nice: int, idle: bool = False) -> None:
    """In a recognition worker process, first thing: run on ``cpus`` (`pin_self`), ``nice``
    steps below the server, and with ``idle`` under SCHED_IDLE — only CPU time nobody else
    wants, so the media tick's wake-ups always preempt it (what matters on one CPU, where
    the worker cannot move away). Threads the worker starts later inherit all three."""
    pin_self(cpus)
    if not nice:
        return
    try:
        os.nice(nice)
    except OSError:
        pass
    if idle:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            pass


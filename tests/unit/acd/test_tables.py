"""The transition tables, their Markdown rendering, strategies, config checks and purity."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import callcenter.acd
from callcenter import acd
from callcenter.acd import tables
from callcenter.acd.strategies import choose_agents

from .helpers import T0, config, queue


def test_agent_table_renders_one_row_per_transition():
    """render_table() is a Markdown table with a header and every agent transition."""
    text = acd.render_table()
    lines = text.strip().splitlines()
    assert lines[0] == "| from | trigger | guard | to | actions | note |"
    assert len(lines) == 2 + len(acd.AGENT_TRANSITIONS)
    assert "| ringing | ring_timeout | pause_on_no_answer | paused | StopRinging, log no_answer |" \
        in text
    assert all(line.count("|") == 7 for line in lines)  # no stray pipes inside cells


def test_entry_table_renders_and_unknown_machine_is_refused():
    """The caller machine renders too; an unknown machine name raises."""
    assert "| callback | callback_assigned | within calling hours | dialing |" \
        in acd.render_table("entry")
    with pytest.raises(ValueError, match="machine"):
        acd.render_table("dialog")


@pytest.mark.parametrize("rows, statuses", [
    (acd.AGENT_TRANSITIONS, acd.AGENT_STATUSES),
    (acd.ENTRY_TRANSITIONS, acd.ENTRY_STATUSES + (tables.GONE,)),
])
def test_tables_use_known_statuses_and_every_status_has_a_way_out(rows, statuses):
    """Rows only name known statuses; each status can be left; guarded pairs differ by guard."""
    for r in rows:
        assert r.source in statuses and r.target in statuses
    for s in statuses:
        if s != tables.GONE:
            assert any(r.source == s and r.target != s for r in rows), s
    pairs = [(r.source, r.trigger, r.guard) for r in rows]
    assert len(pairs) == len(set(pairs))


def test_strategies_follow_penalty_tiers():
    """Non-skill strategies stay in the lowest penalty tier; ring_all rings the whole tier."""
    q = queue(strategy="ring_all", members={"a1": 1, "a2": 0, "a3": 0})
    agents = acd.new_state(config(q), T0).agents
    free = [agents["a1"], agents["a2"], agents["a3"]]
    assert [a.id for a in choose_agents(q, free, None, None)] == ["a2", "a3"]
    rr = dataclasses.replace(q, strategy="round_robin")
    assert [a.id for a in choose_agents(rr, free, "a3", None)] == ["a2"]  # wraps, skips tier 1
    assert choose_agents(rr, [], None, None) == []


@pytest.mark.parametrize("build, message", [
    (lambda: config(queue(members=("a1", "zz"))), "member zz is not a configured agent"),
    (lambda: config(queue(overflow=acd.OverflowTarget("queue", "nowhere"))), "does not exist"),
    (lambda: queue(strategy="random"), "strategy must be one of"),
    (lambda: queue(max_len=0), "max_len"),
    (lambda: queue(ring_timeout_s=0), "ring_timeout_s"),
    (lambda: queue(members={"a1": -1}), "penalty"),
    (lambda: acd.AgentConfig("a1", "8001", {"report": 0}), "level"),
    (lambda: acd.OverflowTarget("sms"), "overflow kind"),
    (lambda: config(queue(), queue()), "defined twice"),
])
def test_bad_configuration_is_refused(build, message):
    """Inconsistent agents/queues raise ConfigError with a specific message."""
    with pytest.raises(acd.ConfigError, match=message):
        build()


def test_acd_package_is_pure():
    """callcenter.acd imports only the standard library and itself, and reads no clock."""
    allowed = {"__future__", "collections", "csv", "dataclasses", "datetime", "io", "math",
               "types", "typing", "callcenter"}
    for path in Path(callcenter.acd.__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for clock in (".now(", ".utcnow(", ".today(", "time.time(", "monotonic("):
            assert clock not in text, f"{path.name} reads the clock ({clock})"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                if name.startswith("callcenter"):
                    assert name.startswith("callcenter.acd"), f"{path.name} imports {name}"

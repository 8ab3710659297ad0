"""ARCHITECTURE.md's state diagrams, drawn from the tables the code runs on.

Each diagram is a Mermaid `stateDiagram-v2` rendered from a transition table: the case
workflow (`case_core/specs/workflow.yaml` through `case_core.domain.workflow`), the ACD's
agents and queue entries (`callcenter.acd.tables`), the SIP call (dialog) usages
(`callcenter.sip.transaction.CALL_TABLES`) and the call controller
(`callcenter.calls.table.transitions()`, drawn once that table exists), and the layers
the import contracts keep (`.importlinter`).

    python -m callcenter.diagrams                     # print every block
    python -m callcenter.diagrams --write ARCHITECTURE.md   # refresh the blocks in place
    python -m callcenter.diagrams --check ARCHITECTURE.md   # exit 1 when a block is stale

A block sits between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->` lines;
the rest of the file is prose and is left alone. `tests/unit/architecture/test_diagrams.py`
fails when a table changes without the document being regenerated.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

Edge = tuple[str, str, str, str]  # (from, trigger, to, guard or "")

_ID = re.compile(r"[^A-Za-z0-9_]")


def _state_id(name: str) -> str:
    return _ID.sub("_", name)


def mermaid(edges: Iterable[Edge], *, initial: Iterable[str] = (), final: Iterable[str] = (),
            labels: dict[str, str] | None = None) -> str:
    """A `stateDiagram-v2` with one arrow per (from, to) pair, its triggers joined by ` / `.

    Guards follow their trigger in brackets. Edge order is the table's order, so a table's
    reader and the diagram's reader see the same sequence.
    """
    lines = ["stateDiagram-v2"]
    for state, label in (labels or {}).items():
        lines.append(f"    {_state_id(state)}: {state} {label}")
    for state in initial:
        lines.append(f"    [*] --> {_state_id(state)}")
    grouped: dict[tuple[str, str], list[str]] = {}
    for src, trigger, dst, guard in edges:
        text = f"{trigger} [{guard}]" if guard else trigger
        texts = grouped.setdefault((src, dst), [])
        if text not in texts:
            texts.append(text)
    for (src, dst), texts in grouped.items():
        label = " / ".join(texts).replace(":", " ")
        lines.append(f"    {_state_id(src)} --> {_state_id(dst)}: {label}")
    for state in final:
        lines.append(f"    {_state_id(state)} --> [*]")
    return "\n".join(lines) + "\n"


def case_workflow() -> str:
    from case_core.domain.workflow import load_workflow_spec, render_diagram

    return render_diagram(load_workflow_spec())


def _acd(machine: str) -> str:
    from callcenter.acd.model import AGENT_STATUSES
    from callcenter.acd.tables import AGENT_TRANSITIONS, ENTRY_TRANSITIONS, GONE

    rows = AGENT_TRANSITIONS if machine == "agent" else ENTRY_TRANSITIONS
    edges = [(r.source, r.trigger, r.target, r.guard or "") for r in rows]
    if machine == "agent":
        return mermaid(edges, initial=(AGENT_STATUSES[0],))
    return mermaid(edges, initial=("waiting",), final=(GONE,))


def acd_agent() -> str:
    return _acd("agent")


def acd_entry() -> str:
    return _acd("entry")


def _sip_call(role: str) -> str:
    from callcenter.sip.transaction import CALL_TABLES

    table = CALL_TABLES[role]
    edges = [(src, event, dst, "") for (src, event), (dst, _actions) in table.items()]
    return mermaid(edges, initial=(next(iter(table))[0],), final=("ended",))


def sip_uas_call() -> str:
    return _sip_call("uas")


def sip_uac_call() -> str:
    return _sip_call("uac")


def _layer_node(layer: str) -> str:
    """A layer line as a flowchart node; siblings (`a : b`, `a | b`) share one box."""
    parts = [p.strip() for p in re.split(r"[:|]", layer) if p.strip()]
    return f"{'_'.join(_state_id(p) for p in parts)}[{' + '.join(parts)}]"


def layers() -> str:
    """The `layers` contracts of `.importlinter` as a Mermaid flowchart (top imports bottom)."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(Path(__file__).resolve().parents[1] / ".importlinter", encoding="utf-8")
    lines = ["flowchart TD"]
    for section in parser.sections():
        if parser.get(section, "type", fallback="") != "layers":
            continue
        names = [n.strip() for n in parser.get(section, "layers").splitlines() if n.strip()]
        lines.append(f"    %% {parser.get(section, 'name')}")
        for upper, lower in zip(names, names[1:]):
            lines.append(f"    {_layer_node(upper)} --> {_layer_node(lower)}")
    return "\n".join(lines) + "\n"


def _field(row: object, *names: str) -> str:
    for name in names:
        value = row.get(name) if isinstance(row, dict) else getattr(row, name, None)
        if value is not None:
            return str(value)
    return ""


def call_edges(rows: Iterable[object], *, any_state: str = "*", same_state: str = "=") -> list[Edge]:
    """Edges of the call controller's table, whatever its row type (dataclass, dict or tuple).

    A row for `any_state` starts from the pseudo-state `any_live` (every phase but the end);
    `same_state` as the target keeps the row's own state.
    """
    edges: list[Edge] = []
    for row in rows:
        if isinstance(row, tuple) and not hasattr(row, "_fields"):
            src, trigger, dst = (str(row[0]), str(row[1]), str(row[2]))
            guard = str(row[3]) if len(row) > 3 and isinstance(row[3], str) else ""
        else:
            src = _field(row, "source", "state", "phase", "from_phase", "from_state", "src")
            trigger = _field(row, "trigger", "event", "on")
            dst = _field(row, "target", "next_state", "to_phase", "to_state", "to", "dst")
            guard = _field(row, "guard", "when")
        if not dst or dst == same_state:
            dst = src
        if src == any_state:
            src = "any_live"
            dst = src if dst == any_state else dst
        edges.append((src, trigger, dst, guard))
    return edges


def call_states() -> str:
    """The call controller's table; a note while `callcenter.calls.table` does not exist yet."""
    try:
        table = importlib.import_module("callcenter.calls.table")
    except ImportError:
        table = None
    transitions = getattr(table, "transitions", None)
    if transitions is None:
        return ("stateDiagram-v2\n"
                "    pending: the call controller's table is not in this tree yet\n")
    edges = call_edges(transitions(), any_state=getattr(table, "ANY", "*"), same_state=getattr(table, "SAME", "="))
    return mermaid(edges, initial=("offered", "dialing"), final=("ended",),
                   labels={"any_live": "(any phase but ended)"} if any(e[0] == "any_live" for e in edges) else None)


BLOCKS: dict[str, tuple[str, Callable[[], str]]] = {
    "layers": (".importlinter (its layers contracts)", layers),
    "case-workflow": ("case_core/specs/workflow.yaml", case_workflow),
    "call-states": ("callcenter.calls.table.transitions()", call_states),
    "acd-agent": ("callcenter.acd.tables.AGENT_TRANSITIONS", acd_agent),
    "acd-entry": ("callcenter.acd.tables.ENTRY_TRANSITIONS", acd_entry),
    "sip-uas-call": ("callcenter.sip.transaction.UAS_CALL", sip_uas_call),
    "sip-uac-call": ("callcenter.sip.transaction.UAC_CALL", sip_uac_call),
}


def block(name: str) -> str:
    """One generated block's body: where it comes from, then the Mermaid diagram."""
    source, render = BLOCKS[name]
    return (f"<!-- from {source} by `python -m callcenter.diagrams --write ARCHITECTURE.md` -->\n"
            f"```mermaid\n{render()}```\n")


_BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)",
                    re.S)


def refresh(text: str) -> str:
    """`text` with every generated block redrawn from its table; unknown names are errors."""
    def redraw(m: re.Match) -> str:
        name = m.group("name")
        if name not in BLOCKS:
            raise ValueError(f"unknown generated block {name!r} (known: {', '.join(BLOCKS)})")
        return m.group(1) + block(name) + m.group(4)

    return _BLOCK.sub(redraw, text)


def stale_blocks(text: str) -> list[str]:
    """Names of the blocks whose committed text differs from the tables."""
    return [m.group("name") for m in _BLOCK.finditer(text)
            if m.group("body") != block(m.group("name"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callcenter.diagrams", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="FILE", help="redraw the generated blocks of FILE in place")
    mode.add_argument("--check", metavar="FILE", help="exit 1 when a generated block of FILE is stale")
    args = parser.parse_args(argv)
    if args.write:
        path = Path(args.write)
        path.write_text(refresh(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    if args.check:
        stale = stale_blocks(Path(args.check).read_text(encoding="utf-8"))
        if stale:
            print(f"{args.check}: stale diagrams {', '.join(stale)}; run python -m callcenter.diagrams "
                  f"--write {args.check}", file=sys.stderr)
            return 1
        return 0
    for name in BLOCKS:
        print(f"<!-- generated: {name} -->\n{block(name)}<!-- end generated: {name} -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

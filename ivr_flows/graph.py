"""Views of flow specs for people: a text tree or Mermaid chart, and a check of a directory.

Backs `hotline flows show NAME` (`render_graph`) and `hotline flows check` (`check_all`).
Both read the same validated `Flow` specs the engine runs, so the picture cannot drift
from the behaviour.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from ivr_flows.loader import (
    BranchNode,
    EnqueueNode,
    FileReportNode,
    Flow,
    FlowError,
    HangupNode,
    Node,
    OfferCallbackNode,
    RecordNode,
    SayNode,
    SetNode,
    TransferNode,
    iter_flow_files,
    parse_flows,
)

__all__ = ["render_graph", "check_all"]


def _summary(node: Node) -> str:
    """One line describing what a node does, beside its id and type."""
    parts: list[str] = []
    prompts = getattr(node, "prompts", ())
    if isinstance(node, SayNode):
        parts.append(f"say {node.kind} of {node.variable}")
        prompts = node.before + ("…",) + node.after
    if prompts:
        parts.append("♪ " + ", ".join(prompts))
    if isinstance(node, RecordNode):
        parts.append(f"record ≤{node.max_s:g}s → {node.variable}")
    elif isinstance(node, SetNode):
        parts.append(", ".join(f"{k}={v!r}" for k, v in node.values.items()))
    elif isinstance(node, FileReportNode):
        parts.append(f"channel {node.channel}")
    elif isinstance(node, (EnqueueNode, OfferCallbackNode)):
        parts.append(f"queue {node.queue}" + (f" skill {node.skill}" if getattr(node, "skill", None)
                                              else ""))
    elif isinstance(node, TransferNode):
        parts.append(f"to {node.target}")
    elif isinstance(node, HangupNode):
        parts.append(f"reason {node.reason}")
    return f"{node.id} [{node.type}]" + (" " + "; ".join(parts) if parts else "")


def _edges(node: Node) -> list[tuple[str, str]]:
    """(label, target) in a reader's order: choices first, fallbacks last."""
    edges = []
    for label, target in node.targets().items():
        if isinstance(node, BranchNode) and label.startswith("cases["):
            label = "if " + node.cases[int(label[6:-1])][0]
        elif label == "otherwise":
            label = "else"
        elif "." in label:
            label = label.split(".", 1)[1]
        edges.append((label, target))
    return edges


def _text_tree(flow: Flow) -> str:
    did = f"did {flow.did}" if flow.did else "no did"
    lines = [f"flow {flow.name} ({did}), start: {flow.start}"]
    seen: set[str] = set()

    def walk(node_id: str, prefix: str, label: str | None, last: bool, depth: int) -> None:
        node = flow.nodes[node_id]
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        head = f"{label} → " if label else ""
        if node_id in seen:
            lines.append(f"{prefix}{branch}{head}{node_id} (see above)")
            return
        seen.add(node_id)
        lines.append(f"{prefix}{branch}{head}{_summary(node)}")
        child_prefix = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        edges = _edges(node)
        for i, (edge_label, target) in enumerate(edges):
            walk(target, child_prefix, edge_label, i == len(edges) - 1, depth + 1)

    walk(flow.start, "", None, True, 0)
    return "\n".join(lines) + "\n"


def _mermaid(flow: Flow) -> str:
    def mid(node_id: str) -> str:
        return "n_" + node_id.replace("-", "_")  # `end` and friends are Mermaid keywords

    def esc(text: str) -> str:
        return text.replace('"', "#quot;")

    lines = ["flowchart TD"]
    for node in flow.nodes.values():
        lines.append(f'    {mid(node.id)}["{esc(node.id)}<br/>{node.type}"]')
    for node in flow.nodes.values():
        for label, target in _edges(node):
            lines.append(f'    {mid(node.id)} -- "{esc(label)}" --> {mid(target)}')
    return "\n".join(lines) + "\n"


def render_graph(flow: Flow, fmt: str = "text") -> str:
    """Draw a flow as an indented text tree (`text`) or a Mermaid flowchart (`mermaid`)."""
    if fmt == "text":
        return _text_tree(flow)
    if fmt == "mermaid":
        return _mermaid(flow)
    raise ValueError(f"unknown graph format {fmt!r} (text or mermaid)")


def check_all(directory: str | Path, *,
              prompts: Collection[str] | None = None) -> list[FlowError]:
    """Every problem in every flow file of a directory (empty list when all is well)."""
    try:
        paths = list(iter_flow_files(directory))
    except FlowError as exc:
        return [exc]
    if prompts is None:
        from ivr_flows.prompts_build import ManifestError, default_manifest_path, load_manifest

        try:
            prompts = frozenset(load_manifest(default_manifest_path()))
        except ManifestError as exc:
            return [FlowError(default_manifest_path(), None, str(exc))]
    errors: list[FlowError] = []
    names: dict[str, str] = {}
    dids: dict[str, str] = {}
    for path in paths:
        flow, problems = parse_flows(path, prompts=prompts)
        errors.extend(problems)
        if flow is None:
            continue
        if flow.name in names:
            errors.append(FlowError(path, None, f"flow name {flow.name!r} already used by "
                                                f"{names[flow.name]}"))
        names.setdefault(flow.name, str(path))
        if flow.did is not None:
            if flow.did in dids:
                errors.append(FlowError(path, None, f"did {flow.did!r} already served by "
                                                    f"{dids[flow.did]}"))
            dids.setdefault(flow.did, str(path))
    return errors

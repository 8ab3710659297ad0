"""Reading and validating IVR flow definitions (YAML) into immutable `Flow` specs.

This module owns the flow *spec*: the node types, their fields, the YAML format and every
load-time check (unknown node type or field, dangling target, unknown prompt name,
unreachable node, a loop the caller can never leave). The running instance lives in
`ivr_flows.engine`. A flow file looks like::

    name: "12319"
    did: "12319"
    start: main
    nodes:
      main:
        type: menu
        prompts: [welcome, menu_main]
        options: {"1": report, "9": main}
        fallback: goodbye
      ...

Errors carry the file, the line of the offending node (PyYAML marks) and a reason.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import yaml

__all__ = [
    "FlowError",
    "Flow",
    "Node",
    "load_flow",
    "load_flows",
    "parse_flows",
    "default_flows_dir",
    "parse_expression",
    "CASE_STATUSES",
    "SURVEY_ANSWERS",
    "say_prompt_names",
    "NODE_TYPES",
]


class FlowError(ValueError):
    """A flow definition is invalid; says where (file, line) and why."""

    def __init__(self, path: str | Path | None, line: int | None, reason: str):
        self.path = str(path) if path is not None else "<flow>"
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {reason}")


# ---------------------------------------------------------------------------------------
# Vocabulary that flows may speak. `say` nodes expand values into these prompt names, so
# the loader checks them against the manifest like any other prompt.

#: Case workflow states a caller can hear (the case_core workflow's status names).
CASE_STATUSES = (
    "accepted", "verifying", "registered", "dispatched", "handling", "checking",
    "closed", "declined", "void", "suspended", "direct_answered", "followed_up",
)
#: Survey keys → answers recorded with RecordSurvey (满意 / 基本满意 / 不满意).
SURVEY_ANSWERS = MappingProxyType(
    {"1": "satisfied", "2": "basically_satisfied", "3": "dissatisfied"}
)
DTMF_DIGITS = "0123456789*#ABCD"

_DIGIT_PROMPTS = frozenset(f"digit_{d}" for d in range(10))
_NUMBER_PROMPTS = frozenset(
    [f"num_{d}" for d in range(10)]
    + ["num_ten", "num_hundred", "num_thousand", "num_ten_thousand"]
)
_SAY_PROMPTS = MappingProxyType({
    "digits": _DIGIT_PROMPTS,
    "number": _NUMBER_PROMPTS | _DIGIT_PROMPTS,  # digit_* when too large to read as a number
    "date": _NUMBER_PROMPTS | {"unit_year", "unit_month", "unit_day"},
    "case_status": frozenset(f"status_{s}" for s in CASE_STATUSES) | {"status_unknown"},
})


def say_prompt_names(kind: str) -> frozenset[str]:
    """Every prompt name a `say` node of this kind may produce."""
    return _SAY_PROMPTS[kind]


# ---------------------------------------------------------------------------------------
# Branch expressions: a tiny safe grammar, parsed at load time into tuples (no eval).
#   expr := or ; or := and ('or' and)* ; and := not ('and' not)* ; not := 'not' not | cmp
#   cmp := atom (('=='|'!='|'>'|'>='|'<'|'<=') atom)? ; atom := name | number | 'str' |
#          true | false | '(' expr ')'

_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'[^']*'|\"[^\"]*\")|(?P<op>==|!=|>=|<=|>|<|\(|\))"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)
_COMPARISONS = ("==", "!=", ">", ">=", "<", "<=")


def _tokenize(src: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise ValueError(f"unexpected character {src[pos:].strip()[:1]!r} in {src!r}")
        pos = m.end()
        if m["num"] is not None:
            text = m["num"]
            tokens.append(("lit", float(text) if "." in text else int(text)))
        elif m["str"] is not None:
            tokens.append(("lit", m["str"][1:-1]))
        elif m["op"] is not None:
            tokens.append(("op", m["op"]))
        else:
            word = m["name"]
            if word in ("and", "or", "not"):
                tokens.append(("op", word))
            elif word in ("true", "True"):
                tokens.append(("lit", True))
            elif word in ("false", "False"):
                tokens.append(("lit", False))
            else:
                tokens.append(("var", word))
    return tokens


def parse_expression(src: str) -> tuple:
    """Parse a branch condition into a nested tuple tree; raises ValueError if malformed."""
    if not isinstance(src, str) or not src.strip():
        raise ValueError("empty condition")
    tokens = _tokenize(src)
    pos = 0

    def peek() -> tuple[str, Any] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, Any]:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"condition ends too early: {src!r}")
        pos += 1
        return tokens[pos - 1]

    def parse_or() -> tuple:
        left = parse_and()
        while peek() == ("op", "or"):
            take()
            left = ("or", left, parse_and())
        return left

    def parse_and() -> tuple:
        left = parse_not()
        while peek() == ("op", "and"):
            take()
            left = ("and", left, parse_not())
        return left

    def parse_not() -> tuple:
        if peek() == ("op", "not"):
            take()
            return ("not", parse_not())
        return parse_cmp()

    def parse_cmp() -> tuple:
        left = parse_atom()
        tok = peek()
        if tok and tok[0] == "op" and tok[1] in _COMPARISONS:
            take()
            return ("cmp", tok[1], left, parse_atom())
        return left

    def parse_atom() -> tuple:
        kind, value = take()
        if kind == "lit":
            return ("lit", value)
        if kind == "var":
            return ("var", value)
        if value == "(":
            inner = parse_or()
            if take() != ("op", ")"):
                raise ValueError(f"missing ')' in {src!r}")
            return inner
        raise ValueError(f"unexpected {value!r} in {src!r}")

    tree = parse_or()
    if pos != len(tokens):
        raise ValueError(f"unexpected {tokens[pos][1]!r} in {src!r}")
    return tree


def expression_variables(tree: tuple) -> set[str]:
    """Names of the variables an expression reads."""
    if tree[0] == "var":
        return {tree[1]}
    if tree[0] == "lit":
        return set()
    return set().union(*(expression_variables(t) for t in tree[1:] if isinstance(t, tuple)))


# ---------------------------------------------------------------------------------------
# Node specs. Each type declares which of its fields are targets (for the graph checks),
# which are prompt lists, and whether entering it waits for the outside world (so a cycle
# through it cannot spin without a caller or controller event).


@dataclass(frozen=True)
class Node:
    """Base of all node specs: id, type name and the YAML line it starts on."""

    id: str
    line: int

    type: ClassVar[str] = ""
    waits: ClassVar[bool] = True
    terminal: ClassVar[bool] = False
    _target_fields: ClassVar[tuple[str, ...]] = ()
    _prompt_fields: ClassVar[tuple[str, ...]] = ()

    def targets(self) -> dict[str, str]:
        """Label → target node id, for every outgoing edge."""
        out: dict[str, str] = {}
        for name in self._target_fields:
            value = getattr(self, name)
            if isinstance(value, str):
                out[name] = value
            elif isinstance(value, Mapping):
                for key, target in value.items():
                    out[f"{name}.{key}"] = target
            elif isinstance(value, tuple):
                for i, (_cond, target) in enumerate(value):
                    out[f"{name}[{i}]"] = target
        return out

    def prompt_names(self) -> set[str]:
        names: set[str] = set()
        for name in self._prompt_fields:
            names.update(getattr(self, name))
        return names


@dataclass(frozen=True)
class PlayNode(Node):
    prompts: tuple[str, ...]
    next: str
    barge_in: bool = False

    type: ClassVar[str] = "play"
    _target_fields: ClassVar[tuple[str, ...]] = ("next",)
    _prompt_fields: ClassVar[tuple[str, ...]] = ("prompts",)


@dataclass(frozen=True)
class _InputNode(Node):
    """Common fields of nodes that prompt and wait for keys, with retries and a fallback."""

    prompts: tuple[str, ...]
    fallback: str
    reprompts: tuple[str, ...] = ()  # played on retry / repeat; empty means `prompts`
    barge_in: bool = True
    timeout_s: float = 5.0
    max_retries: int = 3
    invalid_prompts: tuple[str, ...] = ("invalid",)
    timeout_prompts: tuple[str, ...] = ("timeout",)

    _prompt_fields: ClassVar[tuple[str, ...]] = (
        "prompts", "reprompts", "invalid_prompts", "timeout_prompts",
    )

    def retry_prompts(self) -> tuple[str, ...]:
        return self.reprompts or self.prompts


@dataclass(frozen=True)
class MenuNode(_InputNode):
    options: Mapping[str, str] = field(default_factory=dict)

    type: ClassVar[str] = "menu"
    _target_fields: ClassVar[tuple[str, ...]] = ("options", "fallback")


@dataclass(frozen=True)
class CollectNode(_InputNode):
    variable: str = "digits"
    next: str = ""
    min_digits: int = 1
    max_digits: int = 20
    terminator: str = "#"
    timeout_s: float = 8.0
    inter_digit_timeout_s: float = 5.0

    type: ClassVar[str] = "collect"
    _target_fields: ClassVar[tuple[str, ...]] = ("next", "fallback")


@dataclass(frozen=True)
class SurveyNode(_InputNode):
    """Keys 1/2/3 → satisfied / basically_satisfied / dissatisfied; `on_answer` overrides `next`."""

    next: str = ""
    variable: str = "survey_answer"
    on_answer: Mapping[str, str] = field(default_factory=dict)

    type: ClassVar[str] = "survey"
    _target_fields: ClassVar[tuple[str, ...]] = ("next", "on_answer", "fallback")


@dataclass(frozen=True)
class RecordNode(Node):
    next: str
    prompts: tuple[str, ...] = ()
    max_s: float = 120.0
    silence_s: float | None = 8.0
    stop_digits: str = "#"
    beep: bool = True
    variable: str = "recording"
    # Where to go when the caller hangs up mid-recording: the message is kept (e.g. filed).
    on_hangup: str | None = None

    type: ClassVar[str] = "record"
    _target_fields: ClassVar[tuple[str, ...]] = ("next", "on_hangup")
    _prompt_fields: ClassVar[tuple[str, ...]] = ("prompts",)

    def prompt_names(self) -> set[str]:
        return super().prompt_names() | ({"beep"} if self.beep else set())


@dataclass(frozen=True)
class SayNode(Node):
    kind: str
    variable: str
    next: str
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    barge_in: bool = False

    type: ClassVar[str] = "say"
    _target_fields: ClassVar[tuple[str, ...]] = ("next",)
    _prompt_fields: ClassVar[tuple[str, ...]] = ("before", "after")

    def prompt_names(self) -> set[str]:
        return super().prompt_names() | say_prompt_names(self.kind)


@dataclass(frozen=True)
class BranchNode(Node):
    cases: tuple[tuple[str, str], ...]  # (condition source, target)
    otherwise: str
    parsed: tuple[tuple, ...] = ()

    type: ClassVar[str] = "branch"
    waits: ClassVar[bool] = False
    _target_fields: ClassVar[tuple[str, ...]] = ("cases", "otherwise")


@dataclass(frozen=True)
class SetNode(Node):
    values: Mapping[str, object]
    next: str

    type: ClassVar[str] = "set"
    waits: ClassVar[bool] = False
    _target_fields: ClassVar[tuple[str, ...]] = ("next",)


@dataclass(frozen=True)
class LookupCaseNode(Node):
    found: str
    not_found: str
    variable: str = "case_number"
    timeout_s: float = 10.0  # no answer from the case store: treat as not found, do not stall

    type: ClassVar[str] = "lookup_case"
    _target_fields: ClassVar[tuple[str, ...]] = ("found", "not_found")


@dataclass(frozen=True)
class FileReportNode(Node):
    channel: str
    next: str
    recording_variable: str = "recording"

    type: ClassVar[str] = "file_report"
    _target_fields: ClassVar[tuple[str, ...]] = ("next",)


@dataclass(frozen=True)
class EnqueueNode(Node):
    """Hands the caller to the ACD; outcome `answered` ends the IVR, others go on."""

    queue: str
    default: str
    skill: str | None = None
    outcomes: Mapping[str, str] = field(default_factory=dict)

    type: ClassVar[str] = "enqueue"
    terminal: ClassVar[bool] = True
    _target_fields: ClassVar[tuple[str, ...]] = ("outcomes", "default")


@dataclass(frozen=True)
class OfferCallbackNode(Node):
    queue: str
    next: str

    type: ClassVar[str] = "offer_callback"
    waits: ClassVar[bool] = False
    _target_fields: ClassVar[tuple[str, ...]] = ("next",)


@dataclass(frozen=True)
class TransferNode(Node):
    target: str

    type: ClassVar[str] = "transfer"
    terminal: ClassVar[bool] = True


@dataclass(frozen=True)
class HangupNode(Node):
    reason: str = "normal"
    prompts: tuple[str, ...] = ()  # said (no barge-in) before hanging up

    type: ClassVar[str] = "hangup"
    terminal: ClassVar[bool] = True
    _prompt_fields: ClassVar[tuple[str, ...]] = ("prompts",)


NODE_TYPES: Mapping[str, type[Node]] = MappingProxyType({
    cls.type: cls
    for cls in (
        PlayNode, MenuNode, CollectNode, RecordNode, SayNode, BranchNode, SetNode,
        LookupCaseNode, FileReportNode, EnqueueNode, OfferCallbackNode, TransferNode,
        SurveyNode, HangupNode,
    )
})


@dataclass(frozen=True)
class Flow:
    """A validated, immutable flow spec: name, DID, start node and nodes by id."""

    name: str
    did: str | None
    start: str
    nodes: Mapping[str, Node]
    path: str | None = None
    description: str = ""

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def prompt_names(self) -> set[str]:
        """Every prompt name this flow may play, including `say` expansions."""
        names: set[str] = set()
        for node in self.nodes.values():
            names |= node.prompt_names()
        return names

    def __hash__(self) -> int:  # nodes is a mapping; identity is enough for a loaded spec
        return hash((self.name, self.path))


# ---------------------------------------------------------------------------------------
# YAML with line numbers. Mappings come back as `_Map` (a dict) remembering where they
# start and where each key is; duplicate keys are an error rather than silently dropped.


class _Map(dict):
    line: int = 0
    key_lines: dict


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise FlowError(None, key_node.start_mark.line + 1, f"unusable key {key!r}")
        if key in result:
            raise FlowError(None, key_node.start_mark.line + 1, f"duplicate key {key!r}")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(path, None, f"cannot read file: {exc}") from exc
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except FlowError as exc:
        raise FlowError(path, exc.line, exc.reason) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise FlowError(path, line, f"invalid YAML: {getattr(exc, 'problem', exc)}") from exc


# ---------------------------------------------------------------------------------------
# Building nodes from YAML mappings.

_YAML_KEY_ALIASES = {"else": "otherwise"}


class _Problems:
    def __init__(self, path: Path | str | None):
        self.path = path
        self.errors: list[FlowError] = []

    def add(self, line: int | None, reason: str) -> None:
        self.errors.append(FlowError(self.path, line, reason))


def _as_prompts(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ValueError("must be a prompt name or a list of prompt names")


def _convert(name: str, value: Any, hint: Any) -> Any:
    """Coerce one YAML value to the node field type; ValueError with a reason if wrong."""
    if name in ("prompts", "reprompts", "invalid_prompts", "timeout_prompts", "before", "after"):
        return _as_prompts(value)
    if name in ("options", "outcomes", "on_answer"):
        if not isinstance(value, dict):
            raise ValueError("must be a mapping")
        out = {}
        for key, target in value.items():
            if not isinstance(target, str):
                raise ValueError(f"target of {key!r} must be a node id")
            out[str(key)] = target
        return MappingProxyType(out)
    if name == "values":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError("must be a mapping of variable names to values")
        for key, v in value.items():
            if not isinstance(v, (str, int, float, bool)) and v is not None:
                raise ValueError(f"value of {key!r} must be a plain scalar")
        return MappingProxyType(dict(value))
    if name == "cases":
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list of {if: ..., next: ...}")
        cases = []
        for item in value:
            if not isinstance(item, dict) or set(item) != {"if", "next"}:
                raise ValueError("each case needs exactly `if` and `next`")
            if not isinstance(item["next"], str):
                raise ValueError("case `next` must be a node id")
            cases.append((str(item["if"]) if not isinstance(item["if"], bool)
                          else str(item["if"]).lower(), item["next"]))
        return tuple(cases)
    if hint in ("bool",):
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if hint in ("int",):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("must be a whole number ≥ 0")
        return value
    if hint in ("float", "float | None"):
        if value is None and hint == "float | None":
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError("must be a number of seconds > 0")
        return float(value)
    if hint in ("str", "str | None"):
        if value is None and hint == "str | None":
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. channel: 12319 written without quotes
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value
    raise ValueError(f"unsupported field type {hint}")  # pragma: no cover - spec bug


def _build_node(node_id: str, raw: Any, line: int, problems: _Problems) -> Node | None:
    if not isinstance(raw, dict):
        problems.add(line, f"node {node_id!r} must be a mapping")
        return None
    type_name = raw.get("type")
    cls = NODE_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        problems.add(line, f"node {node_id!r}: unknown node type {type_name!r} "
                           f"(known: {', '.join(sorted(NODE_TYPES))})")
        return None
    spec = {f.name: f for f in fields(cls) if f.name not in ("id", "line", "parsed")}
    kwargs: dict[str, Any] = {}
    ok = True
    for key, value in raw.items():
        if key == "type":
            continue
        attr = _YAML_KEY_ALIASES.get(key, key)
        key_line = raw.key_lines.get(key, line) if isinstance(raw, _Map) else line
        if attr not in spec:
            problems.add(key_line, f"node {node_id!r} ({type_name}): unknown field {key!r}")
            ok = False
            continue
        try:
            kwargs[attr] = _convert(attr, value, spec[attr].type)
        except ValueError as exc:
            problems.add(key_line, f"node {node_id!r}: field {key!r} {exc}")
            ok = False
    missing = [
        name for name, f in spec.items()
        if name not in kwargs and f.default is f.default_factory  # both MISSING
        and name not in ("reprompts",)
    ]
    # CollectNode/SurveyNode give `next` a "" default only for dataclass ordering.
    if cls in (CollectNode, SurveyNode) and "next" not in kwargs:
        missing.append("next")
    if missing:
        shown = ["else" if m == "otherwise" else m for m in missing]
        problems.add(line, f"node {node_id!r} ({type_name}): missing field(s) {', '.join(shown)}")
        ok = False
    if not ok:
        return None
    if cls is BranchNode:
        parsed = []
        for cond, _target in kwargs["cases"]:
            try:
                parsed.append(parse_expression(cond))
            except ValueError as exc:
                problems.add(line, f"node {node_id!r}: bad condition: {exc}")
                ok = False
        kwargs["parsed"] = tuple(parsed)
    if cls is SayNode and kwargs.get("kind") not in _SAY_PROMPTS:
        problems.add(line, f"node {node_id!r}: say kind must be one of {', '.join(_SAY_PROMPTS)}")
        ok = False
    if cls is MenuNode:
        bad = [k for k in kwargs.get("options", {}) if len(k) != 1 or k not in DTMF_DIGITS]
        if bad:
            problems.add(line, f"node {node_id!r}: menu keys must be single DTMF keys, got {bad}")
            ok = False
    if cls is SurveyNode:
        bad = [k for k in kwargs.get("on_answer", {}) if k not in SURVEY_ANSWERS.values()]
        if bad:
            problems.add(line, f"node {node_id!r}: `on_answer` keys must be survey answers "
                               f"({', '.join(SURVEY_ANSWERS.values())}), got {bad}")
            ok = False
    if cls is CollectNode:
        lo, hi = kwargs.get("min_digits", 1), kwargs.get("max_digits", 20)
        term = kwargs.get("terminator", "#")
        if lo > hi or hi < 1:
            problems.add(line, f"node {node_id!r}: need 0 ≤ min_digits ≤ max_digits, max ≥ 1")
            ok = False
        if term and (len(term) != 1 or term not in "*#"):
            problems.add(line, f"node {node_id!r}: terminator must be '#', '*' or ''")
            ok = False
    if cls is RecordNode and any(c not in DTMF_DIGITS for c in kwargs.get("stop_digits", "")):
        problems.add(line, f"node {node_id!r}: stop_digits must be DTMF keys")
        ok = False
    if not ok:
        return None
    return cls(id=node_id, line=line, **kwargs)


def _check_graph(flow_nodes: Mapping[str, Node], start: str, problems: _Problems,
                 start_line: int) -> None:
    if start not in flow_nodes:
        problems.add(start_line, f"start node {start!r} does not exist")
        return
    dangling = False
    for node in flow_nodes.values():
        for label, target in node.targets().items():
            if target not in flow_nodes:
                problems.add(node.line, f"node {node.id!r}: {label} goes to missing node {target!r}")
                dangling = True
    if dangling:
        return
    edges = {nid: set(n.targets().values()) for nid, n in flow_nodes.items()}
    reached, todo = {start}, [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                todo.append(nxt)
    for nid, node in flow_nodes.items():
        if nid not in reached:
            problems.add(node.line, f"node {nid!r} is unreachable from start {start!r}")
    # Every node must be able to reach an end (hangup, transfer, queue); a set of nodes
    # that only lead into each other traps the caller.
    can_end = {nid for nid, n in flow_nodes.items() if n.terminal}
    changed = True
    while changed:
        changed = False
        for nid, targets in edges.items():
            if nid not in can_end and targets & can_end:
                can_end.add(nid)
                changed = True
    for nid in sorted(reached - can_end, key=lambda n: flow_nodes[n].line):
        problems.add(flow_nodes[nid].line,
                     f"node {nid!r} is in a loop with no exit (never reaches hangup, "
                     f"transfer or enqueue)")
    # A cycle of nodes that do not wait (branch/set/offer_callback) would spin forever.
    instant = {nid for nid, n in flow_nodes.items() if not n.waits}
    state: dict[str, int] = {}

    def visit(nid: str, trail: list[str]) -> None:
        state[nid] = 1
        trail.append(nid)
        for nxt in sorted(edges[nid] & instant):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):]
                problems.add(flow_nodes[nxt].line,
                             f"loop with no wait: {' -> '.join(cycle + [nxt])}")
            elif nxt not in state:
                visit(nxt, trail)
        trail.pop()
        state[nid] = 2

    for nid in sorted(instant):
        if nid not in state:
            visit(nid, [])


def _default_prompt_names() -> frozenset[str]:
    from ivr_flows.prompts_build import default_manifest_path, load_manifest

    return frozenset(load_manifest(default_manifest_path()))


def parse_flows(path: str | Path, *,
                prompts: Collection[str] | None = None) -> tuple[Flow | None, list[FlowError]]:
    """Load one flow file and return it with ALL problems found (flow is None if any)."""
    path = Path(path)
    problems = _Problems(path)
    try:
        raw = _read_yaml(path)
    except FlowError as exc:
        return None, [exc]
    if not isinstance(raw, dict):
        problems.add(1, "a flow file must be a mapping with name, start and nodes")
        return None, problems.errors
    line_of = raw.key_lines.get if isinstance(raw, _Map) else (lambda _k, d=1: d)
    unknown = set(raw) - {"name", "did", "start", "nodes", "description"}
    for key in sorted(map(str, unknown)):
        problems.add(line_of(key, 1), f"unknown top-level key {key!r}")
    name = raw.get("name")
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)
    if not isinstance(name, str) or not name:
        problems.add(line_of("name", 1), "flow needs a `name` (string)")
    did = raw.get("did")
    if isinstance(did, int) and not isinstance(did, bool):
        did = str(did)
    if did is not None and not (isinstance(did, str) and did):
        problems.add(line_of("did", 1), "`did` must be a number string or null")
    start = raw.get("start")
    if not isinstance(start, str):
        problems.add(line_of("start", 1), "flow needs a `start` node id")
    raw_nodes = raw.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        problems.add(line_of("nodes", 1), "flow needs a non-empty `nodes` mapping")
        return None, problems.errors
    nodes: dict[str, Node] = {}
    node_lines = raw_nodes.key_lines if isinstance(raw_nodes, _Map) else {}
    for node_id, body in raw_nodes.items():
        line = node_lines.get(node_id, 1)
        if not isinstance(node_id, str) or not re.fullmatch(r"[A-Za-z_][\w-]*", node_id):
            problems.add(line, f"bad node id {node_id!r} (letters, digits, _ and -)")
            continue
        node = _build_node(node_id, body, line, problems)
        if node is not None:
            nodes[node_id] = node
    if problems.errors:
        return None, problems.errors
    _check_graph(nodes, start, problems, line_of("start", 1))
    known = _default_prompt_names() if prompts is None else frozenset(prompts)
    for node in nodes.values():
        missing = sorted(node.prompt_names() - known)
        if missing:
            problems.add(node.line, f"node {node.id!r}: unknown prompt name(s) "
                                    f"{', '.join(missing)} (not in the prompt manifest)")
    if problems.errors:
        return None, problems.errors
    description = raw.get("description") or ""
    return Flow(name=name, did=did, start=start, nodes=MappingProxyType(nodes),
                path=str(path), description=str(description)), []


def load_flow(path: str | Path, *, prompts: Collection[str] | None = None) -> Flow:
    """Load and validate one flow file; raises FlowError (the first problem found).

    `prompts` is the set of known prompt names; by default the shipped manifest's.
    """
    flow, errors = parse_flows(path, prompts=prompts)
    if errors:
        first = errors[0]
        if len(errors) > 1:
            raise FlowError(first.path, first.line,
                            f"{first.reason} (and {len(errors) - 1} more problem(s))")
        raise first
    assert flow is not None
    return flow


def _flow_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise FlowError(directory, None, "flow directory does not exist")
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))


def load_flows(directory: str | Path, *,
               prompts: Collection[str] | None = None) -> dict[str, Flow]:
    """Load every *.yaml flow in a directory, keyed by flow name; raises FlowError."""
    directory = Path(directory)
    known = _default_prompt_names() if prompts is None else frozenset(prompts)
    flows: dict[str, Flow] = {}
    dids: dict[str, str] = {}
    for path in _flow_files(directory):
        flow = load_flow(path, prompts=known)
        if flow.name in flows:
            raise FlowError(path, None, f"flow name {flow.name!r} already used by "
                                        f"{flows[flow.name].path}")
        if flow.did is not None:
            if flow.did in dids:
                raise FlowError(path, None, f"did {flow.did!r} already served by flow "
                                            f"{dids[flow.did]!r}")
            dids[flow.did] = flow.name
        flows[flow.name] = flow
    return flows


def default_flows_dir() -> Path:
    """The directory of the flows shipped with the package."""
    return Path(__file__).resolve().parent / "flows"


def iter_flow_files(directory: str | Path) -> Iterable[Path]:
    """The flow files `load_flows` would read, in order (raises FlowError if no dir)."""
    return _flow_files(Path(directory))

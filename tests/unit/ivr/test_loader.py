"""Loading flow files: the shipped flows, and every kind of error a flow author can make."""

from __future__ import annotations

import textwrap

import pytest

from ivr_flows.loader import (
    FlowError,
    default_flows_dir,
    load_flow,
    load_flows,
    parse_expression,
)

PROMPTS = {"hello", "menu", "bye", "invalid", "timeout", "beep"}


def write(tmp_path, text: str, name: str = "f.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


GOOD = """\
    name: demo
    did: 4000
    start: main
    nodes:
      main:
        type: menu
        prompts: [hello, menu]
        options: {"1": bye_node}
        fallback: bye_node
      bye_node:
        type: hangup
        prompts: [bye]
"""


def test_default_flows_load_by_name_with_dids():
    """The shipped flows load, keyed by name, with their DIDs."""
    flows = load_flows(default_flows_dir())
    assert {name: f.did for name, f in flows.items()} == {
        "12319": "12319", "96310": "96310", "survey": None}


def test_default_flow_prompt_names_include_say_expansions():
    """prompt_names() covers the prompts `say` nodes can generate (digits, statuses)."""
    names = load_flows(default_flows_dir())["12319"].prompt_names()
    assert {"welcome", "menu_main", "beep", "digit_1", "status_closed", "status_unknown"} <= names


def test_good_flow_converts_unquoted_did_to_string(tmp_path):
    """A DID written as a YAML number is kept as the string the caller dialled."""
    flow = load_flow(write(tmp_path, GOOD), prompts=PROMPTS)
    assert (flow.name, flow.did, flow.start) == ("demo", "4000", "main")


@pytest.mark.parametrize("body, line, reason", [
    # unknown node type
    ("""\
     name: x
     start: a
     nodes:
       a: {type: hangup}
       b:
         type: dance
     """, 5, "unknown node type 'dance'"),
    # dangling target
    ("""\
     name: x
     start: a
     nodes:
       a:
         type: play
         prompts: [hello]
         next: nowhere
     """, 4, "goes to missing node 'nowhere'"),
    # unknown prompt
    ("""\
     name: x
     start: a
     nodes:
       a:
         type: hangup
         prompts: [helo]
     """, 4, "unknown prompt name(s) helo"),
    # unreachable node
    ("""\
     name: x
     start: a
     nodes:
       a: {type: hangup}
       lonely: {type: hangup}
     """, 5, "'lonely' is unreachable"),
    # loop with no exit: the menu can only return to itself
    ("""\
     name: x
     start: a
     nodes:
       a:
         type: menu
         prompts: [menu]
         options: {"1": a}
         fallback: a
     """, 4, "loop with no exit"),
    # loop with no wait: branch and set chase each other
    ("""\
     name: x
     start: a
     nodes:
       a:
         type: branch
         cases: [{if: business_hours, next: z}]
         else: b
       b: {type: set, values: {k: 1}, next: a}
       z: {type: hangup}
     """, 4, "loop with no wait: a -> b -> a"),
    # typo in a field name
    ("""\
     name: x
     start: a
     nodes:
       a:
         type: play
         prompts: [hello]
         nxt: b
         next: b
       b: {type: hangup}
     """, 7, "unknown field 'nxt'"),
    # missing required field
    ("""\
     name: x
     start: a
     nodes:
       a: {type: menu, prompts: [menu], options: {"1": b}}
       b: {type: hangup}
     """, 4, "missing field(s) fallback"),
    # duplicate key would silently drop a node
    ("""\
     name: x
     start: a
     nodes:
       a: {type: hangup}
       a: {type: hangup}
     """, 5, "duplicate key 'a'"),
    # bad condition
    ("""\
     name: x
     start: a
     nodes:
       a:
         type: branch
         cases: [{if: "agents_ready >", next: b}]
         else: b
       b: {type: hangup}
     """, 4, "bad condition"),
    # invalid YAML
    ("name: x\nstart: [a\n", 3, "invalid YAML"),
    # start missing
    ("""\
     name: x
     start: nope
     nodes:
       a: {type: hangup}
     """, 2, "start node 'nope' does not exist"),
    # bad number
    ("""\
     name: x
     start: a
     nodes:
       a:
         type: record
         max_s: -5
         next: b
       b: {type: hangup}
     """, 6, "field 'max_s' must be a number of seconds > 0"),
])
def test_flow_errors_name_file_line_and_reason(tmp_path, body, line, reason):
    """Each authoring mistake raises FlowError with the file, the node's line and why."""
    path = write(tmp_path, body)
    with pytest.raises(FlowError) as info:
        load_flow(path, prompts=PROMPTS)
    err = info.value
    assert reason in err.reason
    assert err.line == line
    assert str(err).startswith(f"{path}:{line}: ")


def test_flow_error_is_a_value_error(tmp_path):
    """FlowError can be caught as ValueError by generic config handling."""
    with pytest.raises(ValueError):
        load_flow(write(tmp_path, "just a string\n"), prompts=PROMPTS)


def test_load_flows_rejects_two_flows_for_one_did(tmp_path):
    """Two flows claiming the same DID is an error, not a silent override."""
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD.replace("name: demo", "name: other"), "b.yaml")
    with pytest.raises(FlowError, match="did '4000' already served"):
        load_flows(tmp_path, prompts=PROMPTS)


def test_load_flows_on_missing_directory(tmp_path):
    """A missing flow directory is a FlowError naming it."""
    with pytest.raises(FlowError, match="does not exist"):
        load_flows(tmp_path / "nope", prompts=PROMPTS)


@pytest.mark.parametrize("src, tree", [
    ("business_hours", ("var", "business_hours")),
    ("not is_holiday", ("not", ("var", "is_holiday"))),
    ("agents_ready > 3", ("cmp", ">", ("var", "agents_ready"), ("lit", 3))),
    ("did == '12319'", ("cmp", "==", ("var", "did"), ("lit", "12319"))),
    ("a and b or not c", ("or", ("and", ("var", "a"), ("var", "b")), ("not", ("var", "c")))),
    ("a and (b or c)", ("and", ("var", "a"), ("or", ("var", "b"), ("var", "c")))),
])
def test_parse_expression(src, tree):
    """Conditions parse into the expected tree, with the usual precedence."""
    assert parse_expression(src) == tree


@pytest.mark.parametrize("src", [
    "__import__('os').system('x')", "a.b", "a +", "a == ", "(a", "a b", "", "x[0]",
])
def test_parse_expression_rejects_anything_else(src):
    """Anything outside the tiny grammar (calls, attributes, junk) is refused."""
    with pytest.raises(ValueError):
        parse_expression(src)

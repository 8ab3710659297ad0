"""Flow views for `hotline flows show` and the directory check for `hotline flows check`."""

from __future__ import annotations

import re
import shutil

import pytest

from ivr_flows.graph import check_all, render_graph
from ivr_flows.loader import default_flows_dir, load_flows


@pytest.fixture(scope="module")
def flows():
    return load_flows(default_flows_dir())


def test_text_tree_shows_each_node_once_with_labelled_edges(flows):
    """The text tree lists every node once, labels edges by key/condition, marks repeats."""
    text = render_graph(flows["12319"])
    assert text.splitlines()[0] == "flow 12319 (did 12319), start: main"
    for node_id in flows["12319"].nodes:
        assert len(re.findall(rf"(?<!\w){re.escape(node_id)} \[", text)) == 1, node_id
    assert "├─ 1 → report_start [set]" in text
    assert "if agents_ready > 0 and business_hours → report_queue [enqueue]" in text
    assert "9 → main (see above)" in text


def test_mermaid_has_a_node_and_edge_per_target(flows):
    """Mermaid output declares every node and every edge, with keyword-safe ids."""
    flow = flows["survey"]
    text = render_graph(flow, "mermaid")
    assert text.startswith("flowchart TD\n")
    edges = sum(len(n.targets()) for n in flow.nodes.values())
    assert text.count(" --> ") == edges
    assert 'n_question -- "dissatisfied" --> n_message_offer' in text


def test_unknown_format_is_refused(flows):
    """Asking for a format that does not exist is a ValueError."""
    with pytest.raises(ValueError, match="unknown graph format"):
        render_graph(flows["survey"], "svg")


def test_check_all_clean_for_shipped_flows():
    """The shipped flows have no problems."""
    assert check_all(default_flows_dir()) == []


def test_check_all_reports_every_problem_in_every_file(tmp_path):
    """Problems from several files come back together, plus duplicate DIDs."""
    for name in ("12319.yaml", "96310.yaml"):
        shutil.copy(default_flows_dir() / name, tmp_path / name)
    (tmp_path / "copy.yaml").write_text(
        (default_flows_dir() / "12319.yaml").read_text(encoding="utf-8")
        .replace('name: "12319"', "name: copy"), encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nstart: a\nnodes:\n  a: {type: jump}\n  b: {type: hangup, prompts: [nope]}\n",
        encoding="utf-8")
    errors = check_all(tmp_path)
    reasons = [(e.path.rsplit("/", 1)[-1], e.line, e.reason) for e in errors]
    assert ("bad.yaml", 4, "node 'a': unknown node type 'jump' (known: branch, collect, "
            "enqueue, file_report, hangup, lookup_case, menu, offer_callback, play, record, "
            "say, set, survey, transfer)") in reasons
    assert any(r[0] == "copy.yaml" and "did '12319' already served" in r[2] for r in reasons)


def test_check_all_missing_directory(tmp_path):
    """A missing directory is reported, not raised."""
    errors = check_all(tmp_path / "nope")
    assert len(errors) == 1 and "does not exist" in errors[0].reason

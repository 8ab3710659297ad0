"""ARCHITECTURE.md's diagrams are drawn from the tables the code runs on, and kept in step."""

from pathlib import Path

from callcenter import diagrams

REPO = Path(__file__).resolve().parents[3]


def test_committed_diagrams_match_the_tables():
    """Every generated block of ARCHITECTURE.md equals what the tables draw now."""
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    stale = diagrams.stale_blocks(text)
    assert stale == [], f"run: python -m callcenter.diagrams --write ARCHITECTURE.md (stale: {stale})"
    assert diagrams.refresh(text) == text


def test_every_table_has_its_block():
    """The document draws every table the generator knows (no diagram silently left out)."""
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for name in diagrams.BLOCKS:
        assert f"<!-- generated: {name} -->" in text
        assert f"<!-- end generated: {name} -->" in text


def test_a_changed_table_makes_its_block_stale():
    """An edited drawing (as after a table change without regenerating) is reported by name."""
    text = diagrams.refresh((REPO / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    edited = text.replace("ready --> paused: AgentPaused", "ready --> paused: AgentPausedTwice", 1)
    assert edited != text
    assert diagrams.stale_blocks(edited) == ["acd-agent"]


def test_workflow_diagram_has_every_status_and_edge_labels():
    """The case workflow drawing names each status with its 中文 label and labels its arrows."""
    from case_core.domain.workflow import STATUS_LABELS

    drawing = diagrams.case_workflow()
    for status, label in STATUS_LABELS.items():
        assert f"{status}: {status} {label}" in drawing
    assert "checked --> closed: close 结案" in drawing


def test_call_table_rows_of_any_shape_become_edges():
    """The call controller's rows are read whether they are tuples, dicts or objects."""
    from dataclasses import dataclass

    @dataclass
    class Row:
        source: str
        trigger: str
        target: str
        guard: str | None = None

    rows = [("offered", "Answered", "ivr"), {"source": "ivr", "trigger": "QueueChosen", "target": "queued"},
            Row("queued", "AgentAnswered", "bridged", "agent free")]
    assert diagrams.call_edges(rows) == [("offered", "Answered", "ivr", ""), ("ivr", "QueueChosen", "queued", ""),
                                         ("queued", "AgentAnswered", "bridged", "agent free")]
    drawing = diagrams.mermaid(diagrams.call_edges(rows), initial=("offered",))
    assert "queued --> bridged: AgentAnswered [agent free]" in drawing


def test_check_mode_exit_status(tmp_path):
    """--check exits 1 on a stale file and 0 once --write has redrawn it."""
    doc = tmp_path / "A.md"
    doc.write_text("# x\n<!-- generated: acd-entry -->\nold\n<!-- end generated: acd-entry -->\n", encoding="utf-8")
    assert diagrams.main(["--check", str(doc)]) == 1
    assert diagrams.main(["--write", str(doc)]) == 0
    assert diagrams.main(["--check", str(doc)]) == 0
    assert "waiting --> ringing: call_offered" in doc.read_text(encoding="utf-8")

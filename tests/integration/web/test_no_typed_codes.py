"""Nothing is typed as a code: every workflow action form (and the desk's case form) offers
department, inspector, grid cell, category and case numbers through a picker or a list,
never a free-text box. The forms are rendered from the real transition table and templates,
with and without imported departments."""

from __future__ import annotations

from html.parser import HTMLParser
from types import SimpleNamespace

import jinja2
import pytest

from case_core.domain import workflow
from case_core.domain.workflow import ACTION_LABELS, ROLE_LABELS, STATUS_LABELS
from web.app import TEMPLATES
from web.worklists import PICKER_FIELDS, form_fields

# Values that must be a code (or a case number) for the workflow to accept them.
CODE_FIELDS = {"department", "inspector", "grid_cell", "category", "merged_into", "merged_case"}
SPEC = workflow.load_workflow_spec()
ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=jinja2.select_autoescape(["html"]))


class Controls(HTMLParser):
    """Every named form control (tag, type, name) and every picker (kind, name)."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[tuple[str, str, str]] = []
        self.pickers: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("input", "textarea", "select") and a.get("name"):
            self.controls.append((tag, (a.get("type") or "text") if tag == "input" else tag, a["name"]))
        if a.get("data-picker"):
            self.pickers.append((a["data-picker"], a.get("data-name") or a["data-picker"]))


def typed_codes(html: str) -> tuple[list[str], Controls]:
    parser = Controls()
    parser.feed(html)
    free_text = {"text", "search", "textarea", "number", "tel"}
    bad = [f"{tag} {name}" for tag, kind, name in parser.controls if name in CODE_FIELDS and kind in free_text]
    return bad, parser


def render_action_form(t, departments) -> str:
    case = SimpleNamespace(id=1, number="20261123-0001", status=t.from_states[0], case_type="normal",
                           address="长江路12号", description="井盖缺失", version=1)
    return ENV.get_template("case_action.html").render(
        user=None, case=case, action=t.name, action_label=ACTION_LABELS.get(t.name, t.name),
        fields=form_fields(SPEC, t, departments, None), can_submit=True, error=None, error_field=None,
        values={}, picker_texts={}, csrf="x", expected_version=1, status_labels=STATUS_LABELS, role_labels=ROLE_LABELS)


TRANSITIONS = [t for t in SPEC.transitions if t.name in ACTION_LABELS and t.name != "absorb"]


@pytest.mark.parametrize("departments", [{}, {"municipal": "市政设施养护中心"}], ids=["no-departments", "departments"])
def test_no_action_form_has_a_free_text_box_for_a_code(departments):
    """Walk every action form of the workflow: a code field is a picker or a list, never typed."""
    seen_code_fields: set[str] = set()
    for t in TRANSITIONS:
        html = render_action_form(t, departments)
        bad, parsed = typed_codes(html)
        assert bad == [], f"action {t.name}: code typed as free text: {bad}"
        names = set(t.required_fields) | set(t.optional_fields)
        for name in names & CODE_FIELDS:
            seen_code_fields.add(name)
            as_list = ("select", "select", name) in parsed.controls
            as_picker = any(n == name for _, n in parsed.pickers)
            assert as_list or as_picker, f"action {t.name}: {name} is neither a list nor a picker"
    # The walk really met the code fields (a renamed field would otherwise pass unseen).
    assert {"department", "inspector", "category", "grid_cell"} <= seen_code_fields, seen_code_fields


def test_the_checker_catches_a_typed_code():
    """The check itself fails on a plain text box named grid_cell (so the walk above can fail)."""
    bad, _ = typed_codes('<form><input name="grid_cell"><textarea name="category"></textarea>'
                         '<input type="hidden" name="department"></form>')
    assert bad == ["input grid_cell", "textarea category"]


def test_every_code_field_has_a_picker_kind():
    """Each code field maps to a picker that static/picker.js knows."""
    js = (TEMPLATES.parent / "static" / "picker.js").read_text(encoding="utf-8")
    assert CODE_FIELDS <= set(PICKER_FIELDS)
    for kind in set(PICKER_FIELDS.values()):
        assert f"{kind}: {{" in js or f'"{kind}": {{' in js, kind


def test_the_desk_form_has_no_free_text_code_box():
    """The screen-pop form: category, place (grid cell) and links are pickers; no code is typed."""
    html = ENV.get_template("desk.html").render(
        user=None, agent=None, pause_reasons={}, case_types=workflow.CASE_TYPE_LABELS, calling_hours=None,
        status_labels=STATUS_LABELS, role_labels=ROLE_LABELS)
    bad, parsed = typed_codes(html)
    assert bad == []
    kinds = {k for k, _ in parsed.pickers}
    assert {"category", "place", "case"} <= kinds, kinds

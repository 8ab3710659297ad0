"""SMS templates: the shipped zh-CN texts, the city's overrides, and rejection of broken ones."""

import pytest

from callcenter.notify.templates import SAMPLE_CONTEXT, TEMPLATE_NAMES, SmsTemplates, TemplateError, check_source


def test_accepted_text_has_case_number_and_how_to_check_status():
    """The accepted SMS carries the signature, the case number and 'call 12319 and press 2'."""
    text = SmsTemplates().render("accepted", SAMPLE_CONTEXT["accepted"])
    assert text.startswith("【12319城建服务热线】")
    assert "20260315-0042" in text and "拨打12319按2" in text


def test_declined_and_closed_texts_carry_reason_and_result():
    """The decline reason and the handling result appear in their messages."""
    t = SmsTemplates()
    assert "原因：不属于城市管理职责范围" in t.render("declined", SAMPLE_CONTEXT["declined"])
    assert "破损井盖已于3月16日更换" in t.render("closed", SAMPLE_CONTEXT["closed"])


def test_every_shipped_template_passes_the_check():
    """The shipped templates render with their sample values and no problem is reported."""
    assert SmsTemplates().check() == []
    assert set(TEMPLATE_NAMES) == {"accepted", "registered", "declined", "closed", "follow_up"}


def test_city_override_replaces_the_shipped_template(tmp_path):
    """A closed.j2 in the city's folder is used instead of the shipped one; others stay shipped."""
    (tmp_path / "closed.j2").write_text("{{ signature }}案卷{{ case_number }}已办结：{{ result }}", encoding="utf-8")
    t = SmsTemplates(tmp_path)
    assert t.render("closed", SAMPLE_CONTEXT["closed"]).startswith("【12319城建服务热线】案卷20260315-0042已办结：")
    assert t.path_of("accepted").parent != tmp_path


def test_check_names_the_file_and_line_of_a_syntax_error(tmp_path):
    """An unclosed tag is reported with the file path and its line."""
    (tmp_path / "accepted.j2").write_text("第一行\n{{ case_number ", encoding="utf-8")
    [problem] = SmsTemplates(tmp_path).check()
    assert problem.path.endswith("accepted.j2") and "第 2 行" in problem.message


def test_check_rejects_unknown_variables_and_stray_files(tmp_path):
    """A misspelt variable and a file that is no known template are both errors."""
    (tmp_path / "declined.j2").write_text("不予立案：{{ reasn }}", encoding="utf-8")
    (tmp_path / "welcome.j2").write_text("hi", encoding="utf-8")
    messages = {p.name: p.message for p in SmsTemplates(tmp_path).check()}
    assert "reasn" in messages["declined"]
    assert "not a known template" in messages["welcome"]


def test_check_rejects_a_template_that_needs_too_many_parts():
    """A text that renders into more SMS parts than allowed is refused."""
    assert "too long" in check_source("accepted", "城" * 500, max_parts=3)


def test_save_refuses_a_broken_template_and_keeps_the_old_one(tmp_path):
    """Saving a broken template raises with the error; a good one is stored and used."""
    t = SmsTemplates(tmp_path)
    with pytest.raises(TemplateError, match="syntax error"):
        t.save("accepted", "{% if %}")
    assert not (tmp_path / "accepted.j2").exists()
    t.save("accepted", "{{ signature }}已受理{{ case_number }}")
    assert t.render("accepted", SAMPLE_CONTEXT["accepted"]) == "【12319城建服务热线】已受理20260315-0042"


def test_templates_run_in_a_sandbox():
    """A template cannot reach Python internals through attribute access."""
    problem = check_source("accepted", "{{ case_number.__class__.__mro__[1].__subclasses__() }}")
    assert problem is not None

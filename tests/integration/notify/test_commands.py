"""`hotline sms …` commands as a user runs them."""

from __future__ import annotations

from callcenter import cli


def test_template_check_reports_a_broken_city_template_and_exits_2(tmp_path, capsys):
    """A syntax error in the city's folder prints an error line naming the file and line; exit 2."""
    (tmp_path / "accepted.j2").write_text("{{ signature }}\n{% if %}", encoding="utf-8")
    assert cli.main(["sms", "template", "check", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "accepted.j2" in err and "第 2 行" in err


def test_template_check_passes_the_shipped_templates(capsys):
    """With no city folder the shipped templates are checked and reported ok."""
    assert cli.main(["sms", "template", "check"]) == 0
    assert "ok" in capsys.readouterr().out


def test_opt_out_then_list_and_opt_in(tmp_path, capsys):
    """opt-out stores the number; opt-in removes it; opting in an unknown number is a user error."""
    cfg = tmp_path / "hotline.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "h.db"}"\n', encoding="utf-8")
    assert cli.main(["sms", "opt-out", "+86 13800138001", "--config", str(cfg)]) == 0
    assert "13800138001: opted out" in capsys.readouterr().out
    assert cli.main(["sms", "opt-in", "13800138001", "--config", str(cfg)]) == 0
    assert cli.main(["sms", "opt-in", "13800138001", "--config", str(cfg)]) == 2
    assert "is not opted out" in capsys.readouterr().err

"""`hotline import` validates the whole file before changing anything (issue 14, point 10):
header-only, truncated or much shorter files change nothing and exit 2; a bad quote is
reported at its own line and cannot swallow the rows after it."""

from __future__ import annotations

import asyncio

from case_core.domain.categories import DEFAULT_CATEGORIES_PATH
from tests.integration.case_core.test_commands import DEMO, _with_repo, config, run  # noqa: F401

DEPARTMENTS = (DEMO / "city_departments.csv").read_text(encoding="utf-8")


def _count(url, table):
    return len(asyncio.run(_with_repo(url, lambda r: r.reference_rows(table))))


def test_a_header_only_file_leaves_the_categories_alone(config, tmp_path, capsys):
    """A header-only category CSV exits 2 with a clear message, even with --skip-bad; the table keeps its rows."""
    path, url = config
    assert run("import", "categories", str(DEFAULT_CATEGORIES_PATH), "--config", path) == 0
    before = _count(url, "categories")
    assert before > 300
    header = tmp_path / "header.csv"
    header.write_text(DEFAULT_CATEGORIES_PATH.read_text(encoding="utf-8-sig").splitlines()[0] + "\n", encoding="utf-8")
    capsys.readouterr()
    for flags in ((), ("--skip-bad",), ("--skip-bad", "--allow-shrink")):
        assert run("import", "categories", str(header), *flags, "--config", path) == 2
        err = capsys.readouterr().err
        assert "error: nothing imported" in err and "no valid row" in err
    assert _count(url, "categories") == before


def test_a_truncated_file_changes_nothing(config, tmp_path, capsys):
    """A file cut in the middle of a line (or of a quoted value) exits 2 naming its last line; nothing is written."""
    path, url = config
    assert run("import", "departments", str(DEMO / "city_departments.csv"), "--config", path) == 0
    lines = DEPARTMENTS.splitlines()
    for cut in (lines[-1][:5], lines[-1][:lines[-1].index(",") + 1] + '"示范'):
        short = tmp_path / "short.csv"
        short.write_text("\n".join(lines[:-1] + [cut]), encoding="utf-8")  # no final newline: cut off
        capsys.readouterr()
        assert run("import", "departments", str(short), "--skip-bad", "--config", path) == 2
        err = capsys.readouterr().err
        assert f"{short}:{len(lines)}: the last line is incomplete: the file looks truncated" in err
    assert _count(url, "departments") == len(lines) - 1


def test_a_much_shorter_file_needs_allow_shrink(config, tmp_path, capsys):
    """A valid file with less than half the table's rows (cut at a line end) is refused unless --allow-shrink."""
    path, url = config
    assert run("import", "departments", str(DEMO / "city_departments.csv"), "--config", path) == 0
    short = tmp_path / "short.csv"
    short.write_text("\n".join(DEPARTMENTS.splitlines()[:4]) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert run("import", "departments", str(short), "--config", path) == 2
    assert "--allow-shrink" in capsys.readouterr().err
    assert _count(url, "departments") == len(DEPARTMENTS.splitlines()) - 1
    assert run("import", "departments", str(short), "--allow-shrink", "--config", path) == 0
    assert _count(url, "departments") == 3


def test_a_bad_quote_is_reported_at_its_line_and_swallows_nothing(config, tmp_path, capsys):
    """An unbalanced quote on line 3 is reported there; the file is refused, and with --skip-bad
    every other row is imported (the lines after the quote are not lost) and line 3 is listed."""
    path, url = config
    lines = DEPARTMENTS.splitlines()
    code, rest = lines[2].split(",", 1)
    lines[2] = f'{code},"{rest}'
    bad = tmp_path / "quote.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run("import", "departments", str(bad), "--config", path) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: unbalanced quote" in err and "nothing imported" in err
    assert _count(url, "departments") == 0
    assert run("import", "departments", str(bad), "--skip-bad", "--config", path) == 2
    captured = capsys.readouterr()
    assert f"{bad}:3: unbalanced quote" in captured.err
    assert f"imported {len(lines) - 2} departments" in captured.out
    stored = {r["code"] for r in asyncio.run(_with_repo(url, lambda r: r.reference_rows("departments")))}
    assert code not in stored and lines[3].split(",")[0] in stored and lines[-1].split(",")[0] in stored

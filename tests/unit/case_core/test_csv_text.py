"""case_core.domain.csv_text: badly quoted lines found one by one, the others untouched."""

from case_core.domain.csv_text import checked_lines


def test_each_badly_quoted_line_is_blanked_and_named():
    """An unclosed quote and a stray character after a closing quote are each reported at their line."""
    text = 'code,name\na,"甲\nb,乙\nc,"丙"x\nd,"丁,""引号"""\n'
    lines, problems = checked_lines(text)
    assert [n for n, _ in problems] == [2, 4]
    assert "unbalanced quote" in problems[0][1] and "bad quoting" in problems[1][1]
    assert lines == ["code,name", "", "b,乙", "", 'd,"丁,""引号"""']


def test_a_quote_inside_an_unquoted_value_is_left_alone():
    """A quote in the middle of a value is literal CSV, not an error."""
    assert checked_lines('a,5"管,b\n') == (['a,5"管,b'], [])

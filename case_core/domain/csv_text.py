"""Quoting checked line by line before a CSV file is read as records (pure, no I/O).

Reference data never needs a value that runs over several lines, so one unbalanced or
stray quote must not swallow the lines after it (csv would read them as one long value and
the rows would silently vanish). Each physical line whose quoting does not parse on its own
is reported at its own number and blanked; the other lines keep their numbers.
"""

from __future__ import annotations

import csv

__all__ = ["checked_lines"]


def checked_lines(text: str) -> tuple[list[str], list[tuple[int, str]]]:
    """The file's lines with badly quoted ones blanked, and `(line, reason)` for each of those."""
    lines = text.splitlines()
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if '"' not in line:
            continue
        try:
            for _ in csv.reader([line], strict=True):
                pass
        except csv.Error as exc:
            reason = "unbalanced quote: the quoted value is not closed on this line" \
                if "end of data" in str(exc) else f"bad quoting ({exc})"
            problems.append((number, reason))
            lines[number - 1] = ""
    return lines, problems

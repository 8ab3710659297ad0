"""Case numbers (案卷编号): a readable day plus a per-day sequence, e.g. ``20261121-0001``.

Owns the text format only. Allocating the next sequence for a day is the repository's
job (it needs a lock or a database sequence); this module formats and parses.
"""
from __future__ import annotations

import re
from datetime import date

__all__ = ["InvalidCaseNumber", "format_case_number", "parse_case_number"]

# Four digits cover any realistic day; busier days widen rather than wrap, so the
# number stays unique and still sorts correctly within a width.
_PATTERN = re.compile(r"^(\d{4})(\d{2})(\d{2})-(\d{4,})$")


class InvalidCaseNumber(ValueError):
    """A case number that is not ``YYYYMMDD-NNNN`` or names an impossible day."""

    def __init__(self, text: object, reason: str) -> None:
        super().__init__(f"invalid case number {text!r}: {reason}")
        self.text = text
        self.reason = reason
        self.message_zh = f"案卷编号 {text!r} 格式不正确（应为 YYYYMMDD-NNNN）"


def format_case_number(day: date, seq: int) -> str:
    """Return ``YYYYMMDD-NNNN`` for the ``seq``-th case (from 1) of ``day``."""
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise TypeError(f"case sequence must be an int, got {type(seq).__name__}")
    if seq < 1:
        raise ValueError(f"case sequence starts at 1, got {seq}")
    return f"{day:%Y%m%d}-{seq:04d}"


def parse_case_number(text: str) -> tuple[date, int]:
    """Split a case number into its day and sequence; raise InvalidCaseNumber if malformed."""
    if not isinstance(text, str):
        raise InvalidCaseNumber(text, "not a string")
    m = _PATTERN.match(text.strip())
    if not m:
        raise InvalidCaseNumber(text, "expected YYYYMMDD-NNNN")
    try:
        day = date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as exc:
        raise InvalidCaseNumber(text, str(exc)) from None
    seq = int(m[4])
    if seq < 1:
        raise InvalidCaseNumber(text, "sequence starts at 1")
    return day, seq

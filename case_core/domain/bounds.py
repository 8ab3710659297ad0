"""How big a case's texts may be, and what a phone number is (pure; issue 14, point 9).

Bounds by meaning, not by bytes: a description is what a caller says or types about one
problem (a few thousand characters at most), an address one line, a phone number digits.
Every front end (JSON API, desk, Open311, the inspectors' app) reaches `CaseService`, which
applies these before storing anything, so an oversized text is refused with a clear
Chinese reason instead of slowing every later duplicate check.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from case_core.domain.workflow import InvalidField

__all__ = ["MAX_DESCRIPTION", "MAX_ADDRESS", "MAX_NAME", "MAX_FIELD_TEXT", "phone_number", "check_case_texts",
           "check_action_fields"]

MAX_DESCRIPTION = 4000  # characters: several minutes of speech, far more than any real report
MAX_ADDRESS = 200
MAX_NAME = 50  # a reporter's name (Open311 first/last name)
MAX_FIELD_TEXT = 4000  # any text field of a workflow action (comment, reason, result …)

_PHONE = re.compile(r"\+?\d{3,20}")
_PHONE_SEPARATORS = re.compile(r"[\s\-()（）]")


def phone_number(text: str) -> str | None:
    """The number with spaces, hyphens and brackets taken out (`025-8334 5678` → `02583345678`,
    `+86 138…` kept with its +), or None when it is not a phone number (3 to 20 digits)."""
    compact = _PHONE_SEPARATORS.sub("", text or "")
    return compact if _PHONE.fullmatch(compact) else None


def _too_long(name: str, label: str, value: str, limit: int) -> InvalidField:
    return InvalidField(f"{name} is {len(value)} characters, at most {limit}",
                        f"{label}不能超过{limit}字（现为{len(value)}字）", name)


def check_case_texts(*, description: str, address: str, reporter_phone: str,
                     reporter_name: str = "") -> str:
    """Raise InvalidField for a text over its bound or a reporter phone that is not one; return
    the phone as stored: as given, trimmed ("" when none was given)."""
    if len(description) > MAX_DESCRIPTION:
        raise _too_long("description", "问题描述", description, MAX_DESCRIPTION)
    if len(address) > MAX_ADDRESS:
        raise _too_long("address", "地址", address, MAX_ADDRESS)
    if len(reporter_name) > MAX_NAME:
        raise _too_long("reporter_name", "反映人姓名", reporter_name, MAX_NAME)
    if not reporter_phone or not reporter_phone.strip():
        return ""
    if phone_number(reporter_phone) is None:
        raise InvalidField(f"reporter_phone {reporter_phone[:40]!r} is not a phone number",
                           "反映人电话不是有效的电话号码（3到20位数字，可带区号连字符）", "reporter_phone")
    return reporter_phone.strip()


def check_action_fields(fields: Mapping[str, Any]) -> None:
    """Every text field of a workflow action within MAX_FIELD_TEXT characters."""
    for name, value in fields.items():
        if isinstance(value, str) and len(value) > MAX_FIELD_TEXT:
            raise _too_long(name, f"字段“{name}”", value, MAX_FIELD_TEXT)
        if isinstance(value, (list, tuple)) and sum(len(v) for v in value if isinstance(v, str)) > MAX_FIELD_TEXT * 4:
            raise InvalidField(f"{name} is too long", f"字段“{name}”内容过长", name)

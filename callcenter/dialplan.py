"""The outbound dial plan (外呼号码规则): which numbers the hotline may call out to.

Every outbound destination — an agent's transfer or consultation to an outside number, a
callback, a follow-up survey call — is checked here before a trunk is used. A number is first
normalised (separators dropped, +86/0086 taken off, a national number given its trunk 0
back), then must fully match one `allow` pattern and no `deny` pattern (Python regular
expressions on the digits). Pure: no I/O.

The defaults allow mainland mobiles, landlines with or without their area code and the
public service numbers (110, 119, 120, 122, 12xxx government hotlines); they refuse
international numbers (00…, + other than +86) and premium-rate or information services
(声讯 160/168, 1259x, 95xxx/96xxx paid lines are not in the allow list anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_ALLOW", "DEFAULT_DENY", "DialPlan", "DialCheck", "normalise"]

DEFAULT_ALLOW: tuple[str, ...] = (
    r"1[3-9]\d{9}",  # mobiles (11 digits)
    r"0[1-9]\d{8,10}",  # landlines with their area code (010-…, 025-…, 0571-…)
    r"[2-8]\d{6,7}",  # local landlines (7-8 digits)
    r"11[09]|12[02]",  # police, fire, ambulance, traffic police
    r"12\d{3}",  # government service hotlines (12345, 12315, 12319 …)
)
DEFAULT_DENY: tuple[str, ...] = (
    r"00\d*",  # international
    r"16[08]\d*",  # 声讯 information / premium services
    r"0\d{2,3}16[08]\d*",  # the same behind an area code
    r"1259\d*",  # paid SMS/voice services
)

_SEPARATORS = re.compile(r"[\s\-().]")


def normalise(number: str) -> str | None:
    """Digits as dialled at home: `+86 25 8334 5678` → `02583345678`; None when not a number.

    A `+` other than +86 stays an international number (`00…`), which the default plan refuses.
    """
    text = _SEPARATORS.sub("", number or "")
    if text.startswith("+"):
        text = "00" + text[1:]
    if not text.isdigit():
        return None
    if text.startswith("0086"):
        rest = text[4:]
        # Mobiles and service numbers need no trunk prefix; landlines get their 0 back.
        return rest if rest.startswith("1") else "0" + rest
    return text


@dataclass(frozen=True)
class DialCheck:
    allowed: bool
    number: str  # normalised (or as given, when not a number)
    reason: str = ""  # English, for logs
    message_zh: str = ""  # for the agent's screen


class DialPlan:
    """Allow and deny patterns, compiled once; `check(number)` says whether it may be called."""

    def __init__(self, allow: tuple[str, ...] = DEFAULT_ALLOW, deny: tuple[str, ...] = DEFAULT_DENY):
        self.allow_patterns = tuple(allow)
        self.deny_patterns = tuple(deny)
        self._allow = [re.compile(p) for p in allow]
        self._deny = [re.compile(p) for p in deny]

    @staticmethod
    def validate(patterns: tuple[str, ...]) -> str | None:
        """The first pattern that is not a valid regular expression, with why; None if all are."""
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                return f"{p!r}: {exc}"
        return None

    def check(self, number: str) -> DialCheck:
        digits = normalise(number)
        if digits is None or not 3 <= len(digits) <= 20:
            return DialCheck(False, number, "not a phone number", f"“{number}”不是电话号码。")
        if any(p.fullmatch(digits) for p in self._deny):
            return DialCheck(False, digits, "denied by the dial plan",
                             f"号码 {digits} 属于禁止外呼的号码（国际或收费号码），不能呼出。")
        if not any(p.fullmatch(digits) for p in self._allow):
            return DialCheck(False, digits, "not allowed by the dial plan",
                             f"号码 {digits} 不在允许外呼的号码范围内（本地手机和固话），不能呼出。")
        return DialCheck(True, digits)

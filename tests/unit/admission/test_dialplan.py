"""The outbound dial plan: which numbers transfers, callbacks and follow-ups may call."""

from __future__ import annotations

import pytest

from callcenter.dialplan import DialPlan, normalise


@pytest.mark.parametrize("number, normal", [
    ("138 0013 8000", "13800138000"),
    ("025-8334-5678", "02583345678"),
    ("+86 25 8334 5678", "02583345678"),
    ("+8613800138000", "13800138000"),
    ("008613800138000", "13800138000"),
    ("+1 212 555 0100", "0012125550100"),
    ("(025) 83345678", "02583345678"),
    ("12abc", None),
])
def test_normalise(number, normal):
    """Separators go, +86/0086 come off (landlines get their 0 back), other + becomes 00."""
    assert normalise(number) == normal


@pytest.mark.parametrize("number", ["13800138000", "19912345678", "02583345678", "057188889999", "83345678",
                                    "110", "120", "12345", "+86 25 8334 5678"])
def test_default_plan_allows_local_numbers(number):
    """Mobiles, landlines, emergency and 12xxx service numbers may be called."""
    assert DialPlan().check(number).allowed


@pytest.mark.parametrize("number, word", [
    ("0012125550100", "禁止"),
    ("+44 20 7946 0000", "禁止"),
    ("16812345", "禁止"),
    ("02516812345", "禁止"),
    ("95588", "不在允许"),
    ("1800", "不在允许"),
    ("12", "不是电话号码"),
    ("13800138000; drop", "不是电话号码"),
])
def test_default_plan_refuses_international_premium_and_junk(number, word):
    """International, 声讯 and unknown short numbers are refused with a Chinese reason."""
    result = DialPlan().check(number)
    assert not result.allowed and word in result.message_zh


def test_configured_plan_can_open_international():
    """A plan that allows 00 numbers (and denies nothing) lets an international number through."""
    plan = DialPlan(allow=(r"00\d+",), deny=())
    assert plan.check("+44 20 7946 0000").allowed and not plan.check("13800138000").allowed


def test_bad_pattern_is_named():
    """An invalid regular expression is reported with the pattern."""
    assert "1[3-" in DialPlan.validate(("1[3-",))
    assert DialPlan.validate(("1\\d+",)) is None

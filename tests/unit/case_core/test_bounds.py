"""case_core.domain.bounds: texts bounded by meaning, phone numbers that are phone numbers."""

import pytest

from case_core.domain.bounds import (MAX_ADDRESS, MAX_DESCRIPTION, check_action_fields, check_case_texts,
                                     phone_number)
from case_core.domain.workflow import InvalidField


def test_phone_numbers_are_digits_with_optional_separators():
    """Mobile, fixed line with area code, +86 and short numbers pass; words and one digit do not."""
    assert phone_number("138 0013 8000") == "13800138000"
    assert phone_number("025-8334 5678") == "02583345678"
    assert phone_number("+86 13800138000") == "+8613800138000"
    assert phone_number("12319") == "12319"
    for bad in ("匿名", "13800138000; DROP", "1", "1" * 21, "+", "138-0013-800a"):
        assert phone_number(bad) is None, bad


def test_case_texts_over_their_bound_are_refused_with_the_field_named():
    """A description of MAX_DESCRIPTION characters passes, one more is refused in Chinese with the count."""
    assert check_case_texts(description="井" * MAX_DESCRIPTION, address="长江路", reporter_phone=" 13800138000 ") \
        == "13800138000"
    with pytest.raises(InvalidField) as exc:
        check_case_texts(description="井" * (MAX_DESCRIPTION + 1), address="", reporter_phone="")
    assert exc.value.field == "description" and "不能超过4000字" in exc.value.message_zh and "4001" in exc.value.message_zh
    with pytest.raises(InvalidField) as exc:
        check_case_texts(description="", address="路" * (MAX_ADDRESS + 1), reporter_phone="")
    assert exc.value.field == "address"
    with pytest.raises(InvalidField) as exc:
        check_case_texts(description="", address="", reporter_phone="不知道")
    assert exc.value.field == "reporter_phone" and "电话号码" in exc.value.message_zh


def test_action_text_fields_are_bounded():
    """A comment of 4001 characters is refused; short fields and non-text fields pass."""
    check_action_fields({"comment": "好" * 4000, "photos": ["a.jpg"], "expected": 3})
    with pytest.raises(InvalidField) as exc:
        check_action_fields({"comment": "好" * 4001})
    assert exc.value.field == "comment"


def test_the_duplicate_check_reads_only_the_start_of_long_descriptions():
    """Two long reports that share their first COMPARED_CHARS characters score as one problem,
    whatever follows: the check's cost does not grow with the text (issue 14, point 9)."""
    from datetime import datetime

    from case_core.domain.duplicates import COMPARED_CHARS, suggest_duplicates
    from tests.unit.case_core.test_duplicates import Rec

    head = ("长江路12号门口有一堆垃圾没人清理" * 200)[:COMPARED_CHARS]
    probe = Rec("20261123-0099", head + "噪声扰民" * 500, created_at=datetime(2026, 11, 23, 9, 0))
    cand = Rec("20261123-0001", head + "井盖缺失" * 500, created_at=datetime(2026, 11, 23, 8, 0))
    [found] = suggest_duplicates(probe, [cand])
    assert found.text_similarity == 1.0

"""SMS length and encoding: GSM 7-bit vs UCS-2, single vs concatenated parts."""

from callcenter.notify.encoding import GSM7, UCS2, layout


def test_chinese_text_is_ucs2_and_70_characters_fit_one_sms():
    """70 Chinese characters are one UCS-2 SMS; 71 need two parts of at most 67."""
    one = layout("城" * 70)
    assert (one.encoding, one.count, one.data_coding) == (UCS2, 1, 8)
    two = layout("城" * 71)
    assert two.count == 2 and [len(p) for p in two.parts] == [67, 4]


def test_long_chinese_text_splits_into_67_character_parts_that_join_back():
    """A 200-character text becomes 3 parts (67+67+66) whose concatenation is the text."""
    text = "".join(chr(0x4E00 + i) for i in range(200))
    lay = layout(text)
    assert [len(p) for p in lay.parts] == [67, 67, 66]
    assert "".join(lay.parts) == text


def test_plain_ascii_is_gsm7_with_160_and_153_limits():
    """ASCII letters use GSM 7-bit: 160 fit one SMS, 161 split 153 + 8."""
    assert layout("a" * 160).encoding == GSM7 and layout("a" * 160).count == 1
    assert [len(p) for p in layout("a" * 161).parts] == [153, 8]


def test_gsm_extension_characters_count_twice_and_are_not_split():
    """'€' costs two septets: 80 of them fill one SMS; a part never ends between ESC and the char."""
    assert layout("€" * 80).count == 1
    lay = layout("a" + "€" * 80)
    assert lay.count == 2 and lay.units == 161
    assert all(sum(2 if c == "€" else 1 for c in p) <= 153 for p in lay.parts)


def test_one_chinese_character_makes_the_whole_text_ucs2():
    """Mixed ASCII and Chinese is UCS-2, so a 100-character mixed text needs two parts."""
    lay = layout("Case 20260315-0042 " + "已" + "x" * 80)
    assert lay.encoding == UCS2 and lay.count == 2


def test_emoji_outside_the_bmp_counts_two_units_and_stays_whole():
    """A surrogate-pair character counts 2 UCS-2 units and is never cut between parts."""
    text = "城" * 66 + "😀" + "城"
    lay = layout(text)
    assert lay.units == 69 and lay.count == 1
    lay = layout("城" * 66 + "😀" + "城" * 10)
    assert lay.parts[0] == "城" * 66 and lay.parts[1].startswith("😀")

"""Extraction of numbers, phones, places, urgency and categories from report text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from case_core.domain.categories import load_category_directory
from case_core.domain.extraction import (
    Extractor, find_phones, load_lexicon, normalize_numerals, parse_chinese_number,
)
from case_core.domain.reference import Gazetteer, load_areas, load_gazetteer

DEMO = Path(__file__).resolve().parents[3] / "case_core" / "demo_data"


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    directory, errors = load_category_directory()
    assert errors == []
    places, _ = load_gazetteer(DEMO / "gazetteer.csv")
    areas, _ = load_areas(DEMO / "areas.csv")
    return Extractor(directory, Gazetteer(places), areas)


@pytest.mark.parametrize("spoken, digits", [
    ("一三八零零一三八零零一", "13800138001"),
    ("幺三九 〇〇一三 九〇〇二", "139 0013 9002"),
    ("两三三", "233"),
    ("１３８", "138"),
])
def test_spoken_digit_strings_become_digits(spoken, digits):
    """Digit-by-digit numerals (幺 = 1, 两 = 2, 〇/零 = 0, full-width) become Arabic digits."""
    assert normalize_numerals(spoken) == digits


@pytest.mark.parametrize("text, value", [
    ("十二", 12), ("二十三", 23), ("一百零五", 105), ("三百五", 350), ("两千三百", 2300),
    ("一万二千", 12000),
])
def test_positional_numbers(text, value):
    """Positional Chinese numbers parse to their value, including colloquial 三百五 = 350."""
    assert parse_chinese_number(text) == value


def test_words_containing_a_numeral_stay_words():
    """一堆, 一直 and 三晚 are not numbers; 三号楼 is an address number."""
    assert normalize_numerals("一堆垃圾一直没人管，三晚不亮") == "一堆垃圾一直没人管,三晚不亮"
    assert normalize_numerals("三号楼") == "3号楼"


def test_phones_from_spoken_and_written_numbers():
    """Mobiles, landlines with area code and introduced local numbers are found; others not."""
    text = normalize_numerals("我手机幺三八 零零一三 八零零一，座机025-83345678，家里电话八三三四五六七九，车牌12345")
    assert find_phones(text) == ["13800138001", "025-83345678", "83345679"]


def test_extract_prefills_a_case(extractor):
    """A typical call yields category, gazetteer place with grid cell, address, phone, urgency."""
    result = extractor.extract("长江路十二号门口的雨水井盖不见了，很危险，我电话幺三九零零一三九零零二")
    assert result.category.key == "matter:01003"
    assert result.category.component_code == "01003"
    assert result.category.component_name == "雨水井盖"
    assert result.places[0].name == "长江路" and result.grid_id == "320102001002001"
    assert result.address == "长江路12号"
    assert result.phones == ("13900139002",)
    assert result.urgency.level == "urgent" and result.urgency.case_type == "urgent"


def test_place_not_in_gazetteer_is_still_mentioned(extractor):
    """Roads the gazetteer lacks are reported from their suffix, without a grid cell."""
    result = extractor.extract("人民路与解放路交叉口东北角路灯不亮")
    assert [(p.name, p.kind, p.source, p.grid_id) for p in result.places] == [
        ("人民路与解放路交叉口", "junction", "text", None),
        ("人民路", "road", "text", None), ("解放路", "road", "text", None)]
    assert result.address == "人民路与解放路交叉口"
    assert result.grid_id is None


def test_community_from_area_list(extractor):
    """A community name from areas.csv is matched with its area code."""
    result = extractor.extract("梅园社区有人占道经营")
    assert ("梅园社区", "community", "320102001001") in [
        (p.name, p.kind, p.area_code) for p in result.places]


def test_negated_urgency_does_not_count(extractor):
    """没有人受伤 is not an injury; a plain report stays normal."""
    assert extractor.extract("井盖坏了，还好没有人受伤").urgency.level == "normal"
    assert extractor.extract("井盖坏了，有人受伤了").urgency.words == ("有人受伤",)


def test_top3_is_ranked_with_confidence(extractor):
    """Candidates are sorted best first and confidences lie in [0, 1]."""
    result = extractor.extract("新街口路边堆了很多建筑垃圾渣土，一直没人运走")
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True) and len(result.candidates) <= 3
    assert all(0 <= c.confidence <= 1 for c in result.candidates)
    assert result.category.code == "06011"


def test_no_category_for_unrelated_text(extractor):
    """Text with no complaint words gets no suggestion rather than a guess."""
    result = extractor.extract("你好，我想问一下")
    assert result.category is None and result.candidates == ()


def test_transcript_spaces_do_not_matter(extractor):
    """Word-spaced ASR output (vosk) is read the same as typed text."""
    assert extractor.extract("路 灯 不 亮 了").category.code == "01037"


def test_to_dict_is_json_with_keys(extractor):
    """The JSON form carries category keys and the suggested case type."""
    data = json.loads(json.dumps(extractor.extract("中山东路有人摆摊").to_dict(), ensure_ascii=False))
    assert data["category"]["key"] == "matter:09006"
    assert data["urgency"]["case_type"] == "normal"
    assert data["places"][0]["grid_id"] == "320102002001001"


def test_local_category_is_suggested_from_its_name():
    """A city's local code is found through its name with no lexicon entry."""
    directory, _ = load_category_directory(local=[DEMO / "local_categories.csv"])
    result = Extractor(directory).extract("有人咨询城建政策咨询的问题")
    assert "10901" in [c.code for c in result.candidates]


def test_bad_lexicon_is_rejected_with_its_file(tmp_path):
    """A malformed lexicon names the file and key instead of failing later."""
    for name in ("urgency.yaml", "places.yaml"):
        (tmp_path / name).write_text("{}", encoding="utf-8")
    (tmp_path / "categories.yaml").write_text("matters:\n  '6010': [垃圾]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="categories.yaml matters: code '6010'"):
        load_lexicon(tmp_path)

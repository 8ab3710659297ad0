"""Phone numbers however they are said, and places: junctions, landmarks with a side,
house numbers, matched to the gazetteer and its grid cells."""

from __future__ import annotations

import pytest

from case_core.domain.categories import load_category_directory
from case_core.domain.extraction import Extractor, find_phones, normalize_numerals
from case_core.domain.reference import Gazetteer, Place


# Each fixture: how the caller said (or the agent typed, or the recogniser printed) it → the number.
PHONES = [
    ("我电话一三八零零一三八零零一", "13800138001"),
    ("手机幺三八零零幺三八零零幺", "13800138001"),
    ("号码是幺三九 零零一三 九零零二", "13900139002"),
    ("打我电话幺八六 两两三四 五六七八", "18622345678"),
    ("一五二两两三三四四五五", "15222334455"),
    ("138 0013 8001", "13800138001"),
    ("138-0013-8001", "13800138001"),
    ("电话：139 1234 5678，谢谢", "13912345678"),
    ("1 3 8 0 0 1 3 8 0 0 1", "13800138001"),
    ("一 三 八 零 零 一 三 八 零 零 一", "13800138001"),
    ("幺三八 零零 幺三 八零 零幺", "13800138001"),
    ("电话幺拐零 洞洞幺三 勾勾八八", "17000139988"),
    ("１３８００１３８００１", "13800138001"),
    ("座机025-83345678", "025-83345678"),
    ("座机零二五八三三四五六七八", "025-83345678"),
    ("零二五 八三三四 五六七八", "025-83345678"),
    ("零二五杠八三三四五六七八", "025-83345678"),
    ("025 8334 5678", "025-83345678"),
    ("010-62345678", "010-62345678"),
    ("苏州的零五一二 六五二三四五六七", "0512-65234567"),
    ("0512-6523456", "0512-6523456"),
    ("家里电话八三三四五六七九", "83345679"),
    ("打这个号码 8334 5679", "83345679"),
]


@pytest.mark.parametrize("said, number", PHONES)
def test_phone_numbers_spoken_any_way(said, number):
    """Mobiles and landlines said digit by digit (一/幺, 二/两, 零/洞), grouped by spaces,
    dashes or 杠, typed or full-width, are found exactly."""
    assert find_phones(normalize_numerals(said)) == [number]


def test_several_numbers_in_one_report():
    """A mobile and a landline in one text are both found, in order; house numbers are not phones."""
    text = normalize_numerals("长江路十二号，我手机幺三八 零零一三 八零零一，或者打座机零二五杠八三三四五六七八")
    assert find_phones(text) == ["13800138001", "025-83345678"]


def test_numbers_that_are_not_phones():
    """House numbers, counts, plates and too-short digit strings are not phone numbers."""
    for text in ("长江路128号3栋", "车牌12345", "等了三十五分钟", "一三八零零一三八", "编号202611210001"):
        assert find_phones(normalize_numerals(text)) == [], text


def test_words_with_numerals_stay_words():
    """十字路口, 十分, 千万, 万一, 拐弯 and 一两天 are words, not numbers."""
    text = "十字路口拐弯那里十分危险千万小心万一掉下去一两天了"
    assert normalize_numerals(text) == text


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    directory, _ = load_category_directory()
    gazetteer = Gazetteer([
        Place("解放路", "road", "320102003001001"),
        Place("人民路", "road", "320102003001002"),
        Place("东门大桥", "landmark", "320102003002001", ("东门桥",)),
        Place("长江路", "road", "320102001002001"),
    ])
    return Extractor(directory, gazetteer)


def _places(result):
    return [(p.name, p.kind, p.grid_id, p.roads, p.direction, p.house_number) for p in result.places]


@pytest.mark.parametrize("text, junction", [
    ("解放路和人民路路口的红绿灯坏了", "解放路和人民路路口"),
    ("人民路与解放路交叉口东北角井盖丢了", "人民路与解放路交叉口"),
    ("解放路跟人民路的十字路口积水很深", "解放路跟人民路十字路口"),
])
def test_junction_keeps_both_roads(extractor, text, junction):
    """A crossing is one junction place naming both roads (each also matched to the
    gazetteer with its grid cell); the address is the junction."""
    result = extractor.extract(text)
    first = result.places[0]
    assert (first.name, first.kind) == (junction, "junction")
    assert set(first.roads) == {"解放路", "人民路"}
    assert first.grid_id in ("320102003001001", "320102003001002")
    roads = {p.name: p.grid_id for p in result.places if p.kind == "road"}
    assert roads == {"解放路": "320102003001001", "人民路": "320102003001002"}
    assert result.address == junction


def test_junction_of_roads_the_gazetteer_lacks():
    """Unknown roads still make a junction (no grid cell), and 和 is not read into a road name."""
    directory, _ = load_category_directory()
    result = Extractor(directory).extract("我要反映建设路和和平街路口的路灯不亮")
    assert _places(result)[0] == ("建设路和和平街路口", "junction", None, ("建设路", "和平街"), None, None)
    assert [p.name for p in result.places[1:]] == ["建设路", "和平街"]


@pytest.mark.parametrize("text, name, direction, grid", [
    ("东门大桥南侧有人摆摊", "东门大桥", "南侧", "320102003002001"),
    ("东门桥底下堆了很多垃圾", "东门大桥", "底下", "320102003002001"),
    ("人民公园西北角的厕所堵了", "人民公园", "西北角", None),
    ("市第一医院对面有人发传单", "市第一医院", "对面", None),
])
def test_landmark_with_a_side(extractor, text, name, direction, grid):
    """A landmark (from the gazetteer by name or alias, else by its suffix) keeps the side said after it."""
    place = extractor.extract(text).places[0]
    assert (place.name, place.kind, place.direction, place.grid_id) == (name, "landmark", direction, grid)


@pytest.mark.parametrize("text, number, address", [
    ("长江路12号门口井盖丢了", "12号", "长江路12号"),
    ("长江路一百二十八号院里路灯不亮", "128号院", "长江路128号院"),
    ("解放路三十五号楼下垃圾没人收", "35号楼", "解放路35号楼"),
])
def test_house_numbers(extractor, text, number, address):
    """A house number after a road, spoken or in digits, is kept on the road and in the address."""
    result = extractor.extract(text)
    road = result.places[0]
    assert (road.kind, road.house_number, road.grid_id is not None) == ("road", number, True)
    assert result.address == address

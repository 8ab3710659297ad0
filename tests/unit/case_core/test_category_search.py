"""The category picker's ranked search: Chinese, pinyin, initials, class name, code."""

from case_core.domain.categories import DEFAULT_CATEGORIES_PATH, Category, load_categories
from case_core.domain.category_search import CategoryIndex

CATS = [
    Category("component", "01015", "01", "市政公用设施", "信号灯电源井盖"),
    Category("component", "01003", "01", "市政公用设施", "雨水井盖"),
    Category("matter", "01003", "01", "市政公用设施类", "雨水井盖异常"),
    Category("component", "02001", "02", "道路交通设施", "路灯"),
    Category("matter", "06001", "06", "街面秩序类", "占道经营"),
]


def test_chinese_text_ranks_short_names_first_and_covers_both_kinds():
    """井盖 finds the components and the matters; the shorter name comes first."""
    hits = [m.category for m in CategoryIndex(CATS).search("井盖")]
    assert [c.name for c in hits] == ["雨水井盖", "雨水井盖异常", "信号灯电源井盖"]
    assert {c.kind for c in hits} == {"component", "matter"}


def test_pinyin_whole_syllables_and_initials_find_the_same_categories():
    """jinggai, JingGai and the initials jg all find the manhole covers, by pinyin."""
    index = CategoryIndex(CATS)
    for text in ("jinggai", "Jing Gai", "jg"):
        matches = index.search(text)
        assert {m.category.name for m in matches} == {"雨水井盖", "雨水井盖异常", "信号灯电源井盖"}, text
        assert all(m.matched == "pinyin" for m in matches)
    assert [m.category.name for m in index.search("yushui")][:1] == ["雨水井盖"]  # pinyin prefix first


def test_exact_name_beats_prefix_class_name_and_code_last():
    """An exact name is first; a class name matches its subclasses; digits match a code prefix."""
    index = CategoryIndex(CATS)
    assert index.search("雨水井盖")[0].category.kind == "component"
    assert [m.category.name for m in index.search("街面秩序")] == ["占道经营"]
    assert index.search("街面秩序")[0].matched == "class"
    assert [m.category.code for m in index.search("0200")] == ["02001"]


def test_kind_filter_limit_and_empty_text():
    """kind narrows to 部件 or 事项; limit caps the list; nothing typed → no matches."""
    index = CategoryIndex(CATS)
    assert [m.category.kind for m in index.search("井盖", kind="matter")] == ["matter"]
    assert len(index.search("井盖", limit=2)) == 2
    assert index.search("  ") == [] and index.search("x") == []


def test_the_national_table_finds_manhole_covers_by_pinyin():
    """Over GB/T 47678.5, jinggai finds at least twenty 井盖 categories, each with its class name."""
    cats, errors = load_categories(DEFAULT_CATEGORIES_PATH)
    assert errors == []
    hits = CategoryIndex(cats).search("jinggai", limit=100)
    assert len(hits) >= 20 and all("井盖" in m.category.name for m in hits)
    d = hits[0].to_dict()
    assert d["kind_label"] in ("部件", "事项") and d["class_name"] and d["code"].isdigit()

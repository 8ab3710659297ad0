"""Duplicate suggestion: category, place, time window and text similarity."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from case_core.domain.duplicates import nearby_by_distance, suggest_duplicates, text_similarity
from case_core.domain.reference import GridCell

T0 = datetime(2026, 11, 23, 9, 0)


@dataclass(frozen=True)
class Rec:
    number: str
    description: str
    category: str | None = "matter:06010"
    grid_cell: str | None = "320102001001001"
    address: str = "长江路12号"
    created_at: datetime = T0
    status: str = "registered"


PROBE = Rec("20261123-0099", "长江路12号门口有一堆垃圾没人清理")


def test_text_similarity_bounds():
    """Identical text scores 1, unrelated text 0, punctuation and width are ignored."""
    assert text_similarity("井盖缺失", "井盖缺失。") == 1.0
    assert text_similarity("井盖缺失", "噪声扰民") == 0.0
    assert text_similarity("１２号", "12号") == 1.0
    assert 0 < text_similarity("人民路井盖缺失", "人民路井盖松动") < 1


def test_same_cell_same_category_is_suggested_first():
    """A same-cell report ranks above a nearby-cell one; both above the threshold."""
    same = Rec("20261123-0001", "长江路12号门口垃圾堆放没人清理", created_at=T0 - timedelta(hours=3))
    near = Rec("20261123-0002", "长江路12号门口一堆垃圾", grid_cell="320102001001002")
    got = suggest_duplicates(PROBE, [near, same])
    assert [s.number for s in got] == ["20261123-0001", "20261123-0002"]
    assert got[0].location == "same_cell" and "同一类别" in got[0].reasons


@pytest.mark.parametrize("other", [
    Rec("20261123-0003", "长江路12号门口有一堆垃圾没人清理", category="matter:09006"),
    Rec("20261123-0004", "长江路12号门口有一堆垃圾没人清理", created_at=T0 - timedelta(days=8)),
    Rec("20261123-0005", "长江路12号门口有一堆垃圾没人清理", grid_cell="320102002001001"),
    Rec("20261123-0006", "长江路12号门口有一堆垃圾没人清理", status="void"),
    Rec("20261123-0099", "长江路12号门口有一堆垃圾没人清理"),
])
def test_excluded_candidates(other):
    """Other category, outside the window, a far cell, a voided case or itself: no match."""
    assert suggest_duplicates(PROBE, [other]) == []


def test_without_grid_cell_address_decides():
    """With no grid cell, a matching address still finds the duplicate; a different one not."""
    probe = Rec("20261123-0099", "门口垃圾没人清理", grid_cell=None)
    hit = Rec("20261123-0001", "门口垃圾没人清理", grid_cell=None)
    miss = Rec("20261123-0002", "门口垃圾没人清理", grid_cell=None, address="中山东路8号")
    got = suggest_duplicates(probe, [hit, miss])
    assert [s.number for s in got] == ["20261123-0001"] and got[0].location == "address"


def test_nearby_by_distance():
    """Centres within the radius are nearby even across communities; far ones are not."""
    cells = [GridCell("320102001001001", x=0, y=0), GridCell("320102002001001", x=200, y=0),
             GridCell("320102001001009", x=900, y=0)]
    near = nearby_by_distance(cells, radius_m=300)
    assert near("320102001001001", "320102002001001")
    assert not near("320102001001001", "320102001001009")

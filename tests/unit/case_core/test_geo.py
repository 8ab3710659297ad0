"""地理编码 on the demo city's grid: point in polygon, borders, outside, GeoJSON import, GCJ-02."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from case_core.domain import geo
from case_core.domain.reference import load_gazetteer

DEMO = Path(__file__).resolve().parents[3] / "case_core" / "demo_data"
GEOJSON = DEMO / "grid_cells.geojson"


@pytest.fixture(scope="module")
def shapes():
    cells, errors = geo.load_grid_geojson(GEOJSON)
    assert errors == []
    return cells


@pytest.fixture(scope="module")
def index(shapes):
    places, _ = load_gazetteer(DEMO / "city_gazetteer.csv")
    return geo.GridIndex([(s.cell.grid_id, s.geometry) for s in shapes],
                         [(p.name, p.grid_id) for p in places if p.kind == "road"])


def _feature(doc, gid):
    return next(f for f in doc["features"] if f["properties"]["grid_id"] == gid)


def test_demo_grid_loads_every_cell_with_metres_for_the_duplicate_finder(shapes):
    """All 36 demo cells load; neighbouring centres are one cell width (250 m) apart."""
    by_id = {s.cell.grid_id: s.cell for s in shapes}
    assert len(by_id) == 36
    a, b = by_id["320102001001001"], by_id["320102001001002"]
    assert a.inspector == "inspector1" and a.name == "梅园新村北"
    assert abs(abs(b.x - a.x) - 250) < 3 and abs(b.y - a.y) < 1


def test_each_cell_centre_is_located_in_that_cell(shapes, index):
    """A point well inside each cell is located in that cell, one by one and vectorised."""
    centres = [s.geometry["coordinates"][0] for s in shapes]
    lons = [(ring[0][0] + ring[2][0]) / 2 for ring in centres]
    lats = [(ring[0][1] + ring[2][1]) / 2 for ring in centres]
    want = [s.cell.grid_id for s in shapes]
    assert [index.cell_at(x, y) for x, y in zip(lons, lats)] == want
    assert index.cells_at(lons, lats) == want


def test_point_on_a_shared_border_goes_to_the_smaller_grid_id(index):
    """The edge between 梅园新村北 (…001) and 梅园新村南 (…002) belongs to …001, always."""
    doc = json.loads(GEOJSON.read_text(encoding="utf-8"))
    ring = _feature(doc, "320102001001001")["geometry"]["coordinates"][0]
    east_edge_lon = ring[1][0]
    mid_lat = (ring[1][1] + ring[2][1]) / 2
    assert index.cell_at(east_edge_lon, mid_lat) == "320102001001001"
    assert index.cells_at([east_edge_lon], [mid_lat]) == ["320102001001001"]
    # Just east of the edge is the other cell: the rule only decides the edge itself.
    assert index.cell_at(east_edge_lon + 1e-6, mid_lat) == "320102001001002"
    # A corner shared by up to four cells: still the smallest of them.
    corner = ring[2]
    assert index.cell_at(*corner) == min(
        gid for gid in index.ids if index.geometry(gid).intersects(__import__("shapely").Point(*corner)))


def test_outside_every_cell_is_a_clear_error_not_the_nearest_cell(index):
    """A point beyond the district is in no cell: locate raises OutsideGrid with a zh-CN message."""
    assert index.cell_at(116.39, 39.90) is None
    assert index.cells_at([116.39, 118.7734], [39.90, 32.0445]) == [None, "320102001001001"]
    with pytest.raises(geo.OutsideGrid) as exc:
        index.locate(116.39, 39.90)
    assert "不在任何单元网格内" in exc.value.message_zh
    assert index.cell_at(float("nan"), 32.0) is None


def test_locate_gives_cell_community_and_the_road_through_the_cell(index):
    """长江路 is gazetteered in 320102001002001: its cell's centre gives that road."""
    lon, lat = index.centre("320102001002001")
    found = index.locate(lon, lat)
    assert found == geo.Located("320102001002001", "320102001002", "长江路")


def test_gcj02_matches_the_published_reference_and_round_trips():
    """GCJ-02 → WGS-84 matches gcoord's test value; WGS → GCJ → WGS returns within 1e-8°."""
    lon, lat = geo.gcj02_to_wgs84(123.0, 45.0)
    assert lon == pytest.approx(122.99395597, abs=5e-6)
    assert lat == pytest.approx(44.99804071, abs=5e-6)
    for p in [(118.7734, 32.0445), (116.397, 39.909), (121.47, 31.23), (113.26, 23.13)]:
        g = geo.wgs84_to_gcj02(*p)
        assert 50 < abs(g[0] - p[0]) * 111_000 + abs(g[1] - p[1]) * 111_000 < 1500   # the offset is real
        back = geo.gcj02_to_wgs84(*g)
        assert back == pytest.approx(p, abs=1e-8)
    assert geo.gcj02_to_wgs84(183.0, 45.0) == (183.0, 45.0)      # outside China: unchanged
    assert geo.wgs84_to_gcj02(2.35, 48.85) == (2.35, 48.85)


def test_gcj02_import_moves_polygons_back_onto_wgs84(tmp_path, shapes):
    """A city file in GCJ-02, imported with crs=gcj02, gives the WGS-84 polygons back."""
    doc = json.loads(GEOJSON.read_text(encoding="utf-8"))
    for f in doc["features"]:
        f["geometry"]["coordinates"] = [[list(geo.wgs84_to_gcj02(*pt)) for pt in ring]
                                        for ring in f["geometry"]["coordinates"]]
    path = tmp_path / "gcj.geojson"
    path.write_text(json.dumps(doc), encoding="utf-8")
    as_is, _ = geo.load_grid_geojson(path)
    converted, errors = geo.load_grid_geojson(path, crs="gcj02")
    assert errors == []
    want = {s.cell.grid_id: s.geometry["coordinates"][0][0] for s in shapes}
    got = {s.cell.grid_id: s.geometry["coordinates"][0][0] for s in converted}
    off = {s.cell.grid_id: s.geometry["coordinates"][0][0] for s in as_is}
    gid = "320102001001001"
    assert got[gid] == pytest.approx(want[gid], abs=1e-6)
    assert abs(off[gid][0] - want[gid][0]) > 1e-3          # unconverted, it is hundreds of metres off


def test_bad_features_are_reported_each_with_its_position(tmp_path):
    """Bad IDs, duplicates, non-polygons, self-crossing rings and unknown communities are named."""
    square = {"type": "Polygon", "coordinates": [[[118.0, 32.0], [118.01, 32.0], [118.01, 32.01], [118.0, 32.0]]]}
    bowtie = {"type": "Polygon", "coordinates": [[[118.0, 32.0], [118.01, 32.01], [118.01, 32.0],
                                                 [118.0, 32.01], [118.0, 32.0]]]}
    feats = [
        {"type": "Feature", "properties": {"grid_id": "320102001001001"}, "geometry": square},
        {"type": "Feature", "properties": {"grid_id": "123"}, "geometry": square},
        {"type": "Feature", "properties": {"grid_id": "320102001001001"}, "geometry": square},
        {"type": "Feature", "properties": {"grid_id": "320102001001002"},
         "geometry": {"type": "Point", "coordinates": [118.0, 32.0]}},
        {"type": "Feature", "properties": {"grid_id": "320102001001003"}, "geometry": bowtie},
        {"type": "Feature", "properties": {"grid_id": "320102009009001"}, "geometry": square},
    ]
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")
    cells, errors = geo.load_grid_geojson(path, communities=["320102001001"])
    assert [c.cell.grid_id for c in cells] == ["320102001001001"]
    assert [e.line for e in errors] == [2, 3, 4, 5, 6]
    text = " / ".join(e.reason for e in errors)
    for part in ("15 letters/digits", "listed twice", "Polygon or MultiPolygon", "crosses itself",
                 "community 320102009009 of grid 320102009009001 is unknown"):
        assert part in text
    path.write_text("{not json", encoding="utf-8")
    assert geo.load_grid_geojson(path)[1][0].line == 1

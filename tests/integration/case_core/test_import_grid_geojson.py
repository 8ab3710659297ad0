"""`hotline import grid_cells FILE.geojson [--crs …]` through the real CLI entry point on SQLite:
a city's GCJ-02 export lands on the WGS-84 grid, an unconverted one is visibly off, and `--crs`
is refused where it means nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from callcenter.cli import main
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine
from case_core.domain import geo
from case_core.service import load_reference

DEMO = Path(__file__).resolve().parents[3] / "case_core" / "demo_data"
CELL = "320102001002001"   # 长江路东段


@pytest.fixture
def config(tmp_path):
    db = tmp_path / "h.db"
    path = tmp_path / "hotline.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n', encoding="utf-8")
    return str(path), f"sqlite:///{db}"


def _reference(url):
    async def read():
        repo = SqlRepository(make_engine(url))
        try:
            return await load_reference(repo)
        finally:
            await repo.close()
    return asyncio.run(read())


def _centre(doc: dict, gid: str) -> tuple[float, float]:
    ring = next(f for f in doc["features"] if f["properties"]["grid_id"] == gid)["geometry"]["coordinates"][0]
    return (ring[0][0] + ring[2][0]) / 2, (ring[0][1] + ring[2][1]) / 2


def _gcj_copy(tmp_path: Path) -> Path:
    """The demo grid as a consumer map (高德/腾讯) would export it: every vertex in GCJ-02."""
    doc = json.loads((DEMO / "grid_cells.geojson").read_text(encoding="utf-8"))
    for f in doc["features"]:
        f["geometry"]["coordinates"] = [[list(geo.wgs84_to_gcj02(*pt)) for pt in ring]
                                        for ring in f["geometry"]["coordinates"]]
    path = tmp_path / "cells-gcj02.geojson"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def test_a_gcj02_grid_imported_with_crs_gcj02_locates_wgs84_positions(config, tmp_path, capsys):
    """Imported with --crs gcj02, a phone's WGS-84 fix at a cell's centre falls in that cell; the
    same file imported as WGS-84 puts that fix in another cell or outside the grid (hundreds of m off)."""
    path, url = config
    wgs = json.loads((DEMO / "grid_cells.geojson").read_text(encoding="utf-8"))
    lon, lat = _centre(wgs, CELL)
    gcj = _gcj_copy(tmp_path)
    assert main(["import", "areas", str(DEMO / "city_areas.csv"), "--config", path]) == 0

    assert main(["import", "grid_cells", str(gcj), "--config", path]) == 0   # as if it were WGS-84
    assert _reference(url).geo.cell_at(lon, lat) != CELL

    assert main(["import", "grid_cells", str(gcj), "--crs", "gcj02", "--config", path]) == 0
    ref = _reference(url)
    assert len(ref.geo) == len(wgs["features"])
    assert ref.geo.cell_at(lon, lat) == CELL
    centre = ref.geo.centre(CELL)
    assert centre == pytest.approx((lon, lat), abs=1e-6)   # the conversion error is far below a metre
    assert "imported 36" in capsys.readouterr().out


def test_crs_is_refused_for_a_csv_or_another_table(config, tmp_path, capsys):
    """--crs applies to grid cells from GeoJSON only: with a CSV it is a clear error, nothing written."""
    path, _ = config
    assert main(["import", "areas", str(DEMO / "city_areas.csv"), "--crs", "gcj02", "--config", path]) == 2
    assert main(["import", "grid_cells", str(DEMO / "grid_cells.csv"), "--crs", "gcj02", "--config", path]) == 2
    assert "--crs applies to grid_cells from a .geojson file only" in capsys.readouterr().err
    assert not (tmp_path / "h.db").exists()   # refused before the database is even opened

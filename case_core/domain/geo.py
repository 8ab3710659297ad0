"""地理编码: grid-cell polygons, locating a position in its cell, and China's coordinate offsets.

Owns the GeoJSON loader for grid cells (``hotline import grid_cells FILE.geojson``), the
spatial index that puts a WGS-84 point into its 15-character grid cell (shapely's STRtree,
not hand-written geometry), the nearest gazetteer road, and the GCJ-02 ⇄ WGS-84 conversion.

Coordinates are WGS-84 longitude/latitude everywhere inside the hotline, as GeoJSON
requires. A city's data in GCJ-02 (the "火星坐标" of AutoNavi/Tencent maps) is converted
at import (``--crs gcj02``); CGCS2000 (天地图, the national surveying frame) agrees with
WGS-84 to a few centimetres, far below a grid cell's size, so it is taken as is.

Border rule: a point on the shared edge (or corner) of several cells belongs to the one
with the smallest grid ID, so the same point always lands in the same cell.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import shapely
from shapely.geometry import shape

from case_core.domain.reference import GridCell, RowError, _GRID_ID

__all__ = [
    "CRS_CHOICES", "wgs84_to_gcj02", "gcj02_to_wgs84", "out_of_china", "CellShape", "load_grid_geojson",
    "GridIndex", "Located", "OutsideGrid", "local_metres",
]

CRS_CHOICES = ("wgs84", "cgcs2000", "gcj02")

# --- GCJ-02 (GB 20263 obfuscation) ------------------------------------------------------
# The published reverse-engineered formula (Krasovsky 1940 ellipsoid); applied only
# inside mainland China's bounding box, as the maps that use it do.
_A = 6378245.0
_EE = 0.00669342162296594323


def out_of_china(lon: float, lat: float) -> bool:
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _d_lat(x: float, y: float) -> float:
    r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    r += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return r


def _d_lon(x: float, y: float) -> float:
    r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    r += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return r


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """WGS-84 → GCJ-02 (unchanged outside China)."""
    if out_of_china(lon, lat):
        return lon, lat
    dlat, dlon = _d_lat(lon - 105.0, lat - 35.0), _d_lon(lon - 105.0, lat - 35.0)
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    sq = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sq) * math.pi)
    dlon = (dlon * 180.0) / (_A / sq * math.cos(rad) * math.pi)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 → WGS-84 by fixed-point iteration on the forward formula (error < 1e-9°, i.e.
    well under a millimetre; the one-step inverse often quoted is off by up to a metre)."""
    if out_of_china(lon, lat):
        return lon, lat
    wlon, wlat = lon, lat
    for _ in range(30):
        glon, glat = wgs84_to_gcj02(wlon, wlat)
        dlon, dlat = lon - glon, lat - glat
        wlon, wlat = wlon + dlon, wlat + dlat
        if abs(dlon) < 1e-10 and abs(dlat) < 1e-10:
            break
    return wlon, wlat


def _convert_coords(coords: Any, fn) -> Any:
    if coords and isinstance(coords[0], (int, float)):
        lon, lat = fn(float(coords[0]), float(coords[1]))
        return [round(lon, 7), round(lat, 7)]
    return [_convert_coords(c, fn) for c in coords]


def local_metres(lon: float, lat: float) -> tuple[float, float]:
    """A point in metres on a plain equirectangular plane (cell-centre distances for the
    duplicate finder; good to a fraction of a percent across one city)."""
    return lon * 111_320.0 * math.cos(math.radians(lat)), lat * 110_940.0


# --- grid cells from GeoJSON ---------------------------------------------------------------
@dataclass(frozen=True)
class CellShape:
    """A grid cell with its polygon (a GeoJSON geometry, WGS-84)."""

    cell: GridCell
    geometry: dict[str, Any]

    @property
    def geometry_json(self) -> str:
        return json.dumps(self.geometry, separators=(",", ":"))


def load_grid_geojson(path: str | Path, communities: Iterable[str] | None = None, *, crs: str = "wgs84"
                      ) -> tuple[list[CellShape], list[RowError]]:
    """A FeatureCollection of Polygon/MultiPolygon features whose ``grid_id`` (property, or
    the feature's ``id``) is a 15-character grid ID; ``name``/``inspector`` properties are
    kept. A bad feature is reported as ``RowError(n, reason)`` with ``n`` its 1-based position
    (line 1 = the file itself cannot be used)."""
    source = str(path)
    if crs not in CRS_CHOICES:
        return [], [RowError(1, f"unknown --crs {crs!r} (have: {', '.join(CRS_CHOICES)})", source)]
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [], [RowError(1, f"not a GeoJSON file: {exc}", source)]
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        return [], [RowError(1, "expected a GeoJSON FeatureCollection", source)]
    known = set(communities) if communities is not None else None
    out: dict[str, CellShape] = {}
    errors: list[RowError] = []
    for n, feat in enumerate(doc["features"], start=1):
        def err(reason: str) -> None:
            errors.append(RowError(n, f"feature {n}: {reason}", source))
        if not isinstance(feat, dict) or not isinstance(feat.get("geometry"), dict):
            err("no geometry")
            continue
        props = feat.get("properties") or {}
        gid = str(props.get("grid_id") or feat.get("id") or "")
        geom = feat["geometry"]
        if not _GRID_ID.match(gid):
            err(f"grid ID {gid!r} must be 15 letters/digits")
            continue
        if gid in out:
            err(f"grid ID {gid} listed twice")
            continue
        if known is not None and gid[:12] not in known:
            err(f"community {gid[:12]} of grid {gid} is unknown")
            continue
        if geom.get("type") not in ("Polygon", "MultiPolygon"):
            err(f"grid {gid}: geometry must be a Polygon or MultiPolygon, not {geom.get('type')!r}")
            continue
        try:
            if crs == "gcj02":
                geom = {"type": geom["type"], "coordinates": _convert_coords(geom["coordinates"], gcj02_to_wgs84)}
            poly = shape(geom)
        except (KeyError, TypeError, ValueError, IndexError, shapely.errors.ShapelyError) as exc:
            err(f"grid {gid}: bad coordinates ({exc})")
            continue
        if poly.is_empty or not poly.is_valid:
            err(f"grid {gid}: the polygon is empty or crosses itself ({shapely.is_valid_reason(poly)})")
            continue
        minx, miny, maxx, maxy = poly.bounds
        if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
            err(f"grid {gid}: coordinates are not longitude/latitude")
            continue
        c = poly.representative_point() if not poly.centroid.within(poly) else poly.centroid
        x, y = local_metres(c.x, c.y)
        cell = GridCell(gid, str(props.get("name") or ""), str(props.get("inspector") or ""),
                        round(x, 1), round(y, 1))
        out[gid] = CellShape(cell, json.loads(json.dumps(geom)))
    return list(out.values()), errors


# --- locating -------------------------------------------------------------------------------
class OutsideGrid(LookupError):
    """The point lies in no grid cell."""

    message_zh = "该位置不在任何单元网格内"


@dataclass(frozen=True)
class Located:
    grid_cell: str
    area: str           # the community (社区) code: the grid ID's first 12 characters
    nearest_road: str | None


class GridIndex:
    """Grid-cell polygons in an STRtree. ``cells`` are ``(grid_id, geometry)`` pairs with
    GeoJSON geometry dicts (or shapely geometries); ``roads`` are ``(name, grid_id)`` from
    the gazetteer: a road is taken to run through its cell's centre."""

    def __init__(self, cells: Iterable[tuple[str, Any]], roads: Iterable[tuple[str, str]] = ()):
        pairs = sorted(((gid, g if isinstance(g, shapely.Geometry) else shape(g)) for gid, g in cells),
                       key=lambda p: p[0])
        # Sorted by grid ID: the smallest index among several hits is the smallest grid ID.
        self.ids: list[str] = [gid for gid, _ in pairs]
        self.geoms = np.array([g for _, g in pairs], dtype=object)
        shapely.prepare(self.geoms)
        self.tree = shapely.STRtree(self.geoms)
        self._pos = {gid: i for i, gid in enumerate(self.ids)}
        self._areas: dict[int, dict[str, Any]] = {}
        centres = {gid: g.centroid for gid, g in pairs}
        self._roads = [(name, gid) for name, gid in roads if gid in centres]
        self._road_pts = np.array([centres[gid] for _, gid in self._roads], dtype=object)
        self._road_tree = shapely.STRtree(self._road_pts) if self._roads else None

    def __len__(self) -> int:
        return len(self.ids)

    def geometry(self, grid_id: str):
        i = self._pos.get(grid_id)
        return None if i is None else self.geoms[i]

    def centre(self, grid_id: str) -> tuple[float, float] | None:
        """(lon, lat) of a point inside the cell (its centroid when that lies inside)."""
        g = self.geometry(grid_id)
        if g is None:
            return None
        c = g.centroid if g.centroid.within(g) else g.representative_point()
        return c.x, c.y

    def cell_at(self, lon: float, lat: float) -> str | None:
        """The grid cell covering the point (border → smallest grid ID), or None outside."""
        if not (math.isfinite(lon) and math.isfinite(lat)):
            return None
        hits = self.tree.query(shapely.Point(lon, lat), predicate="intersects")
        return self.ids[int(hits.min())] if len(hits) else None

    def cells_at(self, lons: Sequence[float], lats: Sequence[float]) -> list[str | None]:
        """``cell_at`` for many points in one vectorised query (same border rule)."""
        pts = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        pi, gi = self.tree.query(pts, predicate="intersects")
        best = np.full(len(pts), -1, dtype=np.int64)
        if len(pi):
            order = np.lexsort((gi, pi))             # by point, then by grid index
            pi, gi = pi[order], gi[order]
            first = np.ones(len(pi), dtype=bool)
            first[1:] = pi[1:] != pi[:-1]
            best[pi[first]] = gi[first]
        return [self.ids[b] if b >= 0 else None for b in best]

    def areas(self, length: int) -> dict[str, Any]:
        """Outlines of the areas the cells make up: code (the grid ID's first ``length``
        characters: 9 street, 12 community) → their union (a shapely geometry)."""
        # The index never changes, so each level's union is computed once (GET /api/geo/areas
        # asks on every map load).
        if length not in self._areas:
            groups: dict[str, list[Any]] = {}
            for gid, g in zip(self.ids, self.geoms):
                groups.setdefault(gid[:length], []).append(g)
            self._areas[length] = {code: shapely.union_all(gs, grid_size=1e-7) for code, gs in groups.items()}
        return self._areas[length]

    def nearest_road(self, lon: float, lat: float) -> str | None:
        if self._road_tree is None:
            return None
        p = shapely.Point(lon, lat)
        i = int(self._road_tree.nearest(p))
        # Ties (several roads through one cell) go to the road listed first.
        d = self._road_pts[i].distance(p)
        for j, (name, _gid) in enumerate(self._roads):
            if self._road_pts[j].distance(p) <= d + 1e-12:
                return name
        return self._roads[i][0]

    def locate(self, lon: float, lat: float) -> Located:
        gid = self.cell_at(lon, lat)
        if gid is None:
            raise OutsideGrid(f"({lon}, {lat}) is in no grid cell")
        return Located(gid, gid[:12], self.nearest_road(lon, lat))

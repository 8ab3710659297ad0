"""地理编码 speed: locate 100,000 points in their grid cells (shapely STRtree, case_core.domain.geo)
against a naive scan over every polygon, on the demo city's 36 cells and on a synthetic grid of
50,000 cells, in one run. Prints one JSON document (a summary on stderr).

    nice -n 10 .venv/bin/python bench/geo_bench.py [--points 100000] [--cells 50000] [--naive-points 2000]

Measured per grid:
- `index_vectorised`: `GridIndex.cells_at` on all points in one call (imports, bulk checks);
- `index_per_point`: `GridIndex.cell_at` one point at a time (what `GET /api/geo/locate` and a
  field report do);
- `naive_scan`: per point, `intersects` against every polygon (one vectorised shapely call over
  the whole array, no index), smallest grid ID on a border — the same answer, checked. On the
  50,000-cell grid it runs on `--naive-points` points (a full run would take hours); rates are
  per point, so they compare.
Points are uniform over the grid's bounding box plus a 5 % margin (some outside every cell),
with a fixed seed; 1 % are put exactly on cell edges to exercise the border rule.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import shapely

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from case_core.domain.geo import GridIndex, load_grid_geojson  # noqa: E402


def demo_cells() -> list[tuple[str, object]]:
    shapes, errors = load_grid_geojson(REPO / "case_core" / "demo_data" / "grid_cells.geojson")
    assert not errors
    return [(s.cell.grid_id, s.geometry) for s in shapes]


def synthetic_cells(n: int, seed: int = 7) -> list[tuple[str, object]]:
    """A square-ish lattice of n slightly irregular quadrilaterals (shared edges, like a real
    grid) around 118.78E 32.05N, each ~100 m across."""
    side = int(np.ceil(np.sqrt(n)))
    rng = np.random.default_rng(seed)
    dx, dy = 0.00106, 0.0009
    # Jitter the lattice's vertices (not the cells) so neighbours still share their edges.
    jx = rng.uniform(-0.2, 0.2, (side + 1, side + 1)) * dx
    jy = rng.uniform(-0.2, 0.2, (side + 1, side + 1)) * dy
    x0, y0 = 118.70, 31.98
    vx = x0 + np.arange(side + 1)[None, :] * dx + jx
    vy = y0 + np.arange(side + 1)[:, None] * dy + jy
    cells = []
    for k in range(n):
        r, c = divmod(k, side)
        ring = [(vx[r, c], vy[r, c]), (vx[r, c + 1], vy[r, c + 1]), (vx[r + 1, c + 1], vy[r + 1, c + 1]),
                (vx[r + 1, c], vy[r + 1, c]), (vx[r, c], vy[r, c])]
        gid = f"9{r:07d}{c:07d}"[:15]
        cells.append((gid, shapely.Polygon(ring)))
    return cells


def sample_points(index: GridIndex, n: int, seed: int = 12319) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = shapely.total_bounds(index.geoms)
    mx, my = (maxx - minx) * 0.05, (maxy - miny) * 0.05
    lons = rng.uniform(minx - mx, maxx + mx, n)
    lats = rng.uniform(miny - my, maxy + my, n)
    # 1 % exactly on an edge: the first edge of a random cell, at its midpoint.
    k = n // 100
    picks = rng.integers(0, len(index.ids), k)
    for i, g in zip(range(k), picks):
        (ax, ay), (bx, by) = list(index.geoms[g].exterior.coords)[:2]
        lons[i], lats[i] = (ax + bx) / 2, (ay + by) / 2
    return lons, lats


def naive(index: GridIndex, lons, lats) -> list[str | None]:
    out = []
    for x, y in zip(lons, lats):
        hits = np.nonzero(shapely.intersects(index.geoms, shapely.Point(x, y)))[0]
        out.append(index.ids[int(hits.min())] if len(hits) else None)
    return out


def timed(fn, *args):
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - t0, time.process_time() - c0


def run_grid(name: str, cells, points: int, naive_points: int) -> dict:
    index, build_s, _ = timed(GridIndex, cells)
    lons, lats = sample_points(index, points)
    vec, vec_s, vec_cpu = timed(index.cells_at, lons, lats)
    per, per_s, per_cpu = timed(lambda: [index.cell_at(x, y) for x, y in zip(lons, lats)])
    m = min(naive_points, points)
    scan, scan_s, scan_cpu = timed(naive, index, lons[:m], lats[:m])
    assert vec == per, "vectorised and per-point lookups disagree"
    assert scan == vec[:m], "the index and the naive scan disagree"
    inside = sum(1 for g in vec if g is not None)
    on_edge = points // 100
    return {
        "grid": name, "cells": len(index), "points": points, "build_index_s": round(build_s, 3),
        "located": inside, "outside": points - inside, "on_edges": on_edge,
        "index_vectorised": {"seconds": round(vec_s, 3), "cpu_s": round(vec_cpu, 3), "points_per_s": round(points / vec_s)},
        "index_per_point": {"seconds": round(per_s, 3), "cpu_s": round(per_cpu, 3), "points_per_s": round(points / per_s),
                            "us_per_point": round(per_s / points * 1e6, 1)},
        "naive_scan": {"points": m, "seconds": round(scan_s, 3), "cpu_s": round(scan_cpu, 3),
                       "points_per_s": round(m / scan_s, 1), "us_per_point": round(scan_s / m * 1e6, 1)},
        "speedup_per_point_vs_naive": round((scan_s / m) / (per_s / points), 1),
        "speedup_vectorised_vs_naive": round((scan_s / m) / (vec_s / points), 1),
        "answers_agree": True,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--cells", type=int, default=50_000)
    ap.add_argument("--naive-points", type=int, default=2_000, help="points for the naive scan on the big grid")
    args = ap.parse_args()
    load = os.getloadavg()
    results = [run_grid("demo_city", demo_cells(), args.points, args.points),
               run_grid(f"synthetic_{args.cells}", synthetic_cells(args.cells), args.points, args.naive_points)]
    doc = {"bench": "geo_bench", "shapely": shapely.__version__, "geos": shapely.geos_version_string,
           "python": platform.python_version(), "loadavg_start": [round(x, 2) for x in load],
           "loadavg_end": [round(x, 2) for x in os.getloadavg()], "results": results}
    print(json.dumps(doc, indent=2))
    for r in results:
        print(f"{r['grid']}: {r['cells']} cells, {r['points']} points — vectorised {r['index_vectorised']['points_per_s']:,}/s, "
              f"per point {r['index_per_point']['points_per_s']:,}/s, naive {r['naive_scan']['points_per_s']:,}/s "
              f"(×{r['speedup_per_point_vs_naive']} per point)", file=sys.stderr)


if __name__ == "__main__":
    main()

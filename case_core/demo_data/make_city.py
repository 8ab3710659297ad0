"""Writes the demo city's reference files (``city_*.csv`` and ``grid_cells.geojson``).

Run ``python -m case_core.demo_data.make_city`` after changing the tables below; the files
it writes are kept in the repository (``hotline demo seed --city`` imports them). The city
extends the small test district (``areas.csv``, ``grid_cells.csv`` …): every row there is
kept here with the same code and name, so tests written against either agree.

Layout: district 320102 示范区 is 1.5 km × 1.2 km around Nanjing's centre (118.78 E,
32.04 N), four streets (2 × 2 blocks of 750 m × 600 m), three communities per street
(rows of 200 m), three unit grid cells per community (250 m × 200 m). Grid cells carry
their centre in metres east/north of the district's south-west corner (``x``/``y``, as the
duplicate finder wants) and, in the GeoJSON, their WGS-84 rectangle.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent

DISTRICT = ("320102", "示范区")
CENTRE_LON, CENTRE_LAT = 118.78, 32.04
WIDTH_M, HEIGHT_M = 1500.0, 1200.0
CELL_W, CELL_H = 250.0, 200.0
M_PER_DEG_LAT = 110_940.0
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(CENTRE_LAT))
ORIGIN_LON = CENTRE_LON - WIDTH_M / 2 / M_PER_DEG_LON
ORIGIN_LAT = CENTRE_LAT - HEIGHT_M / 2 / M_PER_DEG_LAT

# street code, name, block origin (x, y) in metres, communities (code, name, cell names)
STREETS = [
    ("001", "梅园街道", (0.0, 600.0), [
        ("001", "梅园社区", ["梅园新村北", "梅园新村南", "梅园菜场"]),
        ("002", "长江路社区", ["长江路东段", "长江路西段", "碑亭巷"]),
        ("003", "大悲巷社区", ["大悲巷", "汉府街", "总统府东"]),
    ]),
    ("002", "新街口街道", (0.0, 0.0), [
        ("001", "新街口社区", ["新街口广场", "中山东路口", "淮海路"]),
        ("002", "丰富路社区", ["丰富路北", "丰富路南", "石鼓巷"]),
        ("003", "文昌社区", ["文昌巷", "洪武北路", "科巷"]),
    ]),
    ("003", "玄湖街道", (750.0, 600.0), [
        ("001", "玄湖社区", ["玄湖门", "湖滨公园", "玄湖路东"]),
        ("002", "樱驼社区", ["樱驼花园", "樱驼路", "北京东路口"]),
        ("003", "北园社区", ["北园新村", "北园小学", "成贤街"]),
    ]),
    ("004", "清溪街道", (750.0, 0.0), [
        ("001", "清溪社区", ["清溪路北", "清溪路南", "清溪农贸市场"]),
        ("002", "桃园社区", ["桃园新村", "桃园街", "区人民医院"]),
        ("003", "青石社区", ["青石街", "青石广场", "龙蟠路口"]),
    ]),
]

# Inspectors (监督员) by street: each patrols one street's cells (usernames of demo users).
INSPECTORS = {"001": "inspector1", "002": "inspector2", "003": "inspector3", "004": "inspector4"}

DEPARTMENTS = [
    ("city_mgmt", "示范区城市管理局", "", "025-00000001"),
    ("municipal", "市政设施养护中心", "city_mgmt", "025-00000002"),
    ("lighting", "路灯管理所", "city_mgmt", "025-00000003"),
    ("sanitation", "环境卫生管理所", "city_mgmt", "025-00000004"),
    ("enforcement", "城管执法大队", "city_mgmt", "025-00000005"),
    ("water", "示范水务公司", "", "025-00000006"),
    ("gardens", "园林绿化管理所", "", "025-00000007"),
    ("street_meiyuan", "梅园街道办事处", "", "025-00000008"),
    ("street_xinjiekou", "新街口街道办事处", "", "025-00000009"),
    ("traffic", "交通设施管理所", "city_mgmt", "025-00000010"),
    ("street_xuanhu", "玄湖街道办事处", "", "025-00000011"),
    ("street_qingxi", "清溪街道办事处", "", "025-00000012"),
]

# Gazetteer: (name, kind, cell "SSS-CCC-GGG", aliases). The test district's six places first.
PLACES = [
    ("长江路", "road", "001-002-001", ""),
    ("长江路西段", "road", "001-002-002", ""),
    ("梅园新村", "landmark", "001-001-001", "梅园"),
    ("梅园小学", "landmark", "001-001-002", ""),
    ("新街口广场", "landmark", "002-001-001", "新街口"),
    ("中山东路", "road", "002-001-001", ""),
    # roads
    ("碑亭巷", "road", "001-002-003", ""),
    ("大悲巷", "road", "001-003-001", ""),
    ("汉府街", "road", "001-003-002", ""),
    ("淮海路", "road", "002-001-003", ""),
    ("丰富路", "road", "002-002-001", ""),
    ("石鼓巷", "road", "002-002-003", ""),
    ("文昌巷", "road", "002-003-001", ""),
    ("洪武北路", "road", "002-003-002", "洪武路"),
    ("科巷", "road", "002-003-003", ""),
    ("玄湖路", "road", "003-001-003", ""),
    ("樱驼路", "road", "003-002-002", ""),
    ("北京东路", "road", "003-002-003", ""),
    ("成贤街", "road", "003-003-003", ""),
    ("清溪路", "road", "004-001-001", ""),
    ("桃园街", "road", "004-002-002", ""),
    ("青石街", "road", "004-003-001", ""),
    ("龙蟠路", "road", "004-003-003", ""),
    # communities
    ("梅园社区", "community", "001-001-001", ""),
    ("长江路社区", "community", "001-002-001", ""),
    ("大悲巷社区", "community", "001-003-001", ""),
    ("新街口社区", "community", "002-001-001", ""),
    ("丰富路社区", "community", "002-002-001", ""),
    ("文昌社区", "community", "002-003-001", ""),
    ("玄湖社区", "community", "003-001-001", ""),
    ("樱驼社区", "community", "003-002-001", ""),
    ("北园社区", "community", "003-003-001", ""),
    ("清溪社区", "community", "004-001-001", ""),
    ("桃园社区", "community", "004-002-001", ""),
    ("青石社区", "community", "004-003-001", ""),
    # landmarks
    ("梅园菜场", "landmark", "001-001-003", "梅园菜市场"),
    ("总统府", "landmark", "001-003-003", "总统府景区"),
    ("新街口地铁站", "landmark", "002-001-002", "新街口站"),
    ("丰富路小学", "landmark", "002-002-002", ""),
    ("玄湖门", "landmark", "003-001-001", "玄湖城门"),
    ("湖滨公园", "landmark", "003-001-002", "湖滨公园南门"),
    ("樱驼花园", "landmark", "003-002-001", "樱驼小区"),
    ("北园新村", "landmark", "003-003-001", ""),
    ("北园小学", "landmark", "003-003-002", ""),
    ("清溪农贸市场", "landmark", "004-001-003", "清溪菜场"),
    ("桃园新村", "landmark", "004-002-001", ""),
    ("示范区人民医院", "landmark", "004-002-003", "区人民医院|区医院"),
    ("青石广场", "landmark", "004-003-002", ""),
]

# Routing rules (指挥手册): kind, code, area, case_type, department, then time limits for
# verify, register, dispatch, handle, check, close, case (working hours h / days d).
# The test district's 15 rules come first, unchanged.
RULES = [
    ("*", "*", "", "", "", "2h", "1h", "1h", "3d", "4h", "2h", "5d"),
    ("*", "*", "", "urgent", "", "30min", "30min", "30min", "4h", "1h", "1h", "1d"),
    ("*", "*", "", "complex", "", "", "", "", "10d", "", "", "15d"),
    ("component", "01", "", "", "municipal"),
    ("component", "01001", "", "", "water"),
    ("matter", "01001", "", "", "water"),
    ("component", "01037", "", "", "lighting", "", "", "", "1d"),
    ("matter", "01037", "", "", "lighting", "", "", "", "1d"),
    ("component", "04", "", "", "gardens"),
    ("matter", "04", "", "", "gardens"),
    ("matter", "06", "", "", "sanitation"),
    ("matter", "06", "320102001", "", "street_meiyuan"),
    ("matter", "06010", "", "", "", "", "", "", "4h"),
    ("matter", "09", "", "", "enforcement"),
    ("matter", "09006", "320102002", "", "street_xinjiekou", "", "", "", "1d"),
    # the demo city's own rules
    ("component", "01003", "", "", "water", "", "", "", "4h"),
    ("matter", "01003", "", "", "water", "", "", "", "4h"),
    ("matter", "01", "", "", "municipal"),
    ("component", "01039", "", "", "lighting", "", "", "", "2d"),
    ("component", "01060", "", "", "lighting", "", "", "", "1d"),
    ("component", "02", "", "", "traffic"),
    ("matter", "02", "", "", "traffic"),
    ("component", "02014", "", "", "traffic", "", "", "", "4h"),
    ("component", "03", "", "", "sanitation"),
    ("matter", "03", "", "", "sanitation"),
    ("component", "04002", "", "", "gardens", "", "", "", "5d"),
    ("matter", "06", "320102003", "", "street_xuanhu"),
    ("matter", "06", "320102004", "", "street_qingxi"),
    ("matter", "06001", "", "", "enforcement", "", "", "", "10d", "", "", "15d"),
    ("matter", "06013", "", "", "municipal", "", "", "", "5d"),
    ("matter", "06014", "", "", "sanitation", "", "", "", "4h"),
    ("matter", "06027", "", "", "enforcement", "", "", "", "5d"),
    ("matter", "06028", "", "", "enforcement", "", "", "", "2d"),
    ("matter", "06042", "", "", "sanitation", "", "", "", "4h"),
    ("matter", "07", "", "", "enforcement", "", "", "", "2d"),
    ("matter", "07001", "320102002", "", "street_xinjiekou", "", "", "", "2d"),
    ("matter", "08", "", "", "enforcement", "", "", "", "2d"),
    ("matter", "08004", "", "", "enforcement", "", "", "", "1d"),
    ("matter", "09009", "", "", "traffic"),
    ("matter", "09010", "320102003", "", "street_xuanhu"),
    ("matter", "09010", "320102004", "", "street_qingxi"),
    ("matter", "10001", "", "", "municipal", "", "", "", "4h"),
]
_STEPS = ("verify", "register", "dispatch", "handle", "check", "close", "case")


def grid_id(street: str, community: str, cell: int) -> str:
    return f"{DISTRICT[0]}{street}{community}{cell:03d}"


def cells() -> list[dict]:
    """Every grid cell with its name, inspector, centre (metres) and rectangle (lon/lat)."""
    out = []
    for s_code, _s_name, (bx, by), communities in STREETS:
        for row, (c_code, _c_name, names) in enumerate(communities):
            for col, name in enumerate(names):
                x0, y0 = bx + col * CELL_W, by + (2 - row) * CELL_H
                out.append({
                    "grid_id": grid_id(s_code, c_code, col + 1), "name": name,
                    "inspector": INSPECTORS[s_code],
                    "x": x0 + CELL_W / 2, "y": y0 + CELL_H / 2,
                    "bbox": (lon(x0), lat(y0), lon(x0 + CELL_W), lat(y0 + CELL_H)),
                    "street": DISTRICT[0] + s_code, "community": DISTRICT[0] + s_code + c_code,
                })
    return out


def lon(x: float) -> float:
    return round(ORIGIN_LON + x / M_PER_DEG_LON, 6)


def lat(y: float) -> float:
    return round(ORIGIN_LAT + y / M_PER_DEG_LAT, 6)


def _write_csv(name: str, header: list[str], rows: list[list]) -> None:
    with open(HERE / name, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main() -> None:
    areas = [["district", DISTRICT[0], DISTRICT[1], ""]]
    for s_code, s_name, _origin, communities in STREETS:
        areas.append(["street", DISTRICT[0] + s_code, s_name, DISTRICT[0]])
    for s_code, _s_name, _origin, communities in STREETS:
        for c_code, c_name, _names in communities:
            areas.append(["community", DISTRICT[0] + s_code + c_code, c_name, DISTRICT[0] + s_code])
    _write_csv("city_areas.csv", ["level", "code", "name", "parent"], areas)
    grid = cells()
    _write_csv("city_grid_cells.csv", ["grid_id", "name", "inspector", "x", "y"],
               [[c["grid_id"], c["name"], c["inspector"], f"{c['x']:.0f}", f"{c['y']:.0f}"] for c in grid])
    _write_csv("city_departments.csv", ["code", "name", "parent", "phone"], [list(d) for d in DEPARTMENTS])
    _write_csv("city_gazetteer.csv", ["name", "kind", "grid_id", "aliases"],
               [[n, k, grid_id(*(c.split("-")[0], c.split("-")[1], int(c.split("-")[2]))), a]
                for n, k, c, a in PLACES])
    _write_csv("city_routing_rules.csv", ["kind", "code", "area", "case_type", "department", *_STEPS],
               [list(r) + [""] * (5 + len(_STEPS) - len(r)) for r in RULES])
    features = []
    for c in grid:
        w, s, e, n = c["bbox"]
        features.append({
            "type": "Feature",
            "id": c["grid_id"],
            "properties": {"grid_id": c["grid_id"], "name": c["name"], "inspector": c["inspector"],
                           "street": c["street"], "community": c["community"],
                           "centre": [lon(c["x"]), lat(c["y"])]},
            "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        })
    doc = {"type": "FeatureCollection", "name": "示范区单元网格", "features": features}
    (HERE / "grid_cells.geojson").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(areas)} areas, {len(grid)} grid cells, {len(PLACES)} places, {len(DEPARTMENTS)} departments, "
          f"{len(RULES)} routing rules")


if __name__ == "__main__":
    main()

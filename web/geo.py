"""地理编码 and 监督指挥 on the web: locate a position, the grid and the cases as GeoJSON, `/map`.

- `GET /api/geo/locate?lat=&lon=` → `{grid_cell, area, nearest_road, …}`; 404 with a zh-CN
  message outside every cell (nothing is ever filed in the "nearest" cell instead).
- `GET /api/geo/geocode?q=ADDRESS` → the gazetteer place in the address, its cell and a point
  (the cell's centre; `precision: "grid_cell"`), as the desk's place suggestion finds it.
- `GET /api/geo/grid` → FeatureCollection of the grid-cell polygons (`id`, `area`, `name`,
  `inspector`).
- `GET /api/geo/areas?level=street|community` → outlines of streets or communities (the union of
  their cells), `id`, `level`, `name`.
- `GET /api/geo/cases` → FeatureCollection of cases as points (`id`, `number`, `status`,
  `deadline`); filters as `GET /api/cases` plus `deadline=overdue|yellow`. A case with no
  position of its own is placed at its grid cell's centre (`located: "grid"`).
- `GET /map`: the map for dispatchers, commanders and supervisors (Leaflet; markers by
  status and deadline colour, clustered; grid outlines; works without any tile server).

Coordinates are WGS-84 lon/lat as GeoJSON requires (see `case_core.domain.geo`).
"""

from __future__ import annotations

import json
import math
from typing import Any

import shapely.geometry
from aiohttp import web

from case_core.domain.geo import OutsideGrid
from case_core.domain.workflow import STATUS_LABELS
from web.app import CTX, USER, api_auth, json_error, page_auth, render

# Who sees the map page (everyone logged in may use the JSON).
MAP_ROLES = frozenset({"dispatcher", "commander", "supervisor", "shift_lead", "admin"})
MAP_CASE_LIMIT = 5000
# The map's 在办 filter (a wall display shows live cases): every status but the finished ones.
DONE_STATUSES = frozenset({"closed", "followed_up", "evaluated", "declined", "void", "merged", "direct_answered"})
LIVE_STATUSES = ",".join(s for s in STATUS_LABELS if s not in DONE_STATUSES)
NO_GRID_MESSAGE = "尚未导入单元网格边界（hotline import grid_cells 文件.geojson）"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _coord(request: web.Request, name: str, low: float, high: float) -> float:
    raw = request.query.get(name, "")
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_parameter", "message": f"参数 {name} 必须是数值（WGS-84 经纬度）"},
                                                 ensure_ascii=False), content_type="application/json") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_parameter", "message": f"参数 {name} 超出范围 {low:g}…{high:g}"},
                                                 ensure_ascii=False), content_type="application/json")
    return value


async def _area_names(request: web.Request) -> dict[str, str]:
    return {r["code"]: r["name"] for r in await request.app[CTX].repo.reference_rows("areas")}


async def locate_json(request: web.Request, lat: float, lon: float) -> dict[str, Any] | web.Response:
    """The cell, community and nearest road of a position, or a 404 response outside the grid."""
    ref = await request.app[CTX].service.reference()
    if ref.geo is None:
        return json_error(404, "no_grid", NO_GRID_MESSAGE)
    try:
        found = ref.geo.locate(lon, lat)
    except OutsideGrid as exc:
        return json_error(404, "outside_grid", f"{exc.message_zh}（纬度 {lat:.6f}，经度 {lon:.6f}）")
    names = await _area_names(request)
    cell = ref.grid_cells.get(found.grid_cell)
    return {"grid_cell": found.grid_cell, "area": found.area, "nearest_road": found.nearest_road,
            "grid_name": cell.name if cell else "", "area_name": names.get(found.area, ""),
            "street": found.grid_cell[:9], "street_name": names.get(found.grid_cell[:9], ""),
            "inspector": cell.inspector if cell else "", "lat": lat, "lon": lon}


@api_auth
async def locate(request: web.Request) -> web.Response:
    body = await locate_json(request, _coord(request, "lat", -90, 90), _coord(request, "lon", -180, 180))
    return body if isinstance(body, web.Response) else _json(body)


@api_auth
async def geocode(request: web.Request) -> web.Response:
    """An address → the gazetteer place it names, its grid cell and a point for it (the cell's
    centre: the gazetteer keeps no coordinates of its own)."""
    q = request.query.get("q", "").strip()
    if not q:
        return json_error(400, "bad_parameter", "缺少参数 q（地址）")
    ref = await request.app[CTX].service.reference()
    hits = ref.gazetteer.lookup(q)
    if not hits:
        return json_error(404, "not_found", f"地名库中没有“{q[:40]}”里的地名")
    place = hits[0]
    centre = ref.geo.centre(place.grid_id) if ref.geo is not None else None
    cell = ref.grid_cells.get(place.grid_id)
    return _json({"place": place.name, "kind": place.kind, "grid_cell": place.grid_id, "area": place.grid_id[:12],
                  "grid_name": cell.name if cell else "",
                  "lat": round(centre[1], 7) if centre else None, "lon": round(centre[0], 7) if centre else None,
                  "precision": "grid_cell"})


@api_auth
async def grid(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    names = await _area_names(request)
    features = []
    for r in await ctx.repo.reference_rows("grid_cells"):
        if not r.get("geometry_json"):
            continue
        gid = r["grid_id"]
        features.append({"type": "Feature", "id": gid, "geometry": json.loads(r["geometry_json"]),
                         "properties": {"id": gid, "area": gid[:12], "area_name": names.get(gid[:12], ""),
                                        "street": gid[:9], "name": r["name"], "inspector": r["inspector"]}})
    return _json({"type": "FeatureCollection", "features": features})


@api_auth
async def areas(request: web.Request) -> web.Response:
    """Street (街道) and community (社区) outlines, each the union of its grid cells."""
    level = request.query.get("level", "street")
    if level not in ("street", "community"):
        return json_error(400, "bad_parameter", "level 只能是 street 或 community")
    ref = await request.app[CTX].service.reference()
    if ref.geo is None:
        return _json({"type": "FeatureCollection", "features": []})
    names = await _area_names(request)
    features = [{"type": "Feature", "id": code, "geometry": shapely.geometry.mapping(geom),
                 "properties": {"id": code, "level": level, "name": names.get(code, "")}}
                for code, geom in sorted(ref.geo.areas(9 if level == "street" else 12).items())]
    return _json({"type": "FeatureCollection", "features": features})


async def cases_collection(request: web.Request) -> dict[str, Any]:
    from web.case_api import local_now, search_filters
    from web.worklists import current_deadline

    ctx = request.app[CTX]
    deadline = request.query.get("deadline", "")
    if deadline not in ("", "overdue", "yellow"):
        raise web.HTTPBadRequest(text=json.dumps({"error": "bad_parameter", "message": "deadline 只能是 overdue 或 yellow"},
                                                 ensure_ascii=False), content_type="application/json")
    filters = search_filters(request, default_limit=2000, max_limit=MAP_CASE_LIMIT)
    filters["with_recordings"] = False
    cases = await ctx.service.search(**filters)
    ref = await ctx.service.reference()
    now = local_now(request)
    features, unlocated = [], 0
    for c in cases:
        colour = current_deadline(c, ref.calendar, now)
        state = colour["status"] if colour else None
        if deadline and state != deadline:
            continue
        if c.lat is not None and c.lon is not None:
            lon, lat, how = c.lon, c.lat, "gps"
        elif c.grid_cell and ref.geo is not None and ref.geo.centre(c.grid_cell):
            (lon, lat), how = ref.geo.centre(c.grid_cell), "grid"
        else:
            unlocated += 1
            continue
        features.append({
            "type": "Feature", "id": c.id,
            "geometry": {"type": "Point", "coordinates": [round(lon, 7), round(lat, 7)]},
            "properties": {"id": c.id, "number": c.number, "status": c.status,
                           "status_label": STATUS_LABELS.get(c.status, c.status), "deadline": state,
                           "deadline_label": colour["label"] if colour else "", "grid_cell": c.grid_cell,
                           "description": c.description[:80], "address": c.address, "channel": c.channel,
                           "located": how, "url": f"/cases/{c.id}"},
        })
    return {"type": "FeatureCollection", "features": features, "unlocated": unlocated}


@api_auth
async def cases(request: web.Request) -> web.Response:
    return _json(await cases_collection(request))


def tile_config(request: web.Request) -> dict[str, str]:
    m = request.app[CTX].map_settings
    if m is None or not m.tile_url:
        return {"url": "", "attribution": ""}
    return {"url": m.tile_url.replace("{key}", m.key), "attribution": m.attribution}


@page_auth
async def map_page(request: web.Request) -> web.Response:
    user = request[USER]
    if user.role not in MAP_ROLES:
        return web.Response(text="<!doctype html><meta charset=utf-8><p>地图仅供派遣员、指挥长、班长和值班长使用。"
                                 "<a href=\"/cases\">返回案卷列表</a></p>", status=403,
                            content_type="text/html", charset="utf-8")
    # A new case's popup offers 派发核实 (whose picker puts the on-duty inspector nearest to the
    # case first) to those the workflow lets send it.
    send_verify = request.app[CTX].service.spec.find("send_verify", "accepted")
    can_send_verify = send_verify is not None and user.role in send_verify.roles
    return render(request, "map.html", user=user, tiles=tile_config(request), statuses=STATUS_LABELS,
                  can_send_verify=can_send_verify, live_statuses=LIVE_STATUSES)


def setup(app: web.Application) -> None:
    app.router.add_get("/api/geo/locate", locate)
    app.router.add_get("/api/geo/grid", grid)
    app.router.add_get("/api/geo/geocode", geocode)
    app.router.add_get("/api/geo/areas", areas)
    app.router.add_get("/api/geo/cases", cases)
    app.router.add_get("/map", map_page)

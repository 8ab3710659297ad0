"""地理编码 and the map's JSON on SQLite and PostgreSQL: the demo city's polygons imported from
GeoJSON, /api/geo/locate (inside, border, outside), /api/geo/grid, /api/geo/cases with filters,
cases located from their position (case API and Open311), and who may open /map."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.integration.web.city_env import DEMO, GEO_FILES, city_repo
from web.app import CTX, WebContext, create_app  # noqa: F401

NOW = datetime(2026, 11, 23, 10, 0)
USERS = {"agent1": "agent", "dispatcher1": "dispatcher", "commander1": "commander", "shiftlead1": "shift_lead"}
CELL_A, CELL_B = "320102001001001", "320102001001002"


def _ring(gid: str) -> list[list[float]]:
    doc = json.loads((DEMO / "grid_cells.geojson").read_text(encoding="utf-8"))
    return next(f for f in doc["features"] if f["properties"]["grid_id"] == gid)["geometry"]["coordinates"][0]


def _centre(gid: str) -> tuple[float, float]:
    ring = _ring(gid)
    return (ring[0][0] + ring[2][0]) / 2, (ring[0][1] + ring[2][1]) / 2


@pytest.fixture
async def env(db_url, aiohttp_client):
    repo, service = await city_repo(db_url, GEO_FILES, USERS, NOW)
    ts = NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    client = await aiohttp_client(create_app(WebContext(repo=repo, service=service, secret=b"k" * 32, now=lambda: ts)))
    tokens = {name: await repo.create_token(name, NOW) for name in USERS}

    class Env:
        async def get(self, path, user="agent1", **kw):
            resp = await client.get(path, headers={"Authorization": f"Bearer {tokens[user]}"}, **kw)
            return resp.status, (await resp.json() if resp.content_type == "application/json" else await resp.text())

        async def post(self, path, user="agent1", **kw):
            resp = await client.post(path, headers={"Authorization": f"Bearer {tokens[user]}"}, **kw)
            return resp.status, (await resp.json() if resp.content_type == "application/json" else await resp.text())

        token = tokens
        client_ = client
        repo_ = repo

    yield Env()
    await repo.close()


async def test_locate_inside_on_a_border_and_outside(env):
    """Inside → that cell with its community and road; on the shared edge → the smaller grid ID;
    outside the district → 404 with a Chinese message; a bad number → 400."""
    lon, lat = _centre("320102001002001")
    status, body = await env.get(f"/api/geo/locate?lat={lat}&lon={lon}")
    assert status == 200
    assert body["grid_cell"] == "320102001002001" and body["area"] == "320102001002"
    assert body["nearest_road"] == "长江路" and body["grid_name"] == "长江路东段" and body["area_name"]
    edge_lon = _ring(CELL_A)[1][0]
    status, body = await env.get(f"/api/geo/locate?lat={_centre(CELL_A)[1]}&lon={edge_lon}")
    assert (status, body["grid_cell"]) == (200, CELL_A)
    status, body = await env.get("/api/geo/locate?lat=39.9&lon=116.39")
    assert status == 404 and body["error"] == "outside_grid" and "不在任何单元网格内" in body["message"]
    status, body = await env.get("/api/geo/locate?lat=abc&lon=116.39")
    assert status == 400 and "lat" in body["message"]


async def test_grid_is_a_feature_collection_of_the_imported_polygons(env):
    """36 demo cells, each with id, area (community) and its polygon in lon/lat."""
    status, fc = await env.get("/api/geo/grid")
    assert status == 200 and fc["type"] == "FeatureCollection" and len(fc["features"]) == 36
    f = next(f for f in fc["features"] if f["id"] == CELL_A)
    assert f["properties"]["id"] == CELL_A and f["properties"]["area"] == CELL_A[:12]
    assert f["geometry"]["type"] == "Polygon" and f["geometry"]["coordinates"][0][0] == _ring(CELL_A)[0]


async def test_a_case_with_a_position_is_filed_in_the_cell_it_lies_in(env):
    """POST /api/cases with lat/lon: grid cell from the polygon (not the address's), lat/lon kept
    in the API; /api/geo/cases has it as a point with number and status; filters apply."""
    lon, lat = _centre(CELL_B)
    status, body = await env.post("/api/cases", json={"description": "井盖缺失", "address": "长江路12号",
                                                       "lat": lat, "lon": lon})
    assert status == 201, body
    assert (body["grid_cell"], body["lat"], body["lon"]) == (CELL_B, lat, lon)
    no_pos_status, no_pos = await env.post("/api/cases", json={"description": "路灯不亮", "address": "长江路"})
    assert no_pos_status == 201 and no_pos["lat"] is None and no_pos["grid_cell"] == "320102001002001"
    status, listed = await env.get("/api/cases")
    assert {c["id"]: (c["lat"], c["lon"], c["grid_cell"]) for c in listed}[body["id"]] == (lat, lon, CELL_B)

    status, fc = await env.get("/api/geo/cases", user="dispatcher1")
    assert status == 200
    by_id = {f["id"]: f for f in fc["features"]}
    assert by_id[body["id"]]["geometry"]["coordinates"] == [round(lon, 7), round(lat, 7)]
    assert by_id[body["id"]]["properties"]["number"] == body["number"]
    assert by_id[body["id"]]["properties"]["status"] == "accepted"
    assert by_id[body["id"]]["properties"]["located"] == "gps"
    # No position of its own: drawn at its cell's centre, and said so.
    assert by_id[no_pos["id"]]["properties"]["located"] == "grid"
    status, fc = await env.get("/api/geo/cases?q=路灯")
    assert [f["id"] for f in fc["features"]] == [no_pos["id"]]
    status, fc = await env.get("/api/geo/cases?status=closed")
    assert fc["features"] == []
    status, err = await env.get("/api/geo/cases?deadline=red")
    assert status == 400


async def test_a_position_outside_the_grid_is_not_filed_in_a_wrong_cell(env):
    """A case far outside every cell keeps its position but gets no grid cell from it."""
    status, body = await env.post("/api/cases", json={"description": "井盖缺失", "lat": 39.9, "lon": 116.39})
    assert status == 201 and body["grid_cell"] is None and body["lat"] == 39.9
    status, err = await env.post("/api/cases", json={"description": "井盖缺失", "lat": 39.9})
    assert status == 400


async def test_open311_lat_long_locates_the_grid_cell(env):
    """An Open311 request with lat/long is filed in the cell containing it and shows it."""
    lon, lat = _centre(CELL_A)
    resp = await env.client_.post("/open311/v2/requests.json", data={
        "api_key": env.token["agent1"], "service_code": "component-01002", "lat": str(lat), "long": str(lon),
        "description": "井盖破损"})
    assert resp.status == 201, await resp.text()
    number = (await resp.json())[0]["service_request_id"]
    # a key holder sees the exact position (anonymous readers get it rounded to ~100 m)
    resp = await env.client_.get(f"/open311/v2/requests/{number}.json", params={"api_key": env.token["agent1"]})
    row = (await resp.json())[0]
    assert (row["lat"], row["long"], row["grid_cell"]) == (lat, lon, CELL_A)


async def test_map_page_is_for_dispatchers_and_commanders(env):
    """/map renders with Leaflet from /static/vendor for a dispatcher; an agent is refused."""
    status, html = await env.get("/map", user="dispatcher1")
    assert status == 200 and "/static/vendor/leaflet/leaflet.js" in html and "markercluster" in html
    assert "data-tile-url=\"\"" in html           # no tile server configured
    status, html = await env.get("/map", user="agent1")
    assert status == 403


async def test_map_offers_send_verify_to_those_who_may_and_a_live_cases_filter(env):
    """A shift lead's /map offers 派发核实 from a new case's popup (the workflow lets them send it;
    its inspector picker puts the nearest on-duty inspector first), a dispatcher's does not; the
    在办 option's statuses keep a finished case off the map and a new one on it."""
    status, html = await env.get("/map", user="shiftlead1")
    assert status == 200 and 'data-send-verify="1"' in html
    status, html = await env.get("/map", user="dispatcher1")
    assert status == 200 and "data-send-verify" not in html
    live = re.search(r'<option value="([a-z_,]+)">在办', html).group(1)
    assert "accepted" in live.split(",") and "checking" in live.split(",") and "closed" not in live.split(",")

    lon, lat = _centre(CELL_A)
    _s, new = await env.post("/api/cases", json={"description": "井盖缺失", "lat": lat, "lon": lon})
    _s, asked = await env.post("/api/cases", json={"description": "咨询占道审批", "kind": "consultation",
                                                     "lat": lat, "lon": lon})
    status, done = await env.post(f"/api/cases/{asked['id']}/actions/direct_answer",
                                  json={"fields": {"answer": "请到区城管局窗口办理"}})
    assert status == 200 and done["status"] == "direct_answered", done
    status, fc = await env.get(f"/api/geo/cases?status={live}", user="dispatcher1")
    assert status == 200 and [f["id"] for f in fc["features"]] == [new["id"]]


async def test_geocode_an_address_to_its_place_cell_and_point(env):
    """'长江路12号' → 长江路 in its cell, a point inside that cell; an unknown address → 404."""
    status, body = await env.get("/api/geo/geocode?q=长江路12号门口")
    assert status == 200 and body["place"] == "长江路" and body["grid_cell"] == "320102001002001"
    status, located = await env.get(f"/api/geo/locate?lat={body['lat']}&lon={body['lon']}")
    assert located["grid_cell"] == body["grid_cell"]
    status, body = await env.get("/api/geo/geocode?q=火星大道")
    assert status == 404 and "地名库" in body["message"]


async def test_street_outlines_are_the_union_of_their_cells(env):
    """4 streets of 9 cells each: each outline is one polygon covering exactly its cells."""
    status, fc = await env.get("/api/geo/areas?level=street")
    assert status == 200 and [f["id"] for f in fc["features"]] == ["320102001", "320102002", "320102003", "320102004"]
    first = fc["features"][0]
    assert first["geometry"]["type"] == "Polygon" and first["properties"]["name"]
    lon, lat = _centre(CELL_A)
    import shapely.geometry
    assert shapely.geometry.shape(first["geometry"]).contains(shapely.geometry.Point(lon, lat))
    status, fc = await env.get("/api/geo/areas?level=community")
    assert len(fc["features"]) == 12
    status, _ = await env.get("/api/geo/areas?level=city")
    assert status == 400

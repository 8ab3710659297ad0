"""Open311 GeoReport v2 endpoints (web/open311.py): JSON and XML, checked against the spec's field names."""

from __future__ import annotations

from datetime import datetime
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import pytest

from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from tests.integration.case_core.test_workflow_orm import demo_reference
from web.app import WebContext, create_app

NOW = datetime(2026, 11, 23, 10, 0)
# Field names from https://wiki.open311.org/GeoReport_v2 (GET Service List / Service Requests / POST response).
SPEC_SERVICE = {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
SPEC_REQUEST = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url",
                # The one extension (issue 13): the grid cell the position or address is located in.
                "grid_cell"}
SPEC_POST = {"service_request_id", "service_notice", "account_id"}


@pytest.fixture
async def env(aiohttp_client, sqlite_url):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    await repo.create_user(username="app", password="pw-123456", role="agent", now=NOW)
    token = await repo.create_token("app", NOW)
    service = CaseService(repo, reference=demo_reference())
    now_ts = NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    client = await aiohttp_client(create_app(WebContext(repo=repo, service=service, secret=b"k" * 32,
                                                        now=lambda: now_ts)))
    yield client, token, service
    await repo.close()


def report(token, **more):
    return {"api_key": token, "service_code": "component-01002", "lat": "32.05", "long": "118.78",
            "address_string": "长江路12号", "description": "污水井盖缺失", "phone": "13800000001", **more}


async def test_services_json_and_xml_have_the_spec_fields(env):
    """services.json and services.xml list categories with exactly the GeoReport service fields."""
    client, _, _ = env
    services = await (await client.get("/open311/v2/services.json")).json()
    assert len(services) > 300 and all(set(s) == SPEC_SERVICE for s in services)
    manhole = next(s for s in services if s["service_code"] == "component-01002")
    assert manhole["service_name"] == "污水井盖" and manhole["type"] == "realtime" and manhole["metadata"] is False
    root = ET.fromstring(await (await client.get("/open311/v2/services.xml")).read())
    assert root.tag == "services" and {c.tag for c in root[0]} == SPEC_SERVICE
    definition = await (await client.get("/open311/v2/services/component-01002.json")).json()
    assert definition == {"service_code": "component-01002", "attributes": []}
    missing = await client.get("/open311/v2/services/component-99999.json")
    assert missing.status == 404 and (await missing.json())[0]["code"] == 404


async def test_post_creates_a_case_in_the_same_workflow(env):
    """A POSTed request becomes an accepted website case; GET by id returns it with the spec's fields."""
    client, token, service = env
    resp = await client.post("/open311/v2/requests.json", data=report(token))
    assert resp.status == 201
    [created] = await resp.json()
    assert set(created) == SPEC_POST and created["service_request_id"].startswith("20261123-")
    [case] = await service.search(number=created["service_request_id"])
    assert (case.channel, case.status, case.category_code, case.reporter_phone) == ("website", "accepted", "01002",
                                                                                   "13800000001")
    assert case.grid_cell == "320102001002001"  # 长江路 in the demo gazetteer
    [got] = await (await client.get(f"/open311/v2/requests/{created['service_request_id']}.json")).json()
    assert set(got) == SPEC_REQUEST
    assert (got["status"], got["lat"], got["long"], got["service_code"]) == ("open", 32.05, 118.78, "component-01002")
    assert got["requested_datetime"] == "2026-11-23T10:00:00+08:00"
    xml = ET.fromstring(await (await client.get(f"/open311/v2/requests/{created['service_request_id']}.xml")).read())
    assert xml.tag == "service_requests" and {c.tag for c in xml[0]} == SPEC_REQUEST
    assert "13800000001" not in await (await client.get("/open311/v2/requests.json")).text()


async def test_post_is_refused_without_key_or_with_bad_input(env):
    """No api_key → 403; no location / unknown service / no description → 400/404 with an errors list."""
    client, token, _ = env
    resp = await client.post("/open311/v2/requests.json", data={**report(token), "api_key": "wrong"})
    assert resp.status == 403 and (await resp.json())[0]["code"] == 403
    no_place = {k: v for k, v in report(token).items() if k not in ("lat", "long", "address_string")}
    resp = await client.post("/open311/v2/requests.json", data=no_place)
    assert resp.status == 400 and "缺少位置" in (await resp.json())[0]["description"]
    resp = await client.post("/open311/v2/requests.xml", data=report(token, service_code="matter-99999"))
    assert resp.status == 404 and ET.fromstring(await resp.read()).tag == "errors"
    resp = await client.post("/open311/v2/requests.json", data=report(token, description=" "))
    assert resp.status == 400
    ok = await client.post("/open311/v2/requests.json", data={k: v for k, v in report(token).items() if k != "api_key"},
                           headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 201


async def test_get_requests_filters(env):
    """requests.json filters by service_request_id, service_code, status and dates."""
    client, token, service = env
    a = (await (await client.post("/open311/v2/requests.json", data=report(token))).json())[0]["service_request_id"]
    b = (await (await client.post("/open311/v2/requests.json",
                                  data=report(token, service_code="matter-06901"))).json())[0]["service_request_id"]
    ids = lambda rows: sorted(r["service_request_id"] for r in rows)  # noqa: E731
    get = lambda q: client.get(f"/open311/v2/requests.json?{q}")  # noqa: E731
    assert ids(await (await get(f"service_request_id={a}")).json()) == [a]
    assert ids(await (await get("service_code=matter-06901")).json()) == [b]
    assert ids(await (await get("status=open")).json()) == sorted([a, b])
    assert ids(await (await get("status=closed")).json()) == []
    assert ids(await (await get("start_date=2026-11-24T00:00:00%2B08:00")).json()) == []
    assert ids(await (await get("start_date=2026-11-23T00:00:00%2B08:00&end_date=2026-11-23T23:59:59%2B08:00")).json()) == sorted([a, b])
    bad = await get("start_date=yesterday")
    assert bad.status == 400


async def test_anonymous_reads_get_a_rounded_position_and_no_media(aiohttp_client, sqlite_url):
    """G8: with the defaults (`public_address = false`) an anonymous reader gets lat/long rounded
    to 3 decimals (~100 m, not the reporter's door) and no media_url; `public_address` gives the
    exact position, `public_media` the media_url; a key holder always sees both exactly."""
    from callcenter.config import Open311Settings
    from web.open311 import OPEN311

    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    await repo.create_user(username="app", password="pw-123456", role="agent", now=NOW)
    token = await repo.create_token("app", NOW)
    service = CaseService(repo, reference=demo_reference())
    now_ts = NOW.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    clients = {}
    for name, settings in (("default", Open311Settings()),
                           ("open", Open311Settings(public_address=True, public_media=True))):
        app = create_app(WebContext(repo=repo, service=service, secret=b"k" * 32, now=lambda: now_ts))
        app[OPEN311] = settings
        clients[name] = await aiohttp_client(app)
    try:
        resp = await clients["default"].post("/open311/v2/requests.json", data=report(
            token, lat="32.04123", long="118.78456", address_string="人民路12号3单元",
            media_url="https://example.org/p/mine.jpg"))
        assert resp.status == 201, await resp.text()
        number = (await resp.json())[0]["service_request_id"]
        path = f"/open311/v2/requests/{number}.json"
        [anonymous] = await (await clients["default"].get(path)).json()
        assert (anonymous["lat"], anonymous["long"]) == (32.041, 118.785)
        assert anonymous["address"] is None and anonymous["media_url"] is None
        listed = await (await clients["default"].get("/open311/v2/requests.json")).text()
        assert "32.04123" not in listed and "mine.jpg" not in listed
        xml = (await (await clients["default"].get(f"/open311/v2/requests/{number}.xml")).read()).decode()
        assert "32.04123" not in xml and "mine.jpg" not in xml
        [keyed] = await (await clients["default"].get(path, params={"api_key": token})).json()
        assert (keyed["lat"], keyed["long"], keyed["media_url"]) == (32.04123, 118.78456, "https://example.org/p/mine.jpg")
        [public] = await (await clients["open"].get(path)).json()
        assert (public["lat"], public["long"], public["media_url"]) == (32.04123, 118.78456,
                                                                        "https://example.org/p/mine.jpg")
    finally:
        await repo.close()

"""Every route of the web app (enumerated from `app.router.routes()`) as every role: the status
each gets is in ROUTES below, so a new route without its row, or a change of who may reach
what, fails here (issue 14, point 8: least privilege).

The case, its recording, transcript and photo belong to 路灯管理所 (`lighting`). Columns:
anonymous, then each role of `ROLE_LABELS`; `department` is tied to another department
(`sanitation`) and `own_dept` to `lighting`. The desk and the callback dialer run on the desk
tests' fakes (`u_agent` has extension 1001). Write routes carry a minimal valid body (BODIES),
so that a role refused there is refused for its role and not for an empty form; other POSTs
carry an empty JSON object.
"""

from __future__ import annotations

import asyncio
import io
import json
import warnings
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from sqlalchemy import update

from twisted.internet.task import Clock

from callcenter.calls.acd_driver import AcdDriver, default_config
from callcenter.desk_service import DeskService
from callcenter.callbacks.dialer import FollowUpDialer
from callcenter.callbacks.scheduler import CallbackPolicy, CallbackScheduler
from callcenter.stt.port import Segment, Transcript
from callcenter.stt.store import TranscriptStore
from case_core.adapters import migrate, orm
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.domain.calendar import WorkCalendar
from case_core.domain.workflow import ROLE_LABELS
from case_core.photos import PhotoFiles, PhotoService
from case_core.service import CaseService
from tests.integration.case_core.test_workflow_orm import demo_reference
from tests.integration.web.test_desk_actions import TZ, FakeRouter, Profile, _noop
from callcenter.bootstrap import install_web_stores
from web.app import WebContext, create_app
from web.photos import PHOTOS

NOW = datetime(2026, 11, 23, 10, 0)
COLUMNS = ("anonymous", "agent", "shift_lead", "dispatcher", "department", "inspector", "commander",
           "supervisor", "admin", "own_dept")

# (method, route) → expected status per column, in COLUMNS' order.
ROUTES: dict[tuple[str, str], str] = {
    # (method, route)                                        anon agt lead disp dept insp cmd sup admn own
    ('GET', '/healthz'):                                    '200 200 200 200 200 200 200 200 200 200',
    ('GET', '/'):                                           '302 302 302 302 302 302 302 302 302 302',
    ('GET', '/login'):                                      '200 200 200 200 200 200 200 200 200 200',
    ('POST', '/login'):                                     '400 400 400 400 400 400 400 400 400 400',
    ('GET', '/logout'):                                     '302 302 302 302 302 302 302 302 302 302',
    ('GET', '/cases'):                                      '302 200 200 200 200 200 200 200 200 200',
    ('GET', '/cases/{case_id}'):                            '302 200 200 200 403 200 200 200 200 200',
    ('GET', '/recordings/{rec_id}.wav'):                    '401 200 200 200 403 200 200 200 200 200',
    ('GET', '/api/trunks'):                                 '401 403 403 403 403 403 403 200 200 403',
    ('GET', '/api/cluster'):                                '401 403 403 403 403 403 403 200 200 403',
    ('POST', '/api/cluster/{node_id}/drain'):               '401 403 403 403 403 403 403 403 403 403',
    ('POST', '/api/cluster/{node_id}/resume'):              '401 403 403 403 403 403 403 403 403 403',
    ('GET', '/api/audit'):                                  '401 403 403 403 403 403 403 403 403 403',
    ('GET', '/ws'):                                         '401 400 400 400 400 400 400 400 400 400',
    ('GET', '/static/{filename}'):                          '200 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/cases'):                                  '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/cases/{case_id}'):                        '401 200 200 200 403 200 200 200 200 200',
    ('POST', '/api/cases'):                                 '401 422 422 422 422 422 422 422 422 422',
    ('GET', '/api/cases/{case_id}/duplicates'):             '401 200 200 200 403 200 200 200 200 200',
    ('POST', '/api/cases/{case_id}/actions/{action}'):      '401 422 422 422 403 422 422 422 403 422',
    ('GET', '/api/evaluation'):                             '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/categories'):                             '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/open311/v2/services.{fmt}'):                  '200 200 200 200 200 200 200 200 200 200',
    ('GET', '/open311/v2/services/{code}.{fmt}'):           '200 200 200 200 200 200 200 200 200 200',
    ('GET', '/open311/v2/requests.{fmt}'):                  '200 200 200 200 200 200 200 200 200 200',
    ('POST', '/open311/v2/requests.{fmt}'):                 '403 400 400 400 400 400 400 400 400 400',
    ('GET', '/open311/v2/requests/{request_id}.{fmt}'):     '200 200 200 200 404 200 200 200 200 200',
    ('GET', '/desk'):                                       '302 200 200 200 200 200 200 200 200 200',
    ('GET', '/wallboard'):                                  '302 403 200 403 403 403 200 200 200 403',
    ('GET', '/api/desk/status'):                            '401 200 404 404 404 404 404 404 404 404',
    ('POST', '/api/desk/state'):                            '401 200 409 403 403 403 403 409 403 403',
    ('POST', '/api/desk/cases'):                            '401 201 201 403 403 403 403 201 403 403',
    ('POST', '/api/desk/answer'):                           '401 201 201 403 403 403 403 403 403 403',
    ('POST', '/api/desk/link'):                             '401 200 200 403 403 403 403 200 403 403',
    ('POST', '/api/desk/callback'):                         '401 422 422 403 403 403 403 422 403 403',
    ('POST', '/api/desk/suggest'):                          '401 422 422 403 403 403 403 422 403 403',
    ('GET', '/api/wallboard'):                              '401 403 200 403 403 403 200 200 200 403',
    ('POST', '/api/wallboard/listen'):                      '401 403 409 403 403 403 409 409 409 403',
    ('POST', '/api/desk/transfer'):                         '401 409 409 403 403 403 403 409 403 403',
    ('POST', '/api/desk/consult'):                          '401 409 409 403 403 403 403 409 403 403',
    ('POST', '/api/desk/call/{action}'):                    '401 409 409 403 403 403 403 409 403 403',
    ('GET', '/api/cdr.csv'):                                '401 403 200 403 403 403 200 200 200 403',
    ('GET', '/api/queue-log.csv'):                          '401 403 200 403 403 403 200 200 200 403',
    ('GET', '/sms/dlr'):                                    '400 400 400 400 400 400 400 400 400 400',
    ('GET', '/sms/mo'):                                     '403 403 403 403 403 403 403 403 403 403',
    ('GET', '/api/sms/messages'):                           '401 200 200 403 403 403 403 200 200 403',
    ('GET', '/api/sms/templates'):                          '401 200 200 403 403 403 403 200 200 403',
    ('PUT', '/api/sms/templates/{name}'):                   '401 403 403 403 403 403 403 403 404 403',
    ('POST', '/api/sms/opt-outs'):                          '401 400 400 403 403 403 403 400 400 403',
    ('DELETE', '/api/sms/opt-outs/{number}'):               '401 404 404 403 403 403 403 404 404 403',
    ('GET', '/api/stt/status'):                             '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/recordings/{rec_id}/transcript'):         '401 200 200 200 403 200 200 200 200 200',
    ('POST', '/api/recordings/{rec_id}/transcript'):        '401 503 503 503 503 503 503 503 503 503',
    ('GET', '/api/cases/{case_id}/transcript'):             '401 200 200 200 403 200 200 200 200 200',
    ('GET', '/api/transcripts'):                            '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/worklists'):                                  '302 200 200 200 200 200 200 200 200 200',
    ('GET', '/worklists/{key}'):                            '302 403 403 403 200 403 403 403 200 200',
    ('GET', '/cases/{case_id}/actions/{action}'):           '302 200 200 200 403 200 200 200 403 200',
    ('POST', '/cases/{case_id}/actions/{action}'):          '302 400 400 400 403 400 400 400 400 400',
    ('GET', '/callbacks'):                                  '302 200 200 403 403 403 200 200 200 403',
    ('GET', '/api/callbacks'):                              '401 200 200 403 403 403 200 200 200 403',
    ('GET', '/api/callbacks/{callback_id}'):                '401 404 404 403 403 403 404 404 404 403',
    ('POST', '/api/callbacks/{callback_id}/reschedule'):    '401 404 404 403 403 403 404 404 404 403',
    ('POST', '/api/callbacks/{callback_id}/cancel'):        '401 404 404 403 403 403 404 404 404 403',
    ('POST', '/api/callbacks/{callback_id}/call-now'):      '401 404 404 403 403 403 404 404 404 403',
    ('GET', '/api/reference/departments'):                  '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/reference/places'):                       '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/reference/grid_cells'):                   '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/reference/inspectors'):                   '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/desk/transfer-targets'):                  '401 200 200 403 403 403 403 200 403 403',
    ('POST', '/api/cases/{case_id}/photos'):                '401 400 400 400 403 400 400 400 400 400',
    ('GET', '/api/cases/{case_id}/photos'):                 '401 200 200 200 403 200 200 200 200 200',
    ('GET', '/api/photos/{photo_id}'):                      '401 200 200 200 403 200 200 200 200 200',
    ('GET', '/api/photos/{photo_id}/thumb'):                '401 200 200 200 403 200 200 200 200 200',
    ('GET', '/api/wallboard/today'):                        '401 403 200 403 403 403 200 200 200 403',
    ('GET', '/api/geo/locate'):                             '401 404 404 404 404 404 404 404 404 404',
    ('GET', '/api/geo/grid'):                               '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/geo/geocode'):                            '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/geo/areas'):                              '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/geo/cases'):                              '401 200 200 200 200 200 200 200 200 200',
    ('GET', '/map'):                                        '302 403 200 200 403 403 200 200 200 403',
    ('POST', '/api/field/reports'):                         '401 403 403 403 403 400 403 403 400 403',
    ('GET', '/api/field/tasks'):                            '401 403 403 403 403 200 403 403 200 403',
    ('POST', '/api/field/tasks/{case_id}'):                 '401 403 403 403 403 400 403 403 400 403',
    ('POST', '/api/field/position'):                        '401 403 403 403 403 200 403 403 200 403',
    ('GET', '/api/field/positions'):                        '401 403 200 200 403 403 200 200 200 403',
    ('GET', '/m'):                                          '302 302 302 302 302 302 302 302 302 302',
    ('GET', '/m/'):                                         '200 200 200 200 200 200 200 200 200 200',
    ('GET', '/m/sw.js'):                                    '200 200 200 200 200 200 200 200 200 200',
    ('GET', '/m/manifest.webmanifest'):                     '200 200 200 200 200 200 200 200 200 200',
    ('GET', '/api/sip/bans'):                               '401 403 403 403 403 403 403 403 403 403',
    ('DELETE', '/api/sip/bans/{addr}'):                     '401 403 403 403 403 403 403 403 403 403',
}


# Path parameters of one route that differ from `params` (the desk's call actions are not case actions).
PARAMS = {"/api/desk/call/{action}": {"action": "hangup"}}
# Minimal valid bodies of write routes: the roles allowed get past the form to the action
# (201/202, or 409 where the fakes have no call), the others are refused (403).
BODIES = {
    "/api/desk/state": {"state": "ready"},
    "/api/desk/cases": {"description": "中山路井盖缺失", "reporter_phone": "13800000002"},
    "/api/desk/answer": {"description": "咨询路灯报修电话", "answer": "可拨打12319", "reporter_phone": "13800000003"},
    "/api/desk/link": {"case_number": "{request_id}"},
    "/api/desk/transfer": {"call_id": "no-such-call", "kind": "number", "target": "13800000004"},
    "/api/desk/consult": {"call_id": "no-such-call", "action": "cancel"},
    "/api/desk/call/{action}": {"call_id": "no-such-call"},
    "/api/wallboard/listen": {"call_id": "no-such-call"},
    "/api/field/position": {"lat": 32.05, "lon": 118.78, "accuracy": 10},
}
# Query strings that take a route past its parameter check to the data it guards.
QUERIES = {"/api/transcripts": "?q=路灯", "/api/evaluation": "?start=2026-11-01&end=2026-11-30",
           "/api/geo/locate": "?lat=32.05&lon=118.78", "/api/geo/geocode": "?q=长江路"}


def _user_of(column: str) -> str | None:
    return None if column == "anonymous" else f"u_{column}"


@pytest.fixture
async def env(aiohttp_client, sqlite_url, tmp_path):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    assert set(COLUMNS) - {"anonymous", "own_dept"} == set(ROLE_LABELS), "a role without a column"
    for column in COLUMNS[1:]:
        role = "department" if column == "own_dept" else column
        dept = {"department": "sanitation", "own_dept": "lighting"}.get(column)
        await repo.create_user(username=_user_of(column), password="pw-123456", role=role, now=NOW, department=dept)
    service = CaseService(repo, reference=demo_reference())
    wav = tmp_path / "call-1.wav"
    wav.write_bytes(b"RIFF")
    rec = await service.recording_started(call_id="call-1", kind="call", path=str(wav), channels=2, now=NOW)
    number = await service.file_report(channel="12319", reporter_phone="13800000001", call_id="call-1",
                                       recording_ids=(rec,), variables={}, now=NOW, description="长江路路灯不亮")
    case_id = await repo.case_id_for_number(number)
    async with repo.engine.begin() as conn:
        await conn.execute(update(orm.cases).where(orm.cases.c.id == case_id).values(department="lighting", lat=32.05,
                                                                                   lon=118.78))
    store = TranscriptStore(repo.engine)
    await store.mark_queued(rec, engine="whisper", now=NOW)
    await store.save(rec, Transcript.from_segments((Segment(0.5, 3.0, "长江路路灯不亮", 0),), engine="whisper",
                                                   language="zh", duration_s=4.0, elapsed_s=1.0), now=NOW)
    # The desk and the callback dialer on the desk tests' fakes, so their routes reach their checks.
    clock = Clock()
    clock.rightNow = NOW.replace(tzinfo=TZ).timestamp()
    router = FakeRouter(clock)
    tasks: list = []

    def spawn(coro):
        tasks.append(asyncio.ensure_future(coro))

    now_dt = lambda: datetime.fromtimestamp(clock.seconds(), TZ).replace(tzinfo=None)  # noqa: E731
    driver = AcdDriver(default_config([Profile("u_agent", "1001", {})]), clock=clock, tz=TZ, calls=router,
                       publish=lambda *a, **k: None, record=_noop, spawn=spawn)
    desk = DeskService(acd_driver=driver, repo=repo, router=router, now_dt=now_dt)
    dialer = FollowUpDialer(engine=repo.engine, scheduler=CallbackScheduler(CallbackPolicy(), WorkCalendar()),
                            router=router, service=service, clock=clock, now_dt=now_dt, spawn=spawn)
    app = create_app(WebContext(repo=repo, service=service, secret=b"k" * 32, now=clock.seconds, desk=desk,
                                followups=dialer))
    photos = PhotoService(PhotoFiles(tmp_path / "photos", 1024 * 1024), repo.engine)
    app[PHOTOS] = photos
    install_web_stores(app, repo.engine)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "JPEG")
    photo = await photos.add(case_id, buf.getvalue(), stage="report", actor="u_agent", now=NOW)
    client = await aiohttp_client(app)
    tokens = {c: await repo.create_token(_user_of(c), NOW) for c in COLUMNS[1:]}
    params = {"case_id": case_id, "rec_id": rec, "photo_id": photo.id, "callback_id": 1, "action": "note",
              "name": "case_accepted", "number": "13800000009", "code": "component-01002", "fmt": "json",
              "request_id": number, "key": "handling", "filename": "desk.css", "addr": "192.0.2.66",
              "node_id": "node-1"}
    yield app, client, tokens, params
    dialer.stop()
    driver.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    await repo.close()


def _routes(app) -> list[tuple[str, str]]:
    out = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info()
        out.append((route.method, info.get("path") or info.get("formatter") or info["prefix"] + "/{filename}"))
    return out


async def _status(client, tokens, params, method: str, path: str, column: str) -> int:
    url = path.format(**{**params, **PARAMS.get(path, {})}) + QUERIES.get(path, "")
    headers = {"Authorization": f"Bearer {tokens[column]}"} if column in tokens else {}
    body = {k: v.format(**params) if isinstance(v, str) else v for k, v in BODIES.get(path, {}).items()}
    kw = {"json": body} if method in ("POST", "PUT") else {}
    resp = await client.request(method, url, headers=headers, allow_redirects=False, **kw)
    await resp.read()
    return resp.status


async def test_every_route_answers_every_role_as_the_table_says(env):
    """Each route × role status equals ROUTES; a route missing from ROUTES (or gone) fails."""
    app, client, tokens, params = env
    actual = {}
    for method, path in _routes(app):
        codes = [str(await _status(client, tokens, params, method, path, column)) for column in COLUMNS]
        actual[(method, path)] = " ".join(codes)
    if actual != ROUTES:
        lines = [f"    ({m!r}, {p!r}): {codes!r}," for (m, p), codes in actual.items()]
        diff = [f"{k}: expected {ROUTES.get(k)!r}, got {actual.get(k)!r}" for k in sorted(set(actual) | set(ROUTES))
                if actual.get(k) != ROUTES.get(k)]
        pytest.fail("route × role table differs:\n" + "\n".join(diff) + "\n\nwhole table now:\n" + "\n".join(lines))


async def _get(client, tokens, column, url):
    headers = {"Authorization": f"Bearer {tokens[column]}"} if column in tokens else {}
    resp = await client.get(url, headers=headers, allow_redirects=False)
    return resp.status, await resp.text()


async def test_lists_and_searches_hold_department_staff_to_their_department(env):
    """The case API, map, transcript search, case list, worklist and Open311 (with a key) list
    the lighting case to its own department and an agent, never to another department."""
    _, client, tokens, params = env
    number = params["request_id"]
    for url in ("/api/cases", "/api/geo/cases", "/api/transcripts?q=路灯", "/cases",
                "/open311/v2/requests.json"):
        for column, shown in (("agent", True), ("own_dept", True), ("department", False)):
            extra = ("&" if "?" in url else "?") + f"api_key={tokens[column]}" if "open311" in url else ""
            status, text = await _get(client, tokens, column, url + extra)
            assert status == 200, (url, column, text)
            assert (number in text or f'"case_id": {params["case_id"]}' in text) == shown, (url, column)


async def test_open311_reads_without_a_key_show_no_personal_data(env):
    """Anonymous Open311 reads carry neither the reporter's phone nor, by default, the description or
    address; `[open311]` can publish those two or close anonymous reads; a key holder sees them."""
    from callcenter.config import Open311Settings
    from web.open311 import OPEN311

    app, client, tokens, params = env
    url = f"/open311/v2/requests/{params['request_id']}.json"
    status, text = await _get(client, tokens, "anonymous", url)
    assert status == 200 and "13800000001" not in text and "长江路路灯不亮" not in text
    [row] = json.loads(text)
    assert row["description"] is None and row["address"] is None and row["status"] == "open"
    status, text = await _get(client, tokens, "anonymous", f"{url}?api_key={tokens['agent']}")
    assert status == 200 and "长江路路灯不亮" in text and "13800000001" not in text
    assert (await _get(client, tokens, "anonymous", f"{url}?api_key=wrong"))[0] == 403
    with warnings.catch_warnings():  # the settings of a running app, changed for the test
        warnings.simplefilter("ignore", DeprecationWarning)
        app[OPEN311] = Open311Settings(public_description=True)
    status, text = await _get(client, tokens, "anonymous", url)
    assert "长江路路灯不亮" in text and "13800000001" not in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        app[OPEN311] = Open311Settings(public_read=False)
    status, text = await _get(client, tokens, "anonymous", "/open311/v2/requests.json")
    assert status == 401 and "api_key" in text


async def test_a_recording_download_is_audited_and_a_refused_one_is_not_served(env):
    """The agent's download of the case's recording leaves an audit entry (who, what, from where);
    another department's user gets 403 and no bytes."""
    from web.app import CTX

    app, client, tokens, params = env
    status, body = await _get(client, tokens, "department", f"/recordings/{params['rec_id']}.wav")
    assert status == 403 and "RIFF" not in body
    status, body = await _get(client, tokens, "agent", f"/recordings/{params['rec_id']}.wav")
    assert status == 200 and body.startswith("RIFF")
    entries, total = await app[CTX].audit.query(action="recording_download")
    assert total == 1 and entries[0].actor == "u_agent" and entries[0].target == f"recording:{params['rec_id']}"
    assert entries[0].source_ip == "127.0.0.1" and entries[0].detail["case_id"] == params["case_id"]

"""城管通 (/m/) in Chromium emulating a 360×800 phone with geolocation granted and set, against
a real `hotline serve` with the demo city: report with a photo and a position tapped on the
form's map (the case is in the tapped cell, not the GPS one), go offline, pick a category by
typing (searched on the phone) and report again, go online → two cases, no duplicate, the
second with its category — even when the server's answer to the queued report is lost and the
phone sends it again; then a 核实 task done from the phone moves its case on.

Screenshots: test-artifacts/screenshots/field-*.png.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.browser import PASSWORD, launch, screenshot
from tests.e2e.conftest import query
from tests.e2e.test_map import city_hotline  # noqa: F401  (the demo city's server)

pytestmark = pytest.mark.e2e
DEMO = Path(__file__).resolve().parents[2] / "case_core" / "demo_data"
CELL = "320102001002001"   # 长江路东段, inspector1's street
EAST = "320102001002002"   # 长江路西段, the cell east of it: tapped on the map
NORTH_EAST = "320102001001002"   # 梅园新村南: tapped first, then the pin is moved
PHONE = {"width": 360, "height": 800}


def _centre(gid: str) -> tuple[float, float]:
    doc = json.loads((DEMO / "grid_cells.geojson").read_text(encoding="utf-8"))
    ring = next(f for f in doc["features"] if f["properties"]["grid_id"] == gid)["geometry"]["coordinates"][0]
    return (ring[0][0] + ring[2][0]) / 2, (ring[0][1] + ring[2][1]) / 2


def _photo(path: Path, colour) -> Path:
    img = Image.new("RGB", (1200, 900), colour)
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    path.write_bytes(buf.getvalue())
    return path


def _inspector_cases(server) -> list[tuple]:
    return query(server.db_url, "select id, number, description, grid_cell, status from cases "
                                "where channel = 'inspector' order by id")


def _tap_map(page, lon: float, lat: float) -> None:
    """A finger on the report form's map where (lon, lat) is drawn (it must be in view)."""
    x, y, box = page.evaluate("""([lat, lon]) => {
        const p = fieldApp.map.latLngToContainerPoint([lat, lon]);
        const r = document.getElementById('report-map').getBoundingClientRect();
        return [r.left + p.x, r.top + p.y, [r.left, r.top, r.right, r.bottom]]; }""", [lat, lon])
    assert box[0] + 10 < x < box[2] - 10 and box[1] + 10 < y < box[3] - 10, f"({x}, {y}) is off the map {box}"
    page.touchscreen.tap(x, y)


def _report(page, photo: Path, text: str, *, category: str | None = None, typed: str = "jinggai",
            taps: tuple = ()) -> None:
    page.click(".m-tabs button[data-go=report]")
    page.set_input_files("#report-form input[type=file]", str(photo))
    page.wait_for_selector("#report-form [data-thumbs] img")
    page.wait_for_selector("#report-map .leaflet-overlay-pane path")   # the grid, drawn with no tile server
    for lon, lat, cell in taps:
        _tap_map(page, lon, lat)
        page.wait_for_selector(f"#report-form [data-pos][data-grid-cell='{cell}']")
    if category:
        page.fill("#report-form .picker-input", typed)
        page.locator(f"#report-form .picker-list li[data-value='{category}']").click()
    page.fill("#report-form textarea[name=description]", text)
    page.click("#report-form button[type=submit]")


def test_report_offline_and_online_once_each_then_verify_from_the_phone(city_hotline, tmp_path):  # noqa: F811
    server = city_hotline
    base = server.web_url.rstrip("/")
    lon, lat = _centre(CELL)
    assert _inspector_cases(server) == []
    with launch() as browser:
        context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                      locale="zh-CN", timezone_id="Asia/Shanghai",
                                      geolocation={"latitude": lat, "longitude": lon, "accuracy": 8},
                                      permissions=["geolocation"])
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/m/")
        page.wait_for_selector("#login-view:not([hidden])")   # no session → the app's own login form
        screenshot(page, "field-login")
        page.fill("#login-form input[name=username]", "inspector1")
        page.fill("#login-form input[name=password]", PASSWORD)
        with page.expect_navigation():
            page.click("#login-form button[type=submit]")
        assert page.url == f"{base}/m/"
        page.wait_for_selector("body[data-ready='1']:not(.signed-out)")
        page.wait_for_function("() => document.querySelector('#report-form [data-pos]').textContent.indexOf('长江路东段') >= 0")
        assert int(page.get_attribute("body", "data-tasks")) >= 1
        page.wait_for_selector("body[data-categories]")   # the category directory, kept on the phone
        assert int(page.get_attribute("body", "data-categories")) > 300
        screenshot(page, "field-tasks")

        # 1. Online: a report with a photo and a position tapped on the map (first in one cell,
        # then moved to the next) is filed at once, in the tapped cell, not the GPS one.
        east_lon, east_lat = _centre(EAST)
        ne_lon, ne_lat = _centre(NORTH_EAST)
        _report(page, _photo(tmp_path / "a.jpg", (180, 40, 40)), "长江路西段污水井盖破损", category="component:01002",
                taps=((ne_lon - 0.0008, ne_lat - 0.0006, NORTH_EAST), (east_lon, east_lat, EAST)))
        page.wait_for_selector("body[data-sent='1'][data-outbox='0']")
        first = _inspector_cases(server)
        assert [(r[2], r[3]) for r in first] == [("长江路西段污水井盖破损", EAST)]
        [(kind, code, case_lat, case_lon)] = query(server.db_url, "select category_kind, category_code, lat, lon "
                                                   "from cases where id = :i", i=first[0][0])
        assert (kind, code) == ("component", "01002")
        assert abs(case_lat - east_lat) < 5e-5 and abs(case_lon - east_lon) < 5e-5   # the tap (±5 m), not GPS
        assert abs(case_lon - lon) > 0.002
        assert page.get_attribute("body", "data-pin") is None   # the next report starts from GPS again

        # 2. Offline: the second report waits in the phone's outbox.
        context.set_offline(True)
        page.wait_for_function("() => document.getElementById('net').textContent === '离线'")
        # The category is searched in the phone's own copy (pinyin initials here); a pin set and
        # then given up with 使用当前位置 leaves the GPS fix as the position sent.
        page.click(".m-tabs button[data-go=report]")
        _tap_map(page, east_lon, east_lat)
        page.wait_for_selector(f"#report-form [data-pos][data-grid-cell='{EAST}']")   # offline: the cached grid
        assert "离线估算" in page.inner_text("#report-form [data-pos]")
        screenshot(page, "field-report-map-offline")
        page.click("#use-gps")
        page.wait_for_function("() => document.querySelector('#report-form [data-pos]').textContent.indexOf('长江路东段') >= 0")
        _report(page, _photo(tmp_path / "b.jpg", (40, 40, 180)), "长江路东段垃圾满溢",
                category="matter:03005", typed="ljx")   # 垃圾箱异常 by its initials
        page.wait_for_selector("body[data-outbox='1']")
        page.click(".m-tabs button[data-go=outbox]")
        screenshot(page, "field-offline-outbox")
        # The app shell is in the service worker's cache (it opens with no signal); the queued
        # report sits in IndexedDB with its photo, position and capture time.
        assert page.evaluate("navigator.serviceWorker.ready.then(() => caches.match('/m/')).then(r => !!r)")
        # Installable as a PWA by Chromium's own checks (manifest, icons, start_url, a service
        # worker with a fetch handler); Playwright's contexts are incognito, which alone it names.
        installable = context.new_cdp_session(page).send("Page.getInstallabilityErrors")["installabilityErrors"]
        assert {e["errorId"] for e in installable} <= {"in-incognito"}, installable
        queued = page.evaluate("fieldApp.outbox().then(items => items.map(i => [i.fields.lat, i.fields.captured_at, i.photos.length, i.fields.category]))")
        assert len(queued) == 1 and abs(float(queued[0][0]) - lat) < 1e-6 and queued[0][1].endswith("+08:00")
        assert queued[0][2:] == [1, "matter:03005"]
        assert len(_inspector_cases(server)) == 1

        # 3. Online again, but the answer to the first send is lost on the way back: the
        # server has filed the case, the phone does not know and sends it again.
        lost = []

        def lose_answer(route):
            if not lost:
                lost.append(route.fetch().status)   # the server receives and answers…
                route.abort()                       # …the phone never hears it
            else:
                route.continue_()

        page.route("**/api/field/reports", lose_answer)
        context.set_offline(False)
        page.wait_for_function("() => document.getElementById('net').textContent === '在线'")
        # The phone retries (on 'online', every 20 s, or here on each poll) until it has an answer.
        page.wait_for_function("() => fieldApp.flush() && document.body.dataset.sent === '2' && document.body.dataset.outbox === '0'",
                               polling=500, timeout=30_000)
        assert lost == [201]
        cases = _inspector_cases(server)
        assert [r[2] for r in cases] == ["长江路西段污水井盖破损", "长江路东段垃圾满溢"]   # two cases, no duplicate
        assert [r[3] for r in cases] == [EAST, CELL] and len({r[1] for r in cases}) == 2
        assert query(server.db_url, "select category_kind, category_code from cases where id = :i",
                     i=cases[1][0]) == [("matter", "03005")]   # picked offline, carried by the queued report
        photos = query(server.db_url, "select case_id, stage from case_photos where case_id in (:a, :b)",
                       a=cases[0][0], b=cases[1][0])
        assert sorted(photos) == [(cases[0][0], "report"), (cases[1][0], "report")]
        screenshot(page, "field-sent")

        # 4. A 核实 task done from the phone moves its case to verified.
        page.click(".m-tabs button[data-go=tasks]")
        page.wait_for_selector("#tasks .card")
        card = page.locator("#tasks .card", has_text="核实").first
        number = card.locator(".top span").nth(1).inner_text()
        card.click()
        page.wait_for_selector("#task-view:not([hidden])")
        page.click("#task-form .choice:has-text('属实') >> nth=0")
        # Two shots, the blurred one taken out again with its ×: one photo goes with the step.
        page.set_input_files("#task-form input[type=file]", [str(_photo(tmp_path / "c.jpg", (40, 160, 40))),
                                                              str(_photo(tmp_path / "d.jpg", (90, 90, 90)))])
        page.wait_for_selector("#task-form [data-thumbs] .thumb:nth-child(2) img")
        assert "已拍 2 张" in page.inner_text("#task-form [data-photo-hint]")
        page.locator("#task-form [data-thumbs] .thumb .rm").nth(1).tap()
        page.wait_for_function("() => document.querySelectorAll('#task-form [data-thumbs] img').length === 1")
        page.fill("#task-form textarea[name=note]", "现场确认属实")
        screenshot(page, "field-verify-form")
        page.click("#task-form button[type=submit]")
        page.wait_for_selector("body[data-sent='3'][data-outbox='0']")
        [(status, comment)] = query(server.db_url, "select c.status, h.comment from cases c join case_history h "
                                    "on h.case_id = c.id where c.number = :n and h.action = 'verify'", n=number)
        assert status == "verified" and comment.startswith("现场确认属实")
        assert query(server.db_url, "select count(*) from case_photos p join cases c on c.id = p.case_id "
                                    "where c.number = :n and p.stage = 'before'", n=number) == [(1,)]
        page.wait_for_function(f"() => !document.getElementById('tasks').textContent.includes('{number}')")
        screenshot(page, "field-after-verify")
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= PHONE["width"], f"the app is {overflow} px wide on a 360 px phone"
        assert errors == []
        context.close()

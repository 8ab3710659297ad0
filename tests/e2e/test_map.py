"""/map in Chromium against a real `hotline serve` with the demo city, and no tile server: every
request leaving 127.0.0.1 is refused, yet the grid and the seeded cases are drawn from the
imported vector data, overdue cases red, and a marker leads to its case.

Screenshot: test-artifacts/screenshots/map-demo-city.png.
"""

from __future__ import annotations

import pytest

from tests.e2e.browser import launch, login, new_page, screenshot
from tests.e2e.conftest import restart_server, run_hotline, start_server, stop_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def city_hotline(tmp_path, prompts_dir):
    server = start_server(tmp_path, prompts_dir)
    try:
        stop_server(server)
        run_hotline("demo", "seed", "--city", "--config", str(server.config), timeout=600)
        server = restart_server(server)
        yield server
    finally:
        stop_server(server)


def test_map_draws_grid_and_cases_without_any_tile_server(city_hotline):
    server = city_hotline
    base = server.web_url.rstrip("/")
    status, fc = server.api("/api/geo/cases?limit=5000")
    assert status == 200
    overdue = [f for f in fc["features"] if f["properties"]["deadline"] == "overdue"]
    assert len(fc["features"]) > 100 and overdue, "the demo city has located cases, some of them overdue"
    # inspector1 is on duty (城管通 shares the position) in 梅园新村北.
    status, _ = server.post("/api/field/position", {"lat": 32.0445, "lon": 118.7734, "accuracy": 10},
                            token=server.token_for("inspector1"))
    assert status == 200
    with launch() as browser:
        page = new_page(browser)
        outside: list[str] = []

        def only_local(route):
            url = route.request.url
            if url.startswith(base):
                route.continue_()
            else:
                outside.append(url)
                route.abort()

        page.context.route("**/*", only_local)
        login(page, base, "dispatcher1", next="/map")
        page.wait_for_function("() => document.getElementById('map').dataset.ready === '1' || window.__mapError",
                               timeout=30_000)
        assert page.js_errors == [] and page.evaluate("window.__mapError || ''") == ""
        assert outside == []                      # nothing was even asked of a tile server
        # The 36 grid cells and the 4 street outlines are drawn as SVG paths, cells with their names.
        page.wait_for_selector("#map[data-streets='4']")
        assert page.locator(".leaflet-overlay-pane path").count() == 36 + 4
        assert page.locator(".grid-label", has_text="梅园新村北").count() == 1
        assert page.get_attribute("#map", "data-inspectors") == "1" and page.locator(".insp").count() == 1
        assert int(page.locator("#map").get_attribute("data-markers")) == len(fc["features"])
        # Clusters (dense) and single markers together show every case; a cluster holding
        # an overdue case is drawn red.
        clusters = page.locator(".marker-cluster")
        singles = page.locator(".leaflet-marker-icon.mk")
        shown = sum(int(t) for t in clusters.all_inner_texts()) + singles.count()
        assert shown == len(fc["features"])
        assert page.locator(".marker-cluster.cl-overdue").count() >= 1
        assert page.locator(".grid-label").count() == 36   # every cell named, under the markers
        screenshot(page, "map-demo-city")

        # A cluster is coloured by its most pressing case: one of finished cases only is grey,
        # never the teal of 办理中 (the legend's colours mean the same on a cluster).
        page.select_option("select[name=status]", "closed")
        page.click("#map-filters button[type=submit]")
        page.wait_for_function("() => document.location.search.indexOf('status=closed') >= 0")
        # The URL changes at once, the markers when the filtered cases arrive: wait for those.
        page.wait_for_selector("#map[data-query*='status=closed']")
        page.wait_for_selector(".marker-cluster")
        assert page.locator(".marker-cluster").count() == page.locator(".marker-cluster.cl-done").count()
        page.select_option("select[name=status]", "")

        # Filter 超期: only overdue cases remain, all red; the URL keeps the filter.
        page.select_option("select[name=deadline]", "overdue")
        page.click("#map-filters button[type=submit]")
        page.wait_for_selector("#map[data-query*='deadline=overdue']:not([data-query*='status='])")
        page.wait_for_function(f"() => document.getElementById('map').dataset.markers === '{len(overdue)}'")
        assert "deadline=overdue" in page.url
        assert page.locator(".leaflet-marker-icon.mk.st-open, .leaflet-marker-icon.mk.st-new").count() == 0
        # Bring one overdue marker out of its cluster, as a user zooming in would.
        page.evaluate("""() => new Promise(done => {
            const m = hotlineMap.clusters.getLayers()[0];
            hotlineMap.clusters.zoomToShowLayer(m, () => { m._icon.id = 'picked'; done(); });
        })""")
        assert "dl-overdue" in page.locator("#picked").get_attribute("class")
        screenshot(page, "map-demo-city-overdue")
        # Click a marker → its popup links to the case page.
        page.click("#picked")
        link = page.locator(".map-popup a")
        number = link.inner_text()
        with page.expect_navigation():
            link.click()
        assert "/cases/" in page.url and number in page.content()
        assert page.js_errors == []

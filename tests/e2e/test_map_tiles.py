"""/map with a city's own tile server configured (`[map] tile_url` with `{key}`, as 天地图 is):
Chromium asks that server for tiles with the key in the URL, the page's CSP lets them in, and
they are drawn under the grid and the cases. The tile server is a small HTTP server on
127.0.0.1 answering one PNG for every z/x/y; nothing leaves the machine.

Screenshot: test-artifacts/screenshots/map-with-tiles.png.
"""

from __future__ import annotations

import http.server
import io
import threading
from urllib.parse import parse_qs, urlparse

import pytest
from PIL import Image

from tests.e2e.browser import launch, login, new_page, screenshot
from tests.e2e.conftest import running_server
from tests.e2e.peers.ports import free_tcp_port

pytestmark = pytest.mark.e2e
KEY = "k-0123456789abcdef"


def _tile_png() -> bytes:
    img = Image.new("RGB", (256, 256), (236, 229, 214))
    for i in range(0, 256, 32):   # a visible pattern: a tile drawn is told from an empty map
        for j in range(256):
            img.putpixel((i, j), (190, 180, 160))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def tile_server():
    """(port, requests seen) of a tile server on 127.0.0.1; stopped after the test."""
    png, seen = _tile_png(), []

    class Tiles(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args):
            pass

    port = free_tcp_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Tiles)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_map_draws_the_configured_tile_server_with_its_key(tmp_path, prompts_dir, tile_server):
    port, seen = tile_server
    # 天地图-style WMTS key-value template (the KVP form README documents), the key put in by the server.
    url = (f"http://127.0.0.1:{port}/vec_w/wmts?SERVICE=WMTS&REQUEST=GetTile&LAYER=vec&STYLE=default"
           "&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk={key}")
    extra = f'[map]\ntile_url = "{url}"\nattribution = "示范区测绘院"\nkey = "{KEY}"\n'
    with running_server(tmp_path, prompts_dir, extra=extra) as server, launch() as browser:
        base = server.web_url.rstrip("/")
        page = new_page(browser)
        blocked: list[str] = []
        page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
        login(page, base, "dispatcher1", next="/map")
        page.wait_for_function("() => document.getElementById('map').dataset.ready === '1' || window.__mapError",
                               timeout=30_000)
        assert page.evaluate("window.__mapError || ''") == ""
        page.wait_for_selector(".leaflet-tile-loaded")   # an <img> tile that loaded, not a broken one
        assert blocked == [] and page.js_errors == []
        loaded = page.locator(".leaflet-tile-loaded").count()
        assert loaded >= 4, f"only {loaded} tiles drawn"
        queries = [parse_qs(urlparse(p).query) for p in seen]
        assert queries and all(q["tk"] == [KEY] and q["TILEMATRIX"][0].isdigit() for q in queries)
        assert "示范区测绘院" in page.inner_text(".leaflet-control-attribution")
        screenshot(page, "map-with-tiles")

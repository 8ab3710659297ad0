"""[map] and [inspectors]: the base-map tile template, its key, and the position interval."""
from __future__ import annotations

import pytest

from callcenter import config
from tests.unit.config.helpers import load_error


@pytest.mark.parametrize("text, fragment", [
    ("[map]\ntile_url = 'tiles.example/{z}/{x}/{y}.png'\n", "map.tile_url: expected"),
    ("[map]\ntile_url = 'http://tiles.example/{z}/{x}.png'\n", "map.tile_url"),
    ("[map]\ntile_url = 'http://t0.example/wmts?TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk={key}'\n",
     "map.key: map.tile_url has {key}"),
    ("[map]\nkey = 'a b'\n", "map.key: must not contain"),
    ("[map]\nzoom = 3\n", "map.zoom: unknown key"),
    ("[inspectors]\nposition_interval_s = 2\n", "inspectors.position_interval_s: must be between 10 and 3600"),
])
def test_bad_map_and_inspector_keys_are_named(tmp_path, text, fragment):
    """Each mistake is refused with the key named."""
    assert fragment in load_error(tmp_path, text)[1]


def test_a_tianditu_wmts_template_with_its_key_is_accepted(tmp_path):
    """天地图's WMTS (KVP) template with {key} and a key loads; defaults mean no tile server."""
    assert config.Settings().map.tile_url == "" and config.Settings().inspectors.position_interval_s == 60.0
    p = tmp_path / "ok.toml"
    p.write_text("[map]\ntile_url = 'http://t0.tianditu.gov.cn/vec_w/wmts?SERVICE=WMTS&REQUEST=GetTile&LAYER=vec"
                 "&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk={key}'\nkey = 'abc123'\nattribution = '天地图'\n"
                 "[inspectors]\nposition_interval_s = 30\n", encoding="utf-8")
    s = config.load(p)
    assert s.map.key == "abc123" and s.map.attribution == "天地图" and s.inspectors.position_interval_s == 30

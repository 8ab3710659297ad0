"""The desk's suggestions name places from the gazetteer imported into the database (a
city's own, or the demo city's), not only from the demo district's files."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert

from case_core import suggest
from callcenter.cli import main
from case_core.adapters import migrate, orm
from case_core.adapters.sqlalchemy_repo import make_sync_engine, sync_url

# A place no demo file knows, so only the database can name it.
TEXT = "青柠湾社区东门的路灯不亮了"


@pytest.fixture(autouse=True)
def _fresh_cache():
    suggest._reference_cache.clear()
    yield
    suggest._reference_cache.clear()


def _config(tmp_path, db_url: str):
    config = tmp_path / "hotline.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")
    return config


def _extract(config, capsys) -> dict:
    assert main(["extract", "--config", str(config), TEXT]) == 0
    return json.loads(capsys.readouterr().out)


def test_places_come_from_the_imported_gazetteer(tmp_path, capsys, db_url):
    """Before the import the place is unknown; after it, the suggestion names it with its grid cell."""
    config = _config(tmp_path, db_url)
    migrate.upgrade(sync_url(db_url))
    before = _extract(config, capsys)
    assert all(p.get("grid_id") != "320102004003007" for p in before["places"])

    engine = make_sync_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(orm.ref_places).values(name="青柠湾社区", kind="community",
                                                       grid_id="320102004003007", aliases="青柠湾"))
    finally:
        engine.dispose()
    suggest._reference_cache.clear()  # a running hotline re-reads within REFERENCE_TTL_S
    after = _extract(config, capsys)
    place = next(p for p in after["places"] if p["name"] == "青柠湾社区")
    assert place["grid_id"] == "320102004003007"
    assert after["grid_id"] == "320102004003007"

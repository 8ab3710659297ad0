"""Shared set-up for the web tests on the demo city: its reference data imported the way
`hotline import` does, staff users, and a case service on a migrated database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.commands import _validate
from case_core.service import CaseService

DEMO = Path(__file__).resolve().parents[3] / "case_core" / "demo_data"
GEO_FILES = (("areas", "city_areas.csv"), ("grid_cells", "grid_cells.geojson"),
             ("gazetteer", "city_gazetteer.csv"))
ROUTING_FILES = (("departments", "city_departments.csv"), ("routing", "city_routing_rules.csv"))


async def city_repo(db_url: str, files, users: dict[str, str], now: datetime) -> tuple[SqlRepository, CaseService]:
    """A migrated database with the demo city's `files` imported and `users` (name → role)."""
    migrate.upgrade(sync_url(db_url))
    repo = SqlRepository(make_engine(db_url))
    for kind, name in files:
        rows, errors = await _validate(repo, kind, DEMO / name, False)
        assert errors == []
        await repo.replace_reference(kind, rows)
    for name, role in users.items():
        await repo.create_user(username=name, password="pw-123456", role=role, now=now)
    return repo, CaseService(repo)

"""Integration fixtures shared across packages (databases themselves come from tests/conftest.py)."""

from __future__ import annotations

import pytest

from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url


@pytest.fixture
async def repo(db_url):
    """The SQLAlchemy repository on a migrated `db_url` (SQLite and PostgreSQL), closed afterwards."""
    migrate.upgrade(sync_url(db_url))
    r = SqlRepository(make_engine(db_url))
    yield r
    await r.close()


@pytest.fixture
async def engine(db_url):
    """An async engine on a migrated `db_url` (SQLite and PostgreSQL), disposed afterwards."""
    migrate.upgrade(sync_url(db_url))
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()

"""Shared fixtures: databases (SQLite and PostgreSQL on 127.0.0.1:5432)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_ADMIN_URL = os.environ.get("HOTLINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# Skip reasons that name a missing program ("sipp not installed", "espeak-ng and sox are needed …").
_MISSING_TOOL = re.compile(r"\b(installed|needed)\b")


def missing_tool_skip_fails(reason: str, env) -> bool:
    """Under CI (`CI` set) a test skipped for a missing tool fails instead: .ci/install-system.sh installs
    every tool, so such a skip would only hide a broken set-up. Elsewhere it stays a skip."""
    return bool(env.get("CI")) and bool(_MISSING_TOOL.search(reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if missing_tool_skip_fails(reason, os.environ):
            report.outcome = "failed"
            report.longrepr = f"under CI a missing tool fails instead of skipping: {reason}"


def _pg_base() -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0]


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped when the block ends."""
    import psycopg2

    name = f"hotline_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"{_pg_base()}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'hotline.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request):
    """The same test on the embedded default (SQLite) and on production (PostgreSQL)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")

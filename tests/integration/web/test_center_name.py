"""The center's name ([center] name) is the one name on every page title and in the header."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from web.app import WebContext, create_app

NOW = datetime(2026, 11, 23, 10, 0)


@pytest.fixture
async def ctx(sqlite_url):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    await repo.create_user(username="admin", password="pw-123456", role="admin", now=NOW)
    yield WebContext(repo=repo, service=CaseService(repo), secret=b"k" * 32, now=lambda: NOW.timestamp(),
                     center_name="某市城市管理服务热线")
    await repo.close()


async def test_titles_and_header_use_the_configured_name(aiohttp_client, ctx):
    """/login, /cases, /worklists and /callbacks: the title ends with the configured name, the header shows
    it; no title or header keeps an old name (城管热线 / 城建服务热线). (Channel labels name the two lines.)"""
    client = await aiohttp_client(create_app(ctx))
    login = await (await client.get("/login")).text()
    assert re.search(r"<title>[^<]*某市城市管理服务热线</title>", login)
    await client.post("/login", data={"username": "admin", "password": "pw-123456", "next": "/cases"})
    for url in ("/cases", "/worklists", "/callbacks"):
        page = await (await client.get(url)).text()
        assert re.search(r"<title>[^<]*某市城市管理服务热线</title>", page), url
        assert 'class="brand"' in page and "某市城市管理服务热线 · 受理台" in page, url
        title = re.search(r"<title>([^<]*)</title>", page).group(1)
        brand = re.search(r'class="brand"[^>]*>([^<]*)<', page).group(1)
        assert "城管热线" not in title + brand and "城建服务热线" not in title + brand, url

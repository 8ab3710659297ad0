"""SMS web routes through aiohttp's test client: delivery reports, replies (退订), templates."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from callcenter.notify import outbox
from callcenter.notify.settings import NotifySettings
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from callcenter.bootstrap import install_web_stores
from web.app import WebContext, create_app

NOW = datetime(2026, 3, 16, 10, 0)


@pytest.fixture
async def ctx(sqlite_url):
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    await repo.create_user(username="admin", password="pw-123456", role="admin", now=NOW)
    yield WebContext(repo=repo, service=CaseService(repo), secret=b"k" * 32, now=lambda: NOW.timestamp())
    await repo.close()


@pytest.fixture
async def client(aiohttp_client, ctx, tmp_path):
    app = create_app(ctx)
    install_web_stores(app, ctx.repo.engine,
                       sms=replace(NotifySettings(), templates_dir=str(tmp_path / "sms"), inbound_token="mo-secret"))
    return await aiohttp_client(app)


async def _queued(ctx) -> tuple[int, str]:
    async with ctx.repo.engine.begin() as conn:
        msg_id = await outbox.enqueue_sms(conn, to="13800138001", template="accepted", context={},
                                          case_number="20260316-0001", event="CaseAccepted", now=NOW, dedupe_key="k")
        return msg_id, (await outbox.get_message(conn, msg_id)).dlr_token


async def test_dlr_url_updates_the_message_status(client, ctx):
    """GET /sms/dlr with the right token marks the message delivered; a wrong token gets 404."""
    msg_id, token = await _queued(ctx)
    assert (await client.get(f"/sms/dlr?id={msg_id}&t=bad&status=1")).status == 404
    resp = await client.get(f"/sms/dlr?id={msg_id}&t={token}&status=1&smsc_id=")
    assert resp.status == 200 and await resp.text() == "delivered"
    async with ctx.repo.engine.connect() as conn:
        assert (await outbox.get_message(conn, msg_id)).status == "delivered"
    assert (await client.get("/sms/dlr?id=x&status=1")).status == 400


async def test_reply_td_opts_the_number_out(client, ctx):
    """A reply 'TD' through /sms/mo with the token opts the sender out; without the token it is refused."""
    assert (await client.get("/sms/mo", params={"from": "13800138001", "text": "TD"})).status == 403
    resp = await client.get("/sms/mo", params={"from": "+8613800138001", "text": " 退订 ", "token": "mo-secret"})
    assert resp.status == 200
    async with ctx.repo.engine.connect() as conn:
        assert await outbox.is_opted_out(conn, "13800138001")


async def test_saving_a_broken_template_is_refused_with_the_error(client, ctx, tmp_path):
    """PUT of a template with a syntax error answers 422 naming it; a good one is saved and listed."""
    headers = {"Authorization": f"Bearer {await ctx.repo.create_token('admin', NOW)}"}
    bad = await client.put("/api/sms/templates/closed", data="{{ result ", headers=headers)
    assert bad.status == 422 and "syntax error" in (await bad.json())["message"]
    good = await client.put("/api/sms/templates/closed", data="{{ signature }}{{ case_number }}已办结", headers=headers)
    assert good.status == 200 and (tmp_path / "sms" / "closed.j2").is_file()
    listed = {t["name"]: t for t in await (await client.get("/api/sms/templates", headers=headers)).json()}
    assert listed["closed"]["overridden"] and not listed["accepted"]["overridden"]

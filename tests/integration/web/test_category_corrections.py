"""An agent saving a case under another category than suggested leaves a correction
(category_corrections, migration 0012) that `hotline extract train` learns from; the desk's
识别 says 不确定 rather than guessing on talk that names no problem."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from web import desk

from case_core.adapters.sqlalchemy_repo import make_sync_engine
from case_core.corrections import category_corrections, load_corrections
from tests.integration.web.test_desk_actions import client, env, in_wrap_up, post  # noqa: F401

TEXT = "长江路12号门口的雨水井盖不见了"


async def _rows(ctx):
    """The stored corrections, once the desk's background writes have finished."""
    await asyncio.gather(*list(desk._CORRECTIONS))
    async with ctx.repo.engine.connect() as conn:
        return (await conn.execute(select(category_corrections).order_by(category_corrections.c.id))).all()


async def test_other_category_than_suggested_is_stored_as_a_correction(client, env):
    """Saving with the suggested category stores nothing; saving with another stores text, both keys and the agent."""
    status, body = await post(client, "/api/desk/suggest", {"text": TEXT})
    assert status == 200 and body["category"]["key"] == "matter:01003", body
    status, _ = await post(client, "/api/desk/cases", {"description": TEXT, "category": "matter:01003"})
    assert status == 201
    assert await _rows(env) == []

    await in_wrap_up(env)
    status, case = await post(client, "/api/desk/cases", {
        "call_id": "call-1", "description": TEXT, "category": "matter:01002"})
    assert status == 201, case
    rows = await _rows(env)
    assert [(r.case_id, r.text, r.suggested, r.chosen, r.actor) for r in rows] == [
        (case["id"], TEXT, "matter:01003", "matter:01002", "agent1")]
    engine = make_sync_engine(env.repo.engine.url.render_as_string(hide_password=False))
    try:
        assert load_corrections(engine) == [("01002", TEXT)]
    finally:
        engine.dispose()


async def test_suggest_says_uncertain_on_talk_without_a_problem(client):
    """识别 on a greeting offers candidates but no category, labelled 不确定, and says so."""
    status, body = await post(client, "/api/desk/suggest", {"text": "喂你好，我想问一下你们几点下班"})
    assert status == 200, body
    assert body["category"] is None and body["category_status"] == "uncertain"
    assert body["category_label"] == "不确定"
    assert "类别不确定" in body["message"]

"""The SQLAlchemy repository on SQLite and PostgreSQL: migrations, cases, numbering, tokens."""

from __future__ import annotations

import asyncio
from datetime import datetime

from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import sync_url
from case_core.service import CaseService

NOW = datetime(2026, 11, 21, 10, 30)


async def test_migration_reaches_head_and_is_idempotent(db_url):
    """Upgrading twice leaves the schema at the single head revision."""
    url = sync_url(db_url)
    migrate.upgrade(url)
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.heads()
    assert migrate.heads() != ()


async def test_filed_report_is_accepted_with_history_and_recordings(repo):
    """A phone report becomes an accepted case with its recordings and an accept history entry."""
    service = CaseService(repo)
    await repo.call_started(call_id="c1", direction="inbound", did="12319", caller="13800138000", now=NOW)
    rec = await repo.add_recording(call_id="c1", kind="message", path="/tmp/x.wav", channels=1, duration_s=3.5, now=NOW)
    number = await service.file_report(
        channel="12319", reporter_phone="13800138000", call_id="c1", recording_ids=(rec,), variables={}, now=NOW
    )
    assert number == "20261121-0001"
    [case] = await repo.list_cases()
    assert (case.number, case.status, case.channel, case.reporter_phone) == (number, "accepted", "12319", "13800138000")
    assert [r.id for r in case.recordings] == [rec]
    full = await repo.get_case(case.id)
    assert full.history[0].after_status == "accepted"
    assert full.history[0].actor == "ivr"
    calls = await repo.calls_by_caller("13800138000")
    assert calls[0]["case_id"] == case.id


async def test_case_numbers_are_unique_under_concurrency(repo):
    """Twenty reports filed at once get twenty distinct sequential numbers."""
    service = CaseService(repo)

    async def one(i: int) -> str:
        return await service.file_report(
            channel="12319", reporter_phone=f"1380000{i:04d}", call_id=None, recording_ids=(), variables={}, now=NOW
        )

    numbers = await asyncio.gather(*(one(i) for i in range(20)))
    assert sorted(numbers) == [f"20261121-{i:04d}" for i in range(1, 21)]


async def test_list_is_newest_first_and_lookup_accepts_keyed_digits(repo):
    """Cases list newest first; a number keyed as digits only finds the case."""
    service = CaseService(repo)
    first = await service.file_report(channel="12319", reporter_phone="1", call_id=None, recording_ids=(), variables={}, now=NOW)
    second = await service.file_report(
        channel="96310", reporter_phone="2", call_id=None, recording_ids=(), variables={}, now=NOW.replace(hour=11)
    )
    assert [c.number for c in await repo.list_cases()] == [second, first]
    assert await service.lookup_case(first.replace("-", "")) == (True, "accepted")
    assert await service.lookup_case("202611219999") == (False, None)


async def test_tokens_and_passwords(repo):
    """A token authenticates its user; a wrong password or token does not."""
    await repo.create_user(username="admin", password="s3cret", role="admin", now=NOW)
    token = await repo.create_token("admin", NOW)
    assert (await repo.user_for_token(token)).username == "admin"
    assert await repo.user_for_token(token + "x") is None
    assert await repo.check_password("admin", "s3cret") is not None
    assert await repo.check_password("admin", "wrong") is None

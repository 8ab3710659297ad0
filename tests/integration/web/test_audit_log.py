"""The audit log module: rows written by record/record_soon, filters and paging (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

import pytest

from case_core import audit
from case_core.audit import AuditLog

T0 = datetime(2026, 12, 7, 9, 0, 0)


def test_entry_cuts_fields_and_bounds_detail():
    """Over-long fields are cut to their columns and a huge detail becomes bounded JSON text."""
    row = audit.entry("u" * 100, "login_failed", "t" * 300, "203.0.113.9", {"x": "y" * 10_000}, T0)
    assert len(row["actor"]) == 64 and len(row["target"]) == 255
    assert len(row["detail"]) <= audit.DETAIL_MAX and "truncated" in row["detail"]
    assert row["at"] == T0
    with pytest.raises(ValueError):
        audit.entry("a", "", "", "", None, T0)


async def test_record_query_filters_and_pages(repo):
    """Rows come back newest first, filtered by actor, action and since, with the total for paging."""
    log = AuditLog(repo.engine)
    await log.record("admin", "login", "admin", "127.0.0.1", {"ua": "x"}, T0)
    await log.record("", "login_failed", "admin", "127.0.0.2", None, T0.replace(minute=1))
    await log.record("admin", "role_changed", "agent1", "", {"old": "agent", "new": "shift_lead"}, T0.replace(minute=2))
    log.record_soon("sip", "sip_ban", "127.0.0.9", "127.0.0.9", {"reason": "flood"}, T0.replace(minute=3))
    await log.flush()
    rows, total = await log.query()
    assert total == 4 and [r.action for r in rows] == ["sip_ban", "role_changed", "login_failed", "login"]
    rows, total = await log.query(actor="admin")
    assert total == 2 and {r.action for r in rows} == {"login", "role_changed"}
    rows, total = await log.query(action="login_failed")
    assert total == 1 and rows[0].target == "admin" and rows[0].source_ip == "127.0.0.2"
    rows, total = await log.query(since=T0.replace(minute=2))
    assert total == 2
    rows, total = await log.query(limit=1, offset=1)
    assert total == 4 and rows[0].action == "role_changed" and rows[0].detail == {"old": "agent", "new": "shift_lead"}


async def test_epoch_seconds_are_accepted_as_now(repo):
    """A reactor clock's epoch seconds are stored as naive local time."""
    log = AuditLog(repo.engine)
    await log.record("", "sip_ban", "127.0.0.9", "127.0.0.9", None, T0.timestamp())
    rows, _ = await log.query()
    assert rows[0].at == T0

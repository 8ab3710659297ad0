"""The SMS outbox and dispatcher on SQLite and PostgreSQL: exactly-once, retries, crash recovery, rules."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from callcenter.notify import outbox
from callcenter.notify.dispatcher import Dispatcher
from callcenter.notify.driver import SendResult
from callcenter.notify.log_driver import LogDriver
from callcenter.notify.outbox import enqueue_for_event, enqueue_sms, sms_outbox
from callcenter.notify.settings import NotifySettings
from case_core.adapters import migrate, orm
from case_core.adapters.sqlalchemy_repo import make_engine, sync_url
from case_core.domain.workflow import CaseEvent, CaseState, HistoryEntry

NOW = datetime(2026, 3, 16, 10, 0)
SETTINGS = NotifySettings()


async def _enqueue(engine, key="20260316-0001:CaseAccepted", to="13800138001", now=NOW, **kw):
    async with engine.begin() as conn:
        return await enqueue_sms(conn, to=to, template="accepted", context={}, case_number="20260316-0001",
                                 event="CaseAccepted", now=now, dedupe_key=key, **kw)


async def _rows(engine):
    async with engine.connect() as conn:
        return (await conn.execute(select(sms_outbox).order_by(sms_outbox.c.id))).mappings().all()


class FlakyDriver:
    """Fails the first `failures` sends with a temporary error, then accepts."""

    name = "flaky"

    def __init__(self, failures: int, permanent: bool = False):
        self.failures, self.permanent, self.calls = failures, permanent, 0

    async def send(self, sms):
        self.calls += 1
        if self.calls <= self.failures:
            return SendResult(ok=False, error="gateway busy", permanent=self.permanent)
        return SendResult(ok=True, gateway_id=f"gw-{sms.id}")

    async def close(self):
        return None


async def test_same_dedupe_key_twice_gives_one_row(engine):
    """Queueing the same notification twice (a retried request) stores one message and returns its id."""
    first = await _enqueue(engine)
    second = await _enqueue(engine)
    rows = await _rows(engine)
    assert first == second == rows[0]["id"] and len(rows) == 1
    row = rows[0]
    assert row["status"] == "queued" and row["encoding"] == "ucs2" and row["parts"] == 1
    assert "20260316-0001" in row["text"] and "拨打12319按2" in row["text"]


async def test_message_commits_and_rolls_back_with_the_case_change(engine):
    """An SMS queued in a transaction that fails is gone with it; committed with it, it stays."""
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await conn.execute(insert(orm.case_number_seq).values(day="20260316", last_seq=1))
            await enqueue_sms(conn, to="13800138001", template="accepted", context={}, case_number="X",
                              event="CaseAccepted", now=NOW, dedupe_key="X:CaseAccepted")
            raise RuntimeError("case change failed")
    assert await _rows(engine) == []
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(orm.case_number_seq))).scalar() == 0


async def test_anonymous_and_landline_reporters_are_never_messaged(engine):
    """No number or a landline queues nothing."""
    assert await _enqueue(engine, key="a", to=None) is None
    assert await _enqueue(engine, key="b", to="057188886666") is None
    assert await _rows(engine) == []


async def test_case_events_map_to_templates_with_reason(engine):
    """CaseDeclined queues the declined text with its reason; an event without SMS queues nothing."""
    ev = CaseEvent("CaseDeclined", "20260316-0002", "decline", NOW, "lead", "shift_lead", "accepted", "declined", 2,
                   {"reason": "属物业管理范围"})
    async with engine.begin() as conn:
        assert await enqueue_for_event(conn, ev, reporter_phone="13900139002", now=NOW) is not None
        other = replace(ev, name="CaseDispatched")
        assert await enqueue_for_event(conn, other, reporter_phone="13900139002", now=NOW) is None
    [row] = await _rows(engine)
    assert row["dedupe_key"] == "20260316-0002:CaseDeclined:v2" and "原因：属物业管理范围" in row["text"]


async def test_closed_text_carries_the_departments_result(engine):
    """The 办结 SMS quotes the latest report_done 处置结果 from the case history, never "处理结果：。"."""
    def done(result, version):
        return HistoryEntry("dept1", "department", "report_done", NOW, "", "handling", "checking",
                            {"result": result, "photos": ["a.jpg"]}, version)
    state = CaseState("20260316-0003", "report", "phone", "13900139003", "井盖破损", "manhole", "某路",
                      NOW, status="closed", version=9,
                      history=(done("已派人查看", 5), done("破损井盖已更换", 7)))
    ev = CaseEvent("CaseClosed", state.number, "close", NOW, "lead", "shift_lead", "checked", "closed", 9, {})
    async with engine.begin() as conn:
        assert await enqueue_for_event(conn, ev, reporter_phone="13900139003", now=NOW, state=state) is not None
    [row] = await _rows(engine)
    assert "处理结果：破损井盖已更换。" in row["text"] and "处理结果：。" not in row["text"]


async def test_dispatcher_sends_once_and_never_again_after_restart(engine):
    """A sent message is not sent by a restarted dispatcher (new node) at a later time."""
    await _enqueue(engine)
    driver = LogDriver()
    report = await Dispatcher(engine, driver, SETTINGS, clock=lambda: NOW, node="n1").run_once(NOW)
    assert report.sent == 1 and len(driver.sent) == 1
    again = LogDriver()
    await Dispatcher(engine, again, SETTINGS, clock=lambda: NOW, node="n2").run_once(NOW + timedelta(hours=1))
    assert again.sent == []
    [row] = await _rows(engine)
    assert (row["status"], row["attempts"], row["gateway_id"]) == ("sent", 1, f"log-{row['id']}")


async def test_claim_left_by_a_crashed_node_is_sent_after_the_lease(engine):
    """A message claimed by a node that died mid-send is sent exactly once by the next node after the lease."""
    await _enqueue(engine)
    async with engine.begin() as conn:
        [claimed] = await outbox.claim_due(conn, now=NOW, node="dead", limit=10)
    driver = LogDriver()
    d = Dispatcher(engine, driver, SETTINGS, clock=lambda: NOW, node="n2")
    await d.run_once(NOW + timedelta(seconds=10))
    assert driver.sent == []  # still within the dead node's lease
    await d.run_once(NOW + timedelta(seconds=SETTINGS.lease_s + 1))
    await d.run_once(NOW + timedelta(seconds=SETTINGS.lease_s + 60))
    assert [s.id for s in driver.sent] == [claimed.id]
    assert (await _rows(engine))[0]["status"] == "sent"


async def test_temporary_failures_retry_with_backoff_then_fail_for_good(engine):
    """Failures requeue at base, 2×base … ; after max_attempts the message is failed with the error."""
    await _enqueue(engine)
    settings = replace(SETTINGS, max_attempts=3, backoff_base_s=60, backoff_max_s=3600)
    d = Dispatcher(engine, FlakyDriver(failures=99), settings, clock=lambda: NOW, node="n1")
    await d.run_once(NOW)
    row = (await _rows(engine))[0]
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("queued", 1, NOW + timedelta(seconds=60))
    assert (await d.run_once(NOW + timedelta(seconds=59))).claimed == 0
    await d.run_once(NOW + timedelta(seconds=60))
    assert (await _rows(engine))[0]["next_attempt_at"] == NOW + timedelta(seconds=180)
    await d.run_once(NOW + timedelta(seconds=180))
    row = (await _rows(engine))[0]
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 3, "gateway busy")


async def test_permanent_error_fails_at_once(engine):
    """A gateway refusal that retrying cannot fix (HTTP 4xx) fails the message on the first try."""
    await _enqueue(engine)
    await Dispatcher(engine, FlakyDriver(1, permanent=True), SETTINGS, clock=lambda: NOW, node="n").run_once(NOW)
    assert (await _rows(engine))[0]["status"] == "failed"


async def test_quiet_hours_hold_messages_until_morning(engine):
    """At 23:00 nothing is sent; at 08:00 the message goes."""
    night = datetime(2026, 3, 16, 23, 0)
    await _enqueue(engine, now=night)
    driver = LogDriver()
    d = Dispatcher(engine, driver, SETTINGS, clock=lambda: night, node="n")
    assert (await d.run_once(night)).quiet and driver.sent == []
    await d.run_once(datetime(2026, 3, 17, 8, 0))
    assert len(driver.sent) == 1


async def test_per_number_rate_limit_defers_without_counting_an_attempt(engine):
    """With 2 per hour, the third message to one number waits until the first leaves the window."""
    for i in range(3):
        await _enqueue(engine, key=f"k{i}", now=NOW + timedelta(minutes=i))
    settings = replace(SETTINGS, rate_limit_count=2, rate_limit_window_s=3600)
    driver = LogDriver()
    d = Dispatcher(engine, driver, settings, clock=lambda: NOW, node="n")
    for minute in range(3):
        await d.run_once(NOW + timedelta(minutes=minute))
    rows = await _rows(engine)
    assert [r["status"] for r in rows] == ["sent", "sent", "queued"]
    assert rows[2]["attempts"] == 0 and rows[2]["next_attempt_at"] == NOW + timedelta(hours=1)
    await d.run_once(NOW + timedelta(hours=1))
    assert len(driver.sent) == 3


async def test_opt_out_suppresses_queued_and_future_messages(engine):
    """After 退订 the queued message is suppressed, a new one is stored suppressed, and nothing is sent."""
    await _enqueue(engine, key="k1")
    async with engine.begin() as conn:
        assert await outbox.opt_out(conn, "+86 13800138001", now=NOW, source="reply") == "13800138001"
    await _enqueue(engine, key="k2")
    driver = LogDriver()
    await Dispatcher(engine, driver, SETTINGS, clock=lambda: NOW, node="n").run_once(NOW)
    assert driver.sent == [] and [r["status"] for r in await _rows(engine)] == ["suppressed", "suppressed"]


@pytest.mark.postgres
async def test_two_nodes_never_claim_the_same_message(pg_url):
    """Two dispatchers running concurrently on PostgreSQL send 30 messages exactly once between them."""
    migrate.upgrade(sync_url(pg_url))
    engine = make_engine(pg_url)
    try:
        for i in range(30):
            await _enqueue(engine, key=f"k{i}", to=f"139000000{i:02d}")
        drivers = [LogDriver(), LogDriver()]
        settings = replace(SETTINGS, batch=5)
        nodes = [Dispatcher(engine, drv, settings, clock=lambda: NOW, node=f"n{i}") for i, drv in enumerate(drivers)]
        for _ in range(4):
            await asyncio.gather(*(n.run_once(NOW) for n in nodes))
        ids = [s.id for drv in drivers for s in drv.sent]
        assert len(ids) == len(set(ids)) == 30
    finally:
        await engine.dispose()


async def test_dlr_moves_status_forward_only_and_checks_the_token(engine):
    """A delivered report marks delivered; a late 'SMSC accepted' does not undo it; a wrong token is ignored."""
    msg_id = await _enqueue(engine)
    await Dispatcher(engine, LogDriver(), SETTINGS, clock=lambda: NOW, node="n").run_once(NOW)
    token = (await _rows(engine))[0]["dlr_token"]
    async with engine.begin() as conn:
        assert await outbox.apply_dlr(conn, msg_id, "wrong", 1, now=NOW) is None
        assert await outbox.apply_dlr(conn, msg_id, token, 1, now=NOW, smsc_id="abc") == "delivered"
        assert await outbox.apply_dlr(conn, msg_id, token, 8, now=NOW) == "delivered"
    row = (await _rows(engine))[0]
    assert (row["status"], row["delivered_at"], row["dlr_status"]) == ("delivered", NOW, 8)


async def test_two_reports_at_once_never_put_sent_back_over_delivered(engine):
    """Kannel posts "submitted" (8) and "delivered" (1) for one message at the same instant: the
    report that read the row before the other one wrote must not overwrite "delivered" with
    "sent" (seen on PostgreSQL in CI: delivered_at set, status sent)."""
    msg_id = await _enqueue(engine)
    await Dispatcher(engine, LogDriver(), SETTINGS, clock=lambda: NOW, node="n").run_once(NOW)
    token = (await _rows(engine))[0]["dlr_token"]

    class DeliveredInBetween:
        """The connection of the "submitted" report: right after its first read, the
        "delivered" report is applied, as a concurrent request would."""

        def __init__(self, conn):
            self.conn, self.pending = conn, True

        async def execute(self, stmt, *args, **kw):
            result = await self.conn.execute(stmt, *args, **kw)
            if self.pending and getattr(stmt, "is_select", False):
                self.pending = False
                await self.conn.execute(outbox.sms_outbox.update().where(outbox.sms_outbox.c.id == msg_id)
                                        .values(status="sending"))
                assert await outbox.apply_dlr(self.conn, msg_id, token, 1, now=NOW) == "delivered"
            return result

    async with engine.begin() as conn:
        await conn.execute(outbox.sms_outbox.update().where(outbox.sms_outbox.c.id == msg_id).values(status="sending"))
        assert await outbox.apply_dlr(DeliveredInBetween(conn), msg_id, token, 8, now=NOW) == "delivered"
    row = (await _rows(engine))[0]
    assert (row["status"], row["delivered_at"]) == ("delivered", NOW)

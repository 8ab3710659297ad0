"""SMS through a real Kannel (bearerbox + smsbox, fakesmsc as the phone network).

The first test runs our web app (built with `web.app.create_app`) in the test on a free loopback
port for Kannel's delivery reports and replies, and the dispatcher sends through the Kannel driver;
the second drives the real `hotline serve` process with `[sms] driver = "kannel"`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime

import pytest
from aiohttp import web

from callcenter.notify import outbox
from callcenter.notify.dispatcher import Dispatcher
from callcenter.notify.kannel import KannelDriver
from callcenter.notify.settings import NotifySettings
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from case_core.service import CaseService
from tests.e2e.conftest import query, restart_server, start_server, stop_server
from tests.e2e.kannel import PASSWORD, USERNAME, kannel_available, start_kannel
from tests.e2e.peers.ports import free_tcp_port
from callcenter.bootstrap import install_web_stores
from web.app import WebContext, create_app

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not kannel_available(), reason="Kannel (kannel, kannel-extras) is not installed"),
]

NOW = datetime(2026, 3, 16, 10, 0)
REPORTER = "13800138001"


async def _wait_for(check, timeout: float, what: str, logs):
    for _poll in range(round(timeout / 0.2)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout}s\n{logs()}")


async def test_case_sms_reaches_the_phone_once_and_its_dlr_marks_it_delivered(sqlite_url, tmp_path):
    """One queued SMS reaches fakesmsc exactly once with its text (also after a dispatcher restart),
    Kannel's delivery report sets it delivered, and a 'TD' reply opts the number out."""
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    web_port = free_tcp_port()
    ctx = WebContext(repo=repo, service=CaseService(repo), secret=b"k" * 32, now=lambda: NOW.timestamp())
    app = create_app(ctx)
    kannel = start_kannel(tmp_path / "kannel",
                          mo_url=f"http://127.0.0.1:{web_port}/sms/mo?from=%p&text=%a&token=mo-secret")
    runner = web.AppRunner(app, access_log=None)
    try:
        settings = replace(
            NotifySettings(), driver="kannel", kannel_url=kannel.sendsms_url, kannel_username=USERNAME,
            kannel_password=PASSWORD, dlr_base_url=f"http://127.0.0.1:{web_port}", inbound_token="mo-secret",
        )
        install_web_stores(app, repo.engine, sms=settings)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", web_port).start()

        async with repo.engine.begin() as conn:
            msg_id = await outbox.enqueue_sms(
                conn, to=REPORTER, template="accepted", context={}, case_number="20260316-0001",
                event="CaseAccepted", now=NOW, dedupe_key="20260316-0001:CaseAccepted:v1", settings=settings)
            # The same change replayed (a retried request) does not queue a second SMS.
            again = await outbox.enqueue_sms(
                conn, to=REPORTER, template="accepted", context={}, case_number="20260316-0001",
                event="CaseAccepted", now=NOW, dedupe_key="20260316-0001:CaseAccepted:v1", settings=settings)
        assert again == msg_id

        first = Dispatcher(repo.engine, KannelDriver(settings), settings, clock=lambda: NOW, node="node-a")
        report = await first.run_once(NOW)
        assert report.sent == 1, report
        await first.stop()
        # A restarted dispatcher (another process, later) finds nothing left to send.
        second = Dispatcher(repo.engine, KannelDriver(settings), settings, clock=lambda: NOW, node="node-b")
        assert (await second.run_once(NOW)).claimed == 0
        await second.stop()

        async def delivered():
            async with repo.engine.connect() as conn:
                msg = await outbox.get_message(conn, msg_id)
            return msg if msg.status == "delivered" else None

        msg = await _wait_for(delivered, 20, "delivery report", kannel.logs)
        async def at_phone():
            return kannel.received()

        await _wait_for(at_phone, 10, "message at the fake SMSC", kannel.logs)
        await asyncio.sleep(1.0)  # room for a duplicate to show up, were one sent
        received = kannel.received()
        assert len(received) == 1, received
        sender, receiver, text = received[0]
        assert (sender, receiver) == ("12319", REPORTER)
        assert text == msg.text and "20260316-0001" in text and "拨打12319按2" in text
        assert msg.dlr_status in (1, 8) and msg.delivered_at is not None

        # The citizen replies "TD" (退订): Kannel forwards it to /sms/mo and the number is opted out.
        kannel.procs["fakesmsc"].stdin.write(f"{REPORTER} 12319 text TD\n")
        kannel.procs["fakesmsc"].stdin.flush()

        async def opted_out():
            async with repo.engine.connect() as conn:
                return await outbox.is_opted_out(conn, REPORTER)

        await _wait_for(opted_out, 20, "opt-out from the TD reply", kannel.logs)
        assert len(kannel.received()) == 1  # and no reply SMS went back (omit-empty)
    finally:
        kannel.stop()
        await runner.cleanup()
        await repo.close()


def test_real_server_texts_the_reporter_once_through_kannel_and_the_dlr_marks_it_delivered(db_url, tmp_path, prompts_dir):
    """A case created through the running `hotline serve` API sends exactly one SMS with its number to
    fakesmsc via Kannel, and Kannel's delivery report to the server marks it delivered."""
    reporter = "13922224444"
    kannel = start_kannel(tmp_path / "kannel")
    server = None
    try:
        # quiet_start == quiet_end: no quiet hours, so the test passes at any time of day.
        extra = (
            f'[sms]\ndriver = "kannel"\nkannel_url = "{kannel.sendsms_url}"\n'
            f'kannel_username = "{USERNAME}"\nkannel_password = "{PASSWORD}"\n'
            'dlr_base_url = "http://127.0.0.1:9"\nquiet_start = "00:00"\nquiet_end = "00:00"\npoll_s = 0.5\n'
        )
        server = start_server(tmp_path, prompts_dir, db_url=db_url, extra=extra)
        # Delivery reports go to the server's own web port, known only now: point there and restart.
        web_base = server.web_url.rstrip("/")
        config = server.config.read_text(encoding="utf-8")
        server.config.write_text(config.replace('"http://127.0.0.1:9"', f'"{web_base}"'), encoding="utf-8")
        server = restart_server(server)
        status, case = server.post(
            "/api/cases", {"description": "人行道井盖缺失，存在安全隐患", "reporter_phone": reporter},
            token=server.token_for("agent1"))
        assert status == 201, case
        number = case["number"]

        def messages() -> list[dict]:
            status, body = server.api(f"/api/sms/messages?to={reporter}")
            assert status == 200, body
            return body

        for _poll in range(100):
            rows = messages()
            if rows and rows[0]["status"] == "delivered" and kannel.received():
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"no delivered SMS: {messages()}\n{server.log()}\n{kannel.logs()}")
        time.sleep(1.0)  # room for a duplicate to show up, were one sent
        rows = messages()
        assert len(rows) == 1, rows
        msg = rows[0]
        assert msg["case_number"] == number and msg["event"] == "CaseAccepted"
        assert msg["status"] == "delivered" and msg["dlr_status"] in (1, 8) and msg["delivered_at"]
        received = kannel.received()
        assert len(received) == 1, received
        assert query(db_url, "select status from sms_outbox where to_number = :n", n=reporter) == [("delivered",)]
        sender, receiver, text = received[0]
        assert (sender, receiver) == ("12319", reporter)
        assert text == msg["text"] and number in text
    finally:
        if server is not None:
            stop_server(server)
        kannel.stop()

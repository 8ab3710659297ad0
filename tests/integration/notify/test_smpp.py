"""The SMPP driver against a tiny fake SMSC in this file: long UCS-2 messages, receipts, bind retries."""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pytest

from callcenter.config import ConfigError
from callcenter.notify import outbox
from callcenter.notify.dispatcher import Dispatcher, make_driver
from callcenter.notify.settings import NotifySettings, from_mapping
from callcenter.notify.smpp import SmppDriver, encode_parts, parse_receipt
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import make_engine, sync_url

NOW = datetime(2026, 3, 16, 10, 0)
REPORTER = "13800138001"
RESULT = ("经现场核查，该路段井盖缺失系施工单位违规作业所致，区城管执法局已责令施工单位当日补装井盖并设置警示标志，"
          "同时对施工单位依法立案处罚，后续将加强该路段日常巡查，防止类似问题再次发生。")

BIND_TRANSCEIVER, SUBMIT_SM, DELIVER_SM, UNBIND, ENQUIRE_LINK = 0x09, 0x04, 0x05, 0x06, 0x15
RESP = 0x80000000


def _pdu(command: int, status: int, seq: int, body: bytes = b"") -> bytes:
    return struct.pack(">LLLL", 16 + len(body), command, status, seq) + body


def _cstr(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\0", pos)
    return data[pos:end].decode("latin-1"), end + 1


def _parse_submit(body: bytes) -> dict:
    out: dict = {}
    pos = 0
    for name, kind in (("service_type", "c"), ("source_ton", 1), ("source_npi", 1), ("source_addr", "c"),
                       ("dest_ton", 1), ("dest_npi", 1), ("destination_addr", "c"), ("esm_class", 1),
                       ("protocol_id", 1), ("priority_flag", 1), ("schedule", "c"), ("validity", "c"),
                       ("registered_delivery", 1), ("replace", 1), ("data_coding", 1), ("default_msg", 1),
                       ("sm_length", 1)):
        if kind == "c":
            out[name], pos = _cstr(body, pos)
        else:
            out[name], pos = body[pos], pos + 1
    out["short_message"] = body[pos:pos + out["sm_length"]]
    return out


@dataclass
class FakeSmsc:
    """Speaks just enough SMPP 3.4: binds (or refuses them), submit_sm, receipts, enquire_link, unbind."""

    refuse_binds: int = 0
    auto_receipts: bool = True
    binds: int = 0
    submits: list[dict] = field(default_factory=list)
    receipt_acks: list[int] = field(default_factory=list)
    unbinds: int = 0
    _writers: list = field(default_factory=list)
    _seq: int = 0x1000

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for w in self._writers:
            w.close()
        self.server.close()
        await self.server.wait_closed()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while True:
                length, command, _status, seq = struct.unpack(">LLLL", await reader.readexactly(16))
                body = await reader.readexactly(length - 16)
                if command == BIND_TRANSCEIVER:
                    self.binds += 1
                    system_id, _ = _cstr(body, 0)
                    if self.refuse_binds > 0 or system_id != "hotline":
                        self.refuse_binds -= 1
                        writer.write(_pdu(RESP | command, 0x0E, seq))  # ESME_RINVPASWD
                        await writer.drain()
                        break
                    writer.write(_pdu(RESP | command, 0, seq, b"fakesmsc\0"))
                elif command == SUBMIT_SM:
                    sm = _parse_submit(body)
                    sm["message_id"] = f"5A{len(self.submits) + 1:04X}"
                    self.submits.append(sm)
                    writer.write(_pdu(RESP | command, 0, seq, sm["message_id"].encode() + b"\0"))
                    if self.auto_receipts:
                        writer.write(self.receipt(sm["message_id"]))
                elif command == ENQUIRE_LINK:
                    writer.write(_pdu(RESP | command, 0, seq))
                elif command == RESP | DELIVER_SM:
                    self.receipt_acks.append(_status)
                elif command == UNBIND:
                    self.unbinds += 1
                    writer.write(_pdu(RESP | command, 0, seq))
                    await writer.drain()
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def receipt(self, message_id: str, stat: str = "DELIVRD") -> bytes:
        text = f"id:{message_id} sub:001 dlvrd:001 submit date:2603161000 done date:2603161000 stat:{stat} err:000 text:"
        body = (b"\0" + b"\x01\x01" + REPORTER.encode() + b"\0" + b"\x00\x00" + b"12319\0"
                + bytes((0x04, 0, 0)) + b"\0\0" + bytes((0, 0, 0, 0)) + bytes((len(text),)) + text.encode())
        body += struct.pack(">HH", 0x001E, len(message_id) + 1) + message_id.encode() + b"\0"
        body += struct.pack(">HHB", 0x0427, 1, 2 if stat == "DELIVRD" else 5)
        return _pdu(DELIVER_SM, 0, self._next_seq(), body)

    async def send_receipt(self, message_id: str, stat: str = "DELIVRD") -> None:
        w = self._writers[-1]
        w.write(self.receipt(message_id, stat))
        await w.drain()


async def _until(check, what: str, timeout: float = 15.0):
    for _poll in range(round(timeout / 0.02)):
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {what} within {timeout}s")


@pytest.fixture
async def engine(sqlite_url):
    migrate.upgrade(sync_url(sqlite_url))
    eng = make_engine(sqlite_url)
    yield eng
    await eng.dispose()


@pytest.fixture
async def smsc():
    fake = FakeSmsc()
    fake.port = await fake.start()
    yield fake
    await fake.stop()


def _settings(port: int) -> NotifySettings:
    return from_mapping({"driver": "smpp", "smpp_port": port, "smpp_system_id": "hotline",
                         "smpp_password": "secret", "timeout_s": 5})


async def _queue_closed(engine, settings) -> outbox.OutboxMessage:
    async with engine.begin() as conn:
        msg_id = await outbox.enqueue_sms(
            conn, to=REPORTER, template="closed", context={"result": RESULT}, case_number="20260316-0001",
            event="CaseClosed", now=NOW, dedupe_key="20260316-0001:CaseClosed:v3", settings=settings)
        return await outbox.get_message(conn, msg_id)


async def _message(engine, msg_id: int) -> outbox.OutboxMessage:
    async with engine.connect() as conn:
        return await outbox.get_message(conn, msg_id)


async def test_long_chinese_sms_goes_out_in_udh_parts_and_its_receipts_mark_it_delivered(engine, smsc):
    """A queued 3-part Chinese SMS reaches the SMSC as UCS-2 parts with one UDH reference that
    join to its text; it is delivered only once every part's receipt is in, each acked after storing."""
    smsc.auto_receipts = False
    settings = _settings(smsc.port)
    driver = make_driver(settings)
    assert isinstance(driver, SmppDriver)
    msg = await _queue_closed(engine, settings)
    assert msg.encoding == "ucs2" and msg.parts == 3, msg
    dispatcher = Dispatcher(engine, driver, settings, clock=lambda: NOW, node="node-a")
    dispatcher.start()
    try:
        dispatcher.wake()
        sent = await _until(lambda: _sent(engine, msg.id), "sms marked sent")
        parts = smsc.submits
        assert len(parts) == 3
        refs = set()
        for i, part in enumerate(parts, 1):
            assert (part["data_coding"], part["esm_class"], part["registered_delivery"]) == (8, 0x40, 1)
            assert (part["source_addr"], part["destination_addr"]) == ("12319", REPORTER)
            udh = part["short_message"][:6]
            assert udh[:3] == b"\x05\x00\x03" and udh[4:] == bytes((3, i)), udh
            refs.add(udh[3])
        assert len(refs) == 1
        text = b"".join(p["short_message"][6:] for p in parts).decode("utf-16-be")
        assert text == msg.text and RESULT in text and "20260316-0001" in text
        assert sent.gateway_id == " ".join(p["message_id"] for p in parts)

        # Two of three parts delivered: not yet delivered.
        for n, part in enumerate(parts[:2], 1):
            await smsc.send_receipt(part["message_id"])
            await _until(lambda: len(smsc.receipt_acks) == n, f"ack of receipt {n}")
        assert (await _message(engine, msg.id)).status == "sent"
        await smsc.send_receipt(parts[2]["message_id"])
        await _until(lambda: len(smsc.receipt_acks) == 3, "ack of the last receipt")
        done = await _message(engine, msg.id)
        assert done.status == "delivered" and done.dlr_status == 1 and done.delivered_at == NOW
        assert smsc.receipt_acks == [0, 0, 0]
    finally:
        await dispatcher.stop()
    assert smsc.unbinds == 1


async def _sent(engine, msg_id):
    m = await _message(engine, msg_id)
    return m if m.status == "sent" else None


async def test_receipt_after_a_restart_is_matched_by_gateway_id_and_an_undelivered_one_fails_it(engine, smsc):
    """A receipt for a message sent by an earlier process (no memory of it) is found by its
    gateway id, in decimal too, and UNDELIV marks the message failed."""
    smsc.auto_receipts = False
    settings = _settings(smsc.port)
    msg = await _queue_closed(engine, settings)
    first = Dispatcher(engine, SmppDriver(settings), settings, clock=lambda: NOW, node="node-a")
    assert (await first.run_once(NOW)).sent == 1
    await first.stop()
    second = Dispatcher(engine, SmppDriver(settings), settings, clock=lambda: NOW, node="node-b")
    second.start()
    try:
        await _until(lambda: second.driver.bound and smsc.binds == 2, "second bind")
        part_id = smsc.submits[1]["message_id"]
        await smsc.send_receipt(str(int(part_id, 16)), "UNDELIV")
        await _until(lambda: smsc.receipt_acks, "receipt ack")
        failed = await _message(engine, msg.id)
        assert failed.status == "failed" and failed.dlr_status == 2, failed
        assert "undelivered" in failed.last_error
        # A receipt for a message that is not ours is acknowledged and changes nothing.
        await smsc.send_receipt("FFFF9999")
        await _until(lambda: len(smsc.receipt_acks) == 2, "second receipt ack")
        assert (await _message(engine, msg.id)).status == "failed"
    finally:
        await second.stop()


async def test_refused_bind_is_retried_with_backoff_reported_and_then_sends(engine, smsc, caplog):
    """While the SMSC refuses the bind, sends fail at once with the reason (the dispatcher retries),
    the driver backs off exponentially up to its cap and logs each failure; once it binds the SMS goes out."""
    caplog.set_level(logging.WARNING, logger="callcenter.notify.smpp")
    smsc.refuse_binds = 10_000
    settings = _settings(smsc.port)
    driver = SmppDriver(settings, reconnect_base_s=0.01, reconnect_max_s=0.04)
    dispatcher = Dispatcher(engine, driver, settings, clock=lambda: NOW, node="node-a")
    msg = await _queue_closed(engine, settings)
    try:
        driver.connect()
        await _until(lambda: driver.bind_failures >= 4, "four refused binds")
        report = await dispatcher.run_once(NOW)
        assert report.retried == 1 and not smsc.submits, report
        waiting = await _message(engine, msg.id)
        assert waiting.status == "queued" and waiting.attempts == 1
        assert "not bound" in waiting.last_error and "bind refused" in waiting.last_error, waiting.last_error
        assert driver.reconnect_delays[:4] == [0.01, 0.02, 0.04, 0.04]
        assert any("bind refused" in r.getMessage() and "failure 3 in a row" in r.getMessage() for r in caplog.records)

        smsc.refuse_binds = 0
        await _until(lambda: driver.bound, "bind accepted")
        assert driver.bind_failures == 0 and driver.last_error is None
        later = NOW + timedelta(hours=1)
        assert (await dispatcher.run_once(later)).sent == 1
        assert len(smsc.submits) == 3
        await _until(lambda: len(smsc.receipt_acks) == 3, "receipts acked")
        assert (await _message(engine, msg.id)).status == "delivered"
    finally:
        await dispatcher.stop()


def test_gsm_text_is_sent_unpacked_in_one_part_and_receipts_parse():
    """Plain ASCII goes as GSM 7-bit (data_coding 0) in one part; receipt text and TLVs both parse."""
    assert encode_parts("Case 1 closed {ok}", 7) == (0, 0, [b"Case 1 closed \x1b(ok\x1b)"])
    dc, esm, parts = encode_parts("x" * 200, 9)
    assert (dc, esm, len(parts)) == (0, 0x40, 2) and parts[0][:6] == b"\x05\x00\x03\x09\x02\x01"
    r = parse_receipt(0x04, b"id:77 sub:001 dlvrd:000 submit date:x done date:y stat:EXPIRED err:012 text:")
    assert (r.message_id, r.stat, r.code, r.error) == ("77", "EXPIRED", 2, "012")
    assert parse_receipt(0x04, b"", b"AB12", 2).code == 1
    assert parse_receipt(0x00, b"TD") is None


def test_smpp_settings_are_accepted_and_checked():
    """driver = "smpp" is accepted with an account; no account or a too-long password names the key."""
    assert _settings(2775).driver == "smpp"
    for table, key in (({"driver": "smpp"}, "sms.smpp_system_id"),
                       ({"driver": "smpp", "smpp_system_id": "a", "smpp_password": "123456789"}, "sms.smpp_password")):
        with pytest.raises(ConfigError) as err:
            from_mapping(table)
        assert str(err.value).startswith(key)
    assert replace(NotifySettings(), driver="smpp").driver == "smpp"

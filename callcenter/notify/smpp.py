"""SMPP 3.4 driver (smpplib): one transceiver connection to the SMSC, with delivery receipts.

smpplib's client is blocking, so one daemon thread owns the socket and does all the SMPP
work: bind_transceiver (reconnecting with exponential backoff; each failure is logged and
kept in `last_error`), submit_sm, enquire_link keep-alives, and reading deliver_sm. The
event loop talks to it through a queue plus a wake-up socket and never blocks:

- `send()` encodes the text (GSM 7-bit, data_coding 0; or UCS-2, data_coding 8; a long
  text split into the parts `encoding.layout` chose, each with an 8-bit concatenation UDH
  and esm_class 0x40), asks for a receipt (registered_delivery 1) and returns once every
  part's submit_sm_resp is in. The SMSC's message ids, space-separated, become the outbox
  row's `gateway_id`. While not bound it fails at once, so the dispatcher retries later.
- A deliver_sm that is a delivery receipt (esm_class 0x04) is applied on the event loop with
  `outbox.apply_dlr`, as Kannel's DLR URL is, and acknowledged only after that committed (a
  failed write answers ESME_RX_T_APPN, so the SMSC sends the receipt again). A message is
  delivered when all of its parts are; any failed part fails it. After a restart a receipt
  is matched through `gateway_id` (then any delivered part counts).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import random
import re
import select
import socket
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import smpplib.client
import smpplib.consts as C
import smpplib.exceptions
import smpplib.smpp
from sqlalchemy import or_, select as sql_select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.notify import outbox
from callcenter.notify.driver import OutgoingSms, SendResult, mask_number
from callcenter.notify.encoding import GSM7, layout
from callcenter.notify.settings import NotifySettings

__all__ = ["SmppDriver", "Receipt", "encode_parts", "gsm_encode", "parse_receipt", "RECEIPT_CODES"]

log = logging.getLogger(__name__)

# GSM 03.38 default alphabet (one septet per octet, as SMPP carries it unpacked) and its extension table.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
            "|": 0x40, "€": 0x65}
_GSM_INDEX = {c: i for i, c in enumerate(_GSM_BASIC)}

# Receipt `stat:` words (and the message_state TLV) as the Kannel DLR bits outbox.apply_dlr knows.
RECEIPT_CODES = {"DELIVRD": 1, "EXPIRED": 2, "DELETED": 2, "UNDELIV": 2, "REJECTD": 16,
                 "ACCEPTD": 8, "ENROUTE": 4, "UNKNOWN": 4}
_MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD",
                   7: "UNKNOWN", 8: "REJECTD"}
# submit_sm_resp statuses that resending the same message cannot fix.
_PERMANENT = {C.SMPP_ESME_RINVMSGLEN, C.SMPP_ESME_RINVSRCADR, C.SMPP_ESME_RINVDSTADR, C.SMPP_ESME_RINVESMCLASS,
              C.SMPP_ESME_RINVSRCTON, C.SMPP_ESME_RINVSRCNPI, C.SMPP_ESME_RINVDSTTON, C.SMPP_ESME_RINVDSTNPI,
              C.SMPP_ESME_RX_P_APPN, C.SMPP_ESME_RX_R_APPN}
_RECEIPT_ESM = (0x04, 0x20)  # SMSC delivery receipt, intermediate delivery notification
_TRACK_MAX = 20000


def gsm_encode(text: str) -> bytes:
    """GSM 7-bit default alphabet, one septet per octet; UnicodeError for anything else."""
    out = bytearray()
    for ch in text:
        if ch in _GSM_INDEX:
            out.append(_GSM_INDEX[ch])
        elif ch in _GSM_EXT:
            out += bytes((0x1B, _GSM_EXT[ch]))
        else:
            raise UnicodeError(f"{ch!r} is not in the GSM 7-bit alphabet")
    return bytes(out)


def encode_parts(text: str, ref: int) -> tuple[int, int, list[bytes]]:
    """(data_coding, esm_class, short_message of each part) for `text`; `ref` tells the parts of one text."""
    lay = layout(text)
    if lay.encoding == GSM7:
        data_coding, encode = 0, gsm_encode
    else:
        data_coding, encode = 8, (lambda s: s.encode("utf-16-be"))
    if lay.count <= 1:
        return data_coding, 0, [encode(text)]
    if lay.count > 255:
        raise ValueError(f"text needs {lay.count} parts; at most 255 can be concatenated")
    head = bytes((0x05, 0x00, 0x03, ref & 0xFF, lay.count))
    return data_coding, C.SMPP_GSMFEAT_UDHI, [head + bytes((i,)) + encode(p) for i, p in enumerate(lay.parts, 1)]


@dataclass(frozen=True)
class Receipt:
    message_id: str
    stat: str
    code: int
    error: str = ""


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.split(b"\x00", 1)[0].decode("latin-1")
    return str(value)


def parse_receipt(esm_class: int | None, short_message: bytes | None, receipted_message_id=None,
                  message_state: int | None = None) -> Receipt | None:
    """The receipt a deliver_sm carries, or None when it is not one (a citizen's reply)."""
    if (esm_class or 0) & 0x3C not in _RECEIPT_ESM:
        return None
    body = _text(short_message)
    fields = dict(re.findall(r"(\w+):(\S*)", body))
    msg_id = _text(receipted_message_id) or fields.get("id", "")
    stat = (_MESSAGE_STATES.get(message_state or 0) or fields.get("stat", "")).upper()[:7]
    if not msg_id or stat not in RECEIPT_CODES:
        return None
    return Receipt(msg_id, stat, RECEIPT_CODES[stat], fields.get("err", ""))


def _id_variants(msg_id: str) -> list[str]:
    """Some SMSCs answer submit_sm in hex and report receipts in decimal, or the other way round."""
    out = [msg_id]
    try:
        if msg_id.isdigit():
            out.append(format(int(msg_id), "x"))
            out.append(format(int(msg_id), "X"))
        out.append(str(int(msg_id, 16)))
    except ValueError:
        pass
    return list(dict.fromkeys(out))


@dataclass
class _Request:
    sms: OutgoingSms
    future: concurrent.futures.Future
    data_coding: int
    esm_class: int
    parts: list[bytes]
    ids: list[str | None] = field(default_factory=list)
    waiting: int = 0
    error: tuple[int, str] | None = None
    tracked: _Tracked | None = None


@dataclass
class _Tracked:
    """A sent message's parts, known from submit_sm_resp on (a receipt may beat the last resp)."""

    outbox_id: int
    token: str
    ids: list[str | None]
    delivered: set[str] = field(default_factory=set)

    @property
    def gateway_id(self) -> str:
        return _gateway_id(self.ids)

    def all_delivered(self) -> bool:
        return len(self.delivered) == len(self.ids)


def _gateway_id(ids: list[str | None]) -> str:
    """The parts' SMSC ids, space-separated, cut to the column's 128 characters at an id boundary."""
    gateway_id = " ".join(i for i in ids if i)
    while len(gateway_id) > 128 and " " in gateway_id:
        gateway_id = gateway_id.rsplit(" ", 1)[0]
    return gateway_id[:128]


class _Lost(Exception):
    """The connection is no longer usable; reconnect."""


class SmppDriver:
    name = "smpp"

    def __init__(self, settings: NotifySettings, *, reconnect_base_s: float = 1.0, reconnect_max_s: float = 60.0,
                 enquire_link_s: float = 30.0) -> None:
        self.settings = settings
        self.reconnect_base_s = reconnect_base_s
        self.reconnect_max_s = max(reconnect_max_s, reconnect_base_s)
        self.enquire_link_s = enquire_link_s
        self.where = f"{settings.smpp_host}:{settings.smpp_port}"
        # What an operator (or a test) may read: state of the link and its recent trouble.
        self.bound = False
        self.last_error: str | None = None
        self.bind_failures = 0  # consecutive, reset by a successful bind
        self.reconnect_delays: list[float] = []  # the backoff chosen after each failure (last 100)
        self._engine: AsyncEngine | None = None
        self._clock: Callable[[], datetime] = datetime.now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._inbox: deque = deque()
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._gen = 0
        self._lock = threading.Lock()
        self._tracked: OrderedDict[str, _Tracked] = OrderedDict()
        self._ref = itertools.count(random.randrange(256))
        self._receipt_tasks: set[asyncio.Task] = set()

    # -- the event loop side ------------------------------------------------------------
    def attach(self, engine: AsyncEngine, clock: Callable[[], datetime]) -> None:
        """Where delivery receipts are written (the dispatcher calls this)."""
        self._engine, self._clock = engine, clock

    def connect(self) -> None:
        """Start the connection thread (idempotent); call from the event loop."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        if self._wake_r is None:
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"smpp {self.where}", daemon=True)
        self._thread.start()

    async def send(self, sms: OutgoingSms) -> SendResult:
        self.connect()
        try:
            data_coding, esm_class, parts = encode_parts(sms.text, next(self._ref))
        except ValueError as exc:
            return SendResult(ok=False, error=f"smpp: {exc}", permanent=True)
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._post(("send", _Request(sms, fut, data_coding, esm_class, parts)))
        return await asyncio.wrap_future(fut)

    async def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            self._wake()
            await asyncio.to_thread(thread.join, self.settings.timeout_s + 5)
            self._thread = None
        await asyncio.sleep(0)  # receipts the thread handed over last are tasks only now
        if self._receipt_tasks:
            await asyncio.gather(*self._receipt_tasks, return_exceptions=True)
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._wake_r = self._wake_w = None

    async def _apply_receipt(self, gen: int, seq: int, receipt: Receipt) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._receipt_tasks.add(task)
        status = C.SMPP_ESME_ROK
        try:
            await self._store_receipt(receipt)
        except Exception:
            log.warning("smpp receipt for %s not stored; the SMSC will send it again", receipt.message_id,
                        exc_info=True)
            status = C.SMPP_ESME_RX_T_APPN
        finally:
            self._post(("ack", gen, seq, status))
            if task is not None:
                self._receipt_tasks.discard(task)

    async def _store_receipt(self, receipt: Receipt) -> None:
        code = receipt.code
        with self._lock:
            known = next((i for i in _id_variants(receipt.message_id) if i in self._tracked), None)
            tracked = self._tracked[known] if known is not None else None
            if tracked is not None and code & 1:
                tracked.delivered.add(known)
                if not tracked.all_delivered():
                    log.debug("smpp receipt: part %s of sms #%d delivered; %d to go", known,
                              tracked.outbox_id, len(tracked.ids) - len(tracked.delivered))
                    return
        assert self._engine is not None
        async with self._engine.begin() as conn:
            if tracked is not None:
                msg_id, token, gateway_id = tracked.outbox_id, tracked.token, tracked.gateway_id
            else:
                row = await self._find(conn, receipt.message_id)
                if row is None:
                    log.warning("smpp receipt for unknown message id %s (%s) ignored", receipt.message_id,
                                receipt.stat)
                    return
                msg_id, token, gateway_id = row.id, row.dlr_token, None
            status = await outbox.apply_dlr(conn, msg_id, token, code, now=self._clock(), smsc_id=gateway_id)
        log.info("smpp receipt for sms #%d: %s (err %s) -> %s", msg_id, receipt.stat, receipt.error or "-", status)

    @staticmethod
    async def _find(conn, message_id: str):
        t = outbox.sms_outbox
        conds = []
        for v in _id_variants(message_id):
            conds += [t.c.gateway_id == v, t.c.gateway_id.like(f"{v} %"), t.c.gateway_id.like(f"% {v}"),
                      t.c.gateway_id.like(f"% {v} %")]
        rows = (await conn.execute(
            sql_select(t.c.id, t.c.dlr_token, t.c.gateway_id).where(or_(*conds)).order_by(t.c.id.desc()).limit(1)
        )).all()
        return rows[0] if rows else None

    # -- between the two ------------------------------------------------------------------
    def _post(self, item) -> None:
        self._inbox.append(item)
        self._wake()

    def _wake(self) -> None:
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r is not None and self._wake_r.recv(512):
                pass
        except (BlockingIOError, OSError):
            pass

    @staticmethod
    def _resolve(req: _Request, result: SendResult) -> None:
        if not req.future.done():
            try:
                req.future.set_result(result)
            except concurrent.futures.InvalidStateError:
                pass

    # -- the connection thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                client = self._open()
                if client is None:
                    delay = min(self.reconnect_base_s * 2 ** (self.bind_failures - 1), self.reconnect_max_s)
                    self.reconnect_delays = (self.reconnect_delays + [delay])[-100:]
                    log.warning("smpp %s: %s (failure %d in a row); next attempt in %.3g s",
                                self.where, self.last_error, self.bind_failures, delay)
                    self._backoff(delay)
                    continue
                pending: dict[int, tuple[_Request, int]] = {}
                try:
                    self._serve(client, pending)
                except (_Lost, smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError,
                        smpplib.exceptions.UnknownCommandError, OSError) as exc:
                    self.last_error = f"connection lost: {exc or type(exc).__name__}"
                    log.warning("smpp %s: %s; reconnecting", self.where, self.last_error)
                finally:
                    self.bound = False
                    for req, _ in pending.values():
                        self._resolve(req, SendResult(ok=False, error=f"smpp {self.where}: {self.last_error or 'closed'}"))
                    self._close(client)
        except Exception:  # a bug here must not leave senders waiting forever
            log.exception("smpp %s: connection thread failed", self.where)
            self.last_error = "connection thread failed"
        finally:
            self.bound = False
            self._fail_queued("smpp driver stopped")

    def _open(self) -> smpplib.client.Client | None:
        s = self.settings
        client = smpplib.client.Client(s.smpp_host, s.smpp_port, timeout=s.timeout_s,
                                       logger_name=f"{__name__}.wire", allow_unknown_opt_params=True)
        try:
            client.connect()
            client.bind_transceiver(system_id=s.smpp_system_id, password=s.smpp_password, system_type="",
                                    addr_ton=0, addr_npi=0, address_range="")
        except smpplib.exceptions.PDUError as exc:
            self.last_error = f"bind refused: {exc.args[0]}"
        except (smpplib.exceptions.ConnectionError, OSError) as exc:
            self.last_error = f"cannot connect: {exc or type(exc).__name__}"
        else:
            if self.bind_failures:
                log.info("smpp %s: bound as %s after %d failed attempt(s)", self.where, s.smpp_system_id,
                         self.bind_failures)
            else:
                log.info("smpp %s: bound as %s (transceiver)", self.where, s.smpp_system_id)
            self.bind_failures = 0
            self.last_error = None
            self.bound = True
            self._gen += 1
            return client
        self.bind_failures += 1
        self._close(client)
        return None

    @staticmethod
    def _close(client: smpplib.client.Client) -> None:
        sock = client._socket
        client._socket = None
        client.state = C.SMPP_CLIENT_STATE_CLOSED
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _backoff(self, delay: float) -> None:
        """Wait before the next bind; sends asked for meanwhile fail at once (the dispatcher retries them)."""
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            self._fail_queued(f"smpp {self.where} not bound: {self.last_error}")
            left = deadline - time.monotonic()
            if left <= 0:
                return
            select.select([self._wake_r], [], [], left)
            self._drain_wake()

    def _fail_queued(self, error: str) -> None:
        while self._inbox:
            item = self._inbox.popleft()
            if item[0] == "send":
                self._resolve(item[1], SendResult(ok=False, error=error))

    def _serve(self, client: smpplib.client.Client, pending: dict[int, tuple[_Request, int]]) -> None:
        sock = client._socket
        gen = self._gen
        last_tx = time.monotonic()
        enquire_at: float | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            wait = self.enquire_link_s - (now - last_tx) if enquire_at is None else self.settings.timeout_s - (now - enquire_at)
            readable, _, _ = select.select([sock, self._wake_r], [], [], max(0.0, wait))
            if self._wake_r in readable:
                self._drain_wake()
            while self._inbox:
                item = self._inbox.popleft()
                if item[0] == "send":
                    self._submit(client, item[1], pending)
                    last_tx = time.monotonic()
                elif item[0] == "ack" and item[1] == gen:
                    resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=client, status=item[3])
                    resp.sequence = item[2]
                    client.send_pdu(resp)
            if sock in readable:
                try:
                    pdu = client.read_pdu()
                except socket.timeout:
                    raise _Lost("a PDU arrived only in part") from None
                if pdu.command == "enquire_link_resp":
                    enquire_at = None
                else:
                    self._handle(client, pdu, pending, gen)
            now = time.monotonic()
            if enquire_at is not None and now - enquire_at >= self.settings.timeout_s:
                raise _Lost(f"no enquire_link_resp within {self.settings.timeout_s:g} s")
            if enquire_at is None and now - last_tx >= self.enquire_link_s:
                client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=client))
                enquire_at = last_tx = now
        # Stopping: say goodbye if the SMSC is still listening.
        try:
            client.send_pdu(smpplib.smpp.make_pdu("unbind", client=client))
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                if not select.select([sock], [], [], deadline - time.monotonic())[0]:
                    break
                if client.read_pdu().command == "unbind_resp":
                    break
        except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError):
            pass
        self.last_error = "driver closed"

    def _submit(self, client, req: _Request, pending: dict[int, tuple[_Request, int]]) -> None:
        if req.future.done():  # the dispatcher gave up on it already: sending now would be a surprise
            return
        s = self.settings
        sender_ton, sender_npi = (0, 1) if s.sender.isdigit() else (5, 0)
        req.ids = [None] * len(req.parts)
        req.waiting = len(req.parts)
        req.tracked = _Tracked(req.sms.id, req.sms.dlr_token, req.ids)
        for i, short_message in enumerate(req.parts):
            pdu = smpplib.smpp.make_pdu(
                "submit_sm", client=client, service_type="",
                source_addr_ton=sender_ton, source_addr_npi=sender_npi, source_addr=s.sender,
                dest_addr_ton=0, dest_addr_npi=1, destination_addr=req.sms.to,
                esm_class=req.esm_class, protocol_id=0, priority_flag=0, registered_delivery=1,
                replace_if_present_flag=0, data_coding=req.data_coding, sm_default_msg_id=0,
                short_message=short_message,
            )
            pending[pdu.sequence] = (req, i)
            client.send_pdu(pdu)
        log.debug("smpp: sms #%d to %s submitted in %d part(s)", req.sms.id, mask_number(req.sms.to), len(req.parts))

    def _handle(self, client, pdu, pending: dict[int, tuple[_Request, int]], gen: int) -> None:
        cmd = pdu.command
        if cmd in ("submit_sm_resp", "generic_nack"):
            entry = pending.pop(pdu.sequence, None)
            if entry is None:
                log.warning("smpp %s: %s for unknown sequence %d", self.where, cmd, pdu.sequence)
                return
            req, index = entry
            if pdu.status == C.SMPP_ESME_ROK and cmd == "submit_sm_resp":
                req.ids[index] = smsc_id = _text(pdu.message_id)
                with self._lock:  # before anything else is read: its receipt may come next
                    self._tracked[smsc_id] = req.tracked
                    while len(self._tracked) > _TRACK_MAX:
                        self._tracked.popitem(last=False)
            elif req.error is None:
                req.error = (pdu.status, C.DESCRIPTIONS.get(pdu.status, "unknown status"))
            req.waiting -= 1
            if req.waiting == 0:
                self._finish(req)
        elif cmd == "deliver_sm":
            receipt = parse_receipt(pdu.esm_class, pdu.short_message, getattr(pdu, "receipted_message_id", None),
                                    getattr(pdu, "message_state", None))
            if receipt is None or self._engine is None or self._loop is None:
                if receipt is None:
                    log.info("smpp %s: message from %s ignored (replies are not handled over SMPP)", self.where,
                             mask_number(_text(pdu.source_addr)))
                self._ack(client, pdu.sequence, C.SMPP_ESME_ROK)
                return
            try:
                asyncio.run_coroutine_threadsafe(self._apply_receipt(gen, pdu.sequence, receipt), self._loop)
            except RuntimeError:  # the loop is gone: let the SMSC keep the receipt
                self._ack(client, pdu.sequence, C.SMPP_ESME_RX_T_APPN)
        elif cmd == "enquire_link":
            resp = smpplib.smpp.make_pdu("enquire_link_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)
        elif cmd == "unbind":
            resp = smpplib.smpp.make_pdu("unbind_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)
            raise _Lost("the SMSC unbound")
        else:
            log.warning("smpp %s: unexpected %s ignored", self.where, cmd)

    @staticmethod
    def _ack(client, sequence: int, status: int) -> None:
        resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=client, status=status)
        resp.sequence = sequence
        client.send_pdu(resp)

    def _finish(self, req: _Request) -> None:
        if req.error is not None:
            code, text = req.error
            self._resolve(req, SendResult(ok=False, error=f"smpp submit_sm: 0x{code:02X} {text}",
                                          permanent=code in _PERMANENT))
            return
        gateway_id = _gateway_id(req.ids)
        self._resolve(req, SendResult(ok=True, gateway_id=gateway_id or None))

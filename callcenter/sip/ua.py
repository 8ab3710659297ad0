"""The sans-I/O SIP user agent: one object per listening UDP socket.

Owns transactions, dialogs and calls for the hotline's SIP side. A driver feeds it
datagrams and the time (`receive_datagram`, `handle_timer`), drains what it produced
(`datagrams_to_send`, `events`) and re-arms one timer at `get_timer()`. The call
controller answers events with commands (`ringing`, `answer`, `reject`, `hangup`, …).

Routing choices: responses follow the top Via (RFC 3261 §18.2.2, RFC 3581 rport);
requests inside a dialog go to the address the dialog was set up with (the INVITE's
source, or the `remote` given to `invite`), with the route set in Route headers — we do
not resolve host names, and trunks and NATed phones expect symmetric signalling.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field
from . import transaction as tx_mod
from .events import (
    CallAcked, CallAnswered, CallCancelled, CallEnded, CallFailed, CallOffered,
    CallProgressed, DtmfInfoReceived, Event, MessageRejected, ReofferReceived,
)
from .message import (
    REASON_PHRASES, Headers, SipParseError, SipRequest, SipResponse, Via, _format_host,
    make_response, parse_cseq, parse_head, parse_message, parse_name_addr, parse_uri,
    parse_via, serialize, split_header_list,
)
from .sdp import SdpError, parse_sdp
from .transaction import IllegalTransition, PassUp, ReportTimeout, Retransmit, SendAck
from .transaction import SendResponse, Timing, Transaction

__all__ = ["UserAgent", "Credentials"]

MAGIC_COOKIE = "z9hG4bK"
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
_DTMF_CODES = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}
_DTMF_DIGITS = set("0123456789*#ABCD")


@dataclass(frozen=True)
class Credentials:
    """Digest credentials for calls we place (`invite(credentials=…)`)."""

    username: str
    password: str
    realm: str | None = None


@dataclass
class _Call:
    call_id: str
    role: str  # "uas" | "uac"
    state: str
    local_tag: str
    local_addr: str  # our From/To value without tag
    remote_addr: str  # their From/To value (tag included once known)
    remote_tag: str | None
    remote_target: str
    peer: tuple[str, int]
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 1
    remote_cseq: int | None = None
    invite: SipRequest | None = None
    invite_tx: Transaction | None = None
    reinvite_tx: Transaction | None = None
    purge_at: float | None = None
    # UAC extras
    credentials: Credentials | None = None
    auth_attempts: int = 0
    last_failure: SipResponse | None = None
    # Set once we sent a 2xx: a dialog existed, so its Call-ID is never reused as a retry.
    answered_at_least_once: bool = False


# INVITE bodies we can take: SDP, or SDP inside multipart/mixed (RFC 4475 mpart01).
_READABLE_BODIES = frozenset({"application/sdp", "multipart/mixed"})

# Media ranges that cover application/sdp in an Accept header, by specificity.
_SDP_RANGES = {"application/sdp": 2, "application/*": 1, "*/*": 0}


def accepts_sdp(values: list[str]) -> bool:
    """Whether Accept header values let our answer carry SDP. No Accept means application/sdp
    (RFC 3261 §20.1); an empty one means nothing is acceptable; otherwise the most specific
    range covering application/sdp decides, and it must have q > 0 (RFC 4475 §3.3.15 sdp01)."""
    if not values:
        return True
    best: tuple[int, float] | None = None
    for value in values:
        for item in split_header_list(value):
            parts = [p.strip() for p in item.split(";")]
            rank = _SDP_RANGES.get(parts[0].lower())
            if rank is None:
                continue
            q = 1.0
            for param in parts[1:]:
                key, _, val = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        q = float(val.strip())
                    except ValueError:
                        q = 0.0
            if best is None or rank > best[0] or (rank == best[0] and q > best[1]):
                best = (rank, q)
    return best is not None and best[1] > 0

# Largest SIP datagram we accept: real ones are far below 1,500 bytes; RFC 3261 lets a UAS
# refuse an oversized request with 513.
MAX_MESSAGE_BYTES = 16_384


class UserAgent:
    """SIP UAS/UAC core for one UDP socket; no I/O, time passed in as `now`."""

    def __init__(self, *, local_host: str, local_port: int, server_name: str = "hotline12319",
                 rng: random.Random | None = None, t1: float = 0.5, t2: float = 4.0,
                 t4: float = 5.0, registrar=None):
        self.local_host = local_host
        self.local_port = local_port
        self.server_name = server_name
        self._rng = rng if rng is not None else random.Random()
        self._timing = Timing(t1, t2, t4)
        self._registrar = registrar
        # Other request clients sharing this socket (trunk registrations): each answers
        # `owns(response)` and takes `handle_response(response, now)`.
        self.extra_clients: list = []
        # False while this node drains in a cluster: out-of-dialog OPTIONS (Kamailio's
        # dispatcher probe) get 503, so the proxy stops sending new calls here.
        self.available = True
        self._allow = ALLOW + (", REGISTER" if registrar is not None else "")
        self._out: list[tuple[bytes, tuple[str, int]]] = []
        self._events: list[Event] = []
        self._server_tx: dict[tuple, Transaction] = {}
        self._client_tx: dict[tuple, Transaction] = {}
        self._calls: dict[str, _Call] = {}
        # Timer bookkeeping: the deadlines live on the records (`Transaction.timers`,
        # `_Call.purge_at`); these heaps index them so get_timer/handle_timer cost
        # O(log n) instead of a scan of every transaction. Entries are never removed
        # when a timer is cancelled or re-armed: an entry is acted on only if the
        # record still holds that deadline (and the transaction is still in its table).
        self._tx_heap: list[tuple[float, int, str, Transaction, dict]] = []
        self._purge_heap: list[tuple[float, int, _Call]] = []
        self._heap_seq = itertools.count()
        # Set by a driver that also carries SIP over TCP/TLS: for an address reached over a
        # stream connection, (transport name "TCP" | "TLS", our listening port), else None.
        # Responses then go back on that connection, Via/Contact name the transport, and
        # nothing is retransmitted on it (the stream is reliable, RFC 3261 §17.1.1.2).
        self.stream_of = _no_stream

    # ------------------------------------------------------------------ driver API
    @property
    def registrar(self):
        """The registrar REGISTERs go to (None: REGISTER is answered 501)."""
        return self._registrar

    def datagrams_to_send(self) -> list[tuple[bytes, tuple[str, int]]]:
        for client in self.extra_clients:
            self._out.extend(client.datagrams_to_send())
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def get_timer(self) -> float | None:
        deadlines = []
        d = self._next_tx_deadline()
        if d is not None:
            deadlines.append(d)
        d = self._next_purge()
        if d is not None:
            deadlines.append(d)
        if self._registrar is not None and hasattr(self._registrar, "get_timer"):
            d = self._registrar.get_timer()
            if d is not None:
                deadlines.append(d)
        deadlines.extend(d for client in self.extra_clients if (d := client.get_timer()) is not None)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        heap = self._tx_heap
        pop = heapq.heappop
        # Due timers fire in deadline order (ties: the order they were armed); timers a
        # firing arms are pushed on the same heap, so they fire here too once due.
        while heap and heap[0][0] <= now:
            deadline, _, name, t, table = pop(heap)
            if t.timers.get(name) != deadline or table.get(t.key) is not t:
                continue  # cancelled, re-armed or terminated since it was pushed
            self._fire(t, f"timer_{name}", now)
        purge = self._purge_heap
        while purge and purge[0][0] <= now:
            deadline, _, call = pop(purge)
            if call.purge_at == deadline and self._calls.get(call.call_id) is call:
                del self._calls[call.call_id]
        if self._registrar is not None and hasattr(self._registrar, "handle_timer"):
            self._registrar.handle_timer(now)
            self._drain_registrar()
        for client in self.extra_clients:
            due = client.get_timer()
            if due is not None and due <= now:
                client.handle_timer(now)

    def _next_tx_deadline(self) -> float | None:
        heap = self._tx_heap
        while heap:
            deadline, _, name, t, table = heap[0]
            if t.timers.get(name) == deadline and table.get(t.key) is t:
                return deadline
            heapq.heappop(heap)  # stale entry
        return None

    def _next_purge(self) -> float | None:
        heap = self._purge_heap
        while heap:
            deadline, _, call = heap[0]
            if call.purge_at == deadline and self._calls.get(call.call_id) is call:
                return deadline
            heapq.heappop(heap)
        return None

    def _index_timers(self, t: Transaction, before: dict[str, float]) -> None:
        """Push the deadlines `t` armed or moved since `before` (a copy of its timers)."""
        if not t.timers:
            return
        table = self._client_tx if t.kind in ("ict", "nict") else self._server_tx
        for name, deadline in t.timers.items():
            if before.get(name) != deadline:
                heapq.heappush(self._tx_heap, (deadline, next(self._heap_seq), name, t, table))

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if not data.strip(b"\r\n \t"):
            # RFC 5626 §4.4.1: a double-CRLF ping gets a single-CRLF pong.
            if data == b"\r\n\r\n":
                self._out.append((b"\r\n", addr))
            return
        if len(data) > MAX_MESSAGE_BYTES:
            # No real phone or carrier sends this over UDP; refuse it whole (RFC 3261 §21.5.11).
            self._reject_unparsable(data, addr, SipParseError(
                f"message of {len(data)} bytes is larger than {MAX_MESSAGE_BYTES}", status=513))
            return
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            self._reject_unparsable(data, addr, exc)
            return
        if isinstance(msg, SipRequest):
            self._on_request(msg, addr, now)
        else:
            self._on_response(msg, addr, now)

    # ---------------------------------------------------------------- UAS commands
    def ringing(self, call_id: str, now: float) -> bool:
        return self._call_command(call_id, "uas", "ring", now)

    def answer(self, call_id: str, sdp: bytes, now: float) -> bool:
        return self._call_command(call_id, "uas", "answer", now, sdp=sdp)

    def reject(self, call_id: str, status: int, now: float, reason: str | None = None,
               headers=()) -> bool:
        if not 300 <= status <= 699:
            raise ValueError(f"reject needs a final non-2xx status, not {status}")
        call = self._calls.get(call_id)
        if call is not None and call.reinvite_tx is not None \
                and call.reinvite_tx.state == "proceeding":
            resp = self._response(call.reinvite_tx.request, status, reason, call)
            self._fire(call.reinvite_tx, "failure_sent", now, resp)
            call.reinvite_tx = None
            return True
        return self._call_command(call_id, "uas", "reject", now, status=status, reason=reason,
                                  headers=tuple(headers))

    def answer_reoffer(self, call_id: str, sdp: bytes, now: float) -> bool:
        call = self._calls.get(call_id)
        if call is None or call.reinvite_tx is None or call.reinvite_tx.state != "proceeding":
            return False
        resp = self._response(call.reinvite_tx.request, 200, None, call, body=sdp,
                              headers=self._dialog_response_headers(call.peer, _sips(call)))
        self._fire(call.reinvite_tx, "success_sent", now, resp)
        return True

    def hangup(self, call_id: str, now: float) -> bool:
        call = self._calls.get(call_id)
        if call is None:
            return False
        return self._call_command(call_id, call.role, "hangup", now)

    # ---------------------------------------------------------------- helpers: ids
    def _token(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

    def _branch(self) -> str:
        return MAGIC_COOKIE + self._token()

    def _contact(self, user: str | None = None, peer: tuple[str, int] | None = None,
                 sips: bool = False) -> str:
        userinfo = f"{user}@" if user else ""
        stream = self.stream_of(peer) if peer is not None else None
        if sips and stream is not None and stream[0] == "TLS":
            # §8.1.1.8: a dialog set up by a sips: request keeps a sips: Contact.
            return f"<sips:{userinfo}{_format_host(self.local_host)}:{stream[1]}>"
        if stream is not None:
            return (f"<sip:{userinfo}{_format_host(self.local_host)}:{stream[1]}"
                    f";transport={stream[0].lower()}>")
        return f"<sip:{userinfo}{_format_host(self.local_host)}:{self.local_port}>"

    def _all_tx(self) -> list[Transaction]:
        return list(self._server_tx.values()) + list(self._client_tx.values())

    # ------------------------------------------------------- helpers: transactions
    def _fire(self, t: Transaction, event: str, now: float, payload=None) -> None:
        """Step a transaction; carry out sends here, pass up/timeouts to its owner."""
        before = dict(t.timers)
        try:
            actions = tx_mod.fire(t, event, now, self._timing)
        except IllegalTransition:
            return
        self._index_timers(t, before)
        for action in actions:
            if isinstance(action, SendResponse):
                data = serialize(payload)
                t.last_sent = data
                self._out.append((data, t.peer))
            elif isinstance(action, Retransmit):
                # A stream is reliable (§17.1.1.2, §17.2.1), except that a 2xx to an INVITE is
                # still re-sent until its ACK: hops beyond the connection may be UDP (§13.3.1.4).
                if t.last_sent is not None and (self.stream_of(t.peer) is None
                                                or (t.kind == "ist" and t.state == "accepted")):
                    self._out.append((t.last_sent, t.peer))
            elif isinstance(action, SendAck):
                self._send_non2xx_ack(t, payload)
            elif isinstance(action, (PassUp, ReportTimeout)):
                if t.owner is not None:
                    t.owner(t, ("timeout",) if isinstance(action, ReportTimeout) else ("up",),
                          payload, now)
        if t.terminated:
            for table in (self._server_tx, self._client_tx):
                if table.get(t.key) is t:
                    del table[t.key]

    def _server_key(self, req: SipRequest, method: str | None = None) -> tuple:
        via = parse_via(req.headers.get("Via") or "")
        m = method or req.method
        if m == "ACK":
            m = "INVITE"
        branch = via.branch or ""
        if branch.startswith(MAGIC_COOKIE):
            return (branch, via.host.lower(), via.port or 5060, m)
        # RFC 2543 peers: match on the request's identity instead (§17.2.3).
        from_tag = parse_name_addr(req.headers.get("From") or "").tag
        return ("2543", req.call_id, req.cseq[0], from_tag, via.host.lower(), via.port, m)

    def _new_server_tx(self, req: SipRequest, dest: tuple[str, int]) -> Transaction:
        kind = "ist" if req.method == "INVITE" else "nist"
        t = Transaction(kind, self._server_key(req), req, dest)
        self._server_tx[t.key] = t
        return t

    def _response(self, req: SipRequest, status: int, reason: str | None,
                  call: _Call | None = None, *, body: bytes = b"", headers=()) -> SipResponse:
        to_tag = call.local_tag if call is not None else None
        if to_tag is None and status > 100:
            existing = parse_name_addr(req.headers.get("To") or "").tag
            to_tag = None if existing else self._token()
        h = list(headers) + [("Server", self.server_name)]
        return make_response(req, status, reason, to_tag=to_tag, body=body, headers=h)

    def _reply(self, req: SipRequest, dest: tuple[str, int], status: int, now: float,
               reason: str | None = None, headers=(), call: _Call | None = None,
               body: bytes = b"", content_type: str | None = None) -> Transaction:
        """Answer a request with a final response through a new server transaction."""
        t = self._new_server_tx(req, dest)
        resp = self._response(req, status, reason, call, body=body, headers=headers)
        if content_type and body:
            resp.headers.set("Content-Type", content_type)
        if req.method == "INVITE":
            self._fire(t, "success_sent" if status < 300 else "failure_sent", now, resp)
        else:
            self._fire(t, "final_sent", now, resp)
        return t

    def _dialog_response_headers(self, peer: tuple[str, int] | None = None,
                                 sips: bool = False) -> list[tuple[str, str]]:
        return [("Contact", self._contact(peer=peer, sips=sips)), ("Allow", self._allow)]

    # -------------------------------------------------------------- bad input
    def _reject_unparsable(self, data: bytes, addr: tuple[str, int], exc: SipParseError) -> None:
        """Answer a request we cannot take with `exc.status` (400 naming the problem, 483, 505,
        513) when it has a Via, whatever else is missing or broken (RFC 3261 §8.2.6.2 copies
        what is there); drop anything else — responses, ACKs, garbage without a request line."""
        detail = str(exc)
        try:
            head, _ = parse_head(data[:MAX_MESSAGE_BYTES], any_version=True, lenient=True)
        except SipParseError:
            head = None
        if not isinstance(head, SipRequest) or head.method == "ACK":
            self._events.append(MessageRejected(addr, None, detail))
            return
        if "Via" not in head.headers:
            self._events.append(MessageRejected(addr, None, detail))
            return
        try:
            dest = self._stamp_via(head, addr)
        except SipParseError:
            dest = addr  # a Via we cannot read (RFC 4475 badinv01): answer where it came from
        phrase = REASON_PHRASES.get(exc.status, "Bad Request")
        safe = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in detail)[:120]
        resp = make_response(head, exc.status, f"{phrase} ({safe})",
                             headers=[("Server", self.server_name)])
        self._out.append((serialize(resp), dest))
        self._events.append(MessageRejected(addr, exc.status, detail))

    def _stamp_via(self, req: SipRequest, addr: tuple[str, int]) -> tuple[str, int]:
        """Add received/rport to the top Via (RFC 3261 §18.2.1, RFC 3581); return where
        responses go."""
        top = parse_via(req.headers.get("Via") or "")
        params = dict(top.params)
        if "rport" in params:
            params["received"] = addr[0]
            params["rport"] = str(addr[1])
            dest = addr
        elif self.stream_of(addr) is not None:
            # §18.2.2: on a stream, responses go back on the connection the request came on.
            if top.host != addr[0]:
                params["received"] = addr[0]
            dest = addr
        else:
            if top.host != addr[0]:
                params["received"] = addr[0]
            dest = (params.get("received") or top.host, top.port or 5060)
        new_top = str(Via(top.transport, top.host, top.port, params))
        out = Headers()
        done = False
        for name, value in req.headers.items():
            if not done and name == "Via":
                out.add("Via", new_top)
                for rest in split_header_list(value)[1:]:
                    out.add("Via", rest)
                done = True
            else:
                out.add(name, value)
        req.headers = out
        return dest

    # ------------------------------------------------------------- requests in
    def _on_request(self, req: SipRequest, addr: tuple[str, int], now: float) -> None:
        try:
            dest = self._stamp_via(req, addr)
            key = self._server_key(req)
        except SipParseError as exc:
            self._events.append(MessageRejected(addr, None, str(exc)))
            return
        if req.method == "ACK":
            self._on_ack(req, key, now)
            return
        existing = self._server_tx.get(key)
        if existing is not None:
            self._fire(existing, "request_retransmitted", now)
            return
        if req.method == "CANCEL":
            self._on_cancel(req, dest, now)
            return
        scheme = req.uri.split(":", 1)[0].lower()
        if scheme not in ("sip", "sips", "tel"):
            self._reply(req, dest, 416, now)
            return
        if scheme == "sips" and (self.stream_of(addr) or ("UDP",))[0] != "TLS":
            # §26.2.2: a sips: Request-URI means every hop is TLS; one that came over plain
            # UDP/TCP is refused, with §8.2.2.1's answer for a scheme not served here.
            self._reply(req, dest, 416, now, "Unsupported URI Scheme (sips: only over TLS)")
            return
        require = req.headers.get_all("Require")
        if require and req.method != "BYE":
            self._reply(req, dest, 420, now, headers=[("Unsupported", ", ".join(require))])
            return
        if req.method == "INVITE" and self._refuse_invite(req, dest, now):
            return
        handler = {
            "INVITE": self._on_invite, "BYE": self._on_bye, "OPTIONS": self._on_options,
            "INFO": self._on_info, "REGISTER": self._on_register,
        }.get(req.method)
        if handler is None:
            self._reply(req, dest, 501, now, headers=[("Allow", self._allow)])
            return
        handler(req, addr, dest, now)

    def _refuse_invite(self, req: SipRequest, dest, now: float) -> bool:
        """415 for a body we cannot read (RFC 3261 §21.4.13), 406 when the caller's Accept
        excludes application/sdp (§21.4.7), 483 for a new INVITE that has no hop left (we would bridge it on). True when it answered."""
        encoding = (req.headers.get("Content-Encoding") or "identity").strip().lower()
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if req.body.strip() and (encoding != "identity" or ctype not in _READABLE_BODIES):
            self._reply(req, dest, 415, now, headers=[
                ("Accept", "application/sdp"), ("Accept-Encoding", "identity")])
            return True
        if not accepts_sdp(req.headers.get_all("Accept")):
            # §21.4.7: our answer can only be SDP, which the caller says it cannot take.
            self._reply(req, dest, 406, now, "Not Acceptable (the answer would be application/sdp)",
                        headers=[("Accept", "application/sdp")])
            return True
        mf = (req.headers.get("Max-Forwards") or "").strip()
        if mf == "0" and parse_name_addr(req.headers.get("To") or "").tag is None:
            self._reply(req, dest, 483, now)
            return True
        return False

    def _dialog_of(self, req: SipRequest) -> _Call | None:
        """The call this in-dialog request belongs to (tags must match), or None."""
        call = self._calls.get(req.call_id)
        if call is None:
            return None
        to_tag = parse_name_addr(req.headers.get("To") or "").tag
        from_tag = parse_name_addr(req.headers.get("From") or "").tag
        if to_tag != call.local_tag or (call.remote_tag is not None and from_tag != call.remote_tag):
            return None
        return call

    def _check_remote_cseq(self, call: _Call, req: SipRequest) -> bool:
        number = req.cseq[0]
        if call.remote_cseq is not None and number <= call.remote_cseq:
            return False
        call.remote_cseq = number
        return True

    def _on_invite(self, req: SipRequest, addr, dest, now: float) -> None:
        to_tag = parse_name_addr(req.headers.get("To") or "").tag
        if to_tag is not None:
            self._on_reinvite(req, dest, now)
            return
        earlier = self._calls.get(req.call_id)
        if earlier is not None and _retry_after_refusal(earlier, req):
            # §22.2: the INVITE again with credentials after our 407 (same Call-ID, higher
            # CSeq; some clients, sipvicious' svcrack among them, also change the From tag):
            # a new call, the refused one is forgotten.
            del self._calls[req.call_id]
        elif earlier is not None:
            # §8.2.2.2: same Call-ID without a To-tag but a new transaction — a fork
            # merging back, or a peer reusing the Call-ID of a live call.
            self._reply(req, dest, 482, now)
            return
        t = self._new_server_tx(req, dest)
        self._fire(t, "provisional_sent", now, self._response(req, 100, None))
        from_na = parse_name_addr(req.headers.get("From") or "")
        to_na = parse_name_addr(req.headers.get("To") or "")
        contact = req.headers.get("Contact")
        try:
            target = str(parse_name_addr(contact).uri) if contact else str(from_na.uri)
        except SipParseError:
            target = str(from_na.uri)
        to_value = req.headers.get("To") or ""
        call = _Call(
            call_id=req.call_id, role="uas", state="offered", local_tag=self._token(),
            local_addr=to_value, remote_addr=req.headers.get("From") or "",
            remote_tag=from_na.tag, remote_target=target, peer=addr,
            route_set=req.headers.get_all("Record-Route"), remote_cseq=req.cseq[0],
            invite=req, invite_tx=t,
        )
        self._calls[call.call_id] = call
        t.owner = self._on_invite_tx
        self._events.append(CallOffered(
            call_id=call.call_id, from_uri=str(from_na.uri), from_user=from_na.uri.user,
            from_display=from_na.display, to_user=to_na.uri.user, request_uri=req.uri,
            sdp=_sdp_body(req), source=addr, received_at=now,
            proxy_authorization=req.headers.get("Proxy-Authorization"),
        ))

    def _on_reinvite(self, req: SipRequest, dest, now: float) -> None:
        call = self._dialog_of(req)
        if call is None or call.state not in ("confirmed", "answered"):
            self._reply(req, dest, 481, now)
            return
        busy = call.reinvite_tx is not None and call.reinvite_tx.state == "proceeding"
        if busy or call.state == "answered":
            # RFC 3261 §14.2: an offer while ours is pending gets 491.
            self._reply(req, dest, 491, now, call=call)
            return
        if not self._check_remote_cseq(call, req):
            self._reply(req, dest, 500, now, "CSeq out of order", call=call)
            return
        contact = req.headers.get("Contact")
        if contact:
            try:
                call.remote_target = str(parse_name_addr(contact).uri)
            except SipParseError:
                pass
        t = self._new_server_tx(req, dest)
        self._fire(t, "provisional_sent", now, self._response(req, 100, None))
        call.reinvite_tx = t
        t.owner = self._on_reinvite_tx
        self._events.append(ReofferReceived(call.call_id, _sdp_body(req)))

    def _on_ack(self, req: SipRequest, key: tuple, now: float) -> None:
        t = self._server_tx.get(key)
        if t is not None and t.state in ("completed", "confirmed", "accepted", "acked"):
            # A non-2xx ACK shares the INVITE's branch; a 2xx ACK that reuses it (some
            # phones do) lands here too and is passed up by the "accepted" row.
            self._fire(t, "ack_received", now)
            return
        call = self._dialog_of(req)
        if call is None:
            return
        for candidate in (call.reinvite_tx, call.invite_tx):
            if candidate is not None and candidate.state in ("accepted", "acked"):
                self._fire(candidate, "ack_received", now)
                return

    def _on_invite_tx(self, t: Transaction, what: tuple, payload, now: float) -> None:
        call = self._calls.get(t.request.call_id)
        if call is None or call.invite_tx is not t:
            return
        if what[0] == "up":
            self._call_event(call, "ack_received", now)
        elif t.state == "terminated" and call.state == "answered":
            self._call_event(call, "ack_timeout", now)

    def _on_reinvite_tx(self, t: Transaction, what: tuple, payload, now: float) -> None:
        call = self._calls.get(t.request.call_id)
        if call is None:
            return
        if call.reinvite_tx is t and t.state != "proceeding":
            call.reinvite_tx = None
        if what[0] == "timeout" and call.state == "confirmed":
            self._call_event(call, "ack_timeout", now)

    def _on_cancel(self, req: SipRequest, dest, now: float) -> None:
        invite_tx = self._server_tx.get(self._server_key(req, "INVITE"))
        if invite_tx is None:
            self._reply(req, dest, 481, now)
            return
        call = self._calls.get(req.call_id)
        self._reply(req, dest, 200, now, call=call)
        if call is None:
            return
        if call.reinvite_tx is invite_tx and invite_tx.state == "proceeding":
            self._fire(invite_tx, "failure_sent", now,
                       self._response(invite_tx.request, 487, None, call))
            call.reinvite_tx = None
            return
        if call.invite_tx is invite_tx:
            self._call_event(call, "cancel_received", now)

    def _on_bye(self, req: SipRequest, addr, dest, now: float) -> None:
        call = self._dialog_of(req)
        if call is None:
            self._reply(req, dest, 481, now)
            return
        if not self._check_remote_cseq(call, req):
            self._reply(req, dest, 500, now, "CSeq out of order", call=call)
            return
        self._reply(req, dest, 200, now, call=call)
        self._call_event(call, "bye_received", now)

    def _on_options(self, req: SipRequest, addr, dest, now: float) -> None:
        headers = [("Allow", self._allow), ("Accept", "application/sdp"),
                   ("Accept-Language", "zh-CN, en")]
        call = self._dialog_of(req) if parse_name_addr(req.headers.get("To") or "").tag else None
        if call is None and not self.available:
            self._reply(req, dest, 503, now, "Draining", headers=[*headers, ("Retry-After", "60")])
            return
        self._reply(req, dest, 200, now, headers=headers, call=call)

    def _on_info(self, req: SipRequest, addr, dest, now: float) -> None:
        call = self._dialog_of(req)
        if call is None:
            self._reply(req, dest, 481, now)
            return
        if not self._check_remote_cseq(call, req):
            self._reply(req, dest, 500, now, "CSeq out of order", call=call)
            return
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not req.body.strip():
            self._reply(req, dest, 200, now, call=call)
            return
        if ctype not in ("application/dtmf-relay", "application/dtmf"):
            self._reply(req, dest, 415, now, call=call,
                        headers=[("Accept", "application/dtmf-relay, application/dtmf")])
            return
        try:
            digit, duration = _parse_dtmf_info(ctype, req.body)
        except ValueError as exc:
            self._reply(req, dest, 400, now, f"Bad DTMF ({exc})", call=call)
            return
        self._reply(req, dest, 200, now, call=call)
        self._events.append(DtmfInfoReceived(call.call_id, digit, duration))

    def _on_register(self, req: SipRequest, addr, dest, now: float) -> None:
        if self._registrar is None:
            self._reply(req, dest, 501, now, headers=[("Allow", self._allow)])
            return
        resp = self._registrar.handle_register(req, addr, now)
        resp.headers.add("Server", self.server_name)
        t = self._new_server_tx(req, dest)
        self._fire(t, "final_sent", now, resp)
        self._drain_registrar()

    def _drain_registrar(self) -> None:
        if self._registrar is not None and hasattr(self._registrar, "events"):
            self._events.extend(self._registrar.events())

    # ---------------------------------------------------------------- call table
    def _call_command(self, call_id: str, role: str, event: str, now: float, **kw) -> bool:
        call = self._calls.get(call_id)
        if call is None or call.role != role:
            return False
        try:
            self._call_event(call, event, now, **kw)
        except IllegalTransition:
            return False
        return True

    def _call_event(self, call: _Call, event: str, now: float, **kw) -> None:
        target, actions = tx_mod.step_call(call.role, call.state, event)
        call.state = target
        for name in actions:
            getattr(self, f"_do_{name}")(call, now, **kw)
        if target == "ended" and call.purge_at is None:
            # Kept a while so late retransmissions still meet their dialog.
            call.purge_at = now + 64 * self._timing.t1
            heapq.heappush(self._purge_heap, (call.purge_at, next(self._heap_seq), call))

    def _send_on_invite_tx(self, call: _Call, status: int, now: float, reason=None,
                           body: bytes = b"", headers=()) -> None:
        t = call.invite_tx
        if t is None or t.state != "proceeding":
            return
        resp = self._response(call.invite, status, reason, call, body=body, headers=headers)
        if status < 200:
            event = "provisional_sent"
        elif status < 300:
            event = "success_sent"
        else:
            event = "failure_sent"
        self._fire(t, event, now, resp)

    def _do_send_provisional(self, call: _Call, now: float, **kw) -> None:
        self._send_on_invite_tx(call, 180, now,
                                headers=[("Contact", self._contact(peer=call.peer, sips=_sips(call)))])

    def _do_send_success(self, call: _Call, now: float, sdp: bytes = b"", **kw) -> None:
        call.answered_at_least_once = True
        self._send_on_invite_tx(call, 200, now, body=sdp,
                                headers=self._dialog_response_headers(call.peer, _sips(call)))

    def _do_send_failure(self, call: _Call, now: float, status: int = 480, reason=None,
                         headers=(), **kw) -> None:
        self._send_on_invite_tx(call, status, now, reason, headers=headers)

    def _do_send_unavailable(self, call: _Call, now: float, **kw) -> None:
        self._send_on_invite_tx(call, 480, now)

    def _do_send_terminated(self, call: _Call, now: float, **kw) -> None:
        self._send_on_invite_tx(call, 487, now)

    def _do_report_ended_local(self, call: _Call, now: float, status: int | None = None,
                               **kw) -> None:
        reason = f"rejected {status}" if status is not None else "hangup"
        self._events.append(CallEnded(call.call_id, "local", reason))

    def _do_report_ended_remote(self, call: _Call, now: float, **kw) -> None:
        self._events.append(CallEnded(call.call_id, "remote", "BYE"))

    def _do_report_ended_timeout(self, call: _Call, now: float, **kw) -> None:
        self._events.append(CallEnded(call.call_id, "timeout", "no ACK"))

    def _do_report_cancelled(self, call: _Call, now: float, **kw) -> None:
        self._events.append(CallCancelled(call.call_id))

    def _do_report_acked(self, call: _Call, now: float, **kw) -> None:
        self._events.append(CallAcked(call.call_id))

    def _do_send_bye(self, call: _Call, now: float, **kw) -> None:
        self._send_in_dialog(call, "BYE", now)

    # ------------------------------------------------------ requests we send
    def _local_header(self, call: _Call) -> str:
        return f"{call.local_addr};tag={call.local_tag}"

    def _new_via(self, peer: tuple[str, int] | None = None) -> str:
        transport, port = (self.stream_of(peer) if peer is not None else None) or ("UDP", self.local_port)
        return (f"SIP/2.0/{transport} {_format_host(self.local_host)}:{port}"
                f";branch={self._branch()};rport")

    def _send_in_dialog(self, call: _Call, method: str, now: float, body: bytes = b"",
                        content_type: str | None = None) -> Transaction:
        call.local_cseq += 1
        h = Headers()
        h.add("Via", self._new_via(call.peer))
        h.add("Max-Forwards", "70")
        for route in (call.route_set if call.role == "uas" else list(reversed(call.route_set))):
            h.add("Route", route)
        h.add("From", self._local_header(call))
        h.add("To", call.remote_addr)
        h.add("Call-ID", call.call_id)
        h.add("CSeq", f"{call.local_cseq} {method}")
        h.add("User-Agent", self.server_name)
        if body:
            h.add("Content-Type", content_type or "application/sdp")
        req = SipRequest(method, call.remote_target, h, body)
        return self._start_client_tx(req, call.peer, now)

    def _start_client_tx(self, req: SipRequest, peer: tuple[str, int], now: float,
                         owner=None) -> Transaction:
        branch = parse_via(req.headers.get("Via") or "").branch
        kind = "ict" if req.method == "INVITE" else "nict"
        t = Transaction(kind, (branch, req.method), req, peer)
        self._client_tx[t.key] = t
        t.owner = owner
        data = serialize(req)
        t.last_sent = data
        self._out.append((data, peer))
        tx_mod.start(t, now, self._timing)
        self._index_timers(t, {})
        return t

    def _same_transaction_headers(self, inv: SipRequest, method: str, *, to: str) -> Headers:
        """Headers of a request that rides on the INVITE's transaction (non-2xx ACK, CANCEL):
        its Via (same branch), Route set, From, Call-ID and CSeq number; `to` as given."""
        h = Headers()
        h.add("Via", inv.headers.get("Via") or "")
        h.add("Max-Forwards", "70")
        for route in inv.headers.get_all("Route"):
            h.add("Route", route)
        h.add("From", inv.headers.get("From") or "")
        h.add("To", to)
        h.add("Call-ID", inv.call_id)
        h.add("CSeq", f"{inv.cseq[0]} {method}")
        h.add("User-Agent", self.server_name)
        return h

    def _send_non2xx_ack(self, t: Transaction, resp: SipResponse | None) -> None:
        """§17.1.1.3: ACK for a non-2xx reuses the INVITE's branch, Route and To-tag."""
        if resp is None:
            return
        inv: SipRequest = t.request
        h = self._same_transaction_headers(inv, "ACK", to=resp.headers.get("To") or "")
        data = serialize(SipRequest("ACK", inv.uri, h))
        self._out.append((data, t.peer))

    # ------------------------------------------------------------ responses in
    def _on_response(self, resp: SipResponse, addr: tuple[str, int], now: float) -> None:
        try:
            top = parse_via(resp.headers.get("Via") or "")
            number, method = parse_cseq(resp.headers.get("CSeq") or "")
        except SipParseError as exc:
            self._events.append(MessageRejected(addr, None, str(exc)))
            return
        del number
        t = self._client_tx.get((top.branch, method))
        if t is None:
            for client in self.extra_clients:
                if client.owns(resp):
                    client.handle_response(resp, now)
                    return
            self._on_stray_response(resp, method, now)
            return
        if t.kind == "ict":
            if resp.status < 200:
                event = "provisional_received"
            elif resp.status < 300:
                event = "success_received"
            else:
                event = "failure_received"
        else:
            event = "provisional_received" if resp.status < 200 else "final_received"
        self._fire(t, event, now, resp)

    def _on_stray_response(self, resp: SipResponse, method: str, now: float) -> None:
        """A 2xx retransmission after our INVITE transaction ended needs its ACK again."""
        if method != "INVITE" or not 200 <= resp.status < 300:
            return
        call = self._calls.get(resp.call_id)
        if call is not None and call.role == "uac":
            self._uac_event(call, "success", resp, now)

    # ---------------------------------------------------------------- UAC
    def invite(self, *, target_uri: str, remote: tuple[str, int], from_user: str, sdp: bytes,
               now: float, credentials: Credentials | None = None) -> str:
        """Place a call: send an INVITE to `remote`; returns the new call-id."""
        target = parse_uri(target_uri)
        call_id = f"{self._token()}@{_format_host(self.local_host)}"
        local_addr = f"<sip:{from_user}@{_format_host(self.local_host)}>"
        call = _Call(
            call_id=call_id, role="uac", state="calling", local_tag=self._token(),
            local_addr=local_addr, remote_addr=f"<{target}>", remote_tag=None,
            remote_target=str(target), peer=(remote[0], int(remote[1])), local_cseq=0,
            credentials=credentials,
        )
        self._calls[call_id] = call
        self._send_invite(call, sdp, now)
        return call_id

    def _send_invite(self, call: _Call, sdp: bytes, now: float,
                     auth: tuple[str, str] | None = None) -> None:
        call.local_cseq += 1
        h = Headers()
        h.add("Via", self._new_via(call.peer))
        h.add("Max-Forwards", "70")
        h.add("From", self._local_header(call))
        h.add("To", call.remote_addr)
        h.add("Call-ID", call.call_id)
        h.add("CSeq", f"{call.local_cseq} INVITE")
        h.add("Contact", self._contact(peer=call.peer, sips=call.remote_target[:5].lower() == "sips:"))
        h.add("Allow", self._allow)
        h.add("User-Agent", self.server_name)
        if auth is not None:
            h.add(*auth)
        if sdp:
            h.add("Content-Type", "application/sdp")
        req = SipRequest("INVITE", call.remote_target, h, bytes(sdp))
        call.invite = req
        call.invite_tx = self._start_client_tx(req, call.peer, now, owner=self._on_uac_invite_tx)

    def _on_uac_invite_tx(self, t: Transaction, what: tuple, resp: SipResponse | None,
                          now: float) -> None:
        call = self._calls.get(t.request.call_id)
        if call is None or call.role != "uac":
            return
        if what[0] == "timeout":
            if call.invite_tx is t:
                self._uac_event(call, "timeout", None, now)
            return
        if resp is None or resp.status == 100:
            return
        if resp.status < 200:
            self._uac_event(call, "provisional", resp, now)
        elif resp.status < 300:
            self._uac_event(call, "success", resp, now)
        elif call.invite_tx is t:
            if resp.status in (401, 407) and self._retry_with_auth(call, resp, now):
                return
            self._uac_event(call, "failure", resp, now)

    def _retry_with_auth(self, call: _Call, resp: SipResponse, now: float) -> bool:
        """Answer a 401/407 once per challenge (again only if the nonce went stale)."""
        from .digest import DigestError, build_authorization, parse_challenge
        creds = call.credentials
        if creds is None or call.state != "calling":
            return False
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        reply = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        try:
            challenge = parse_challenge(resp.headers.get(header) or "")
        except DigestError:
            return False
        if creds.realm is not None and creds.realm != challenge.realm:
            return False
        if call.auth_attempts >= 1 and not challenge.stale:
            return False
        if call.auth_attempts >= 3:
            return False
        call.auth_attempts += 1
        value = build_authorization(
            challenge, username=creds.username, password=creds.password, method="INVITE",
            uri=call.remote_target, cnonce=self._token())
        self._send_invite(call, call.invite.body, now, auth=(reply, value))
        return True

    def _uac_event(self, call: _Call, event: str, resp: SipResponse | None, now: float) -> None:
        if event == "success" and resp is not None and call.state != "confirmed":
            self._learn_dialog(call, resp)
        try:
            self._call_event(call, event, now, resp=resp)
        except IllegalTransition:
            pass

    def _learn_dialog(self, call: _Call, resp: SipResponse) -> None:
        """§12.1.2: the 2xx fixes remote tag, remote target and (reversed) route set."""
        to_value = resp.headers.get("To") or call.remote_addr
        call.remote_addr = to_value
        call.remote_tag = parse_name_addr(to_value).tag
        contact = resp.headers.get("Contact")
        if contact:
            try:
                call.remote_target = str(parse_name_addr(contact).uri)
            except SipParseError:
                pass
        call.route_set = resp.headers.get_all("Record-Route")

    def _do_send_ack(self, call: _Call, now: float, resp: SipResponse | None = None,
                     **kw) -> None:
        """ACK a 2xx: a new transaction-less request inside the dialog (§13.2.2.4)."""
        if resp is None or call.invite is None:
            return
        to_value = resp.headers.get("To") or call.remote_addr
        h = Headers()
        h.add("Via", self._new_via(call.peer))
        h.add("Max-Forwards", "70")
        for route in reversed(call.route_set):
            h.add("Route", route)
        h.add("From", self._local_header(call))
        h.add("To", to_value)
        h.add("Call-ID", call.call_id)
        h.add("CSeq", f"{call.invite.cseq[0]} ACK")
        h.add("User-Agent", self.server_name)
        self._out.append((serialize(SipRequest("ACK", call.remote_target, h)), call.peer))

    def _do_report_progressed(self, call: _Call, now: float, resp: SipResponse | None = None,
                              **kw) -> None:
        body = _sdp_body(resp) if resp is not None else b""
        self._events.append(CallProgressed(call.call_id, resp.status if resp else 180,
                                           body or None))

    def _do_report_answered(self, call: _Call, now: float, resp: SipResponse | None = None,
                            **kw) -> None:
        self._events.append(CallAnswered(call.call_id, _sdp_body(resp) if resp else b""))

    def _do_report_failed(self, call: _Call, now: float, resp: SipResponse | None = None,
                          **kw) -> None:
        status = resp.status if resp is not None else 500
        reason = resp.reason if resp is not None else "failed"
        self._events.append(CallFailed(call.call_id, status, reason))

    def _do_report_failed_timeout(self, call: _Call, now: float, **kw) -> None:
        self._events.append(CallFailed(call.call_id, 408, "timeout"))

    def _do_send_cancel(self, call: _Call, now: float, **kw) -> None:
        """§9.1: CANCEL copies the INVITE's Request-URI, Via, Route, From, To, CSeq number."""
        inv = call.invite
        if inv is None:
            return
        h = self._same_transaction_headers(inv, "CANCEL", to=inv.headers.get("To") or "")
        self._start_client_tx(SipRequest("CANCEL", inv.uri, h), call.peer, now)

def _no_stream(addr: tuple[str, int]) -> tuple[str, int] | None:
    return None


def _sips(call: _Call) -> bool:
    """Whether the call's INVITE asked for a sips: dialog (our Contact must be sips: too)."""
    return call.invite is not None and call.invite.uri[:5].lower() == "sips:"


def _retry_after_refusal(call: _Call, req: SipRequest) -> bool:
    """An INVITE sent again after our non-2xx final answer to the first one (a 407 challenge).

    Only a copy with the refused INVITE's From tag and CSeq is a merged request (§8.2.2.2,
    482); a new From tag is a new dialog whatever its CSeq (§12: tags identify dialogs).
    """
    if call.role != "uas" or call.state != "ended" or call.answered_at_least_once:
        return False
    from_tag = parse_name_addr(req.headers.get("From") or "").tag
    if from_tag != call.remote_tag:
        return True
    return call.remote_cseq is not None and req.cseq[0] > call.remote_cseq


def _sdp_body(msg: SipRequest | SipResponse) -> bytes:
    """The SDP body if there is a readable one, else b"" (the controller decides)."""
    ctype = (msg.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype != "application/sdp" or not msg.body.strip():
        return b""
    try:
        parse_sdp(msg.body)
    except SdpError:
        return b""
    return bytes(msg.body)


def _parse_dtmf_info(ctype: str, body: bytes) -> tuple[str, int]:
    text = body.decode("ascii", errors="replace")
    if ctype == "application/dtmf":
        signal, duration = text.strip(), 250
    else:
        fields = {}
        for line in text.replace("\r", "").split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k.strip().lower()] = v.strip()
        if "signal" not in fields:
            raise ValueError("no Signal= line")
        signal = fields["signal"]
        dur_text = fields.get("duration", "250")
        if not dur_text.isdigit():
            raise ValueError(f"bad Duration {dur_text!r}")
        duration = int(dur_text)
    digit = _DTMF_CODES.get(signal, signal.upper())
    if digit not in _DTMF_DIGITS:
        raise ValueError(f"unknown DTMF signal {signal!r}")
    return digit, duration

"""Twisted driver for the sans-I/O SIP user agent: moves messages and re-arms one timer.

All protocol decisions live in `callcenter.sip.ua`; this file only feeds it bytes and time,
sends what it wants sent, and hands its events to a listener (the call router).

One `SipEndpoint` owns the UA and the UDP socket; `SipStreamFactory` adds SIP over TCP or
TLS (RFC 3261 §18) beside it. A stream connection is known to the UA by its peer address:
messages cut from it (`callcenter.sip.framing`) enter exactly like datagrams, and whatever
the UA sends to that address goes back on the connection (`UserAgent.stream_of` tells the UA
which addresses are streams, for Via, Contact and retransmissions). Each connection has an
idle timer; the factory caps connections per source IP and in total.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from typing import Any, Callable, Protocol

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.internet.protocol import Protocol as StreamProtocol
from zope.interface import implementer

from callcenter.sip.defence import Defence, LogTally, SourceBanned
from callcenter.sip.events import (
    CallAnswered, CallCancelled, CallEnded, CallFailed, CallOffered, CallProgressed, DigestFailed,
    MessageRejected, ReofferReceived,
)
from callcenter.sip.framing import FramingError, StreamFramer
from callcenter.sip.ua import UserAgent

log = logging.getLogger(__name__)

# Closed connections remembered so that nothing is sent to their peer address over UDP.
CLOSED_STREAMS_KEPT = 4096
# How often bans are swept for their end and aggregated bad-input log lines written.
SWEEP_S = 10.0


class SipEventListener(Protocol):
    def sip_event(self, event: object) -> None: ...


class SipEndpoint(DatagramProtocol):
    """One listening SIP socket. Commands mirror the UserAgent's and flush at once."""

    def __init__(self, ua: UserAgent, clock, listener: SipEventListener | None = None):
        self.ua = ua
        self.clock = clock
        self.listener = listener
        self._timer = None
        self._timer_at: float | None = None
        self.datagrams_in = 0
        self.errors = 0
        # Sees every datagram in and out: on_message(data, "in" | "out") (callcenter.metrics).
        self.on_message: Callable[[bytes, str], None] | None = None
        # The SIP port's defence (callcenter.sip.defence), asked before a datagram is parsed;
        # on_defence(event) hears its bans and unbans (metrics, audit log).
        self.defence: Defence | None = None
        self.on_defence: Callable[[object], None] | None = None
        self.dropped = 0
        self.withheld = 0  # datagrams not sent because their destination is banned
        # Bad input answered (by status) or dropped ("dropped"), and bans by reason (/metrics).
        self.rejected: dict[str, int] = {}
        self.bans: dict[str, int] = {}
        self._tally = LogTally(period_s=SWEEP_S * 6)
        self._sweep = None
        # Open TCP/TLS connections by peer address (what the UA knows them by).
        self.streams: dict[tuple[str, int], SipStreamProtocol] = {}
        # Connections refused at accept, by (transport "tcp" | "tls", reason "per_source" |
        # "total" | "defence") (/metrics).
        self.streams_refused: dict[tuple[str, str], int] = {}
        # Peer addresses of the last connections that closed (bounded): nothing is sent there.
        self.closed_streams: OrderedDict[tuple[str, int], None] = OrderedDict()
        ua.stream_of = self._stream_of
        # SRTP (callcenter.media.srtp): SDES keys per call on TLS legs, and the RTP leg bound
        # to a local port (`RtpEngine.legs.get`) whose session gets the SRTP wrapper.
        self.sdes = None
        self._srtp_ports: dict[str, int] = {}  # our RTP port of calls we placed with SRTP
        self.rtp_leg: Callable[[int], object] | None = None

    def _stream_of(self, addr) -> tuple[str, int] | None:
        conn = self.streams.get(addr)
        if conn is None:
            return None
        return conn.factory.transport_name, conn.factory.local_port

    # -- I/O in -------------------------------------------------------------------------
    def datagramReceived(self, data: bytes, addr) -> None:
        self.datagrams_in += 1
        now = self.clock.seconds()
        defence = self.defence
        if defence is not None and not defence.admit(addr[0], data, now):
            self.dropped += 1
            self._defence_events(now)
            return
        if self.on_message is not None:
            self.on_message(data, "in")
        try:
            self.ua.receive_datagram(data, (addr[0], addr[1]), now)
        except Exception:  # the UA must never take the process down with it
            self.errors += 1
            log.exception("SIP core failed on a datagram from %s:%s", *addr[:2])
        self._after()

    # -- defence and bad input ------------------------------------------------------------
    def digest_failed(self, source: tuple[str, int], user: str, reason: str) -> None:
        """A failed digest answer found outside the UA (the call admission's 407 check)."""
        self._bad_input(DigestFailed(source, user, reason), self.clock.seconds())

    def lift_ban(self, source: str) -> int | None:
        """Lift a source's ban by hand (an operator's decision, `DELETE /api/sip/bans/{addr}`):
        the datagrams it had dropped, or None when it was not banned. Logged here; the caller
        audits it with the operator as actor (it is not a ban's end for `on_defence`)."""
        if self.defence is None:
            return None
        dropped = self.defence.lift(source, self.clock.seconds())
        if dropped is not None:
            log.warning("SIP source %s unbanned by hand (%d datagrams dropped meanwhile)", source, dropped)
        return dropped

    def _bad_input(self, ev, now: float) -> None:
        ip, port = ev.source[0], ev.source[1]
        if isinstance(ev, DigestFailed):
            line = f"SIP digest failure from {ip}:{port} for {ev.user!r}: {ev.reason}"
            self._log(f"SIP digest failures from {ip}", line, now, logging.INFO)
            if self.defence is not None:
                self.defence.auth_failed(ip, now)
                self._defence_events(now)
            return
        key = str(ev.status or "dropped")
        self.rejected[key] = self.rejected.get(key, 0) + 1
        line = f"SIP message from {ip}:{port} rejected ({key}): {ev.reason}"
        self._log(f"SIP bad input from {ip}", line, now, logging.WARNING)

    def _defence_events(self, now: float) -> None:
        for ev in self.defence.events():
            if isinstance(ev, SourceBanned):
                self.bans[ev.reason] = self.bans.get(ev.reason, 0) + 1
                line = (f"SIP source {ev.source} banned for {ev.until - now:.0f} s "
                        f"({ev.reason}, {ev.count})")
            else:
                line = f"SIP source {ev.source} unbanned ({ev.dropped} datagrams dropped meanwhile)"
            self._log(f"SIP bans of {ev.source}", line, now, logging.WARNING)
            if self.on_defence is not None:
                try:
                    self.on_defence(ev)
                except Exception:
                    log.exception("defence listener failed on %r", ev)

    def _log(self, key: str, line: str, now: float, level: int) -> None:
        """Bad input is logged once per key and period, then as one count (LogTally)."""
        first = self._tally.note(key, line, now)
        if first is not None:
            log.log(level, "%s", first)
        if self._sweep is None:
            self._sweep = self.clock.callLater(SWEEP_S, self._on_sweep)

    def _on_sweep(self) -> None:
        self._sweep = None
        now = self.clock.seconds()
        if self.defence is not None:
            self.defence.handle_timer(now)
            self._defence_events(now)
        for line in self._tally.flush(now):
            log.warning("%s", line)
        busy = self._tally.pending() or (self.defence is not None and self.defence.banned_count())
        if busy and self._sweep is None:
            self._sweep = self.clock.callLater(SWEEP_S, self._on_sweep)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.ua.handle_timer(self.clock.seconds())
        except Exception:
            self.errors += 1
            log.exception("SIP core failed in a timer")
        self._after()

    # -- commands -------------------------------------------------------------------------
    def command(self, name: str, *args, **kwargs):
        """Run a UserAgent command (ringing, answer, reject, hangup…) at the current time; SRTP
        keys are added to and taken from the SDP here. Call control uses the typed methods below."""
        method: Callable = getattr(self.ua, name)
        try:
            if self.sdes is not None and name in ("answer", "answer_reoffer", "invite"):
                args, kwargs, srtp_after = self._srtp_out(name, args, kwargs)
            else:
                srtp_after = None
            result = method(*args, now=self.clock.seconds(), **kwargs)
            if srtp_after is not None:
                srtp_after(result)
        except Exception:
            self.errors += 1
            log.exception("SIP command %s failed", name)
            result = None
        self._after()
        return result

    def flush(self) -> None:
        """Send what the UA has queued outside a datagram or a command (e.g. started clients)."""
        self._after()

    # -- typed commands (calls.ports.SipPort): what call control sends on one dialog ----------
    @property
    def registrar(self):
        return self.ua.registrar

    def ringing(self, call_id: str) -> None:
        self.command("ringing", call_id)

    def answer(self, call_id: str, sdp: bytes) -> bool | None:
        return self.command("answer", call_id, sdp)

    def reject(self, call_id: str, status: int, headers: tuple = ()) -> None:
        if headers:
            self.command("reject", call_id, status, headers=headers)
        else:
            self.command("reject", call_id, status)

    def hangup(self, call_id: str) -> None:
        self.command("hangup", call_id)

    def answer_reoffer(self, call_id: str, sdp: bytes) -> None:
        self.command("answer_reoffer", call_id, sdp)

    def invite(self, *, target_uri: str, remote: tuple[str, int], from_user: str, sdp: bytes,
               credentials: Any = None) -> str | None:
        return self.command("invite", target_uri=target_uri, remote=remote, from_user=from_user, sdp=sdp,
                            credentials=credentials)

    # -- I/O out ---------------------------------------------------------------------------
    def _after(self) -> None:
        if self.transport is not None:
            on_message = self.on_message
            streams = self.streams
            defence = self.defence
            now = self.clock.seconds()
            for data, addr in self.ua.datagrams_to_send():
                if defence is not None and defence.banned(addr[0], now):
                    # A banned source gets nothing, not even the retransmissions of what we
                    # answered before the ban (a cracker would take them as fresh challenges).
                    self.withheld += 1
                    continue
                if on_message is not None:
                    on_message(data, "out")
                conn = streams.get(addr) if streams else None
                if conn is not None:
                    conn.transport.write(data)
                    continue
                if addr in self.closed_streams:
                    # Its connection is gone: a datagram to that ephemeral port would reach
                    # nobody. The transaction times out and the call controller moves on.
                    self._log(f"SIP to closed connection {addr[0]}:{addr[1]}",
                              f"SIP message to {addr[0]}:{addr[1]} dropped: its connection is closed",
                              self.clock.seconds(), logging.INFO)
                    continue
                try:
                    self.transport.write(data, addr)
                except OSError as exc:
                    log.warning("SIP send to %s failed: %s", addr, exc)
        events = self.ua.events()
        for ev in events:
            if isinstance(ev, (MessageRejected, DigestFailed)):
                self._bad_input(ev, self.clock.seconds())
                continue
            if self.sdes is not None:
                ev = self._srtp_in(ev)
                if ev is None:
                    continue
            if self.listener is not None:
                try:
                    self.listener.sip_event(ev)
                except Exception:
                    self.errors += 1
                    log.exception("call router failed on %r", ev)
        if events and self.transport is not None:
            # Listeners may have issued commands; those already flushed themselves.
            pass
        self._rearm()

    def stream_closed(self, addr: tuple[str, int]) -> None:
        """A phone registered over this connection can no longer be reached: its bindings go
        (the call controller hears ContactsChanged and stops ringing it)."""
        registrar = self.ua.registrar
        if registrar is None or not hasattr(registrar, "drop_source"):
            return
        if registrar.drop_source(addr):
            log.info("SIP connection from %s:%s closed: its registrations dropped", *addr)
            try:
                self.ua.handle_timer(self.clock.seconds())  # drains the registrar's events
            except Exception:
                self.errors += 1
                log.exception("SIP core failed after a connection closed")
            self._after()

    # -- SRTP on TLS legs ----------------------------------------------------------------------
    def _is_tls(self, addr) -> bool:
        conn = self.streams.get(addr)
        return conn is not None and conn.factory.transport_name == "TLS"

    def _srtp_in(self, ev):
        """Take SDES keys out of what the controller will see; None: refused here."""
        from callcenter.media.srtp import Refuse

        sdes = self.sdes
        if isinstance(ev, CallOffered) or (isinstance(ev, ReofferReceived) and ev.call_id in sdes):
            secure = self._is_tls(ev.source) if isinstance(ev, CallOffered) else True
            seen = sdes.offer_in(ev.call_id, ev.sdp, secure=secure)
            if isinstance(seen, Refuse):
                log.info("call %s: %s (%d)", ev.call_id, seen.reason, seen.status)
                self.command("reject", ev.call_id, seen.status, reason=seen.reason)
                return None
            return ev if seen is ev.sdp else dataclasses.replace(ev, sdp=seen)
        if isinstance(ev, (CallAnswered, CallProgressed)) and ev.sdp and ev.call_id in sdes:
            got = sdes.answer_in(ev.call_id, ev.sdp)
            if isinstance(got, Refuse):
                log.info("call %s: %s; hanging up", ev.call_id, got.reason)
                self.command("hangup", ev.call_id)
                return None
            plain, context = got
            self._secure_leg(self._srtp_ports.get(ev.call_id), context)
            return dataclasses.replace(ev, sdp=plain)
        if isinstance(ev, (CallEnded, CallCancelled, CallFailed)):
            sdes.forget(ev.call_id)
            self._srtp_ports.pop(ev.call_id, None)
        return ev

    def _srtp_out(self, name: str, args: tuple, kwargs: dict):
        """Put our SDES key into an answer or offer; returns the arguments and what to do
        with the command's result (None: nothing)."""
        sdes = self.sdes
        if name == "invite":
            remote = kwargs.get("remote")
            sdp, local = sdes.offer_out(kwargs.get("sdp") or b"", secure=self._is_tls(remote))
            if local is None:
                return args, kwargs, None
            port = _audio_port(sdp)

            def placed(call_id):
                if call_id:
                    sdes.placed(call_id, local)
                    self._srtp_ports[call_id] = port
            return args, {**kwargs, "sdp": sdp}, placed
        call_id, sdp = args[0], args[1]
        if call_id not in sdes:
            return args, kwargs, None
        sent, context = sdes.answer_out(call_id, sdp)
        if context is not None:
            self._secure_leg(_audio_port(sdp), context)
        return (call_id, sent, *args[2:]), kwargs, None

    def _secure_leg(self, port: int | None, context) -> None:
        from callcenter.media.srtp import SrtpSession

        leg = self.rtp_leg(port) if self.rtp_leg is not None and port is not None else None
        if leg is None:
            log.warning("SRTP: no RTP leg on port %s", port)
            return
        if isinstance(leg.session, SrtpSession):
            object.__setattr__(leg.session, "context", context)
        else:
            leg.session = SrtpSession(leg.session, context)

    def _rearm(self) -> None:
        at = self.ua.get_timer()
        if at == self._timer_at:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self.clock.callLater(max(0.0, at - self.clock.seconds()), self._on_timer)

    def stop(self) -> None:
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for conn in list(self.streams.values()):
            conn.transport.loseConnection()


def _audio_port(sdp: bytes) -> int | None:
    from callcenter.sip.sdp import SdpError, parse_sdp

    try:
        audio = parse_sdp(sdp).audio
    except SdpError:
        return None
    return audio.port if audio is not None else None


@implementer(IPushProducer)
class SipStreamProtocol(StreamProtocol):
    """One TCP or TLS connection: cuts messages out of the stream and hands them to the UA.

    It is the producer of its own transport: when what we send piles up (a peer that sends
    requests but does not read the answers), the transport pauses us and we stop reading that
    peer's requests until it has drained, so its answers cannot grow memory without bound.
    """

    def __init__(self, factory: "SipStreamFactory", addr: tuple[str, int]):
        self.factory = factory
        self.addr = addr
        self.framer = StreamFramer()
        self.messages = 0
        self._idle = None

    def connectionMade(self) -> None:
        self.factory.endpoint.streams[self.addr] = self
        self.factory.endpoint.closed_streams.pop(self.addr, None)
        self._arm(self.factory.first_message_s)
        self.transport.registerProducer(self, True)

    def pauseProducing(self) -> None:
        self.factory.paused += 1
        self.transport.pauseProducing()  # stop reading its requests

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except FramingError as exc:
            self.factory.framing_errors += 1
            log.info("SIP over %s from %s:%s closed: %s", self.factory.transport_name, *self.addr, exc)
            self.transport.loseConnection()
            return
        if not messages:
            return
        # Only whole messages keep a connection alive: trickled bytes do not.
        self._arm(self.factory.idle_s)
        endpoint = self.factory.endpoint
        for message in messages:
            if self.factory.endpoint.streams.get(self.addr) is not self:
                return  # closed meanwhile
            self.messages += 1
            endpoint.datagramReceived(message, self.addr)
        defence = endpoint.defence
        if defence is not None and defence.banned(self.addr[0], self.factory.clock.seconds()):
            self.transport.loseConnection()  # its later bytes would be dropped anyway

    def _arm(self, seconds: float) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.reset(seconds)
        else:
            self._idle = self.factory.clock.callLater(seconds, self._timed_out)

    def _timed_out(self) -> None:
        self._idle = None
        self.factory.timeouts += 1
        self.transport.loseConnection()

    def connectionLost(self, reason=None) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        endpoint = self.factory.endpoint
        if endpoint.streams.get(self.addr) is self:
            del endpoint.streams[self.addr]
            endpoint.closed_streams[self.addr] = None
            while len(endpoint.closed_streams) > CLOSED_STREAMS_KEPT:
                endpoint.closed_streams.popitem(last=False)
            endpoint.stream_closed(self.addr)
        self.factory.forget(self.addr[0])


class SipStreamFactory(Factory):
    """Accepts SIP over TCP (or TLS, when listened on with a TLS context) for one endpoint.

    `transport_name` ("TCP" | "TLS") and `local_port` (set once listening) go into our Via
    and Contact on this transport. Connections beyond `max_per_source` from one IP, or
    `max_connections` in all, or from a source the defence has banned (each connection counts
    towards its flood limit), are refused at accept.
    """

    def __init__(self, endpoint: SipEndpoint, clock, transport_name: str = "TCP", *,
                 idle_s: float = 3900.0, first_message_s: float = 30.0,
                 max_per_source: int = 16, max_connections: int = 2000):
        self.endpoint = endpoint
        self.clock = clock
        self.transport_name = transport_name
        self.local_port = 0
        self.idle_s = idle_s
        self.first_message_s = first_message_s
        self.max_per_source = max_per_source
        self.max_connections = max_connections
        self._per_source: dict[str, int] = {}
        self._count = 0
        self.refused = 0
        self.timeouts = 0
        self.paused = 0  # times a connection's reading was paused for its unread answers
        self.framing_errors = 0

    def buildProtocol(self, addr):
        ip = addr.host
        if self._count >= self.max_connections:
            reason = "total"
        elif self._per_source.get(ip, 0) >= self.max_per_source:
            reason = "per_source"
        elif not self._admitted(ip):
            reason = "defence"
        else:
            reason = None
        if reason is not None:
            self.refused += 1
            key = (self.transport_name.lower(), reason)
            refused = self.endpoint.streams_refused
            refused[key] = refused.get(key, 0) + 1
            return None  # Twisted closes the connection at once
        self._count += 1
        self._per_source[ip] = self._per_source.get(ip, 0) + 1
        return SipStreamProtocol(self, (ip, addr.port))

    def _admitted(self, ip: str) -> bool:
        """A new connection counts as one request towards the source's flood limit (a TLS
        handshake costs more than a datagram); a banned source gets none."""
        endpoint = self.endpoint
        if endpoint.defence is None:
            return True
        now = self.clock.seconds()
        admitted = endpoint.defence.admit(ip, b"", now)
        if not admitted:
            endpoint.dropped += 1
            endpoint._defence_events(now)
        return admitted

    def forget(self, ip: str) -> None:
        self._count -= 1
        left = self._per_source.get(ip, 0) - 1
        if left > 0:
            self._per_source[ip] = left
        else:
            self._per_source.pop(ip, None)


def tls_context(cert_path, key_path):
    """A server TLS context from PEM files (the cert file may carry the chain after the leaf).

    Raises ValueError naming what could not be read.
    """
    from twisted.internet import ssl

    try:
        cert_pem = open(cert_path, "rb").read()
        key_pem = open(key_path, "rb").read()
    except OSError as exc:
        raise ValueError(f"cannot read {exc.filename}: {exc.strerror}") from None
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
        key = load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise ValueError(f"{cert_path} / {key_path}: not a PEM certificate and unencrypted key ({exc})") from None
    try:
        options = ssl.CertificateOptions(privateKey=key, certificate=certs[0], extraCertChain=certs[1:])
        options.getContext()  # checks that the key belongs to the certificate
        return options
    except Exception as exc:  # pyOpenSSL raises several kinds; all mean a bad pair
        raise ValueError(f"{cert_path} / {key_path}: not a matching PEM certificate and key ({exc})") from None

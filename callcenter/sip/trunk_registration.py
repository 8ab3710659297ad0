"""Outbound registration to a carrier trunk (REGISTER as a UAC), sans-I/O.

One `TrunkRegistration` per trunk with `register = true`: it sends REGISTER, answers a
401/407 digest challenge once per nonce, refreshes at 80 % of the granted expiry (and
never later than 30 s before it runs out), and backs off exponentially after failures
(no response within 32 s = Timer F, or a final error). Its `status` is what operators see.

The driver feeds it time and the responses whose top Via branch it issued
(`owns(response)`), and sends what `datagrams_to_send()` returns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from callcenter.sip.digest import DigestError, build_authorization, parse_challenge
from callcenter.sip.message import Headers, SipRequest, SipResponse, parse_via, serialize

BRANCH_PREFIX = "z9hG4bKtrk"
TIMEOUT_S = 32.0  # Timer F (64·T1) for a non-INVITE request over UDP
T1, T2 = 0.5, 4.0  # Timer E starts at T1 and doubles up to T2


@dataclass(frozen=True)
class TrunkStatus:
    state: str  # "registering" | "registered" | "failed" | "unregistered"
    detail: str
    expires_at: float | None
    next_attempt_at: float | None
    failures: int


class TrunkRegistration:
    # (state, what happened) → next state. Every transition the code makes is listed here.
    TRANSITIONS = {
        ("unregistered", "start"): "registering",
        ("registering", "ok"): "registered",
        ("registering", "challenge"): "registering",
        ("registering", "error"): "failed",
        ("registering", "timeout"): "failed",
        ("registered", "refresh"): "registering",
        ("failed", "retry"): "registering",
    }

    def __init__(self, *, name: str, registrar: tuple[str, int], domain: str, username: str, password: str,
                 local_host: str, local_port: int, expires: int = 3600, rng: random.Random | None = None,
                 min_backoff_s: float = 5.0, max_backoff_s: float = 600.0):
        self.name = name
        self.registrar = registrar
        self.domain = domain
        self.username = username
        self.password = password
        self.local_host = local_host
        self.local_port = local_port
        self.expires = expires
        self.rng = rng or random.Random()
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.state = "unregistered"
        self.detail = ""
        self.failures = 0
        self.expires_at: float | None = None
        self._call_id = f"{self._token()}@{local_host}"
        self._tag = self._token()
        self._cseq = 0
        self._branch: str | None = None
        self._sent_at = 0.0
        self._retransmits = 0
        self._resend_interval = T1
        self._resend_at = 0.0
        self._last: bytes | None = None
        self._next_at: float | None = None  # refresh or retry time
        self._answered_nonce: str | None = None
        self._out: list[tuple[bytes, tuple[str, int]]] = []

    # -- driver interface ------------------------------------------------------------------
    def start(self, now: float) -> None:
        self._move("start")
        self._send_register(now, auth=None)

    def datagrams_to_send(self) -> list[tuple[bytes, tuple[str, int]]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        times = [t for t in (self._next_at, self._retransmit_at(), self._timeout_at()) if t is not None]
        return min(times) if times else None

    def owns(self, response: SipResponse) -> bool:
        via = response.headers.get("Via")
        if via is None or self._branch is None:
            return False
        try:
            return parse_via(via).params.get("branch") == self._branch
        except ValueError:
            return False

    def handle_response(self, response: SipResponse, now: float) -> None:
        if not self.owns(response) or response.status < 200:
            return
        self._branch = None
        self._last = None
        if response.status in (401, 407):
            self._challenged(response, now)
        elif 200 <= response.status < 300:
            granted = _granted_expiry(response, self.expires)
            self._move("ok")
            self.failures = 0
            self.expires_at = now + granted
            self.detail = f"{response.status} {response.reason}"
            self._next_at = now + max(1.0, min(granted * 0.8, granted - 30))
        else:
            self._fail(now, f"{response.status} {response.reason}")

    def handle_timer(self, now: float) -> None:
        timeout = self._timeout_at()
        if timeout is not None and now >= timeout:
            self._branch = None
            self._last = None
            self._move("timeout")
            self._schedule_retry(now, "no response from the registrar")
            return
        retransmit = self._retransmit_at()
        if retransmit is not None and now >= retransmit and self._last is not None:
            self._out.append((self._last, self.registrar))
            self._retransmits += 1
            self._resend_interval = min(self._resend_interval * 2, T2)
            self._resend_at = now + self._resend_interval
        if self._next_at is not None and now >= self._next_at:
            self._next_at = None
            self._move("refresh" if self.state == "registered" else "retry")
            self._send_register(now, auth=None)

    @property
    def status(self) -> TrunkStatus:
        return TrunkStatus(self.state, self.detail, self.expires_at, self._next_at, self.failures)

    # -- internals ---------------------------------------------------------------------------
    def _move(self, what: str) -> None:
        key = (self.state, what)
        if key not in self.TRANSITIONS:
            raise ValueError(f"trunk {self.name}: {what} is not allowed while {self.state}")
        self.state = self.TRANSITIONS[key]

    def _token(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def _retransmit_at(self) -> float | None:
        if self._branch is None or self._last is None:
            return None
        return self._resend_at

    def _timeout_at(self) -> float | None:
        return self._sent_at + TIMEOUT_S if self._branch is not None else None

    def _challenged(self, response: SipResponse, now: float) -> None:
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        usable = []
        for value in response.headers.get_all(header):
            try:
                usable.append(parse_challenge(value))
            except (DigestError, ValueError):
                continue  # another scheme or algorithm: use one we know, if offered
        if not usable:
            self._fail(now, f"{response.status}: no digest challenge we can answer")
            return
        # Prefer SHA-256 when offered (RFC 8760), else MD5.
        challenge = sorted(usable, key=lambda c: c.algorithm.upper() != "SHA-256")[0]
        if challenge.nonce == self._answered_nonce and not challenge.stale:
            self._fail(now, f"{response.status} {response.reason}: credentials refused")
            return
        self._answered_nonce = challenge.nonce
        uri = f"sip:{self.domain}"
        try:
            value = build_authorization(challenge, username=self.username, password=self.password,
                                        method="REGISTER", uri=uri, cnonce=self._token())
        except DigestError as exc:
            self._fail(now, str(exc))
            return
        self._move("challenge")
        name = "Authorization" if response.status == 401 else "Proxy-Authorization"
        self._send_register(now, auth=(name, value))

    def _fail(self, now: float, detail: str) -> None:
        self._move("error")
        self._schedule_retry(now, detail)

    def _schedule_retry(self, now: float, detail: str) -> None:
        self.failures += 1
        self.detail = detail
        self.expires_at = None
        backoff = min(self.max_backoff_s, self.min_backoff_s * 2 ** (self.failures - 1))
        self._next_at = now + backoff
        self._answered_nonce = None

    def _send_register(self, now: float, auth: tuple[str, str] | None) -> None:
        self._cseq += 1
        self._branch = f"{BRANCH_PREFIX}{self._token()}"
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {self.local_host}:{self.local_port};branch={self._branch};rport")
        h.add("Max-Forwards", "70")
        aor = f"<sip:{self.username}@{self.domain}>"
        h.add("From", f"{aor};tag={self._tag}")
        h.add("To", aor)
        h.add("Call-ID", self._call_id)
        h.add("CSeq", f"{self._cseq} REGISTER")
        h.add("Contact", f"<sip:{self.username}@{self.local_host}:{self.local_port}>")
        h.add("Expires", str(self.expires))
        h.add("User-Agent", "hotline12319")
        if auth is not None:
            h.add(*auth)
        data = serialize(SipRequest("REGISTER", f"sip:{self.domain}", h))
        self._last = data
        self._sent_at = now
        self._retransmits = 0
        self._resend_interval = T1
        self._resend_at = now + T1
        self._out.append((data, self.registrar))


def _granted_expiry(response: SipResponse, asked: int) -> int:
    """The expiry the registrar granted: the Contact's expires param, else Expires, else ours."""
    for contact in response.headers.get_all("Contact"):
        for part in contact.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "expires" and value.strip().isdigit():
                return int(value)
    value = response.headers.get("Expires")
    if value and value.strip().isdigit():
        return int(value.strip())
    return asked

"""Events the SIP user agent reports to the call controller (frozen, past tense).

Every call ends with exactly one terminal event: `CallEnded`, `CallCancelled` (the caller
gave up before answer) or, for calls we place, `CallFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Event",
    "CallOffered",
    "CallAcked",
    "CallCancelled",
    "CallEnded",
    "ReofferReceived",
    "DtmfInfoReceived",
    "MessageRejected",
    "CallProgressed",
    "CallAnswered",
    "CallFailed",
    "ContactsChanged",
    "DigestFailed",
]


@dataclass(frozen=True)
class Event:
    pass


@dataclass(frozen=True)
class CallOffered(Event):
    call_id: str
    from_uri: str
    from_user: str | None
    from_display: str | None
    to_user: str | None
    request_uri: str
    sdp: bytes
    source: tuple[str, int]
    received_at: float
    # The INVITE's credentials, for call admission's 407 check (callcenter.admission).
    proxy_authorization: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CallAcked(Event):
    call_id: str


@dataclass(frozen=True)
class CallCancelled(Event):
    call_id: str


@dataclass(frozen=True)
class CallEnded(Event):
    call_id: str
    by: str  # "remote" | "local" | "timeout"
    reason: str


@dataclass(frozen=True)
class ReofferReceived(Event):
    call_id: str
    sdp: bytes


@dataclass(frozen=True)
class DtmfInfoReceived(Event):
    call_id: str
    digit: str
    duration_ms: int


@dataclass(frozen=True)
class MessageRejected(Event):
    """Bad input we answered with `status`, or dropped (status None); for logging."""

    source: tuple[str, int]
    status: int | None
    reason: str


@dataclass(frozen=True)
class CallProgressed(Event):
    """A provisional response (180/183) to an INVITE we sent."""

    call_id: str
    status: int
    sdp: bytes | None


@dataclass(frozen=True)
class CallAnswered(Event):
    call_id: str
    sdp: bytes


@dataclass(frozen=True)
class CallFailed(Event):
    """An INVITE we sent ended without a dialog: status 408 also stands for our timeout."""

    call_id: str
    status: int
    reason: str


@dataclass(frozen=True)
class ContactsChanged(Event):
    """The registrar's bindings for `aor` changed; `contacts` is the full current set."""

    aor: str
    contacts: tuple[str, ...]


@dataclass(frozen=True)
class DigestFailed(Event):
    """A digest answer from `source` failed (wrong password, made-up nonce, bad form);
    the driver counts it towards a ban (callcenter.sip.defence)."""

    source: tuple[str, int]
    user: str
    reason: str

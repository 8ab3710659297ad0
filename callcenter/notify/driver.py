"""The port every SMS gateway driver implements: send one message, say how it went."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["OutgoingSms", "SendResult", "SmsDriver", "mask_number"]


@dataclass(frozen=True)
class OutgoingSms:
    id: int
    to: str
    text: str
    encoding: str
    parts: int
    dlr_token: str


@dataclass(frozen=True)
class SendResult:
    """`ok`: the gateway took it. Otherwise `permanent` errors are not retried."""

    ok: bool
    gateway_id: str | None = None
    error: str | None = None
    permanent: bool = False


class SmsDriver(Protocol):
    name: str

    async def send(self, sms: OutgoingSms) -> SendResult: ...

    async def close(self) -> None: ...


def mask_number(number: str) -> str:
    """138****8001: enough to tell messages apart in a log, not enough to call anyone."""
    return number[:3] + "****" + number[-4:] if len(number) >= 8 else "****"

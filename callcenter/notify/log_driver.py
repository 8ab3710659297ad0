"""The embedded default SMS driver: writes each message to the server log and sends nothing."""

from __future__ import annotations

import logging

from callcenter.notify.driver import OutgoingSms, SendResult, mask_number

log = logging.getLogger("callcenter.notify.sms")


class LogDriver:
    name = "log"

    def __init__(self) -> None:
        self.sent: list[OutgoingSms] = []

    async def send(self, sms: OutgoingSms) -> SendResult:
        self.sent.append(sms)
        log.info("SMS #%d to %s (%d part(s), %s): %s", sms.id, mask_number(sms.to), sms.parts, sms.encoding, sms.text)
        return SendResult(ok=True, gateway_id=f"log-{sms.id}")

    async def close(self) -> None:
        return None

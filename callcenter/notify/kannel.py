"""Kannel driver: HTTP `sendsms` to smsbox, asking for delivery reports back to our web app.

Each request carries `dlr-mask=31` (delivered, undelivered, buffered, SMSC accepted, SMSC
rejected) and a `dlr-url` pointing at `GET /sms/dlr` (see `web.notify_api`) with the
message id, its secret token and Kannel's `%d` status. Kannel splits long texts itself
(sendsms-user `max-messages`, `concatenation = true`); we send Chinese as UCS-2 (`coding=2`).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import aiohttp

from callcenter.notify.driver import OutgoingSms, SendResult
from callcenter.notify.encoding import UCS2
from callcenter.notify.settings import NotifySettings

__all__ = ["KannelDriver", "dlr_url"]


def dlr_url(base_url: str, sms: OutgoingSms) -> str:
    """Where Kannel reports delivery; `%d` and `%F` are filled in by Kannel."""
    query = urlencode({"id": sms.id, "t": sms.dlr_token})
    return f"{base_url.rstrip('/')}/sms/dlr?{query}&status=%d&smsc_id=%F"


class KannelDriver:
    name = "kannel"

    def __init__(self, settings: NotifySettings, session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self._session = session
        self._own_session = session is None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s))
        return self._session

    def params(self, sms: OutgoingSms) -> dict[str, str]:
        s = self.settings
        params = {
            "username": s.kannel_username,
            "password": s.kannel_password,
            "from": s.sender,
            "to": sms.to,
            "text": sms.text,
            "charset": "UTF-8",
            "coding": "2" if sms.encoding == UCS2 else "0",
            "dlr-mask": "31",
            "dlr-url": dlr_url(s.dlr_base_url, sms),
        }
        if s.kannel_smsc:
            params["smsc"] = s.kannel_smsc
        return params

    async def send(self, sms: OutgoingSms) -> SendResult:
        try:
            async with self._client().get(self.settings.kannel_url, params=self.params(sms)) as resp:
                body = (await resp.text(errors="replace")).strip()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return SendResult(ok=False, error=f"kannel unreachable: {type(exc).__name__}: {exc}")
        # 202 "0: Accepted for delivery" / "3: Queued for later delivery".
        if resp.status in (200, 202) and body[:2] in ("0:", "3:"):
            return SendResult(ok=True, gateway_id=None)
        error = f"kannel HTTP {resp.status}: {body[:200]}"
        # 4xx: our request is wrong (credentials, number, text) and will not get better by retrying.
        return SendResult(ok=False, error=error, permanent=400 <= resp.status < 500)

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

"""What the web's SMS routes (`web.notify_api`) do with the outbox, the templates and the
opt-out list: `web.ports.Sms`, built by the composition root from `[sms]` and the engine.

The routes word the answers (中文, status codes); this module only reads and writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.notify import outbox
from callcenter.notify.settings import NotifySettings
from callcenter.notify.templates import TEMPLATE_NAMES, SmsTemplates, TemplateError, check_source

__all__ = ["SmsWebService"]


class SmsWebService:
    """The SMS side the web sees (`web.ports.Sms`)."""

    statuses = outbox.STATUSES  # an outbox message's statuses
    template_names = TEMPLATE_NAMES
    TemplateError = TemplateError  # a template refused on save; str() says why

    def __init__(self, engine: AsyncEngine, settings: NotifySettings | None = None) -> None:
        self.engine = engine
        self.settings = settings if settings is not None else NotifySettings()

    @property
    def inbound_token(self) -> str:
        """`[sms] inbound_token`: the replies' sms-service is disabled while empty."""
        return self.settings.inbound_token

    def _templates(self) -> SmsTemplates:
        return SmsTemplates(self.settings.templates_path(), max_parts=self.settings.max_parts)

    async def apply_dlr(self, msg_id: int, token: str, code: int, *, now: datetime,
                        smsc_id: str | None = None) -> str | None:
        async with self.engine.begin() as conn:
            return await outbox.apply_dlr(conn, msg_id, token, code, now=now, smsc_id=smsc_id)

    async def opt_out(self, number: str, *, now: datetime, source: str) -> str:
        async with self.engine.begin() as conn:
            return await outbox.opt_out(conn, number, now=now, source=source)

    async def opt_in(self, number: str) -> bool:
        async with self.engine.begin() as conn:
            return await outbox.opt_in(conn, number)

    async def list_messages(self, *, status: str | None = None, case_number: str | None = None,
                            to: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await outbox.list_messages(conn, status=status, case_number=case_number, to=to, limit=limit)
        return [m.as_json() for m in rows]

    def templates(self) -> list[dict[str, Any]]:
        t = self._templates()
        out = []
        for name in TEMPLATE_NAMES:
            source = t.source(name)
            out.append({"name": name, "source": source, "overridden": t.path_of(name).parent == t.override_dir,
                        "problem": check_source(name, source, max_parts=t.max_parts)})
        return out

    @property
    def templates_editable(self) -> bool:
        """Templates can be saved only with `[sms] templates_dir` set."""
        return self.settings.templates_path() is not None

    def save_template(self, name: str, source: str) -> None:
        self._templates().save(name, source)

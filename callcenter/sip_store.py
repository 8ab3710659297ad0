"""SIP accounts of agents' phones: the `sip_accounts` table, its async store, and the
in-memory credential cache the registrar reads.

Passwords are never stored: an account keeps the digest HA1 (`user:realm:password` hashed)
for MD5 and for SHA-256 (RFC 8760), which is all the registrar needs to check a REGISTER.
An HA1 is only valid for the realm it was made with, so each row records its realm and the
cache offers only rows of the registrar's realm.

The registrar is synchronous (sans-I/O) and must not wait for the database: it calls
`CredentialCache.lookup`, a dict read. The cache is refilled from the table by `refresh()`
at start-up and every few seconds (accounts added with the CLI while the hotline runs, or by
another node), and at once after changes made through this process's store.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, Column, DateTime, Integer, String, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from callcenter.sip.digest import ha1
from case_core.adapters.orm import metadata

log = logging.getLogger(__name__)

__all__ = [
    "sip_accounts",
    "SipAccount",
    "AccountError",
    "SipAccountStore",
    "CredentialCache",
    "generate_password",
    "check_extension",
]

sip_accounts = Table(
    "sip_accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("extension", String(32), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False, default=""),
    Column("realm", String(128), nullable=False),
    Column("ha1_md5", String(32), nullable=False),
    Column("ha1_sha256", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=False), nullable=False),
)

_EXTENSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,31}")
MIN_PASSWORD = 8
# Readable on a phone's keypad screen: no 0/O, 1/l/I.
_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"


class AccountError(ValueError):
    """A SIP account cannot be created or changed as asked; the message says why."""


@dataclass(frozen=True)
class SipAccount:
    extension: str
    display_name: str
    realm: str
    enabled: bool
    created_at: datetime


def generate_password(length: int = 16) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def check_extension(extension: str) -> str:
    if not _EXTENSION.fullmatch(extension or ""):
        raise AccountError(
            f"extension {extension!r}: use 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return extension


class CredentialCache:
    """HA1 values by (extension, algorithm) for one realm; `lookup` is the registrar's HA1Lookup."""

    def __init__(self, realm: str):
        self.realm = realm
        self._ha1: dict[tuple[str, str], str] = {}
        self.other_realm: tuple[str, ...] = ()

    def lookup(self, user: str, algorithm: str) -> str | None:
        return self._ha1.get((user, algorithm.upper()))

    def extensions(self) -> tuple[str, ...]:
        return tuple(sorted({user for user, _ in self._ha1}))

    def replace(self, rows) -> None:
        """Take the enabled rows of this realm (`rows`: mappings with the table's columns)."""
        table: dict[tuple[str, str], str] = {}
        other = []
        for row in rows:
            if not row["enabled"]:
                continue
            if row["realm"] != self.realm:
                other.append(row["extension"])
                continue
            table[(row["extension"], "MD5")] = row["ha1_md5"]
            table[(row["extension"], "SHA-256")] = row["ha1_sha256"]
        if tuple(other) != self.other_realm and other:
            log.warning(
                "SIP accounts %s were created for another realm than %r and cannot register; add them again",
                ", ".join(other), self.realm,
            )
        self.other_realm = tuple(other)
        self._ha1 = table


class SipAccountStore:
    """Async access to `sip_accounts`; keeps an attached CredentialCache in step with its changes."""

    def __init__(self, engine: AsyncEngine, cache: CredentialCache | None = None):
        self.engine = engine
        self.cache = cache

    async def add(self, extension: str, password: str, *, realm: str, now: datetime,
                  display_name: str = "") -> SipAccount:
        check_extension(extension)
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"password: use at least {MIN_PASSWORD} characters")
        values = dict(
            extension=extension,
            display_name=display_name,
            realm=realm,
            ha1_md5=ha1(extension, realm, password, "MD5"),
            ha1_sha256=ha1(extension, realm, password, "SHA-256"),
            enabled=True,
            created_at=now,
        )
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(sip_accounts).values(**values))
        except IntegrityError:
            raise AccountError(f"extension {extension} already has a SIP account") from None
        await self._changed()
        return SipAccount(extension, display_name, realm, True, now)

    async def list(self) -> list[SipAccount]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(sip_accounts).order_by(sip_accounts.c.extension))).mappings()
            return [
                SipAccount(r["extension"], r["display_name"], r["realm"], r["enabled"], r["created_at"])
                for r in rows
            ]

    async def remove(self, extension: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(sip_accounts).where(sip_accounts.c.extension == extension))
        await self._changed()
        return result.rowcount > 0

    async def set_enabled(self, extension: str, enabled: bool) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(sip_accounts).where(sip_accounts.c.extension == extension).values(enabled=enabled)
            )
        await self._changed()
        return result.rowcount > 0

    async def refresh(self, cache: CredentialCache | None = None) -> CredentialCache:
        """Reload `cache` (default: the attached one) from the table."""
        target = cache if cache is not None else self.cache
        if target is None:
            raise ValueError("no cache to refresh")
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(sip_accounts))).mappings().all()
        target.replace(rows)
        return target

    async def _changed(self) -> None:
        if self.cache is not None:
            await self.refresh()

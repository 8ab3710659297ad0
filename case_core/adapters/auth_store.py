"""Web logins on the database: password checks off the event loop, server-side sessions, API tokens.

- Password hashing (scrypt, ~30 ms and 16 MB each) runs in a small thread pool, never on the
  event loop that carries the 20 ms media tick; an unknown or disabled user is checked
  against a dummy hash so that every refusal costs the same.
- Sessions (`web_sessions`, migration 0017): the cookie holds a random id; the table keeps its
  SHA-256, the user, the creation and last-seen times, the absolute expiry and `revoked_at`.
  A session is valid while not revoked, before its absolute expiry and used within the idle
  limit. Logout, a password change, disabling the user and `hotline user sessions revoke`
  revoke them.
- API tokens (`api_tokens`): SHA-256 of the token, a scope (`read`, `write`, `admin`), an
  optional expiry and `revoked_at`.
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    delete,
    false,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from case_core import security
from case_core.adapters import orm
from case_core.adapters.sqlalchemy_repo import NotFound, UserView

__all__ = ["AuthStore", "TOKEN_SCOPES", "TokenInfo", "web_sessions"]

# read: GET/HEAD only; write: everything the user's role allows except admin-only routes;
# admin: everything the user's role allows (the audit log, …).
TOKEN_SCOPES = ("read", "write", "admin")

web_sessions = Table(
    "web_sessions",
    orm.metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=False), nullable=False),
    Column("last_seen_at", DateTime(timezone=False), nullable=False),
    Column("expires_at", DateTime(timezone=False), nullable=False),  # absolute
    Column("revoked_at", DateTime(timezone=False), nullable=True),
    Column("source_ip", String(64), nullable=False),
    Column("user_agent", String(255), nullable=False),
)
Index("ix_web_sessions_user_id", web_sessions.c.user_id)

# last_seen_at is written at most this often per session (a write per request is wasted
# work on SQLite's single connection).
TOUCH_EVERY = timedelta(seconds=60)
# Ended sessions are deleted this long after they ended (kept a while for inspection).
KEEP_ENDED = timedelta(days=7)


@dataclass(frozen=True)
class TokenInfo:
    id: int
    username: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.username, "scope": self.scope, "created_at": self.created_at,
                "expires_at": self.expires_at, "revoked_at": self.revoked_at}


def _user_view(row) -> UserView:
    return UserView(row.id, row.username, row.display_name, row.role, row.department)


_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = security.hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def _check(password: str, stored: str | None) -> bool:
    """Runs in a worker thread: the same scrypt work whether or not the user exists."""
    ok = security.verify_password(password, stored or _dummy_hash())
    return ok and stored is not None


class AuthStore:
    def __init__(self, engine: AsyncEngine, executor: ThreadPoolExecutor | None = None,
                 thread_initializer: Callable[[], None] | None = None):
        self.engine = engine
        # Two threads: scrypt releases the GIL, and two at a time bound its CPU and memory.
        # The server passes callcenter.cpus.background_thread: the threads run nicer than the
        # event loop, which then wins the core when the media tick is due.
        self.executor = executor or ThreadPoolExecutor(max_workers=2, thread_name_prefix="password-hash",
                                                       initializer=thread_initializer)

    async def hash_password(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self.executor, security.hash_password, password)

    async def verify_login(self, username: str, password: str) -> UserView | None:
        """The user when the password matches and the user is not disabled; None otherwise."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(orm.users).where(orm.users.c.username == username))).first()
        stored = None if row is None else row.password_hash
        ok = await asyncio.get_running_loop().run_in_executor(self.executor, _check, password, stored)
        if not ok or row is None or row.disabled:
            return None
        return _user_view(row)

    # -- users -----------------------------------------------------------------------
    async def set_disabled(self, username: str, disabled: bool, now: datetime) -> UserView | None:
        """Disable (sessions revoked, tokens refused) or enable a user; None if there is none."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(orm.users).where(orm.users.c.username == username))).first()
            if row is None:
                return None
            await conn.execute(update(orm.users).where(orm.users.c.id == row.id).values(disabled=disabled))
            if disabled:
                await conn.execute(update(web_sessions).where(web_sessions.c.user_id == row.id,
                                                             web_sessions.c.revoked_at.is_(None))
                                   .values(revoked_at=now))
        return _user_view(row)

    async def set_password_hash(self, username: str, password_hash: str, now: datetime) -> int:
        """Store a new password hash and revoke the user's sessions; the count revoked."""
        async with self.engine.begin() as conn:
            uid = (await conn.execute(select(orm.users.c.id).where(orm.users.c.username == username))
                   ).scalar_one_or_none()
            if uid is None:
                raise NotFound(f"user {username!r} does not exist")
            await conn.execute(update(orm.users).where(orm.users.c.id == uid).values(password_hash=password_hash))
            result = await conn.execute(
                update(web_sessions).where(web_sessions.c.user_id == uid, web_sessions.c.revoked_at.is_(None))
                .values(revoked_at=now))
        return result.rowcount

    async def is_disabled(self, username: str) -> bool | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(orm.users.c.disabled).where(orm.users.c.username == username))
                    ).scalar_one_or_none()

    # -- sessions ----------------------------------------------------------------------
    async def create_session(self, user: UserView, now: datetime, *, absolute_s: float, source_ip: str = "",
                             user_agent: str = "") -> str:
        """A new session for the user; returns the opaque id for the cookie."""
        session_id = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            # Keep the table small: sessions that ended a while ago go.
            await conn.execute(delete(web_sessions).where(or_(
                web_sessions.c.expires_at < now - KEEP_ENDED, web_sessions.c.revoked_at < now - KEEP_ENDED)))
            await conn.execute(insert(web_sessions).values(
                id_sha256=security.token_digest(session_id), user_id=user.id, created_at=now, last_seen_at=now,
                expires_at=now + timedelta(seconds=absolute_s), revoked_at=None,
                source_ip=(source_ip or "")[:64], user_agent=(user_agent or "")[:255]))
        return session_id

    async def session_user(self, session_id: str | None, now: datetime, *, idle_s: float,
                           touch: bool = True) -> UserView | None:
        """The user of a live session (and, with `touch`, its last use noted); None when ended or unknown."""
        if not session_id or len(session_id) > 128:
            return None
        digest = security.token_digest(session_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(orm.users, web_sessions.c.last_seen_at)
                .join(web_sessions, web_sessions.c.user_id == orm.users.c.id)
                .where(web_sessions.c.id_sha256 == digest, web_sessions.c.revoked_at.is_(None),
                       web_sessions.c.expires_at > now, orm.users.c.disabled == false())
            )).first()
        if row is None or now - row.last_seen_at > timedelta(seconds=idle_s):
            return None
        if touch and now - row.last_seen_at >= TOUCH_EVERY:
            async with self.engine.begin() as conn:
                await conn.execute(update(web_sessions).where(web_sessions.c.id_sha256 == digest)
                                   .values(last_seen_at=now))
        return _user_view(row)

    async def revoke_session(self, session_id: str | None, now: datetime) -> bool:
        if not session_id or len(session_id) > 128:
            return False
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(web_sessions).where(web_sessions.c.id_sha256 == security.token_digest(session_id),
                                           web_sessions.c.revoked_at.is_(None)).values(revoked_at=now))
        return result.rowcount > 0

    async def revoke_user_sessions(self, username: str, now: datetime) -> int:
        """Revoke every live session of the user; the count revoked. NotFound for no such user."""
        async with self.engine.begin() as conn:
            uid = (await conn.execute(select(orm.users.c.id).where(orm.users.c.username == username))
                   ).scalar_one_or_none()
            if uid is None:
                raise NotFound(f"user {username!r} does not exist")
            result = await conn.execute(
                update(web_sessions).where(web_sessions.c.user_id == uid, web_sessions.c.revoked_at.is_(None))
                .values(revoked_at=now))
        return result.rowcount

    # -- API tokens --------------------------------------------------------------------
    async def create_token(self, username: str, now: datetime, *, scope: str = "write",
                           expires_at: datetime | None = None) -> tuple[int, str]:
        """(id, token) of a new token; only its SHA-256 is stored."""
        if scope not in TOKEN_SCOPES:
            raise ValueError(f"scope must be one of {', '.join(TOKEN_SCOPES)}")
        token = security.new_token()
        async with self.engine.begin() as conn:
            uid = (await conn.execute(select(orm.users.c.id).where(orm.users.c.username == username))
                   ).scalar_one_or_none()
            if uid is None:
                raise NotFound(f"user {username!r} does not exist")
            token_id = (await conn.execute(
                insert(orm.api_tokens).values(user_id=uid, token_sha256=security.token_digest(token), created_at=now,
                                              scope=scope, expires_at=expires_at, revoked_at=None)
                .returning(orm.api_tokens.c.id)
            )).scalar_one()
        return token_id, token

    async def token_user(self, token: str, now: datetime) -> tuple[UserView, str] | None:
        """(user, scope) for a token that is neither revoked nor expired, of a user not disabled."""
        if not token or len(token) > 256:
            return None
        t = orm.api_tokens
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(orm.users, t.c.scope).join(t, t.c.user_id == orm.users.c.id)
                .where(t.c.token_sha256 == security.token_digest(token), t.c.revoked_at.is_(None),
                       or_(t.c.expires_at.is_(None), t.c.expires_at > now), orm.users.c.disabled == false())
            )).first()
        return None if row is None else (_user_view(row), row.scope)

    async def list_tokens(self, username: str | None = None) -> list[TokenInfo]:
        t = orm.api_tokens
        query = select(t, orm.users.c.username).join(orm.users, t.c.user_id == orm.users.c.id).order_by(t.c.id)
        if username:
            query = query.where(orm.users.c.username == username)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [TokenInfo(r.id, r.username, r.scope, r.created_at, r.expires_at, r.revoked_at) for r in rows]

    async def revoke_tokens(self, now: datetime, *, token: str | None = None, token_id: int | None = None,
                            username: str | None = None) -> list[int]:
        """Revoke one token (by its text or id) or all of a user's; the ids revoked."""
        t = orm.api_tokens
        where: list[Any] = [t.c.revoked_at.is_(None)]
        if token is not None:
            where.append(t.c.token_sha256 == security.token_digest(token))
        elif token_id is not None:
            where.append(t.c.id == token_id)
        elif username is not None:
            where.append(t.c.user_id.in_(select(orm.users.c.id).where(orm.users.c.username == username)))
        else:
            raise ValueError("revoke_tokens needs a token, an id or a user")
        async with self.engine.begin() as conn:
            ids = list((await conn.execute(select(t.c.id).where(*where))).scalars())
            if ids:
                await conn.execute(update(t).where(t.c.id.in_(ids)).values(revoked_at=now))
        return ids

"""Users and API tokens of `SqlRepository` (the web's sessions are in `auth_store.py`).

A mixin of `case_core.adapters.sqlalchemy_repo.SqlRepository`, which brings `self.engine`."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from case_core import security
from case_core.adapters import orm
from case_core.views import NotFound, UserView


def _user_view(row) -> UserView:
    return UserView(row.id, row.username, row.display_name, row.role, row.department, bool(row.disabled))


async def _hash_in_thread(password: str) -> str:
    return await asyncio.to_thread(security.hash_password, password)


class UsersSql:
    engine: AsyncEngine

    def auth_store(self, thread_initializer=None):
        """Logins, sessions and tokens on this repository's engine (`auth_store.AuthStore`):
        what the web uses unless the composition root hands in its own."""
        from case_core.adapters.auth_store import AuthStore  # it imports this package's views

        return AuthStore(self.engine, thread_initializer=thread_initializer)

    # -- users and tokens ---------------------------------------------------------------
    async def create_user(
        self, *, username: str, password: str, role: str, display_name: str = "", now: datetime,
        department: str | None = None,
    ) -> UserView:
        """Create the user; an existing username is left as it is and returned."""
        existing_user = await self.get_user(username)
        if existing_user is not None:  # no hash spent on a user that exists (the demo seed at each start)
            return existing_user
        password_hash = await self.hash_password(password)  # before the transaction: no connection held
        async with self.engine.begin() as conn:
            existing = (
                await conn.execute(select(orm.users.c.id).where(orm.users.c.username == username))
            ).scalar_one_or_none()
            if existing is None:
                uid = (
                    await conn.execute(
                        insert(orm.users)
                        .values(
                            username=username,
                            display_name=display_name or username,
                            role=role,
                            password_hash=password_hash,
                            created_at=now,
                            department=department or None,
                        )
                        .returning(orm.users.c.id)
                    )
                ).scalar_one()
        if existing is not None:
            # Read after the transaction closed: SQLite's pool has one connection, and asking
            # for a second one while holding it waits forever (the second `make run` hung so).
            return await self.get_user(username)  # type: ignore[return-value]
        return UserView(uid, username, display_name or username, role, department or None)

    async def update_user(self, username: str, *, role: str | None = None, display_name: str | None = None,
                          department: str | None = None, clear_department: bool = False,
                          password: str | None = None) -> UserView | None:
        """Change what is given; None if there is no such user."""
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = role
        if display_name is not None:
            values["display_name"] = display_name
        if department is not None or clear_department:
            values["department"] = None if clear_department else department
        if password is not None:
            values["password_hash"] = await self.hash_password(password)
        if values:
            async with self.engine.begin() as conn:
                await conn.execute(update(orm.users).where(orm.users.c.username == username).values(**values))
        return await self.get_user(username)

    async def list_users(self) -> list[UserView]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(orm.users).order_by(orm.users.c.username))).all()
        return [_user_view(r) for r in rows]

    async def get_user(self, username: str) -> UserView | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(orm.users).where(orm.users.c.username == username))).first()
        return None if row is None else _user_view(row)

    async def check_password(self, username: str, password: str) -> UserView | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(orm.users).where(orm.users.c.username == username))).first()
        if row is None or not security.verify_password(password, row.password_hash):
            return None
        return _user_view(row)

    async def create_token(self, username: str, now: datetime) -> str:
        user = await self.get_user(username)
        if user is None:
            raise NotFound(f"user {username!r} does not exist")
        token = security.new_token()
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(orm.api_tokens).values(
                    user_id=user.id, token_sha256=security.token_digest(token), created_at=now
                )
            )
        return token

    async def user_for_token(self, token: str) -> UserView | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(orm.users)
                    .join(orm.api_tokens, orm.api_tokens.c.user_id == orm.users.c.id)
                    .where(orm.api_tokens.c.token_sha256 == security.token_digest(token),
                           orm.api_tokens.c.revoked_at.is_(None), orm.users.c.disabled.is_(False))
                )
            ).first()
        return None if row is None else _user_view(row)

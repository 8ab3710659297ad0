"""Sessions, tokens, disabled users and login checks in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from case_core.adapters.auth_store import AuthStore
from case_core.adapters.sqlalchemy_repo import NotFound

T0 = datetime(2026, 12, 7, 9, 0)
IDLE = 1800


@pytest.fixture
async def store(repo):
    await repo.create_user(username="agent1", password="pw-123456", role="agent", now=T0)
    await repo.create_user(username="admin", password="pw-123456", role="admin", now=T0)
    s = AuthStore(repo.engine)
    yield s
    s.executor.shutdown()


async def test_login_check_refuses_wrong_unknown_and_disabled(store):
    """Right password: the user; wrong password, unknown name or a disabled user: None."""
    assert (await store.verify_login("agent1", "pw-123456")).username == "agent1"
    assert await store.verify_login("agent1", "wrong") is None
    assert await store.verify_login("nobody", "pw-123456") is None
    await store.set_disabled("agent1", True, T0)
    assert await store.verify_login("agent1", "pw-123456") is None
    assert await store.is_disabled("agent1") is True


async def test_sessions_expire_and_are_revoked(store):
    """A session lives while used within the idle limit and before its absolute expiry; revocations end it."""
    agent = await store.verify_login("agent1", "pw-123456")
    sid = await store.create_session(agent, T0, absolute_s=3600, source_ip="127.0.0.1", user_agent="x")
    assert (await store.session_user(sid, T0 + timedelta(minutes=20), idle_s=IDLE)).username == "agent1"
    assert await store.session_user(sid, T0 + timedelta(minutes=49), idle_s=IDLE) is not None  # touched at 20
    assert await store.session_user(sid, T0 + timedelta(minutes=61), idle_s=IDLE) is None  # absolute
    sid = await store.create_session(agent, T0, absolute_s=3600)
    assert await store.session_user(sid, T0 + timedelta(minutes=31), idle_s=IDLE) is None  # idle
    sid = await store.create_session(agent, T0, absolute_s=3600)
    assert await store.revoke_session(sid, T0) and await store.session_user(sid, T0, idle_s=IDLE) is None
    a, b = [await store.create_session(agent, T0, absolute_s=3600) for _ in range(2)]
    assert await store.revoke_user_sessions("agent1", T0) == 4  # every one not revoked yet (2 had lapsed)
    assert await store.session_user(a, T0, idle_s=IDLE) is None and await store.session_user(b, T0, idle_s=IDLE) is None
    with pytest.raises(NotFound):
        await store.revoke_user_sessions("nobody", T0)
    assert await store.session_user("made-up", T0, idle_s=IDLE) is None


async def test_password_change_revokes_sessions(store):
    """A new password hash ends the user's sessions and the old password stops working."""
    agent = await store.verify_login("agent1", "pw-123456")
    sid = await store.create_session(agent, T0, absolute_s=3600)
    assert await store.set_password_hash("agent1", await store.hash_password("new-pass-123"), T0) == 1
    assert await store.session_user(sid, T0, idle_s=IDLE) is None
    assert await store.verify_login("agent1", "pw-123456") is None
    assert await store.verify_login("agent1", "new-pass-123") is not None


async def test_tokens_scope_expiry_revoke_and_disabled_users(store):
    """A token answers with its scope until it expires or is revoked, and never for a disabled user."""
    tid, token = await store.create_token("admin", T0, scope="read", expires_at=T0 + timedelta(days=1))
    user, scope = await store.token_user(token, T0)
    assert user.username == "admin" and scope == "read"
    assert await store.token_user(token, T0 + timedelta(days=1, seconds=1)) is None
    _, forever = await store.create_token("agent1", T0)
    assert (await store.token_user(forever, T0 + timedelta(days=3650)))[1] == "write"
    await store.set_disabled("agent1", True, T0)
    assert await store.token_user(forever, T0) is None
    await store.set_disabled("agent1", False, T0)
    assert await store.revoke_tokens(T0, username="agent1") != []
    assert await store.token_user(forever, T0) is None
    assert await store.revoke_tokens(T0, token_id=tid) == [tid]
    assert await store.revoke_tokens(T0, token_id=tid) == []
    listed = {t.id: t for t in await store.list_tokens()}
    assert listed[tid].revoked_at == T0 and listed[tid].scope == "read"
    with pytest.raises(ValueError):
        await store.create_token("admin", T0, scope="root")

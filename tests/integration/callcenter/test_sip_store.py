"""SIP accounts in the database (SQLite and PostgreSQL), the registrar's credential cache, and
`hotline sip account …`."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from sqlalchemy import select

from callcenter import cli
from callcenter.sip.digest import ha1
from callcenter.sip_store import AccountError, CredentialCache, SipAccountStore, sip_accounts
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import make_engine, sync_url

NOW = datetime(2026, 11, 21, 9, 0)


@pytest.fixture
async def store(db_url):
    migrate.upgrade(sync_url(db_url))
    s = SipAccountStore(make_engine(db_url), CredentialCache("hotline"))
    yield s
    await s.engine.dispose()


async def _rows(store):
    async with store.engine.connect() as conn:
        return (await conn.execute(select(sip_accounts))).mappings().all()


async def test_account_keeps_both_ha1s_and_never_the_password(store):
    """A new account stores MD5 and SHA-256 HA1s for its realm; the password appears nowhere."""
    await store.add("1001", "s3cret-pass", realm="hotline", now=NOW, display_name="张三")
    [row] = await _rows(store)
    assert row["ha1_md5"] == ha1("1001", "hotline", "s3cret-pass", "MD5")
    assert row["ha1_sha256"] == ha1("1001", "hotline", "s3cret-pass", "SHA-256")
    assert (row["display_name"], row["realm"], row["enabled"], row["created_at"]) == ("张三", "hotline", True, NOW)
    assert all("s3cret-pass" not in str(v) for v in row.values())


async def test_cache_follows_changes_made_through_the_store(store):
    """The attached cache answers lookups after add, and forgets an account removed or disabled."""
    cache = store.cache
    assert cache.lookup("1001", "MD5") is None
    await store.add("1001", "password1", realm="hotline", now=NOW)
    await store.add("1002", "password2", realm="hotline", now=NOW)
    assert cache.lookup("1001", "MD5") == ha1("1001", "hotline", "password1", "MD5")
    assert cache.lookup("1001", "sha-256") == ha1("1001", "hotline", "password1", "SHA-256")
    assert await store.set_enabled("1002", False)
    assert cache.lookup("1002", "MD5") is None
    assert await store.remove("1001")
    assert cache.lookup("1001", "SHA-256") is None
    assert not await store.remove("1001")
    assert cache.extensions() == ()


async def test_refresh_sees_accounts_added_by_another_process(store, db_url):
    """A second store (another process: the CLI) adds an account; refresh() makes it known."""
    other = SipAccountStore(make_engine(db_url))
    try:
        await other.add("2001", "password9", realm="hotline", now=NOW)
    finally:
        await other.engine.dispose()
    assert store.cache.lookup("2001", "MD5") is None
    await store.refresh()
    assert store.cache.lookup("2001", "MD5") == ha1("2001", "hotline", "password9", "MD5")


async def test_accounts_of_another_realm_are_not_offered(store, db_url):
    """An HA1 made for another realm cannot verify a digest here, so the cache leaves it out."""
    await store.add("3001", "password3", realm="oldrealm", now=NOW)
    await store.add("3002", "password4", realm="hotline", now=NOW)
    assert store.cache.lookup("3001", "MD5") is None
    assert store.cache.other_realm == ("3001",)
    assert store.cache.extensions() == ("3002",)


@pytest.mark.parametrize(
    "extension, password, fragment",
    [("1001", "short", "at least 8"), ("a b", "password1", "extension 'a b'"), ("", "password1", "extension ''"),
     ("x" * 33, "password1", "1-32")],
)
async def test_bad_accounts_are_refused_with_a_reason(store, extension, password, fragment):
    """Short passwords and odd extensions raise AccountError naming the problem; nothing is stored."""
    with pytest.raises(AccountError, match=re.escape(fragment)):
        await store.add(extension, password, realm="hotline", now=NOW)
    assert await _rows(store) == []


async def test_duplicate_extension_is_refused(store):
    """Adding an extension twice is an AccountError, and the first password still holds."""
    await store.add("1001", "password1", realm="hotline", now=NOW)
    with pytest.raises(AccountError, match="already has a SIP account"):
        await store.add("1001", "password2", realm="hotline", now=NOW)
    assert store.cache.lookup("1001", "MD5") == ha1("1001", "hotline", "password1", "MD5")


def _config(tmp_path, realm="hotline"):
    cfg = tmp_path / "h.toml"
    cfg.write_text(f'[sip]\nrealm = "{realm}"\n[database]\nurl = "sqlite:///{tmp_path / "h.db"}"\n', encoding="utf-8")
    return str(cfg)


def test_cli_add_prints_a_generated_password_that_matches_the_stored_hash(tmp_path, capsys):
    """`hotline sip account add 1001` prints a password whose HA1 (in the config's realm) is the stored one."""
    cfg = _config(tmp_path, realm="city.example")
    assert cli.main(["sip", "account", "add", "1001", "--name", "李四", "--config", cfg]) == 0
    out = capsys.readouterr().out
    password = re.search(r"password: (\S+)", out).group(1)
    assert len(password) >= 12
    import sqlite3

    with sqlite3.connect(tmp_path / "h.db") as db:
        md5, sha, realm, name = db.execute(
            "select ha1_md5, ha1_sha256, realm, display_name from sip_accounts where extension='1001'").fetchone()
    assert (realm, name) == ("city.example", "李四")
    assert md5 == ha1("1001", "city.example", password, "MD5")
    assert sha == ha1("1001", "city.example", password, "SHA-256")


def test_cli_list_and_remove(tmp_path, capsys):
    """list shows accounts without secrets; remove deletes; removing again is an error with status 2."""
    cfg = _config(tmp_path)
    assert cli.main(["sip", "account", "add", "1002", "--password", "given-pass-1", "--config", cfg]) == 0
    assert "password:" not in capsys.readouterr().out  # the user chose it: not echoed
    assert cli.main(["sip", "account", "list", "--config", cfg]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"^1002\t-\tenabled\t", listing, re.M)
    assert "given-pass-1" not in listing
    assert cli.main(["sip", "account", "remove", "1002", "--config", cfg]) == 0
    capsys.readouterr()
    assert cli.main(["sip", "account", "remove", "1002", "--config", cfg]) == 2
    assert "error: no SIP account 1002" in capsys.readouterr().err
    assert cli.main(["sip", "account", "list", "--config", cfg]) == 0
    assert "no SIP accounts" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, fragment",
    [(["add", "12319"], "is a hotline number"), (["add", "1003", "--password", "abc"], "at least 8")],
)
def test_cli_user_errors_are_one_line(tmp_path, capsys, args, fragment):
    """A DID as extension or a short password: one `error:` line and exit status 2."""
    assert cli.main(["sip", "account", *args, "--config", _config(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and fragment in err[-1]

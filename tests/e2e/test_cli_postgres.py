"""Every `hotline` command on PostgreSQL with one config key ([database] url)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import REPO, query, run_hotline

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

DEMO = REPO / "case_core" / "demo_data"


def test_every_command_works_on_postgresql(pg_url, tmp_path):
    """db upgrade, demo seed, imports, users, SIP accounts, tokens, SMS, evaluate, purge and backup
    all run against a PostgreSQL database and leave their rows there."""
    cfg = tmp_path / "hotline.toml"
    cfg.write_text(f'[database]\nurl = "{pg_url}"\n[storage]\ndir = "{tmp_path / "rec"}"\n', encoding="utf-8")
    c = ["--config", str(cfg)]

    def run(*args: str) -> str:
        return run_hotline(*args, *c).stdout

    assert "database at revision" in run("db", "upgrade")
    run("demo", "seed")
    assert "0 bad rows" in run("import", "departments", str(DEMO / "departments.csv"))
    assert "0 bad rows" in run("import", "categories", str(DEMO / "local_categories.csv"), "--local")
    assert run_hotline("user", "add", "op9", "--role", "agent", "--name", "王五", "--password", "pw-op9-long", *c).returncode == 0
    users = json.loads(run("user", "list", "--json"))
    assert {"admin", "agent1", "op9"} <= {u["username"] for u in users}
    run("sip", "account", "add", "1009", "--password", "pw-1009-long")
    assert "1009" in run("sip", "account", "list")
    assert len(run("token", "create", "op9").strip()) >= 32
    run("sms", "opt-out", "13800000000")
    run("sms", "dispatch", "--once")
    assert "would delete 0 recording" in run("recordings", "purge", "--older-than", "30", "--dry-run")
    figures = json.loads(run("evaluate", "--start", "2026-01-01", "--end", "2026-12-31"))
    assert "groups" in figures
    assert "postgresql database" in run("backup", str(tmp_path / "b.tar"))
    # Everything above is in PostgreSQL.
    assert query(pg_url, "select number from sms_opt_outs") == [("13800000000",)]
    assert query(pg_url, "select extension from sip_accounts where extension = '1009'") == [("1009",)]
    assert query(pg_url, "select display_name from users where username = 'op9'") == [("王五",)]
    assert query(pg_url, "select count(*) from cases")[0][0] >= 2

"""Backup of a running hotline and restore, round trip, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.conftest import fresh_pg_database
from tests.e2e.audio import report_pcap
from tests.e2e.conftest import query, run_hotline, spawn_server, start_server, stop_server
from tests.e2e.peers.pcap import speech_pcm
from tests.e2e.peers.runner import run_sipp

pytestmark = pytest.mark.e2e

CALLER = "13655556666"


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _snapshot(db_url: str) -> dict:
    return {
        "cases": query(db_url, "select number, status, reporter_phone, description, version from cases order by number"),
        "users": query(db_url, "select username, role, display_name, password_hash, department from users order by username"),
        "recordings": query(db_url, "select call_id, kind, channels, duration_s from recordings order by call_id, kind"),
        # Not the status: the running hotline's dispatcher may send a queued SMS between this
        # snapshot and the backup (outside the SMS quiet hours it does so at once).
        "sms": query(db_url, "select to_number, text from sms_outbox order by id"),
    }


@pytest.fixture
def fresh_db_url(db_url, tmp_path):
    """A second, empty database of the same kind, for restoring into another installation."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'hotline.db'}"
        return
    with fresh_pg_database() as url:
        yield url


def test_backup_while_running_then_restore_round_trip(db_url, fresh_db_url, tmp_path, prompts_dir):
    """`hotline backup` of a live hotline, then `hotline restore` into a fresh installation (cases, users,
    recordings identical; the restored hotline plays the recording) and over the old one (refused, then --force)."""
    server = start_server(tmp_path, prompts_dir, db_url=db_url)
    storage = tmp_path / "recordings"
    archive = tmp_path / "hotline-backup.tar.gz"
    try:
        pcap = report_pcap(tmp_path, prompts_dir, speech_pcm("aishell1_BAC009S0002W0122.wav"))
        result = run_sipp("call_report", target=server.sip_target, caller=CALLER, pcap=pcap, timeout=60)
        assert result.returncode == 0, result.log_text[-2000:] + server.log()
        [case] = server.wait_for_cases(reporter_phone=CALLER)
        before, files = _snapshot(db_url), _files(storage)
        assert len(before["recordings"]) == 2 and len(files) == 2, (before, files)

        backed = run_hotline("backup", str(archive), "--config", str(server.config))  # the hotline keeps running
        assert "2 recordings" in backed.stdout and archive.is_file(), backed.stdout
        assert server.alive()
        # Work after the backup: not in it.
        status, later = server.post("/api/cases", {"description": "备份之后的案卷", "reporter_phone": "13700000000"},
                                    token=server.token_for("agent1"))
        assert status == 201, later
    finally:
        stop_server(server)

    # Into a fresh installation: another database, another storage folder.
    other = tmp_path / "restored"
    other.mkdir(exist_ok=True)
    config = other / "hotline.toml"
    config.write_text(server.config.read_text(encoding="utf-8")
                      .replace(db_url, fresh_db_url).replace(str(storage), str(other / "recordings")), encoding="utf-8")
    assert fresh_db_url in config.read_text(encoding="utf-8")
    restored = run_hotline("restore", str(archive), "--config", str(config))
    assert "restored" in restored.stdout, restored.stdout
    assert _snapshot(fresh_db_url) == before
    assert _files(other / "recordings") == files
    paths = [Path(p) for (p,) in query(fresh_db_url, "select path from recordings")]
    assert paths and all(p.is_relative_to(other / "recordings") and p.is_file() for p in paths), paths

    # The restored hotline serves the restored recording, byte for byte.
    sip_port, web_port = server.sip_port, int(server.web_url.rsplit(":", 1)[1].strip("/"))
    token = run_hotline("token", "create", "admin", "--config", str(config)).stdout.strip()
    twin = spawn_server(other, config, sip_port, web_port, token)
    try:
        status, cases = twin.api(f"/api/cases?reporter_phone={CALLER}")
        assert status == 200 and [c["number"] for c in cases] == [case["number"]]
        message = next(r for r in cases[0]["recordings"] if r["kind"] == "message")
        status, wav = twin.api(message["url"])
        assert status == 200 and hashlib.sha256(wav).hexdigest() in files.values()
    finally:
        stop_server(twin)

    # Over the old installation: refused while it holds data, replaced with --force.
    refused = run_hotline("restore", str(archive), "--config", str(server.config), check=False)
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    shutil.rmtree(storage)
    forced = run_hotline("restore", "--force", str(archive), "--config", str(server.config))
    assert "restored" in forced.stdout
    assert _snapshot(db_url) == before  # the case made after the backup is gone
    assert _files(storage) == files


def test_restore_errors_are_one_clear_line(tmp_path):
    """A missing file, a non-archive and a backup of the other database kind each give one `error:` line."""
    cfg = tmp_path / "hotline.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "h.db"}"\n[storage]\ndir = "{tmp_path / "rec"}"\n',
                   encoding="utf-8")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not an archive")
    pg_cfg = tmp_path / "pg.toml"
    pg_cfg.write_text('[database]\nurl = "postgresql://postgres@127.0.0.1:5432/postgres"\n', encoding="utf-8")
    run_hotline("db", "upgrade", "--config", str(cfg))
    archive = tmp_path / "b.tar"
    run_hotline("backup", str(archive), "--config", str(cfg))
    for args, says in [
        (["restore", str(tmp_path / "missing.tar"), "--config", str(cfg)], "no such file"),
        (["restore", str(junk), "--config", str(cfg)], "not a hotline backup"),
        (["restore", str(archive), "--config", str(pg_cfg)], "holds a sqlite database but database.url is postgresql"),
        (["backup", str(tmp_path / "nowhere" / "b.tar"), "--config", str(cfg)], "no such folder"),
    ]:
        proc = run_hotline(*args, check=False)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("error: ") and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr

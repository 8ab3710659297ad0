"""callcenter.backup against real databases: archive checks and the snapshot under concurrent writes."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from callcenter.backup import MANIFEST, BackupError, Target, backup, restore
from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import sync_url

NOW = datetime(2026, 12, 7, 20, 0, tzinfo=timezone.utc)


def _installation(url: str, storage: Path) -> Target:
    migrate.upgrade(sync_url(url))
    (storage / "2026-12-07").mkdir(parents=True)
    (storage / "2026-12-07" / "c1-call.wav").write_bytes(b"RIFF" + bytes(range(256)) * 40)
    return Target(url, storage)


def _rewrite(archive: Path, out: Path, change) -> None:
    """Copy an archive member by member, letting `change(name, data)` alter each one."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = change(member.name, src.extractfile(member).read())
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))


def _rewrite_manifest(archive: Path, out: Path, edit) -> None:
    """Copy an archive with its manifest altered in place by `edit(manifest)`."""

    def change(name, data):
        if name != MANIFEST:
            return data
        manifest = json.loads(data)
        edit(manifest)
        return json.dumps(manifest).encode()

    _rewrite(archive, out, change)


def test_a_file_damaged_in_the_archive_is_refused(sqlite_url, tmp_path):
    """A recording whose bytes differ from the manifest's SHA-256 stops the restore with the file named."""
    source = _installation(sqlite_url, tmp_path / "rec")
    backup(source, tmp_path / "b.tar", now=NOW)
    _rewrite(tmp_path / "b.tar", tmp_path / "bad.tar",
             lambda name, data: data[:-1] + b"x" if name.endswith("c1-call.wav") else data)
    fresh = Target(f"sqlite:///{tmp_path / 'fresh.db'}", tmp_path / "fresh-rec")
    with pytest.raises(BackupError, match="c1-call.wav: damaged"):
        restore(fresh, tmp_path / "bad.tar")
    restored = restore(fresh, tmp_path / "b.tar")  # the intact archive restores
    assert [f["path"] for f in restored["files"]] == ["2026-12-07/c1-call.wav"]
    assert (fresh.storage_dir / "2026-12-07" / "c1-call.wav").read_bytes() == (source.storage_dir / "2026-12-07" / "c1-call.wav").read_bytes()


def test_a_manifest_naming_a_file_outside_the_storage_folder_is_refused(sqlite_url, tmp_path):
    """A crafted manifest cannot make restore write outside [storage] dir."""
    source = _installation(sqlite_url, tmp_path / "rec")
    backup(source, tmp_path / "b.tar", now=NOW)

    _rewrite_manifest(tmp_path / "b.tar", tmp_path / "evil.tar",
                      lambda manifest: manifest["files"][0].update(path="../../outside.wav"))
    fresh = Target(f"sqlite:///{tmp_path / 'fresh.db'}", tmp_path / "fresh-rec")
    with pytest.raises(BackupError, match="outside the storage folder"):
        restore(fresh, tmp_path / "evil.tar")
    assert not (tmp_path / "outside.wav").exists()


@pytest.mark.postgres
def test_postgres_backup_under_concurrent_inserts_restores_exactly_the_counted_rows(pg_url, tmp_path):
    """Rows inserted while pg_dump runs are either all in the dump and the manifest's counts, or in
    neither: the restore's count check (which raises on a difference) passes and matches the manifest."""
    source = _installation(pg_url, tmp_path / "rec")
    engine = create_engine(sync_url(pg_url), poolclass=NullPool)
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            with engine.begin() as conn:
                conn.execute(text("insert into sms_opt_outs (number, at, source) values (:n, :at, 'test')"),
                             {"n": f"139{i:08d}", "at": NOW.replace(tzinfo=None)})

    writer = threading.Thread(target=write)
    writer.start()
    try:
        manifests = [backup(source, tmp_path / f"b{k}.tar", now=NOW) for k in range(3)]
    finally:
        stop.set()
        writer.join()
        engine.dispose()
    written = [m["counts"]["sms_opt_outs"] for m in manifests]
    assert written == sorted(written) and written[-1] > written[0]  # the writer was busy during the backups
    fresh_url = pg_url  # restore the middle backup over the source itself (--force)
    restored = restore(Target(fresh_url, tmp_path / "rec"), tmp_path / "b1.tar", force=True)
    check = create_engine(sync_url(fresh_url), poolclass=NullPool)
    try:
        with check.connect() as conn:
            assert conn.execute(text("select count(*) from sms_opt_outs")).scalar_one() == restored["counts"]["sms_opt_outs"] == written[1]
    finally:
        check.dispose()


def test_a_backup_from_a_newer_schema_is_refused_before_anything_is_written(sqlite_url, tmp_path):
    """An archive whose schema revision this version does not know is refused; the target stays untouched."""
    source = _installation(sqlite_url, tmp_path / "rec")
    backup(source, tmp_path / "b.tar", now=NOW)

    _rewrite_manifest(tmp_path / "b.tar", tmp_path / "newer.tar",
                      lambda manifest: manifest.update(schema_revision="9999"))
    fresh = Target(f"sqlite:///{tmp_path / 'fresh.db'}", tmp_path / "fresh-rec")
    with pytest.raises(BackupError, match="made by a newer hotline"):
        restore(fresh, tmp_path / "newer.tar")
    assert not (tmp_path / "fresh.db").exists() and not (tmp_path / "fresh-rec").exists()

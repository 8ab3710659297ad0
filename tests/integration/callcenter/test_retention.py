"""Recording retention: old audio files go, young ones and everything outside the folder stay."""

from __future__ import annotations

from datetime import datetime, timedelta

from case_core.adapters import migrate
from case_core.adapters.sqlalchemy_repo import SqlRepository, make_engine, sync_url
from callcenter.retention import purge_recordings

NOW = datetime(2026, 11, 21, 12, 0)


async def test_purge_deletes_only_old_files_under_the_storage_folder(sqlite_url, tmp_path):
    """A 200-day-old WAV is deleted, a 2-day-old one and a file outside storage are kept; rows stay."""
    migrate.upgrade(sync_url(sqlite_url))
    repo = SqlRepository(make_engine(sqlite_url))
    storage = tmp_path / "recordings"
    storage.mkdir()
    old, young, outside = storage / "old.wav", storage / "young.wav", tmp_path / "outside.wav"
    for p in (old, young, outside):
        p.write_bytes(b"RIFF" + bytes(100))
    try:
        for path, age in ((old, 200), (young, 2), (outside, 300)):
            await repo.add_recording(call_id=path.stem, kind="call", path=str(path), channels=2, duration_s=1.0,
                                     now=NOW - timedelta(days=age))
        dry = await purge_recordings(repo.engine, storage, older_than=NOW - timedelta(days=180), dry_run=True)
        assert (dry.files, old.exists()) == (1, True)
        report = await purge_recordings(repo.engine, storage, older_than=NOW - timedelta(days=180))
        assert (report.files, report.bytes) == (1, 104)
        assert not old.exists() and young.exists() and outside.exists()
        again = await purge_recordings(repo.engine, storage, older_than=NOW - timedelta(days=180))
        assert (again.files, again.missing) == (0, 1)
    finally:
        await repo.close()

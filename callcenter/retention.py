"""Recording retention: delete call recordings and voice messages older than the city's policy.

The database rows stay (who called, when, how long, which case) so reports and case history
keep their figures; only the audio files go. Run daily by `hotline serve` when
`[storage] retention_days` is set, and on demand by `hotline recordings purge`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from case_core.adapters import orm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PurgeReport:
    files: int
    bytes: int
    missing: int


async def purge_recordings(engine, storage_dir: Path, *, older_than: datetime, dry_run: bool = False) -> PurgeReport:
    """Delete recording files created before `older_than` that live under `storage_dir`."""
    root = Path(storage_dir).resolve()
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(orm.recordings.c.id, orm.recordings.c.path).where(orm.recordings.c.created_at < older_than)
            )
        ).all()
    files = size = missing = 0
    for row in rows:
        path = Path(row.path).resolve()
        if root not in path.parents:
            # Never delete outside the recordings folder, whatever a row says.
            log.warning("recording %s is outside %s; not deleted", row.id, root)
            continue
        try:
            length = path.stat().st_size
        except FileNotFoundError:
            missing += 1
            continue
        if not dry_run:
            path.unlink(missing_ok=True)
        files += 1
        size += length
    return PurgeReport(files, size, missing)


def cutoff(now: datetime, retention_days: int) -> datetime:
    return now - timedelta(days=retention_days)

"""Backup and restore: one archive holding the database and the storage folder (recordings, photos).

`hotline backup FILE` runs beside a live hotline. The database is copied first, consistently:
SQLite through its online backup API (one read snapshot while calls keep writing), PostgreSQL
through `pg_dump` on a snapshot exported by a REPEATABLE READ transaction that also counts the
rows, so the manifest's counts are exactly what the dump holds. Then every file under
`[storage] dir` is added with its SHA-256. A file written after the database copy (a call that
is still going) may be in the archive without its row; never the other way round, except for a
recording the retention policy deletes in between.

Archive (tar; gzip when FILE ends in .gz or .tgz), written to FILE.partial and renamed at the end:
    database/hotline.sqlite | database/hotline.pgdump
    storage/<path under [storage] dir>
    manifest.json   (last: format, database kind, schema revision, row counts, files with sizes
                     and SHA-256, the storage folder the rows' paths point into)

`hotline restore FILE` refuses a database that holds data (or a storage folder with files) unless
`--force`; it replaces the database, writes the files (checking every SHA-256), points recording
paths at this installation's storage folder, checks the row counts against the manifest and
migrates the schema to this version. Stop the hotline before restoring.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

FORMAT = "hotline-backup/1"
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/hotline.sqlite"
PG_MEMBER = "database/hotline.pgdump"
STORAGE_PREFIX = "storage/"
# Tables whose rows mean "this database is in use": restoring over them needs --force.
DATA_TABLES = ("cases", "users", "calls", "recordings", "sms_outbox", "callbacks")
CHUNK = 1 << 20


class BackupError(Exception):
    """A problem the operator can fix; printed as one `error:` line."""


@dataclass(frozen=True)
class Target:
    """Where one installation keeps its data: the database URL and the storage folder."""

    url: str  # as in [database] url, SQLite paths absolute
    storage_dir: Path  # as the server computes it (recording rows hold paths under it)

    @property
    def kind(self) -> str:
        if self.url.startswith("sqlite"):
            return "sqlite"
        if self.url.startswith("postgresql"):
            return "postgresql"
        raise BackupError(f"database.url: backup supports sqlite:/// and postgresql:// URLs, not {self.url!r}")

    def sqlite_path(self) -> Path:
        return Path(re.sub(r"^sqlite(\+\w+)?:///", "", self.url).split("?", 1)[0])

    def libpq_url(self) -> str:
        """The URL for psycopg2, pg_dump and pg_restore (no SQLAlchemy driver name)."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)


def target_of(settings) -> Target:
    return Target(settings.database_url(), settings.path(settings.storage.dir))


# -- backup ---------------------------------------------------------------------------------
def backup(target: Target, dest: Path, *, now: datetime) -> dict:
    """Write one archive of `target` to `dest`; returns the manifest."""
    dest = Path(dest)
    if dest.exists() and dest.is_dir():
        raise BackupError(f"{dest} is a folder; give a file name such as hotline-backup.tar.gz")
    if not dest.parent.exists():
        raise BackupError(f"{dest.parent}: no such folder")
    partial = dest.with_name(dest.name + ".partial")
    mode = "w:gz" if dest.name.endswith((".gz", ".tgz")) else "w"
    with tempfile.TemporaryDirectory(prefix="hotline-backup-") as work:
        member = SQLITE_MEMBER if target.kind == "sqlite" else PG_MEMBER
        db_file = Path(work) / PurePosixPath(member).name
        db = _sqlite_snapshot(target, db_file) if target.kind == "sqlite" else _pg_snapshot(target, db_file)
        try:
            with tarfile.open(partial, mode) as tar:
                tar.add(db_file, arcname=member)
                files = _add_storage(tar, target.storage_dir)
                manifest = {
                    "format": FORMAT,
                    "created_at": now.isoformat(timespec="seconds"),
                    "database": target.kind,
                    "database_file": member,
                    "database_sha256": _sha256_file(db_file),
                    "schema_revision": db["revision"],
                    "counts": db["counts"],
                    "storage_dir": str(target.storage_dir),
                    "files": files,
                }
                raw = json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8")
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime = len(raw), int(now.timestamp())
                tar.addfile(info, io.BytesIO(raw))
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
    return manifest


def _sqlite_snapshot(target: Target, out: Path) -> dict:
    path = target.sqlite_path()
    if not path.is_file():
        raise BackupError(f"database.url: no SQLite database at {path} (run `hotline db upgrade` first)")
    src = sqlite3.connect(path, timeout=60)
    dst = sqlite3.connect(out)
    try:
        src.backup(dst)  # one consistent read snapshot, writers go on (WAL)
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup of {path} failed: {exc}") from exc
    finally:
        src.close()
    try:
        tables = [r[0] for r in dst.execute("select name from sqlite_master where type = 'table' and name not like 'sqlite_%'")]
        counts = {t: dst.execute(f'select count(*) from "{t}"').fetchone()[0] for t in sorted(tables)}
        revision = _revision(lambda sql: dst.execute(sql).fetchall(), tables)
    finally:
        dst.close()
    return {"counts": counts, "revision": revision}


def _pg_snapshot(target: Target, out: Path) -> dict:
    import psycopg2

    url = target.libpq_url()
    try:
        conn = psycopg2.connect(url)
    except psycopg2.Error as exc:
        raise BackupError(f"database.url: cannot connect to PostgreSQL: {str(exc).strip()}") from exc
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            cur.execute("select pg_export_snapshot()")
            snapshot = cur.fetchone()[0]
            tables = _pg_tables(cur)
            counts = {}
            for t in tables:
                cur.execute(f'select count(*) from "{t}"')
                counts[t] = cur.fetchone()[0]
            revision = _revision(lambda sql: (cur.execute(sql), cur.fetchall())[1], tables)
            major = conn.server_version // 10000
        # pg_dump reads the very snapshot the counts came from, while this transaction stays open.
        _run([_pg_tool("pg_dump", major), "--format=custom", "--no-owner", "--no-privileges",
              f"--snapshot={snapshot}", "--file", str(out), "--dbname", url], "pg_dump")
    finally:
        conn.rollback()
        conn.close()
    return {"counts": counts, "revision": revision}


def _pg_tables(cur) -> list[str]:
    cur.execute("select tablename from pg_tables where schemaname = current_schema() order by tablename")
    return [r[0] for r in cur.fetchall()]


def _revision(fetch, tables) -> str | None:
    if "alembic_version" not in tables:
        return None
    rows = fetch("select version_num from alembic_version")
    return ",".join(sorted(r[0] for r in rows)) or None


def _pg_tool(name: str, server_major: int) -> str:
    """The client tool of the server's major version when installed (Debian keeps one per
    version), else the one on PATH if it is at least as new as the server."""
    versioned = Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")
    if versioned.is_file():
        return str(versioned)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed: install postgresql-client-{server_major} (Debian)")
    out = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    if m is None or int(m.group(1)) < server_major:
        raise BackupError(f"{found} ({out.strip()}) is older than the PostgreSQL {server_major} server: "
                          f"install postgresql-client-{server_major}")
    return found


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: {detail[-1] if detail else f'exit status {proc.returncode}'}")


def _add_storage(tar: tarfile.TarFile, storage: Path) -> list[dict]:
    files = []
    if not storage.is_dir():
        return files
    for path in sorted(p for p in storage.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(storage).as_posix()
        try:
            st = path.stat()
            with path.open("rb") as fh:
                reader = _HashingReader(fh, st.st_size)
                info = tarfile.TarInfo(STORAGE_PREFIX + rel)
                info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o644
                tar.addfile(info, reader)
        except FileNotFoundError:
            continue  # deleted meanwhile (retention purge): its row says so too
        files.append({"path": rel, "size": st.st_size, "sha256": reader.digest()})
    return files


class _HashingReader:
    """Reads exactly `size` bytes (a recording still being written grows; its first `size`
    bytes are what the archive holds) and hashes them."""

    def __init__(self, fh, size: int):
        self.fh, self.left, self.h = fh, size, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fh.read(n)
        if len(data) < n:
            raise BackupError(f"{self.fh.name} shrank while being backed up")
        self.left -= len(data)
        self.h.update(data)
        return data

    def digest(self) -> str:
        return self.h.hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# -- restore --------------------------------------------------------------------------------
def read_manifest(archive: Path) -> dict:
    archive = Path(archive)
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    try:
        with tarfile.open(archive, "r:*") as tar:
            member = tar.getmember(MANIFEST)
            manifest = json.loads(tar.extractfile(member).read().decode("utf-8"))
    except tarfile.TarError as exc:
        raise BackupError(f"{archive}: not a hotline backup (not a tar archive)") from exc
    except KeyError as exc:
        raise BackupError(f"{archive}: not a hotline backup (no {MANIFEST})") from exc
    except (ValueError, OSError, EOFError) as exc:
        raise BackupError(f"{archive}: damaged backup ({type(exc).__name__}: {exc})") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{archive}: unknown backup format {manifest.get('format')!r} (this version reads {FORMAT})")
    return manifest


def held_data(target: Target) -> dict[str, int]:
    """Rows in the tables that mean the database is in use (empty dict: safe to restore into)."""
    if target.kind == "sqlite":
        path = target.sqlite_path()
        if not path.exists():
            return {}
        conn = sqlite3.connect(path, timeout=60)
        try:
            tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
            return {t: n for t in DATA_TABLES if t in tables
                    for (n,) in [conn.execute(f'select count(*) from "{t}"').fetchone()] if n}
        finally:
            conn.close()
    import psycopg2

    try:
        conn = psycopg2.connect(target.libpq_url())
    except psycopg2.Error as exc:
        raise BackupError(f"database.url: cannot connect to PostgreSQL: {str(exc).strip()}") from exc
    try:
        with conn.cursor() as cur:
            tables = set(_pg_tables(cur))
            out = {}
            for t in DATA_TABLES:
                if t in tables:
                    cur.execute(f'select count(*) from "{t}"')
                    if n := cur.fetchone()[0]:
                        out[t] = n
            return out
    finally:
        conn.close()


def restore(target: Target, archive: Path, *, force: bool = False) -> dict:
    """Replace `target`'s database and write its storage files from `archive`; returns the manifest."""
    manifest = read_manifest(archive)
    if manifest["database"] != target.kind:
        raise BackupError(f"{archive} holds a {manifest['database']} database but database.url is {target.kind}: "
                          f"restore it into a {manifest['database']} database")
    _check_revision(manifest, archive)
    held = held_data(target)
    existing = [p for p in target.storage_dir.rglob("*") if p.is_file()] if target.storage_dir.is_dir() else []
    if (held or existing) and not force:
        what = ", ".join(f"{n} {t}" for t, n in held.items()) or "no rows"
        raise BackupError(f"the database already holds data ({what}) and {target.storage_dir} holds "
                          f"{len(existing)} file(s); `hotline restore --force {archive}` replaces them")
    with tarfile.open(archive, "r:*") as tar, tempfile.TemporaryDirectory(prefix="hotline-restore-") as work:
        db_file = Path(work) / "database"
        with tar.extractfile(manifest["database_file"]) as src, db_file.open("wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        if _sha256_file(db_file) != manifest["database_sha256"]:
            raise BackupError(f"{archive}: the database copy is damaged (SHA-256 differs from the manifest)")
        _write_files(tar, manifest, target.storage_dir)
        if target.kind == "sqlite":
            _sqlite_restore(target, db_file)
        else:
            _pg_restore(target, db_file)
    _repoint_paths(target, manifest["storage_dir"], str(target.storage_dir))
    counts = _counts(target)
    wrong = {t: (n, counts.get(t)) for t, n in manifest["counts"].items() if counts.get(t) != n}
    if wrong:
        raise BackupError("restored row counts differ from the backup's: "
                          + ", ".join(f"{t} {have} (backup {want})" for t, (want, have) in wrong.items()))
    from case_core.adapters import migrate
    from case_core.adapters.sqlalchemy_repo import sync_url

    migrate.upgrade(sync_url(target.url))  # a backup from an older version gets today's schema
    return manifest


def _check_revision(manifest: dict, archive: Path) -> None:
    """A backup from a newer version has a schema this one cannot migrate: refuse it up front."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from case_core.adapters import migrate

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    for rev in (manifest.get("schema_revision") or "").split(","):
        if not rev:
            continue
        try:
            known = script.get_revision(rev)
        except CommandError:
            known = None
        if known is None:
            raise BackupError(f"{archive} was made by a newer hotline (schema {rev}, this version knows up to "
                              f"{', '.join(migrate.heads())}): restore it with that version or newer")


def _write_files(tar: tarfile.TarFile, manifest: dict, storage: Path) -> None:
    storage.mkdir(parents=True, exist_ok=True)
    root = storage.resolve()
    for entry in manifest["files"]:
        rel = PurePosixPath(entry["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise BackupError(f"the backup names a file outside the storage folder: {entry['path']!r}")
        out = root.joinpath(*rel.parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        tmp = out.with_name(out.name + ".restoring")
        with tar.extractfile(STORAGE_PREFIX + entry["path"]) as src, tmp.open("wb") as dst:
            for block in iter(lambda: src.read(CHUNK), b""):
                h.update(block)
                dst.write(block)
        if h.hexdigest() != entry["sha256"]:
            tmp.unlink()
            raise BackupError(f"{entry['path']}: damaged in the backup (SHA-256 differs from the manifest)")
        os.replace(tmp, out)


def _sqlite_restore(target: Target, db_file: Path) -> None:
    path = target.sqlite_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(db_file)
    dst = sqlite3.connect(path, timeout=60)
    try:
        src.backup(dst)  # replaces every page, also of a database in WAL mode
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite restore into {path} failed: {exc} (is the hotline still running?)") from exc
    finally:
        src.close()
        dst.close()


def _pg_restore(target: Target, db_file: Path) -> None:
    import psycopg2

    url = target.libpq_url()
    conn = psycopg2.connect(url)
    try:
        major = conn.server_version // 10000
        with conn.cursor() as cur:
            # Everything of this installation lives in its schema: start from an empty one.
            cur.execute("select current_schema()")
            schema = cur.fetchone()[0]
            cur.execute(f'drop schema if exists "{schema}" cascade')
            cur.execute(f'create schema "{schema}"')
        conn.commit()
    except psycopg2.Error as exc:
        raise BackupError(f"emptying the database failed: {str(exc).strip()} (is the hotline still running?)") from exc
    finally:
        conn.close()
    _run([_pg_tool("pg_restore", major), "--no-owner", "--no-privileges", "--single-transaction",
          "--exit-on-error", "--dbname", url, str(db_file)], "pg_restore")


def _repoint_paths(target: Target, old: str, new: str) -> None:
    """Rows store absolute paths under the storage folder: point them at this installation's."""
    if old == new:
        return
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.pool import NullPool

    from case_core.adapters.sqlalchemy_repo import sync_url

    engine = create_engine(sync_url(target.url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for table in inspect(conn).get_table_names():
                if any(c["name"] == "path" for c in inspect(conn).get_columns(table)):
                    conn.execute(
                        text(f'update "{table}" set path = :new || substr(path, :n) where substr(path, 1, :len) = :old'),
                        {"new": new, "old": old, "n": len(old) + 1, "len": len(old)},
                    )
    finally:
        engine.dispose()


def _counts(target: Target) -> dict[str, int]:
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.pool import NullPool

    from case_core.adapters.sqlalchemy_repo import sync_url

    engine = create_engine(sync_url(target.url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f'select count(*) from "{t}"')).scalar_one()
                    for t in inspect(conn).get_table_names()}
    finally:
        engine.dispose()


# -- commands -------------------------------------------------------------------------------
def _user_error(exc: BackupError):
    from case_core.errors import UserError

    return UserError(str(exc))


def cmd_backup(settings, args) -> int:
    from zoneinfo import ZoneInfo

    try:
        manifest = backup(target_of(settings), Path(args.file), now=datetime.now(ZoneInfo(settings.ivr.timezone)))
    except BackupError as exc:
        raise _user_error(exc) from exc
    size = Path(args.file).stat().st_size
    counts = manifest["counts"]
    print(f"backup {args.file}: {manifest['database']} database (revision {manifest['schema_revision']}, "
          f"{counts.get('cases', 0)} cases, {counts.get('users', 0)} users, {counts.get('recordings', 0)} recordings), "
          f"{len(manifest['files'])} file(s) from {manifest['storage_dir']}, {size / 1e6:.1f} MB")
    return 0


def cmd_restore(settings, args) -> int:
    try:
        manifest = restore(target_of(settings), Path(args.file), force=args.force)
    except BackupError as exc:
        raise _user_error(exc) from exc
    counts = manifest["counts"]
    print(f"restored {args.file} (made {manifest['created_at']}): {counts.get('cases', 0)} cases, "
          f"{counts.get('users', 0)} users, {len(manifest['files'])} file(s) into {settings.path(settings.storage.dir)}")
    return 0


def register(sub, common) -> None:
    p = sub.add_parser("backup", parents=[common],
                       help="write the database and the recordings/photos into one archive (the hotline may run)")
    p.add_argument("file", help="archive to write (tar; gzip when it ends in .gz or .tgz)")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore", parents=[common],
                       help="restore an archive of `hotline backup` (stop the hotline first)")
    p.add_argument("file", help="archive written by `hotline backup`")
    p.add_argument("--force", action="store_true", help="replace a database that already holds data")
    p.set_defaults(func=cmd_restore)

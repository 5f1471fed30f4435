"""Backups and restores: SQLite through its online backup API, PostgreSQL through its own tools."""
from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path


class BackupError(ValueError):
    """A backup or restore cannot be done as asked; the message says why and nothing was changed."""


# Tables every pbnsec database has had since the first release: a file without one of them is not a pbnsec backup.
CORE_TABLES = frozenset({"practice", "role", "user", "membership", "allowlist_entry", "ip_restriction",
                         "access_request", "grant", "audit_event"})


def _schema_version(con: sqlite3.Connection) -> int | None:
    tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" not in tables:
        return None
    missing = CORE_TABLES - tables
    if missing:
        raise BackupError(f"it has a schema_version table but not pbnsec's {', '.join(sorted(missing))} "
                          "table(s): it is not a pbnsec database.")
    version = con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    if not isinstance(version, int) or version < 1:
        raise BackupError(f"its schema version ({version!r}) is not a pbnsec schema version.")
    return version


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _copy_database(source: Path, dest: Path, replace: bool) -> int | None:
    """Copy a SQLite database, live or not, to dest in one consistent snapshot; returns its schema version."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        src = sqlite3.connect(source, timeout=10)
        out = sqlite3.connect(tmp)
        try:
            # All pages in one step under one read transaction: a consistent snapshot even while the app
            # commits (in WAL mode readers and the writer do not wait for each other).
            src.backup(out)
            out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
            version = _schema_version(out)
        finally:
            out.close()
            src.close()
        _fsync(tmp)
        if replace:
            os.replace(tmp, dest)
        else:
            try:
                os.link(tmp, dest)  # unlike a rename, never replaces a file that appeared meanwhile
            except FileExistsError:
                raise BackupError(f"{dest} already exists: choose another name, or add --force to replace it.") \
                    from None
    finally:
        tmp.unlink(missing_ok=True)
    return version


def backup_sqlite(source: Path, dest: Path, force: bool = False) -> tuple[int, int | None]:
    """Write a consistent copy of the database file to dest; returns its size in bytes and schema version."""
    source, dest = Path(source), Path(dest).absolute()
    if not source.is_file():
        raise BackupError(f"There is no database at {source}.")
    if dest.is_dir():
        raise BackupError(f"{dest} is a folder: give the backup a file name, such as {dest / 'pbnsec-backup.db'}.")
    if not dest.parent.is_dir():
        raise BackupError(f"The folder {dest.parent} does not exist.")
    if dest.exists():
        if not force:
            raise BackupError(f"{dest} already exists: choose another name, or add --force to replace it.")
        if dest.samefile(source):
            raise BackupError(f"{dest} is the database itself: choose another name.")
    version = _copy_database(source, dest, replace=force)
    return dest.stat().st_size, version


def _check_backup(path: Path, shown_as: Path, latest: int) -> int:
    """The schema version of a copy of a backup, after checking it is an intact pbnsec database."""
    con = sqlite3.connect(path)
    try:
        try:
            result = con.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError:
            raise BackupError(f"{shown_as} is not an SQLite database.") from None
        if result != [("ok",)]:
            raise BackupError(f"{shown_as} is damaged (integrity check: {result[0][0]}).")
        try:
            version = _schema_version(con)
        except BackupError as exc:
            raise BackupError(f"{shown_as} is not a pbnsec backup: {exc}") from None
    finally:
        con.close()
    if version is None:
        raise BackupError(f"{shown_as} is not a pbnsec backup: it has no schema_version table.")
    if version > latest:
        raise BackupError(f"{shown_as} is at schema version {version}, newer than this pbnsec knows ({latest}): "
                          "restore it with the release that made it.")
    return version


def _refuse_if_in_use(target: Path) -> None:
    con = sqlite3.connect(target, timeout=2)
    try:
        # Leaving WAL mode needs every other connection closed: a running app process refuses it.
        con.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.OperationalError:
        raise BackupError(f"{target} is in use: stop every pbnsec process first, then restore.") from None
    finally:
        con.close()


def _free_name(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidate, n = path.with_name(f"{path.name}.before-restore-{stamp}"), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.before-restore-{stamp}-{n}")
    return candidate


def restore_sqlite(src: Path, target: Path, latest: int) -> tuple[int, Path]:
    """Replace the database file with the backup src, keeping the old one beside it.

    Returns the backup's schema version and where the replaced database was kept; the caller migrates.
    """
    src, target = Path(src).absolute(), Path(target)
    if not src.is_file():
        raise BackupError(f"There is no file at {src}.")
    if target.exists() and src.samefile(target):
        raise BackupError(f"{src} is the database itself.")
    wal = Path(f"{src}-wal")
    if wal.exists() and wal.stat().st_size:
        raise BackupError(f"{src} has a -wal file beside it, so it is a database in use: back it up with "
                          "`flask --app app backup` and restore that copy.")
    tmp = target.with_name(f".{target.name}.restore-{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)  # checked and installed as this copy, so src itself is never opened or changed
        version = _check_backup(tmp, src, latest)
        if target.exists():
            _refuse_if_in_use(target)
            kept = _free_name(target)
            _copy_database(target, kept, replace=False)
        else:
            kept = None
        # The old database's -wal and -shm would be replayed into the new file.
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        _fsync(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return version, kept


def _pg_connection_args(name: str, params: dict) -> list[str]:
    args = []
    for option, key in (("--host", "host"), ("--port", "port"), ("--username", "user")):
        if params.get(key):
            args.append(f"{option}={params[key]}")
    return args + [f"--dbname={name}"]


def pg_dump_command(name: str, params: dict, dest: Path) -> str:
    """The pg_dump command line that backs up the database to dest (the password is left to PGPASSWORD or .pgpass)."""
    return shlex.join(["pg_dump", "--format=custom", f"--file={dest}", *_pg_connection_args(name, params)])


def pg_restore_command(name: str, params: dict, src: Path) -> str:
    """The pg_restore command line that restores a pg_dump --format=custom backup into the database."""
    return shlex.join(["pg_restore", "--clean", "--if-exists", "--no-owner", *_pg_connection_args(name, params),
                       str(src)])

"""The database handle: one proxy, initialised from PBNSEC_DATABASE_URL by the app factory."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from peewee import DatabaseProxy, SqliteDatabase
from playhouse import db_url

database = DatabaseProxy()

# WAL lets readers carry on while one writer commits; busy_timeout makes a second writer wait, not fail.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "synchronous": "normal",
}


def open_database(url: str, root: Path):
    """A peewee database for a URL; a relative SQLite path is taken from the project root."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path != ":memory:":
            file = Path(path) if Path(path).is_absolute() else root / path
            file.parent.mkdir(parents=True, exist_ok=True)
            path = str(file)
        return SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=10)
    return db_url.connect(url)


SECURITY_CHANGE_LOCK = 0x7062_6E73  # PostgreSQL advisory lock id ("pbns") for security changes


@contextmanager
def change_lock():
    """A transaction holding the write lock from its first statement.

    A check made inside it (would this block the admin? is the allowlist empty?) still holds when the change
    commits, even with another admin or another app process changing things at the same moment.
    """
    if isinstance(database.obj, SqliteDatabase):
        with database.atomic(lock_type="IMMEDIATE") as txn:
            yield txn
    else:
        with database.atomic() as txn:
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (SECURITY_CHANGE_LOCK,))
            yield txn


def init_app(app, root: Path) -> None:
    database.initialize(open_database(app.config["DATABASE_URL"], root))
    # A request connects at its first query (peewee's autoconnect), not up front: /healthz and static files
    # never touch the database, so they keep answering while it is down.

    @app.teardown_appcontext
    def _close(exc):
        if not database.is_closed():
            database.close()

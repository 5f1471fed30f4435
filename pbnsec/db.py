"""The database handle: one proxy, initialised from PBNSEC_DATABASE_URL by the app factory."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from peewee import DatabaseProxy, PeeweeException, SqliteDatabase
from playhouse import db_url

database = DatabaseProxy()


class DatabaseUnavailable(RuntimeError):
    """The database PBNSEC_DATABASE_URL names cannot be opened; the message says which one, why and what to do."""


# WAL lets readers carry on while one writer commits; busy_timeout makes a second writer wait, not fail.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "synchronous": "normal",
}


def missing_sqlite_file(url: str, root: Path) -> Path | None:
    """The SQLite file a URL names when it does not exist yet; None when it exists or is not a SQLite file."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    path = Path(url[len("sqlite:///"):])
    file = path if path.is_absolute() else root / path
    return None if file.exists() else file


# PostgreSQL connections are pooled by default: a new connection per request costs more than the request itself.
# Each can be set in the URL's query string instead (postgresql://…/pbnsec?max_connections=50).
POOL_DEFAULTS = {
    "max_connections": 20,  # per app process; waitress runs 8 threads by default
    "stale_timeout": 300,  # seconds an idle connection is kept
    "timeout": 10,  # seconds a request waits for a free connection before failing
}
# A PostgreSQL server that cannot be reached fails a request in seconds, not after the system's TCP timeout (minutes),
# during which the gate's one thread would answer no app at all.
CONNECT_DEFAULTS = {"connect_timeout": 5}


def open_database(url: str, root: Path):
    """A peewee database for a URL (not connected); a relative SQLite path is taken from the project root, and
    postgresql:// is pooled (postgresql+pool:// with POOL_DEFAULTS; `?pool=false` opts out)."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path != ":memory:":
            path = str(Path(path) if Path(path).is_absolute() else root / path)
        return SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, timeout=10)
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql"):
        if query.pop("pool", "true").lower() != "false":
            scheme += "+pool"
        url = urlunsplit(parts._replace(scheme=scheme, query=urlencode(query)))
    defaults = {k: v for k, v in POOL_DEFAULTS.items() if k not in query} if scheme.endswith("+pool") else {}
    if scheme.startswith(("postgres", "postgresql")):
        defaults.update({k: v for k, v in CONNECT_DEFAULTS.items() if k not in query})
    return db_url.connect(url, **defaults)


def check_database(url: str, root: Path) -> None:
    """Connect once (creating a SQLite file's folder first), so a database that cannot be opened stops the start
    with one line, not the first sign-in."""
    file = missing_sqlite_file(url, root)
    if file is not None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"cannot create the folder {file.parent} for the database: {exc.strerror}. Create it, or set "
                "PBNSEC_DATABASE_URL to a file in a folder pbnsec may write to.") from None
    try:
        database.connect(reuse_if_open=True)
    except PeeweeException as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DatabaseUnavailable(f"cannot open the database {_shown(url, root)} ({reason}). Check that it "
                                  "exists and pbnsec may read and write it, or set PBNSEC_DATABASE_URL.") from None
    finally:
        if not database.is_closed():
            database.close()


SECURITY_CHANGE_LOCK = 0x7062_6E73  # PostgreSQL advisory lock id ("pbns") for security changes


RATE_LIMIT_LOCK = 0x7062_6E72  # ("pbnr") for counting attempts, apart from security changes


@contextmanager
def change_lock(lock_id: int = SECURITY_CHANGE_LOCK):
    """A transaction holding the write lock from its first statement.

    A check made inside it (would this block the admin? is the allowlist empty? is this attempt over the limit?)
    still holds when the change commits, even with another admin or another app process at the same moment.
    """
    if isinstance(database.obj, SqliteDatabase):
        with database.atomic(lock_type="IMMEDIATE") as txn:
            yield txn
    else:
        with database.atomic() as txn:
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
            yield txn


def _shown(url: str, root: Path) -> str:
    """The database as a person names it: the SQLite file, or the URL with its password hidden."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        return f"file {path if path.is_absolute() else root / path}"
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1))
    return parts.geturl()


def release_connection(keep: bool = False) -> None:
    """End of a request: close this thread's connection (a PostgreSQL one goes back to its pool). `keep`: leave a
    SQLite connection open when the request ended well, as the gate's answers do (web/gate.py): opening one (and
    setting its pragmas) costs a millisecond, several times what the gate's whole answer does. It is idle in
    autocommit between requests, holding no lock and no snapshot; the next request of the thread uses it and, unless
    it keeps it too, closes it."""
    kept = keep and isinstance(database.obj, SqliteDatabase) and not database.in_transaction()
    if not database.is_closed() and not kept:
        database.close()


def init_app(app, root: Path, check: bool = True) -> None:
    """Point the models at PBNSEC_DATABASE_URL; `check` connects once now (see check_database)."""
    url = app.config["DATABASE_URL"]
    previous = database.obj
    if previous is not None and hasattr(previous, "close_all"):
        previous.close_all()  # another app in this process (tests, the CLI) leaves no pooled connection open
    database.initialize(open_database(url, root))
    if check:
        check_database(url, root)
    # A request connects at its first query (peewee's autoconnect), not up front: /healthz and static files
    # never touch the database, so they keep answering while it is down.

    @app.teardown_appcontext
    def _close(exc):
        release_connection()

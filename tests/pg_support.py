"""A private PostgreSQL server for the tests: Debian's server binaries (`make test` installs `postgresql` when
missing), a cluster in a temporary folder, listening only on 127.0.0.1 at a free high port, run as an unprivileged
user when the tests run as root; stopped and removed at the end. Durability is switched off: it holds test data."""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"


def server_binaries() -> Path:
    """The newest installed PostgreSQL's bin folder."""
    found = sorted((p for p in PG_ROOT.glob("*/bin") if (p / "postgres").exists()),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError(f"no PostgreSQL server under {PG_ROOT}: `make test` installs Debian's postgresql")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One running server; databases are made from templates and dropped per test."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port

    def url(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def execute(self, *statements: str) -> None:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres")
        con.autocommit = True  # CREATE / DROP DATABASE cannot run in a transaction
        try:
            with con.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            con.close()

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database (a copy of `template` when given); its URL."""
        self.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _connect(self, name: str):
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=name)
        con.autocommit = True
        return con

    def snapshot(self, name: str) -> "Snapshot":
        """Every row of every table of a database, to put back with restore() (much faster than a new database)."""
        con = self._connect(name)
        try:
            with con.cursor() as cur:
                cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
                tables = [t for (t,) in cur.fetchall()]
                rows = {}
                for table in tables:
                    cur.execute(f'SELECT * FROM "{table}"')
                    rows[table] = ([d.name for d in cur.description], cur.fetchall())
        finally:
            con.close()
        return Snapshot(tables, rows)

    def restore(self, name: str, snapshot: "Snapshot") -> None:
        """Put the database back as the snapshot found it: every table emptied, the rows re-inserted, each id
        sequence set past them (in table name order, foreign key triggers off: the snapshot was consistent)."""
        con = self._connect(name)
        try:
            with con.cursor() as cur:
                cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                now = [t for (t,) in cur.fetchall()]
                cur.execute("BEGIN")
                cur.execute("SET LOCAL session_replication_role = replica")  # foreign keys: the rows are whole
                for table in now:  # a few rows each: DELETE is far cheaper than TRUNCATE's new files
                    cur.execute(f'DELETE FROM "{table}"')
                for table in snapshot.tables:
                    columns, rows = snapshot.rows[table]
                    if rows:
                        names = ", ".join(f'"{c}"' for c in columns)
                        marks = ", ".join(["%s"] * len(columns))
                        cur.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
                    if "id" in columns:
                        cur.execute(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                                    f'COALESCE((SELECT MAX(id) FROM "{table}"), 0) + 1, false)')
                cur.execute("COMMIT")
        finally:
            con.close()


class Snapshot:
    def __init__(self, tables: list[str], rows: dict):
        self.tables, self.rows = tables, rows


def _as_unprivileged(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    return ["runuser", "-u", "nobody", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    """Start a private cluster; stop it and remove its folder afterwards."""
    bin_dir = server_binaries()
    folder = Path(tempfile.mkdtemp(prefix="pbnsec-pg-"))
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in (folder, sockets):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    port = _free_port()
    log = folder / "server.log"
    try:
        subprocess.run(_as_unprivileged([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                                         "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "-N"]),
                       check=True, capture_output=True, text=True)
        server = subprocess.Popen(_as_unprivileged([
            str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=64MB",
        ]), stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
        try:
            cluster = Cluster(folder, port)
            _wait_until_ready(cluster, server, log)
            yield cluster
        finally:
            server.terminate()  # smart shutdown would wait for clients; SIGTERM ends their sessions
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_ready(cluster: Cluster, server: subprocess.Popen, log: Path) -> None:
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the test PostgreSQL server stopped at start:\n{log.read_text(errors='replace')}")
        try:
            cluster.execute("SELECT 1")
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test PostgreSQL server did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)

"""Backups and restores: a consistent copy of a running database, and restores that check what they are given."""
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from conftest import PASSWORD, Visitor, make_app, table_rows
from playhouse import db_url
from realworld import HttpVisitor, spawn_app, wait_for_port
from realworld import stop as stop_process

from pbnsec.backups import pg_dump_command, pg_restore_command
from pbnsec.migrations import LATEST

# The backup and restore commands copy the SQLite file; on PostgreSQL they print pg_dump / pg_restore (tested below).
pytestmark = pytest.mark.sqlite_only


def files(folder: Path) -> list[str]:
    """The folder's files, less the -wal and -shm that SQLite makes and removes as connections come and go."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm")))


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def test_a_backup_taken_while_the_server_writes_restores_elsewhere_with_the_same_rows(tmp_path, seeded_database):
    live = tmp_path / "live"
    live.mkdir()
    shutil.copyfile(seeded_database, live / "pbnsec.db")
    server = spawn_app(tmp_path, live / "pbnsec.db")
    wait_for_port(server.port, server.process, server.log)
    port = server.port
    sign_ins, failures, stop = [], [], threading.Event()

    def keep_signing_in():  # each sign-in writes a sign_in row and an audit event
        try:
            while not stop.is_set():
                sign_ins.append(HttpVisitor("127.0.0.1").sign_in(port, "ann@example.com", PASSWORD))
        except Exception as exc:  # surfaced below
            failures.append(exc)

    writer = threading.Thread(target=keep_signing_in)
    writer.start()
    try:
        wait_until(lambda: sign_ins or failures, "a first sign-in")
        app = make_app(live)
        dest = tmp_path / "backup.db"
        finished_before = len(sign_ins)
        result = app.test_cli_runner().invoke(args=["backup", str(dest)])
        during = len(sign_ins)
        wait_until(lambda: len(sign_ins) > during + 1 or failures, "sign-ins after the backup")
    finally:
        stop.set()
        writer.join()
        stop_process(server.process)
    assert not failures

    assert result.exit_code == 0, result.output
    assert result.output == (f"Backed up {live / 'pbnsec.db'} to {dest}: {dest.stat().st_size:,} bytes, "
                             f"schema version {LATEST}.\n")
    assert not Path(f"{dest}-wal").exists()  # one self-contained file
    con = sqlite3.connect(dest)
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    con.close()
    backup, now = table_rows(dest), table_rows(live / "pbnsec.db")
    assert len(backup["sign_in"]) >= finished_before  # commits still in the server's -wal are in it too
    for table, rows in backup.items():
        if table == "rate_limit_hit":
            continue  # each sign-in counts its attempt first and takes it back once the password is right
        assert set(rows) <= set(now[table]), table  # a snapshot of this database...
    assert len(backup["sign_in"]) < len(now["sign_in"])  # ...that did not stop the server writing

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    app = make_app(elsewhere)
    result = app.test_cli_runner().invoke(args=["restore", str(dest)])
    assert result.exit_code == 0, result.output
    kept = list(elsewhere.glob("pbnsec.db.before-restore-*"))
    assert result.output.splitlines() == [
        f"Restored {dest} (schema version {LATEST}) into {elsewhere / 'pbnsec.db'}.",
        f"The database it replaced is kept as {kept[0]}.",
        "Start pbnsec again.",
    ]
    assert table_rows(elsewhere / "pbnsec.db") == backup
    assert table_rows(kept[0])["user"] == []  # the empty database that was there before
    assert Visitor(app).login("ann@example.com").status_code == 303


def test_backup_refuses_a_file_that_exists_unless_forced(app, tmp_path):
    dest = tmp_path / "backup.db"
    dest.write_text("last week's backup")
    runner = app.test_cli_runner()

    result = runner.invoke(args=["backup", str(dest)])
    assert result.exit_code != 0
    assert result.output.strip() == f"Error: {dest} already exists: choose another name, or add --force to replace it."
    assert dest.read_text() == "last week's backup"

    result = runner.invoke(args=["backup", "--force", str(dest)])
    assert result.exit_code == 0, result.output
    assert table_rows(dest) == table_rows(tmp_path / "pbnsec.db")


@pytest.mark.parametrize("where,reason", [
    ("missing/backup.db", "missing does not exist"),
    (".", "is a folder: give the backup a file name"),
])
def test_backup_refuses_a_place_it_cannot_write_and_writes_nothing(app, tmp_path, where, reason):
    before = files(tmp_path)
    result = app.test_cli_runner().invoke(args=["backup", str(tmp_path / where)])
    assert result.exit_code != 0
    assert reason in result.output and len(result.output.strip().splitlines()) == 1
    assert files(tmp_path) == before


def missing(app, path: Path) -> Path:
    return path


def notes(app, path: Path) -> Path:
    path.write_text("not a database, just notes\n" * 200)
    return path


def newer_backup(app, path: Path) -> Path:
    assert app.test_cli_runner().invoke(args=["backup", str(path)]).exit_code == 0
    con = sqlite3.connect(path)
    con.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'from the future', '2030-01-01')",
                (LATEST + 1,))
    con.commit()
    con.close()
    return path


def no_version_table(app, path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    return path


def only_a_version_table(app, path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_version (version INTEGER, name TEXT, applied_at TEXT)")
    con.execute("INSERT INTO schema_version VALUES (6, 'x', 'y')")
    con.commit()
    con.close()
    return path


def odd_version(app, path: Path) -> Path:
    assert app.test_cli_runner().invoke(args=["backup", str(path)]).exit_code == 0
    con = sqlite3.connect(path)
    con.execute("DELETE FROM schema_version")
    con.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (-5, 'odd', '2030-01-01')")
    con.commit()
    con.close()
    return path


@pytest.mark.parametrize("make_source,reason", [
    (missing, "There is no file at"),
    (only_a_version_table, "is not a pbnsec backup: it has a schema_version table but not pbnsec's"),
    (odd_version, "is not a pbnsec backup: its schema version (-5) is not a pbnsec schema version"),
    (notes, "is not an SQLite database"),
    (no_version_table, "is not a pbnsec backup: it has no schema_version table"),
    (newer_backup, f"is at schema version {LATEST + 1}, newer than this pbnsec knows ({LATEST})"),
], ids=["missing", "version-table-only", "odd-version", "not-a-database", "not-pbnsec", "newer"])
def test_restore_refuses_bad_input_in_one_line_and_changes_nothing(app, tmp_path, make_source, reason):
    (tmp_path / "source").mkdir()
    source = make_source(app, tmp_path / "source" / "backup.db")
    before_rows, before_files = table_rows(tmp_path / "pbnsec.db"), files(tmp_path)

    result = app.test_cli_runner().invoke(args=["restore", str(source)])
    assert result.exit_code != 0
    assert reason in result.output and len(result.output.strip().splitlines()) == 1
    assert table_rows(tmp_path / "pbnsec.db") == before_rows
    assert files(tmp_path) == before_files  # no copy kept, no temporary file left


def test_restore_refuses_while_another_process_has_the_database_open(app, tmp_path):
    backup = tmp_path / "backup.db"
    assert app.test_cli_runner().invoke(args=["backup", str(backup)]).exit_code == 0
    before_files = files(tmp_path)
    running = sqlite3.connect(tmp_path / "pbnsec.db")  # what a serving app process holds
    running.execute('SELECT COUNT(*) FROM "user"').fetchone()
    try:
        result = app.test_cli_runner().invoke(args=["restore", str(backup)])
    finally:
        running.close()
    assert result.exit_code != 0
    assert "is in use: stop every pbnsec process first, then restore." in result.output
    assert files(tmp_path) == before_files


def test_postgresql_backup_and_restore_are_the_postgresql_tools_without_the_password():
    params = db_url.parse("postgresql://pbnsec:s3cret@db.example.org:5433/pbnsec_main")
    name = params.pop("database")
    dump = pg_dump_command(name, params, Path("/backups/pbnsec 2026.dump"))
    restore = pg_restore_command(name, params, Path("/backups/pbnsec 2026.dump"))
    assert dump == ("pg_dump --format=custom '--file=/backups/pbnsec 2026.dump' --host=db.example.org --port=5433 "
                    "--username=pbnsec --dbname=pbnsec_main")
    assert restore == ("pg_restore --clean --if-exists --no-owner --host=db.example.org --port=5433 "
                       "--username=pbnsec --dbname=pbnsec_main '/backups/pbnsec 2026.dump'")
    assert "s3cret" not in dump + restore

"""Schema migrations: a database from any earlier commit upgrades on start, keeps its data and lets people in."""
import sqlite3
from pathlib import Path

import pytest
from conftest import Visitor, make_app, restrict, table_rows

from pbnsec import migrations
from pbnsec.domain.users import create_user
from pbnsec.migrations import LATEST, SchemaError
from pbnsec.models import Practice, SchemaVersion, User

SCHEMAS = Path(__file__).resolve().parents[1] / "fixtures" / "schemas"
# The commits that changed the schema, oldest first; the first is the first release.
SCHEMA_COMMITS = ["ad6ec25", "79e8c1f", "c023d00", "2d0aa47", "5f03da2", "7b16008"]
FIRST_RELEASE = SCHEMA_COMMITS[0]
# Commits whose databases record their schema version, with it: what happened to such a database later is
# upgrade()'s doing, which is what these tests check, so they are tested as made and never chained.
VERSIONED_COMMITS = {"a4509cc": 5}

# werkzeug's hash of conftest.PASSWORD, as the first release stored it
OLD_HASH = ("scrypt:32768:8:1$7prpUPoVjCLKg4JV$e7a44ef49835ddf526ea639cac1149df30e60f1e173685447d5a0017de5a3d5b06fc684"
            "64a4881ffe51bc4ade8a1866ee1a82dfda2598c7eac38fce1998317f1")
WHEN = "2026-11-29 07:00:00"
ROLE_NAMES = ["Owner", "Admin", "Office Manager", "Provider", "Hygienist", "Front Desk", "Billing"]

# A little data in the first release's tables: an enforced practice whose allowlist has the Owner's desk, and a
# pending access request from a Front Desk user elsewhere.
FIRST_RELEASE_DATA = {
    "role": [{"id": i, "name": name, "is_security_admin": int(i <= 2), "position": i - 1}
             for i, name in enumerate(ROLE_NAMES, start=1)],
    "practice": [{"id": 1, "name": "Riverside Dental", "created_at": WHEN}],
    "user": [
        {"id": 1, "email": "owner@example.com", "name": "Olive Owner", "password_hash": OLD_HASH, "active": 1,
         "role_id": 1, "created_at": WHEN},
        {"id": 2, "email": "fay@example.com", "name": "Fay Desk", "password_hash": OLD_HASH, "active": 1,
         "role_id": 6, "created_at": WHEN},
    ],
    "membership": [{"id": 1, "user_id": 1, "practice_id": 1}, {"id": 2, "user_id": 2, "practice_id": 1}],
    "allowlist_entry": [{"id": 1, "practice_id": 1, "scope": 1, "network": "127.0.0.1/32",
                         "start": "0000000000000000000000007f000001", "prefix_length": 32,
                         "label": "Owner's desk", "active": 1, "added_by_id": 1, "added_at": WHEN}],
    "ip_restriction": [{"id": 1, "practice_id": 1, "enforced": 1, "everyone": 1, "requests_allowed": 1,
                        "updated_at": WHEN}],
    "access_request": [{"id": 1, "user_id": 2, "practice_id": 1, "ip": "127.0.0.5",
                        "note": "Working from the back office", "status": "pending", "created_at": WHEN,
                        "decided_by_id": None, "decided_at": None}],
    "audit_event": [{"id": 1, "at": WHEN, "actor_id": None, "actor_label": "cli", "actor_ip": "",
                     "practice_id": None, "action": "owner_created", "target": "owner@example.com",
                     "detail": ""}],
}
# Columns some commits added as NOT NULL without a database default, so a row needs a value for them.
LATER_NOT_NULL = {"session_version": 1, "must_change_password": 0}


def old_database(path: Path, history: list[str]) -> Path:
    """A database as the first commit of `history` created it, with a little data, then started by each later one."""
    con = sqlite3.connect(path)
    first, *later = history
    con.executescript((SCHEMAS / f"{first}.sql").read_text())
    for table, rows in FIRST_RELEASE_DATA.items():
        columns = [row[1] for row in con.execute(f'PRAGMA table_info("{table}")')]
        names, marks = ", ".join(f'"{c}"' for c in columns), ", ".join("?" for _ in columns)
        for row in rows:
            row = {**LATER_NOT_NULL, **row}
            con.execute(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', [row[c] for c in columns])
    for commit in later:
        # What that commit's create_tables(safe=True) did to an existing database: missing tables and indexes only.
        ddl = (SCHEMAS / f"{commit}.sql").read_text()
        for kind in ("TABLE", "INDEX", "UNIQUE INDEX"):
            ddl = ddl.replace(f"CREATE {kind} ", f"CREATE {kind} IF NOT EXISTS ")
        con.executescript(ddl)
    con.commit()
    con.close()
    return path


def schema(path: Path) -> dict:
    """Tables with their columns, foreign keys and indexes (partial ones with their WHERE), as SQLite reports them."""
    con = sqlite3.connect(path)
    found = {}
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        # (name, type, not null, primary key): a column's default lives in the code, and the database keeps one
        # only where a migration needed it to add a NOT NULL column to rows that were already there.
        columns = [(c[1], c[2], c[3], c[5]) for c in con.execute(f'PRAGMA table_info("{table}")')]
        keys = sorted(k[2:] for k in con.execute(f'PRAGMA foreign_key_list("{table}")'))
        indexes = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                              "ORDER BY name", (table,)).fetchall()
        found[table] = {"columns": columns, "foreign keys": keys, "indexes": indexes}
    con.close()
    return found


def rewound(tmp_path, step, *undo, params=(), prepare=None):
    """A first-release database started by today's code (`prepare(app)` then adds to it), then taken back to the day
    before migration `step` by the SQL statements `undo` (with `params` for each, if any): its path, its rows and
    the step's number."""
    number = migrations.MIGRATIONS.index(step) + 1
    path = old_database(tmp_path / "pbnsec.db", [FIRST_RELEASE])
    app = make_app(tmp_path)
    if prepare is not None:
        prepare(app)
    con = sqlite3.connect(path)
    for sql, args in zip(undo, params or [()] * len(undo)):
        con.execute(sql, args)
    con.execute("DELETE FROM schema_version WHERE version >= ?", (number,))
    con.commit()
    con.close()
    return path, table_rows(path), number


def upgraded(tmp_path, path, number, current_schema):
    """Start today's code on the rewound database: it gets today's schema and the migrations from `number` on;
    returns the app and the rows after."""
    assert schema(path) != current_schema
    app = make_app(tmp_path)
    assert schema(path) == current_schema
    with app.app_context():
        assert [v.version for v in SchemaVersion.select().where(SchemaVersion.version >= number)] == list(
            range(number, LATEST + 1))
    return app, table_rows(path)


def same_rows(after, before, *tables_added):
    """The rows after equal the rows before (the version stamps aside), the tables the migration adds empty."""
    assert {t: rows for t, rows in after.items() if t != "schema_version"} == {
        t: rows for t, rows in before.items() if t != "schema_version"} | {t: [] for t in tables_added}


@pytest.fixture(scope="module")
def current_schema(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fresh")
    make_app(folder)
    from pbnsec.db import database
    database.close()
    return schema(folder / "pbnsec.db")


def test_a_first_release_database_upgrades_on_start_and_its_owner_signs_in(tmp_path):
    old_database(tmp_path / "pbnsec.db", [FIRST_RELEASE])
    app = make_app(tmp_path)

    owner = Visitor(app)
    assert owner.login("owner@example.com").headers["Location"] == "/"
    assert "<h1>Riverside Dental</h1>" in owner.get("/").text
    assert "Owner&#39;s desk" in owner.get("/security/allowlist").text
    requests_page = owner.get("/security/requests").text
    for shown in ("Fay Desk", "127.0.0.5", "Working from the back office"):
        assert shown in requests_page

    fay = Visitor(app, ip="127.0.0.5")  # restrictions are still on: her old request still waits
    assert fay.login("fay@example.com").headers["Location"] == "/blocked"
    assert "Pending" in fay.get("/blocked").text

    with app.app_context():
        assert migrations.schema_version() == LATEST
        stamped = [v.version for v in SchemaVersion.select().order_by(SchemaVersion.version)]
        assert stamped == list(range(1, LATEST + 1))


HISTORIES = (
    [[commit] for commit in SCHEMA_COMMITS + list(VERSIONED_COMMITS)]  # made by that commit
    + [SCHEMA_COMMITS[:n] for n in range(2, len(SCHEMA_COMMITS) + 1)]  # made by the first release, then upgraded
)


@pytest.mark.parametrize("history", HISTORIES, ids=["-".join(h) for h in HISTORIES])
def test_a_database_from_any_earlier_commit_ends_up_with_todays_schema_and_its_data(tmp_path, history,
                                                                                      current_schema):
    database = old_database(tmp_path / "pbnsec.db", history)
    before = table_rows(database)
    app = make_app(tmp_path)

    assert schema(database) == current_schema
    after = table_rows(database)
    assert after["membership"] == before["membership"]
    # Added at version 8: every practice there gets the server's zone (this machine's, as new practices do).
    from pbnsec.config import default_time_zone
    width = len(before["practice"][0])
    assert [row[:width] for row in after["practice"]] == before["practice"]
    # ... and at 15, policy generation 0 (no compiled policy exists yet).
    assert [row[width:] for row in after["practice"]] == [(default_time_zone(), 0)] * len(before["practice"])
    # Columns added at version 7: nothing expires and one-click approval stays until revoked, as before; at 12: no
    # request has a rejection reason, and the blocked page shows administrators' names but not their emails.
    for table, added in (("allowlist_entry", (None,)), ("grant", (None,)), ("ip_restriction", ("forever", 0)),
                         ("access_request", ("",))):
        width = len(before[table][0]) if before[table] else 0
        assert [row[:width] for row in after[table]] == before[table]
        assert [row[width:] for row in after[table]] == [added] * len(before[table])
    # Every event kept, each counted once: the repeat columns came later; and (at 18) about no other IP.
    width = len(before["audit_event"][0])
    assert [row[:width] for row in after["audit_event"]] == before["audit_event"]
    assert [row[width:] for row in after["audit_event"]] == [(1, None, "")] * len(before["audit_event"])
    assert [row[:3] for row in after["user"]] == [row[:3] for row in before["user"]]
    assert Visitor(app).login("owner@example.com").headers["Location"] == "/"
    with app.app_context():  # a database from c023d00 kept a NOT NULL session_version that stopped this
        create_user("new@example.com", "Nia New", "Provider", ["Riverside Dental"], "a brand new passphrase")
        assert User.select().count() == 3


@pytest.mark.parametrize("commit", list(VERSIONED_COMMITS))
def test_a_database_that_records_its_version_gets_only_the_migrations_after_it(tmp_path, commit):
    old_database(tmp_path / "pbnsec.db", [commit])
    app = make_app(tmp_path)
    with app.app_context():
        stamped = [v.version for v in SchemaVersion.select().order_by(SchemaVersion.version)]
    assert stamped == list(range(VERSIONED_COMMITS[commit], LATEST + 1))
    assert LATEST > VERSIONED_COMMITS[commit]  # else this test would be checking nothing


def test_an_empty_database_gets_todays_tables_and_one_version_stamp(tmp_path, current_schema):
    app = make_app(tmp_path)
    assert schema(tmp_path / "pbnsec.db") == current_schema
    with app.app_context():
        assert [(v.version, v.name) for v in SchemaVersion.select()] == [
            (LATEST, "The tables were created at this version.")]


def test_starting_again_changes_nothing(tmp_path):
    old_database(tmp_path / "pbnsec.db", [FIRST_RELEASE])
    make_app(tmp_path)
    before = table_rows(tmp_path / "pbnsec.db")
    app = make_app(tmp_path)
    with app.app_context():
        assert migrations.upgrade() == []
    assert table_rows(tmp_path / "pbnsec.db") == before


def test_a_database_newer_than_the_code_is_refused_and_left_alone(tmp_path):
    make_app(tmp_path)
    con = sqlite3.connect(tmp_path / "pbnsec.db")
    con.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'from the future', ?)",
                (LATEST + 1, WHEN))
    con.commit()
    con.close()
    before = table_rows(tmp_path / "pbnsec.db")

    with pytest.raises(SchemaError) as refused:
        make_app(tmp_path)
    message = str(refused.value)
    assert f"schema version {LATEST + 1}, newer than this pbnsec knows ({LATEST})" in message
    assert "\n" not in message
    assert table_rows(tmp_path / "pbnsec.db") == before


def test_a_database_with_only_some_of_pbnsecs_tables_is_refused_and_left_alone(tmp_path):
    con = sqlite3.connect(tmp_path / "pbnsec.db")
    con.execute('CREATE TABLE "user" (id INTEGER PRIMARY KEY, email TEXT)')
    con.commit()
    con.close()
    with pytest.raises(SchemaError, match="not a pbnsec database"):
        make_app(tmp_path)
    assert [name for (name,) in sqlite3.connect(tmp_path / "pbnsec.db").execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")] == ["user"]


def test_version_command_shows_the_release_and_the_schema_version(tmp_path):
    from pbnsec import __version__

    result = make_app(tmp_path).test_cli_runner().invoke(args=["version"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [f"pbnsec {__version__}",
                                          f"schema version {LATEST} (this release's latest: {LATEST})"]


def test_a_database_from_before_the_outbox_gets_it_and_keeps_everything_else(tmp_path, current_schema):
    path, before, number = rewound(tmp_path, migrations.add_outbox, "DROP TABLE outbox_mail")
    app, after = upgraded(tmp_path, path, number, current_schema)
    same_rows(after, before, "outbox_mail")
    assert "Working from the back office" in str(after["access_request"])


# The schema of 2efbf80 (version 9), the last before rejection reasons, administrators' emails on the blocked page
# and blocked sign-ins bound to their IP and password.
AT_9 = "2efbf80"


def test_a_version_9_database_keeps_its_data_and_its_old_blocked_sign_ins_sign_in_again(tmp_path):
    con = sqlite3.connect(tmp_path / "pbnsec.db")
    con.executescript((SCHEMAS / f"{AT_9}.sql").read_text())
    later = "2999-01-01 00:00:00"
    for table, rows in {
        "role": FIRST_RELEASE_DATA["role"],
        "practice": [{**FIRST_RELEASE_DATA["practice"][0], "time_zone": "Europe/London"}],
        "user": [{**u, "must_change_password": 0} for u in FIRST_RELEASE_DATA["user"]],
        "membership": FIRST_RELEASE_DATA["membership"],
        "ip_restriction": [{**FIRST_RELEASE_DATA["ip_restriction"][0], "default_duration": "7d"}],
        "access_request": [FIRST_RELEASE_DATA["access_request"][0],
                           {**FIRST_RELEASE_DATA["access_request"][0], "id": 2, "status": "rejected",
                            "decided_by_id": 1, "decided_at": WHEN}],
        "sign_in": [{"id": 1, "token": "old-blocked", "user_id": 2, "blocked": 1, "created_at": WHEN,
                     "expires_at": later},
                    {"id": 2, "token": "old-full", "user_id": 1, "blocked": 0, "created_at": WHEN,
                     "expires_at": later}],
    }.items():
        for row in rows:
            con.execute(f'INSERT INTO "{table}" ({", ".join(row)}) VALUES ({", ".join("?" for _ in row)})',
                        list(row.values()))
    con.commit()
    con.close()
    before = table_rows(tmp_path / "pbnsec.db")

    app = make_app(tmp_path)
    after = table_rows(tmp_path / "pbnsec.db")
    for table, added in (("access_request", ("",)), ("ip_restriction", (0,)), ("sign_in", (None, None))):
        width = len(before[table][0])
        assert [row[:width] for row in after[table]] == before[table]  # every row and value kept
        assert [row[width:] for row in after[table]] == [added] * len(before[table])
    for table in ("user", "membership", "role"):
        assert after[table] == before[table]
    assert after["practice"] == [(*row, 0) for row in before["practice"]]  # policy_generation (15) starts at 0

    from datetime import datetime
    from ipaddress import ip_address

    from pbnsec.domain import sessions
    with app.app_context():
        assert migrations.schema_version() == LATEST
        assert sessions.find("old-full").email == "owner@example.com"  # signed-in people stay signed in
        # A blocked sign-in from before knows neither its IP nor its password: it cannot continue, so Fay signs in
        # again (the password she typed is all it cost her).
        assert sessions.find_blocked("old-blocked", ip_address("127.0.0.5"), datetime(2026, 12, 1)).user is None
    fay = Visitor(app, ip="127.0.0.5")
    assert fay.login("fay@example.com").headers["Location"] == "/blocked"
    assert "Pending" in fay.get("/blocked").text



def stamp_version(con, number: int, name: str) -> None:
    """Make an SQLite database say it stopped at schema version `number` (as a release before a migration left it)."""
    con.execute("DELETE FROM schema_version")
    con.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)", (number, name, WHEN))


def test_a_database_from_before_invites_gets_the_invite_table_and_keeps_its_people(tmp_path, seeded_database,
                                                                                     current_schema):
    import shutil

    from pbnsec.migrations import MIGRATIONS, add_invites

    database = tmp_path / "pbnsec.db"
    shutil.copyfile(seeded_database, database)
    con = sqlite3.connect(database)  # as version 9 left it: no invite table, stamped 9
    con.execute("DROP TABLE invite")
    at = MIGRATIONS.index(add_invites) + 1
    stamp_version(con, at - 1, "before invites")
    con.commit()
    con.close()
    before = table_rows(database)

    app = make_app(tmp_path)
    assert schema(database) == current_schema
    after = table_rows(database)
    assert after["invite"] == []
    for table in ("user", "membership", "practice"):
        assert after[table] == before[table]
    with app.app_context():
        assert [v.version for v in SchemaVersion.select().order_by(SchemaVersion.version)] == list(
            range(at - 1, LATEST + 1))
    admin = Visitor(app)
    assert admin.login("ann@example.com").headers["Location"] == "/"
    assert "Fay Desk" in admin.get("/people/").text


def test_a_database_from_before_policy_generations_gets_them_and_its_triggers_and_keeps_its_data(
        tmp_path, seeded_database, current_schema):
    import shutil

    from pbnsec.migrations import MIGRATIONS, POLICY_TABLES, add_policy_generations

    database = tmp_path / "pbnsec.db"
    shutil.copyfile(seeded_database, database)
    at = MIGRATIONS.index(add_policy_generations) + 1
    con = sqlite3.connect(database)  # as the version before left it: no generation column, no triggers
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f'DROP TRIGGER "{name}"')
    con.execute("ALTER TABLE practice DROP COLUMN policy_generation")
    stamp_version(con, at - 1, "before generations")
    con.commit()
    con.close()
    before = table_rows(database)

    app = make_app(tmp_path)
    assert schema(database) == current_schema
    after = table_rows(database)
    assert after["practice"] == [(*row, 0) for row in before["practice"]]
    for table in ("user", "membership", "allowlist_entry", "ip_restriction"):
        assert after[table] == before[table]
    con = sqlite3.connect(database)
    triggers = {table for (table,) in con.execute("SELECT tbl_name FROM sqlite_master WHERE type = 'trigger'")}
    con.close()
    assert triggers == {table for table, _, _ in POLICY_TABLES}
    restrict(app, "Riverside Dental", "127.0.0.0/24")  # a write: the practice's compiled policies are stale now
    with app.app_context():
        assert {p.name: p.policy_generation > 0 for p in Practice.select()} == {
            "Riverside Dental": True, "Lakeside Dental": False}
    assert Visitor(app).login("fay@example.com").headers["Location"] == "/"


def test_a_database_from_before_the_list_indexes_gets_them_and_keeps_its_data(tmp_path, current_schema):
    path, before, number = rewound(tmp_path, migrations.index_lists_for_paging, *(
        f'DROP INDEX "{table}_{"_".join(columns)}"' for table, columns in migrations.LIST_INDEXES_AT_14))
    app, after = upgraded(tmp_path, path, number, current_schema)
    same_rows(after, before)
    owner = Visitor(app)
    assert owner.login("owner@example.com").headers["Location"] == "/"
    assert "Working from the back office" in owner.get("/security/requests").text


def test_a_database_from_before_the_audit_ip_filter_gets_its_column_and_indexes_and_keeps_its_events(
        tmp_path, current_schema):
    number = migrations.MIGRATIONS.index(migrations.index_audit_events_by_ip) + 1
    path = old_database(tmp_path / "pbnsec.db", [FIRST_RELEASE])
    make_app(tmp_path)
    con = sqlite3.connect(path)  # back to the day before the audit log was filtered by IP
    for columns in migrations.AUDIT_IP_INDEXES_AT_18:
        con.execute(f'DROP INDEX "audit_event_{"_".join(columns)}"')
    con.execute("ALTER TABLE audit_event DROP COLUMN subject_ip")
    events = [("127.0.0.7", "demo_loaded", ""), ("127.0.0.1", "request_approved", "fay@example.com from 127.0.0.5"),
              ("127.0.0.1", "grant_revoked", "fay@example.com from 2001:db8::5"),
              ("127.0.0.1", "request_rejected", "fay@example.com from nowhere")]
    for ip, action, target in events:
        con.execute("INSERT INTO audit_event (at, actor_label, actor_ip, action, target, detail, count) "
                    "VALUES ('2026-11-30 08:00:00', 'owner@example.com', ?, ?, ?, '', 1)", (ip, action, target))
    con.execute("DELETE FROM schema_version WHERE version >= ?", (number,))
    con.commit()
    con.close()
    before = table_rows(path)
    assert schema(path) != current_schema

    app = make_app(tmp_path)
    assert schema(path) == current_schema
    after = table_rows(path)
    assert {t: rows for t, rows in after.items() if t not in ("schema_version", "audit_event")} == {
        t: rows for t, rows in before.items() if t not in ("schema_version", "audit_event")}
    assert [row[:-1] for row in after["audit_event"]] == before["audit_event"]
    # The decisions logged before know the IP they were about, from their target.
    assert [row[-1] for row in after["audit_event"]] == ["", "", "127.0.0.5", "2001:db8::5", ""]
    with app.app_context():
        assert [v.version for v in SchemaVersion.select().where(SchemaVersion.version >= number)] == list(
            range(number, LATEST + 1))
    owner = Visitor(app)
    assert owner.login("owner@example.com").headers["Location"] == "/"
    assert "demo loaded" in owner.get("/security/audit?ip=127.0.0.7").text
    assert "fay@example.com from 127.0.0.5" in owner.get("/security/audit?ip=127.0.0.5").text


def test_the_audit_ip_migration_runs_on_either_database_and_fills_in_past_decisions(db):
    from pbnsec.db import database
    from pbnsec.models import AuditEvent

    number = migrations.MIGRATIONS.index(migrations.index_audit_events_by_ip) + 1
    for columns in migrations.AUDIT_IP_INDEXES_AT_18:
        database.execute_sql(f'DROP INDEX "audit_event_{"_".join(columns)}"')
    database.execute_sql("ALTER TABLE audit_event DROP COLUMN subject_ip")
    database.execute_sql("INSERT INTO audit_event (at, actor_label, actor_ip, action, target, detail, count) "
                         "VALUES ('2026-11-30 08:00:00', 'owner@example.com', '127.0.0.1', 'request_approved', "
                         "'fay@example.com from 127.0.0.5', '', 1)")
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=number - 1, name="before the audit log's IP filter")

    assert migrations.upgrade()[0] == f"version {number}: {migrations.index_audit_events_by_ip.__doc__}"
    indexes = {index.name for index in database.get_indexes("audit_event")}
    assert {"audit_event_practice_id_actor_ip_at_id", "audit_event_practice_id_subject_ip_at_id"} <= indexes
    assert [e.subject_ip for e in AuditEvent.select().where(AuditEvent.action == "request_approved")] == ["127.0.0.5"]
    assert migrations.upgrade() == []  # and once is enough


def test_a_database_from_before_protected_apps_gets_their_tables_and_keeps_its_data(tmp_path, current_schema):
    tables = ("protected_app_role", "protected_app_practice", "protected_app", "gate_count")
    path, before, number = rewound(tmp_path, migrations.add_protected_apps, *(f'DROP TABLE "{t}"' for t in tables))
    app, after = upgraded(tmp_path, path, number, current_schema)
    same_rows(after, before, *tables)
    assert Visitor(app).login("owner@example.com").headers["Location"] == "/"


def test_a_database_from_before_gate_counts_gets_the_table_and_keeps_its_apps(tmp_path, current_schema):
    path, before, number = rewound(  # back to the day before the gate counted its requests, with an app registered
        tmp_path, migrations.add_gate_counts, "DROP TABLE gate_count",
        "INSERT INTO protected_app (name, host, proxy, all_roles, created_at, updated_at) "
        "VALUES ('Charts', 'charts.riverside.example', 'nginx', 1, ?, ?)",
        "INSERT INTO protected_app_practice (app_id, practice_id) VALUES (1, 1)", params=[(), (WHEN, WHEN), ()])
    app, after = upgraded(tmp_path, path, number, current_schema)
    same_rows(after, before, "gate_count")
    owner = Visitor(app)
    owner.login("owner@example.com")
    response = owner.get("/gate/verify", headers={"X-Original-URL": "https://charts.riverside.example/"})
    assert response.status_code == 200 and response.headers["X-Pbnsec-Practice"] == "Riverside Dental"


def test_a_database_from_before_the_prefix_length_index_gets_it_and_keeps_its_entries(tmp_path, current_schema):
    path, before, number = rewound(tmp_path, migrations.index_allowlist_by_prefix_length,
                                   'DROP INDEX "allowlist_entry_scope_prefix_length_start"',
                                   prepare=lambda app: restrict(app, "Riverside Dental", "127.0.0.0/24"))
    app, after = upgraded(tmp_path, path, number, current_schema)
    assert after["allowlist_entry"] == before["allowlist_entry"] != []
    same_rows(after, before)
    owner = Visitor(app, ip="127.0.0.1")
    assert owner.login("owner@example.com").headers["Location"] == "/"
    assert "127.0.0.0/24" in owner.get("/security/allowlist").text
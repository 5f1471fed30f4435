"""Fixtures: a fresh app on a real SQLite file per test, clients that know their IP and CSRF token."""
from __future__ import annotations

import logging
import os
import html
import re
import shutil
import sqlite3

import pytest
from jinja2 import BytecodeCache

from pbnsec import create_app
from pbnsec.domain.users import create_practice, create_user
from pbnsec.models import AllowlistEntry, Practice, User

PASSWORD = "correct horse battery"
OFFICE_IP = "127.0.0.1"

# Seeded people: (email, name, role, practices)
# Practices start in the server's zone: pin it so the expected times do not depend on the machine running the tests.
os.environ["PBNSEC_DEFAULT_TIME_ZONE"] = "UTC"

PEOPLE = {
    "owner": ("owner@example.com", "Olive Owner", "Owner", ["Riverside Dental", "Lakeside Dental"]),
    "ann": ("ann@example.com", "Ann Lee", "Admin", ["Riverside Dental"]),
    "bob": ("bob@example.com", "Bob Stone", "Admin", ["Lakeside Dental"]),
    "fay": ("fay@example.com", "Fay Desk", "Front Desk", ["Riverside Dental"]),
    "hal": ("hal@example.com", "Hal Hygienist", "Hygienist", ["Riverside Dental", "Lakeside Dental"]),
}


# The database of each test folder: the app fixture's PostgreSQL database, else the SQLite file in the folder.
_DATABASE_OF: dict[str, str] = {}


def make_app(tmp_path, **overrides):
    """An app on the test's database (another app with other settings sees the same data), or on DATABASE_URL."""
    config = {
        "DATABASE_URL": _DATABASE_OF.get(str(tmp_path), f"sqlite:///{tmp_path}/pbnsec.db"),
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "TRUSTED_PROXIES": 0,
        "TESTING": True,
        "BOOTSTRAP": False,  # tests seed their own people
    }
    config.update(overrides)
    app = create_app(config)
    app.jinja_env.bytecode_cache = _COMPILED_TEMPLATES  # each test builds an app: compile each template once a run
    return app


class _TemplateCache(BytecodeCache):
    """Compiled templates kept in memory for the whole test run (Jinja checks the source's checksum)."""

    def __init__(self):
        self.compiled = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket):
        self.compiled[bucket.key] = bucket.bytecode_to_string()


_COMPILED_TEMPLATES = _TemplateCache()


# The seeded people sign in hundreds of times a run: a one-round hash keeps that cheap (production uses scrypt,
# which test_account checks).
FAST_HASH = "pbkdf2:sha256:1"


def seed(app) -> None:
    with app.app_context():
        create_practice("Riverside Dental")
        create_practice("Lakeside Dental")
        for email, name, role, practices in PEOPLE.values():
            create_user(email, name, role, practices, PASSWORD, hash_method=FAST_HASH)


@pytest.fixture(scope="session")
def seeded_database(tmp_path_factory):
    """Seed once (password hashing is slow on purpose); each test gets its own copy of the file."""
    folder = tmp_path_factory.mktemp("seeded")
    seed(make_app(folder))
    from pbnsec.db import database
    database.close()
    return folder / "pbnsec.db"


# Every test that takes `app` runs on each of these (PBNSEC_TEST_DATABASES=sqlite runs only SQLite, say).
TEST_DATABASES = [name.strip() for name in os.environ.get("PBNSEC_TEST_DATABASES", "sqlite,postgresql").split(",")
                  if name.strip()]


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A private PostgreSQL server holding one seeded database ("pbnsec") and a snapshot of it, for the whole run."""
    from pg_support import running_cluster

    from pbnsec.db import database

    with running_cluster() as cluster:
        seed(make_app(tmp_path_factory.mktemp("pg-seed"), DATABASE_URL=cluster.create_database("pbnsec")))
        database.close()
        yield cluster, cluster.snapshot("pbnsec")


@pytest.fixture(params=TEST_DATABASES)
def app(request, tmp_path):
    """The seeded database, fresh for each test: a copy of the SQLite file, or the PostgreSQL database put back
    as it was seeded (tables emptied and refilled: far faster than a new database per test)."""
    if request.param == "sqlite":
        shutil.copyfile(request.getfixturevalue("seeded_database"), tmp_path / "pbnsec.db")
        yield make_app(tmp_path)
        return
    cluster, seeded = request.getfixturevalue("postgres")
    cluster.restore("pbnsec", seeded)
    _DATABASE_OF[str(tmp_path)] = cluster.url("pbnsec")
    try:
        yield make_app(tmp_path)
    finally:
        del _DATABASE_OF[str(tmp_path)]
        from pbnsec.db import database
        if not database.is_closed():
            database.close()
        if hasattr(database.obj, "close_all"):  # a test may have made another app on SQLite meanwhile
            database.obj.close_all()  # the pool's idle connections too


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only: the test is about SQLite itself (its file, its locking)")
    config.addinivalue_line("markers", "postgresql_only: the test is about PostgreSQL itself (its pool, its plans)")


def pytest_collection_modifyitems(config, items):
    """A test marked sqlite_only or postgresql_only runs on that database alone: deselected, not skipped, on the
    other (it does not apply there)."""
    def applies(item) -> bool:
        database = getattr(getattr(item, "callspec", None), "params", {}).get("app")
        return not ((database == "postgresql" and item.get_closest_marker("sqlite_only"))
                    or (database == "sqlite" and item.get_closest_marker("postgresql_only")))

    kept = [item for item in items if applies(item)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if not applies(item)])
        items[:] = kept


@pytest.fixture
def log_lines():
    """Every pbnsec log line written during the test, formatted as it reaches stderr."""
    from pbnsec.logs import LogFormatter

    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(LogFormatter())
    logger = logging.getLogger("pbnsec")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


@pytest.fixture
def db(app):
    """The seeded database, inside an app context (for domain tests: no HTTP)."""
    with app.app_context():
        yield


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Visitor:
    """A browser stand-in: one cookie jar, one client IP, and the CSRF token of its session."""

    def __init__(self, app, ip: str = OFFICE_IP, headers: dict | None = None):
        self.app = app
        self.client = app.test_client()
        self.ip = ip
        self.headers = headers or {}
        self.token = None

    def _environ(self):
        return {"REMOTE_ADDR": self.ip}

    def request(self, method, url, htmx=False, headers=None, **kwargs):
        all_headers = dict(self.headers)
        if htmx:
            all_headers["HX-Request"] = "true"
        all_headers.update(headers or {})
        response = self.client.open(url, method=method, headers=all_headers,
                                    environ_base=self._environ(), **kwargs)
        found = _TOKEN.search(response.get_data(as_text=True))
        if found:
            self.token = found.group(1)
        return response

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url, data=None, csrf=True, **kwargs):
        data = dict(data or {})
        if csrf:
            if self.token is None:
                self.get("/login")
            data.setdefault("csrf_token", self.token)
        return self.request("POST", url, data=data, **kwargs)

    def login(self, email, password=PASSWORD):
        self.get("/login")
        response = self.post("/login", {"email": email, "password": password})
        self.token = None
        if response.status_code == 303:
            self.get(response.headers["Location"])  # the landing page carries the new session's token
        return response


@pytest.fixture
def visitor(app):
    """Make a Visitor from an IP: visitor(ip="203.0.113.7")."""
    def make(ip: str = OFFICE_IP, **kwargs) -> Visitor:
        return Visitor(app, ip=ip, **kwargs)
    return make


@pytest.fixture
def ann(signed_in):
    """Ann Lee, Admin of Riverside Dental, signed in from the office."""
    return signed_in("ann")


@pytest.fixture
def bob(signed_in):
    """Bob Stone, Admin of Lakeside Dental, signed in from the office."""
    return signed_in("bob")


@pytest.fixture
def signed_in(app):
    """Sign a seeded person in: signed_in("ann", ip=...) -> Visitor."""
    def make(who: str, ip: str = OFFICE_IP) -> Visitor:
        v = Visitor(app, ip=ip)
        response = v.login(PEOPLE[who][0])
        assert response.status_code == 303, response.get_data(as_text=True)
        return v
    return make


def restrict(app, practice: str, *networks: str, everyone: bool = True, roles=(), users=(),
             requests_allowed: bool = True) -> None:
    """Switch IP restrictions on for a practice, allowing the given networks (written straight to the DB)."""
    from ipaddress import ip_network

    from pbnsec.models import (
        AllowlistEntry,
        IPRestriction,
        Practice,
        RestrictedRole,
        RestrictedUser,
        Role,
        User,
    )

    with app.app_context():
        p = Practice.get(Practice.name == practice)
        for text in networks:
            net = ip_network(text)
            AllowlistEntry.create(**AllowlistEntry.stored(net, p, label=f"test {net}"))
        IPRestriction.delete().where(IPRestriction.practice == p).execute()
        IPRestriction.create(practice=p, enforced=True, everyone=everyone, requests_allowed=requests_allowed)
        for name in roles:
            RestrictedRole.create(practice=p, role=Role.get(Role.name == name))
        for who in users:
            RestrictedUser.create(practice=p, user=User.get(User.email == PEOPLE[who][0]))


def protect_app(app, name: str, host: str, practices=("Riverside Dental",), proxy: str = "nginx",
                roles=None) -> int:
    """Register a protected app (written straight to the DB) for the practices named, open to every role or only
    to `roles` (names); its id."""
    from pbnsec.models import ProtectedApp, ProtectedAppPractice, ProtectedAppRole, Role

    with app.app_context():
        row = ProtectedApp.create(name=name, host=host, proxy=proxy, all_roles=roles is None)
        for practice in practices:
            ProtectedAppPractice.create(app=row, practice=Practice.get(Practice.name == practice))
        for role in roles or ():
            ProtectedAppRole.create(app=row, role=Role.get(Role.name == role))
        return row.id


def table_rows(path) -> dict:
    """Every row of every table of an SQLite file, straight from sqlite3 (not through the app)."""
    con = sqlite3.connect(path)
    tables = [name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    rows = {table: con.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall() for table in tables}
    con.close()
    return rows


def wrong_passwords(app, v: Visitor, email: str, times: int) -> None:
    """Sign in with a wrong password `times` times, each one reaching the password check."""
    from pbnsec.models import RateLimitHit

    for _ in range(times):
        response = v.post("/login", {"email": email, "password": "not the password"})
        assert response.status_code == 401, response.get_data(as_text=True)
        with app.app_context():
            RateLimitHit.delete().execute()  # else the limiter refuses all but the first few before the check


# --- domain tests: a Visit on the seeded database, no HTTP, no sign-in ---

def person(who: str):
    """A seeded person's User (inside an app context): person("ann")."""
    from pbnsec.models import User

    return User.get(User.email == PEOPLE[who][0])


def practice_named(name: str):
    """A practice by name (inside an app context)."""
    from pbnsec.models import Practice

    return Practice.get(Practice.name == name)


def visit_of(who: str, ip: str | None = OFFICE_IP, practice: str | None = None):
    """A seeded person's Visit from an IP (None: one that cannot be told), as the hook builds it for a request."""
    from ipaddress import ip_address

    from pbnsec.domain.visit import Visit

    return Visit(person(who), ip_address(ip) if ip is not None else None,
                 practice_named(practice) if practice else None)


def signed_in_earlier(who: str, ip: str, at, practice: str | None = None) -> None:
    """Record that a seeded person signed in from ip at `at` (UTC), landing in `practice` (default: their first), as
    a successful sign-in audits it."""
    from pbnsec.models import AuditEvent

    user = person(who)
    AuditEvent.create(action="login_allowed", actor=user, actor_label=user.email, actor_ip=ip, at=at,
                      practice=practice_named(practice or PEOPLE[who][3][0]), target=user.email,
                      detail="allowed by IP restrictions are off")


class Statements:
    """The SQL statements run since counting began; `of_view` those run once the view itself was called."""

    def __init__(self):
        self.all: list[str] = []
        self.params: list = []  # each statement's parameters, by position in `all`
        self.view_started_at = 0

    @property
    def of_view(self) -> list[str]:
        return self.all[self.view_started_at:]

    def __repr__(self):
        return (f"{len(self.of_view)} statements by the view, {len(self.all)} in all:\n  "
                + "\n  ".join(s[:150] for s in self.all))


@pytest.fixture
def count_statements(app, monkeypatch):
    """count_statements() or count_statements("security.approve_request") -> Statements, filled from then on."""
    def start(endpoint: str | None = None) -> Statements:
        from pbnsec.db import database

        seen = Statements()
        execute_sql = database.obj.execute_sql  # every query peewee runs, whichever way it was built

        def counted(sql, params=None, *args, **kwargs):
            if not sql.startswith("SELECT pg_advisory_xact_lock"):
                # The change lock: one statement on PostgreSQL, part of BEGIN IMMEDIATE on SQLite (which peewee
                # sends past execute_sql). Counted on neither, so a budget holds for both.
                seen.all.append(sql)
                seen.params.append(params)
            return execute_sql(sql, params, *args, **kwargs)

        monkeypatch.setattr(database.obj, "execute_sql", counted)
        if endpoint is not None:
            view = app.view_functions[endpoint]

            def marked(*args, **kwargs):  # what runs before this (sign-in, access overview) is every page's cost
                seen.view_started_at = len(seen.all)
                return view(*args, **kwargs)

            monkeypatch.setitem(app.view_functions, endpoint, marked)
        return seen
    return start


def query_plan(sql: str, params=None) -> list[str]:
    """How the database would run a statement: EXPLAIN QUERY PLAN's steps on SQLite, EXPLAIN's lines on PostgreSQL
    (run ANALYZE first, with enough rows, so PostgreSQL plans as it would for a big table)."""
    from peewee import SqliteDatabase

    from pbnsec.db import database

    if isinstance(database.obj, SqliteDatabase):
        return [step[-1] for step in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params or ())]
    return [line for (line,) in database.execute_sql("EXPLAIN " + sql, params or ())]


def scans_of(plan: list[str], table: str) -> list[str]:
    """The steps of a plan that read the whole table (not along an index)."""
    return [step for step in plan
            if step.startswith(f"SCAN {table}") and "USING" not in step  # SQLite (SCAN … USING INDEX walks one)
            or f"Seq Scan on {table}" in step or f'Seq Scan on "{table}"' in step]  # PostgreSQL


def page_cost(v, count_statements, url):
    """The SQL statements a page costs once this process's compiled policies are current (the first visit after a
    write compiles them again: see test_a_visit_after_a_write_compiles_the_same_for_one_practice_or_six)."""
    assert v.get(url).status_code == 200
    seen = count_statements()
    assert v.get(url).status_code == 200
    return len(seen.all), repr(seen)


# --- small lookups the tests share (inside their own app context) ---

def practice_id(app, name: str = "Riverside Dental") -> int:
    with app.app_context():
        return Practice.get(Practice.name == name).id


def entry_id(app, network: str) -> int:
    with app.app_context():
        return AllowlistEntry.get(AllowlistEntry.network == network).id


def user_id(app, who_or_email: str) -> int:
    """A seeded person's id, by their short name ("ann") or email."""
    email = PEOPLE[who_or_email][0] if who_or_email in PEOPLE else who_or_email
    with app.app_context():
        return User.get(User.email == email).id


# --- mail: a real SMTP server on loopback ---

class MailCatcher:
    """A real SMTP server (aiosmtpd) on a loopback port, keeping every message that arrived, parsed."""

    def __init__(self, port: int | None = None):
        from realworld import free_port

        self.port = port or free_port()
        self.messages = []  # email.message.EmailMessage, in the order they arrived
        self.envelopes = []  # (MAIL FROM, RCPT TOs)
        self._controller = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> "MailCatcher":
        from aiosmtpd.controller import Controller

        catcher = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                from email import message_from_bytes
                from email.policy import default

                catcher.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                catcher.messages.append(message_from_bytes(envelope.original_content, policy=default))
                return "250 Message accepted for delivery"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, who: str) -> list:
        """The messages sent to a seeded person ("ann") or an address."""
        address = PEOPLE[who][0] if who in PEOPLE else who
        return [m for m in self.messages if m["To"].addresses[0].addr_spec == address]

    def wait_for(self, count: int, seconds: float = 20) -> list:
        """Wait until `count` messages arrived (a background sender is at work); the messages."""
        import time

        deadline = time.monotonic() + seconds
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= count, f"{len(self.messages)} of {count} messages arrived"
        return self.messages


@pytest.fixture
def mail_server():
    """A real SMTP server on 127.0.0.1, started; mail_server.stop() takes it down, .start() brings it back."""
    catcher = MailCatcher().start()
    yield catcher
    catcher.stop()


def mail_settings(server: MailCatcher, **more) -> dict:
    """make_app settings sending mail to `server` (PBNSEC_SMTP_URL & co as load_config makes them)."""
    from pbnsec.core.mail import parse_smtp_url

    return {"SMTP": parse_smtp_url(server.url), "MAIL_FROM": "pbnsec <pbnsec@example.org>",
            "BASE_URL": "https://pbnsec.example.org", "NOTIFY_BATCH_MINUTES": 10, **more}


@pytest.fixture
def mail_app(tmp_path, seeded_database, mail_server):
    """The seeded app with mail on, to the test's SMTP server (no background sender: tests send by hand)."""
    shutil.copyfile(seeded_database, tmp_path / "pbnsec.db")
    return make_app(tmp_path, **mail_settings(mail_server))


def flashes(response) -> list[str]:
    """The flash messages a page shows."""
    return re.findall(r'<p class="flash flash-\w+" role="\w+">([^<]+)</p>', response.text)


def field_error(text: str, error_id: str) -> str | None:
    """The message of the form error with this element id (the field's "…-error"), else None."""
    found = re.search(rf'<p class="error" id="{re.escape(error_id)}" role="alert">([^<]*)</p>', text)
    return html.unescape(found.group(1)) if found else None

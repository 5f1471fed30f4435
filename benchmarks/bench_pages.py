"""Issue 11's table, measured side by side in one run: every figure is a ratio of two medians taken in alternation
(A, B, A, B, …) on this machine, on data this script seeds itself in a temporary folder. It prints; it asserts
nothing about speed, and exits 0 however slow the machine is.

Run: make bench   (or .venv/bin/python benchmarks/bench_pages.py --help for sizes; --quick for a tiny smoke run)

Pages are measured through the real app served by waitress on loopback (clients on 127.0.0.1 and ::1, which the
server sees as they are: no proxy, no forwarded headers), so the figures hold whatever the views do inside.
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from ipaddress import IPv4Network, IPv6Network, ip_address
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # the tests' own helpers: one private PostgreSQL, one way to serve the app

import pg_support  # noqa: E402
from realworld import SECRET, HttpVisitor, free_port, nginx, stop, wait_for_port  # noqa: E402

from pbnsec import create_app  # noqa: E402
from pbnsec.core.iprules import NetworkMatcher  # noqa: E402
from pbnsec.db import database  # noqa: E402
from pbnsec.domain import access  # noqa: E402
from pbnsec.domain.policy import PolicyCache  # noqa: E402
from pbnsec.domain.users import create_practice, create_user  # noqa: E402
from pbnsec.models import (  # noqa: E402
    AccessRequest,
    AllowlistEntry,
    AuditEvent,
    IPRestriction,
    Membership,
    Practice,
    ProtectedApp,
    ProtectedAppPractice,
    Role,
    User,
    utcnow,
)

PASSWORD = "bench correct horse battery"
FAST_HASH = "pbkdf2:sha256:1"  # the bench signs in a few times; the hash's cost is not what it measures
ADMIN = "admin@bench.example"
ONE, FIVE = "one@bench.example", "five@bench.example"  # staff
ADMIN_ONE = "admin1@bench.example"  # an Owner of one practice (ADMIN is an Owner of them all)
PRACTICES = [f"Bench Dental {n}" for n in range(1, 6)]
START = datetime(2025, 1, 1)

FULL = dict(requests=100_000, pending=10_000, audit=1_000_000, entries=10_000, small_entries=10,
            decide_sizes=(10, 1_000, 100_000), throughput_entries=1_000, rounds=5, seconds=3.0, clients=8,
            requesters=1_000)
QUICK = dict(requests=200, pending=20, audit=2_000, entries=50, small_entries=10, decide_sizes=(10, 100, 1_000),
             throughput_entries=50, rounds=2, seconds=0.3, clients=2, requesters=20)

# Every row the bench prints, in order (the smoke test checks each one is there).
ROWS = (
    "requests page, big vs empty",
    "audit first page, big vs empty",
    "audit last page, big vs empty",
    "allowlist page, many vs 10 entries",
    "htmx add, many vs 10 entries",
    "throughput enforced/off IPv4",
    "throughput enforced/off IPv6",
    "SQL statements, 5 practices vs 1",
    "decision vs matcher",
    "freshness read vs matcher",
    "linear scan vs matcher",
    "PostgreSQL vs SQLite throughput",
    "server memory (RSS) after big pages",
    "gate: protected/open static page",
    "gate: gate port/main port",
    "gate: protected/open app page",
)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- seeding: bulk inserts in one transaction per table, straight through the DB-API cursor ---

def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")  # how peewee stores a DateTimeField; PostgreSQL casts it too


def bulk(model, columns: list[str], rows, batch: int = 5_000) -> None:
    """Insert rows (tuples in `columns` order) into model's table, fast on either database."""
    table = model._meta.table_name
    names = ", ".join(f'"{model._meta.fields[c].column_name}"' for c in columns)
    cursor = database.cursor()
    if database.param == "?":  # SQLite: executemany is a C loop
        cursor.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})', rows)
        return
    from psycopg2.extras import execute_values

    execute_values(cursor, f'INSERT INTO "{table}" ({names}) VALUES %s', rows, page_size=batch)


def v4(i: int) -> IPv4Network:
    """Distinct data-only networks in 10.0.0.0/8 (no traffic goes there)."""
    return IPv4Network(((10 << 24) | (i << 8), 24 if i % 2 else 32))


def entry_rows(practice: Practice, networks, admin: User):
    when = stamp(START)
    for n in networks:
        yield (practice.id, practice.id, str(n), f"{int(n.network_address):032x}", n.prefixlen, f"Site {n}", True,
               admin.id, when)


ENTRY_COLUMNS = ["practice", "scope", "network", "start", "prefix_length", "label", "active", "added_by", "added_at"]


def new_app(url: str, folder: Path):
    return create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(folder), "SECRET_KEY": SECRET,
                       "TRUSTED_PROXIES": 0, "BOOTSTRAP": False, "LOG_LEVEL": "WARNING"})


def seed_people(practice_count: int = 1):
    """The practices, and the people who sign in: an Owner of all, staff in one and in five practices."""
    practices = [create_practice(name) for name in PRACTICES[:practice_count]]
    admin, _ = create_user(ADMIN, "Bench Owner", "Owner", [p.name for p in practices], PASSWORD, hash_method=FAST_HASH)
    create_user(ONE, "One Practice", "Front Desk", [practices[0].name], PASSWORD, hash_method=FAST_HASH)
    if practice_count == 5:
        create_user(ADMIN_ONE, "Owner Of One", "Owner", [practices[0].name], PASSWORD, hash_method=FAST_HASH)
        create_user(FIVE, "Five Practices", "Front Desk", [p.name for p in practices], PASSWORD,
                    hash_method=FAST_HASH)
    return practices, admin


def seed_pages_db(url: str, folder: Path, requests: int, pending: int, audit: int, entries: int,
                  requesters: int) -> dict:
    """One practice with `requests` access requests (`pending` of them pending), `audit` audit events and `entries`
    allowlist entries; enforcement off (the pages are what is measured here). Returns seconds per part."""
    app = new_app(url, folder)
    took = {}
    with app.app_context():
        (practice,), admin = seed_people()
        staff = Role.get(Role.name == "Front Desk")
        hashed = User.get(User.email == ONE).password_hash
        started = time.perf_counter()
        with database.atomic():
            bulk(User, ["email", "name", "password_hash", "active", "role", "created_at", "must_change_password"],
                 ((f"staff{i}@bench.example", f"Staff {i}", hashed, True, staff.id, stamp(START), False)
                  for i in range(requesters)))
            ids = [u.id for u in User.select(User.id).where(User.email.startswith("staff")).order_by(User.id)]
            bulk(Membership, ["user", "practice"], ((uid, practice.id) for uid in ids))
            decided = requests - pending

            def request_rows():
                for i in range(requests):
                    at = START + timedelta(seconds=30 * i)
                    ip = f"172.{16 + (i >> 16) % 16}.{(i >> 8) & 255}.{i & 255}"
                    if i < decided:
                        status = "approved" if i % 3 else "rejected"
                        yield (ids[i % len(ids)], practice.id, ip, "", status, stamp(at), admin.id,
                               stamp(at + timedelta(minutes=5)), "")
                    else:
                        yield (ids[i % len(ids)], practice.id, ip, "please", "pending", stamp(at), None, None, "")

            bulk(AccessRequest, ["user", "practice", "ip", "note", "status", "created_at", "decided_by", "decided_at",
                                 "reason"], request_rows())
        took["requests"] = time.perf_counter() - started
        started = time.perf_counter()
        with database.atomic():
            actions = ("login_allowed", "entry_added", "request_submitted", "request_approved", "login_failed")

            def audit_rows():
                for i in range(audit):
                    action = actions[i % len(actions)]
                    yield (stamp(START + timedelta(seconds=i)), admin.id if i % 4 else None,
                           ADMIN if i % 4 else "cli", "127.0.0.1", practice.id if i % 10 else None, action,
                           f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", "", 1)

            bulk(AuditEvent, ["at", "actor", "actor_label", "actor_ip", "practice", "action", "target", "detail",
                              "count"], audit_rows())
        took["audit"] = time.perf_counter() - started
        started = time.perf_counter()
        with database.atomic():
            bulk(AllowlistEntry, ENTRY_COLUMNS, entry_rows(practice, (v4(i) for i in range(entries)), admin))
        took["entries"] = time.perf_counter() - started
    database.close()
    return took


def seed_access_db(url: str, folder: Path, entries: int, enforced: bool) -> None:
    """Five practices with enforcement on (or off) whose allowlists cover 127.0.0.1 and ::1; the first holds
    `entries` entries in all. ONE is a member of the first, FIVE of all five."""
    app = new_app(url, folder)
    with app.app_context():
        practices, admin = seed_people(5)
        with database.atomic():
            for number, practice in enumerate(practices):
                covering = [IPv4Network("127.0.0.1/32"), IPv6Network("::1/128")]
                filler = (v4(i) for i in range(entries - len(covering))) if number == 0 else ()
                bulk(AllowlistEntry, ENTRY_COLUMNS, entry_rows(practice, [*covering, *filler], admin))
                IPRestriction.create(practice=practice, enforced=enforced)
    database.close()


# --- serving: waitress on loopback, IPv4 and IPv6 ---

class Server:
    """pbnsec on loopback: by waitress-serve, or (`make_run`) as `make run` starts it, `flask --app app serve`, which
    also answers the gate on a port of its own (`gate_port`)."""

    def __init__(self, url: str, folder: Path, name: str, make_run: bool = False, **settings):
        self.port = free_port()
        self.gate_port = free_port() if make_run else None
        self.log = folder / f"server-{name}.log"
        env = dict(os.environ, PBNSEC_DATABASE_URL=url, PBNSEC_SECRET_KEY=SECRET, PBNSEC_TRUSTED_PROXIES="0",
                   PBNSEC_LOG_LEVEL="WARNING")
        env.pop("PBNSEC_TRUSTED_PROXY_ADDRS", None)
        env.update(settings)
        if make_run:
            env.update(PBNSEC_HOST="127.0.0.1,::1", PBNSEC_PORT=str(self.port), PBNSEC_GATE_PORT=str(self.gate_port))
            command = [str(Path(sys.executable).parent / "flask"), "--app", "app", "serve"]
        else:
            # X-Forwarded-For is left to the app (a figure behind nginx needs it), as `make run` leaves it.
            command = [str(Path(sys.executable).parent / "waitress-serve"), "--threads=8",
                       "--no-clear-untrusted-proxy-headers", f"--listen=127.0.0.1:{self.port}",
                       f"--listen=[::1]:{self.port}", "--call", "pbnsec:create_app"]
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_for_port(self.port, self.process, self.log)
        if self.gate_port is not None:
            wait_for_port(self.gate_port, self.process, self.log)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


class Client:
    """A signed-in HttpVisitor on one server."""

    def __init__(self, server: Server, email: str, source: str = "127.0.0.1"):
        self.server, self.visitor = server, HttpVisitor(source)
        self.visitor.sign_in(server.port, email, PASSWORD)

    def get(self, path: str, **headers) -> tuple[int, str]:
        status, _, text = self.visitor.request(self.server.port, "GET", path, headers=headers)
        return status, text

    def post(self, path: str, form: dict, **headers) -> tuple[int, str]:
        status, _, text = self.visitor.request(self.server.port, "POST", path, form, headers=headers)
        return status, text


def timed(call) -> float:
    started = time.perf_counter()
    status, _ = call()
    if status >= 400:
        raise RuntimeError(f"the bench got HTTP {status}")
    return time.perf_counter() - started


def side_by_side(a, b, rounds: int) -> tuple[float, float]:
    """Medians of a() and b() timed in alternation, after one warm-up call each."""
    timed(a), timed(b)
    times_a, times_b = [], []
    for _ in range(rounds):
        times_a.append(timed(a))
        times_b.append(timed(b))
    return statistics.median(times_a), statistics.median(times_b)


def throughput(server: Server, email: str, source: str, path: str, seconds: float, clients: int) -> float:
    """Requests per second for `path` from `clients` concurrent keep-alive connections (one signed-in user)."""
    cookie = Client(server, email, source).visitor.cookie
    return hammer(server.port, source, path, {"Cookie": f"pbnsec_session={cookie}"}, seconds, clients)


def hammer(port: int, source: str, path: str, headers: dict, seconds: float, clients: int) -> float:
    """Requests per second for `path` on a loopback port from `clients` concurrent keep-alive connections."""
    host = "::1" if ":" in source else "127.0.0.1"
    counts, failures = [0] * clients, []
    stop_at = time.perf_counter() + seconds

    def work(n: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30, source_address=(source, 0))
        try:
            while time.perf_counter() < stop_at:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(response.status)
                    return
                counts[n] += 1
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{path} answered HTTP {failures[0]} under load")
    return sum(counts) / (time.perf_counter() - started)


def throughput_side_by_side(a, b, rounds: int) -> tuple[float, float, str]:
    """Median requests per second of a() and b() run in alternation, and the spread of the per-round ratios (on a
    shared machine one round can be off; the spread says how far)."""
    a(), b()  # warm-up
    runs_a, runs_b = [], []
    for _ in range(rounds):
        runs_a.append(a())
        runs_b.append(b())
    each = sorted(x / y for x, y in zip(runs_a, runs_b))
    return statistics.median(runs_a), statistics.median(runs_b), f"rounds {each[0]:.2f}–{each[-1]:.2f}"


# --- what each row measures ---

class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, what: str, measured: str, ratio: str, target: str) -> None:
        assert what in ROWS, what
        self.rows.append((what, measured, ratio, target))
        say(f"  {what}: {ratio}  ({measured})")

    def print(self, heading: str) -> None:
        """what | ratio | target | measured (the long column last, so the table reads in a terminal)."""
        heads = ("what", "ratio", "target", "measured")
        rows = [(what, r, target, measured) for what, measured, r, target in self.rows]
        widths = [max(len(row[i]) for row in [heads, *rows]) for i in range(3)]
        line = "  ".join("{:<%d}" % w for w in widths) + "  {}"
        print(heading)
        print(line.format(*heads))
        print(line.format(*("-" * w for w in widths), "-" * 8))
        for row in rows:
            print(line.format(*row))


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} µs"


def ratio(a: float, b: float) -> str:
    if not b:
        return "n/a"
    r = a / b
    return f"{r:.0f}×" if r >= 100 else f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


def last_audit_page(first_page_html: str) -> str | None:
    """The URL of the oldest audit page, as the first page links it (page numbers, or an "Oldest" link)."""
    if found := re.search(r"page \d+ of (\d+)", first_page_html):
        return f"/security/audit?page={found.group(1)}"
    links = re.findall(r'<a[^>]*href="(/security/audit\?[^"]*)"[^>]*>([^<]*)<', first_page_html)
    for href, text in links:
        if re.search(r"oldest|last", text, re.I):
            return href.replace("&amp;", "&")
    return None


def measure_pages(table: Table, big: Server, empty: Server, sizes: dict, rounds: int, memory: dict,
                  request_statements: int) -> None:
    big_admin, empty_admin = Client(big, ADMIN), Client(empty, ADMIN)
    memory["before"] = big.rss_mib()
    count, pending = f"{sizes['requests']:,}", f"{sizes['pending']:,}"
    a, b = side_by_side(lambda: big_admin.get("/security/requests"), lambda: empty_admin.get("/security/requests"),
                        rounds)
    html = len(big_admin.get("/security/requests")[1])
    table.add(ROWS[0], f"{ms(a)} ({html / 2**20:.1f} MiB HTML, {request_statements:,} SQL statements) with {count} "
                       f"({pending} pending) vs {ms(b)} empty",
              ratio(a, b), "≤ 3×")

    a, b = side_by_side(lambda: big_admin.get("/security/audit"), lambda: empty_admin.get("/security/audit"), rounds)
    events = f"{sizes['audit']:,}"
    table.add(ROWS[1], f"{ms(a)} with {events} events vs {ms(b)} empty", ratio(a, b), "≤ 3×")
    last = last_audit_page(big_admin.get("/security/audit")[1])
    if last is None:
        table.add(ROWS[2], "n/a: the first page links no oldest page", "n/a", "≤ 3×")
    else:
        a, b = side_by_side(lambda: big_admin.get(last), lambda: empty_admin.get("/security/audit"), rounds)
        table.add(ROWS[2], f"{ms(a)} ({last}) vs {ms(b)} empty", ratio(a, b), "≤ 3×")

    entries = f"{sizes['entries']:,}"
    a, b = side_by_side(lambda: big_admin.get("/security/allowlist"), lambda: empty_admin.get("/security/allowlist"),
                        rounds)
    html = len(big_admin.get("/security/allowlist")[1])
    table.add(ROWS[3], f"{ms(a)} ({html / 2**20:.1f} MiB HTML) with {entries} vs {ms(b)} with 10", ratio(a, b),
              "≤ 3×")
    added = iter(range(1, 10_000))

    def add(client: Client):
        n = next(added)
        return lambda: client.post("/security/allowlist",
                                   {"address": f"198.51.{n >> 8}.{n & 255}", "label": f"Bench add {n}"},
                                   **{"HX-Request": "true"})

    times_a, times_b = [], []
    for _ in range(rounds + 1):
        times_a.append(timed(add(big_admin)))
        times_b.append(timed(add(empty_admin)))
    a, b = statistics.median(times_a[1:]), statistics.median(times_b[1:])
    table.add(ROWS[4], f"{ms(a)} at {entries} vs {ms(b)} at 10", ratio(a, b), "≤ 3×")
    memory["after"] = big.rss_mib()
    memory["empty"] = empty.rss_mib()


def sign_in_and_count(url: str, folder: Path, email: str, path: str = "/") -> int:
    """SQL statements the app runs for one signed-in GET of path (in process: counted where peewee runs them)."""
    app = new_app(url, folder)
    client = app.test_client()
    environ = {"REMOTE_ADDR": "127.0.0.1"}
    token = re.search(r'name="csrf_token" value="([^"]+)"',
                      client.get("/login", environ_base=environ).get_data(as_text=True)).group(1)
    response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                           environ_base=environ)
    if response.status_code != 303:
        raise RuntimeError(f"sign-in as {email} answered {response.status_code}")
    client.get("/", environ_base=environ)  # the first page after sign-in may do one-off work
    seen = []
    execute_sql = database.obj.execute_sql

    def counted(sql, params=None, *args, **kwargs):
        seen.append(sql)
        return execute_sql(sql, params, *args, **kwargs)

    database.obj.execute_sql = counted
    try:
        status = client.get(path, environ_base=environ).status_code
    finally:
        database.obj.execute_sql = execute_sql
    database.close()
    if status != 200:
        raise RuntimeError(f"GET {path} as {email} answered {status}")
    return len(seen)


def request_decision(user, practice_id: int, ip):
    """What a request does about access, in two calls: the one statement that reads the user's practices with
    their policy generations (the freshness read), and the decision on the compiled policies, in memory, once they
    are current (checked: the decision is the allowlist entry's)."""
    cache, now = PolicyCache(), utcnow()
    access.overview(user, ip, now, cache)  # compiles the policy: later visits find it current
    practices = cache.practices_of(user.id)
    found = access.overview_on_policies(user, ip, now, practices, cache)
    if found is None or found.row(practice_id).decision.reason != "allowlist_entry":
        raise RuntimeError(f"the bench's visit was not let in by its allowlist entry: {found}")
    return (lambda: access.overview_on_policies(user, ip, now, practices, cache),
            lambda: cache.practices_of(user.id))


def per_call(fn, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat


def measure_decisions(table: Table, folder: Path, sizes, rounds: int) -> None:
    decisions, reads, scans = [], [], []
    for size in sizes:
        where = folder / f"decide-{size}"
        where.mkdir()
        url = f"sqlite:///{where}/bench.db"
        app = new_app(url, where)
        with app.app_context():
            (practice,), admin = seed_people()
            with database.atomic():
                bulk(AllowlistEntry, ENTRY_COLUMNS, entry_rows(practice, (v4(i) for i in range(size)), admin))
                IPRestriction.create(practice=practice, enforced=True)
            user = User.get(User.email == ONE)
            hit = ip_address("10.0.1.1")  # inside 10.0.1.0/24, the second entry
            decide, read = request_decision(user, practice.id, hit)
            networks = [v4(i) for i in range(size)]
            matcher = NetworkMatcher((n, None) for n in networks)
            last = ip_address(int(networks[-1].network_address))  # a linear scan's worst case: the last entry
            decision_times, read_times, mem_times, scan_times = [], [], [], []
            for _ in range(rounds):
                decision_times.append(per_call(decide, 5_000))
                read_times.append(per_call(read, 500))
                mem_times.append(per_call(lambda: matcher.match(last), 5_000))
                scan_times.append(per_call(lambda: next(n for n in networks if last in n), max(5, 20_000 // size)))
        database.close()
        d, r, m, s = (statistics.median(t) for t in (decision_times, read_times, mem_times, scan_times))
        decisions.append(f"{size:,}: {ms(d)} / {ms(m)} = {ratio(d, m)}")
        reads.append(f"{size:,}: {ms(r)} / {ms(m)} = {ratio(r, m)}")
        scans.append(f"{size:,}: {ms(s)} / {ms(m)} = {ratio(s, m)}")
    table.add(ROWS[8], "a request's decision on its current compiled policy (access.overview_on_policies, in "
                       "memory) vs NetworkMatcher.match per call; " + ", ".join(decisions),
              decisions[-1].split("= ")[1], "≤ 5×")
    table.add(ROWS[9], "the one statement a request makes while policies are current (PolicyCache.practices_of: "
                       "the user's practices with their generations) vs NetworkMatcher.match; " + ", ".join(reads),
              reads[-1].split("= ")[1], "— (one indexed read)")
    table.add(ROWS[10], "scanning every entry (the last one matches) vs NetworkMatcher.match; " + ", ".join(scans),
              scans[-1].split("= ")[1], "matcher flat as entries grow")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and short runs (for the smoke test)")
    parser.add_argument("--requests", type=int, help="access requests on the big database (default 100,000)")
    parser.add_argument("--audit", type=int, help="audit events on the big database (default 1,000,000)")
    parser.add_argument("--rounds", type=int, help="alternations per figure (default 5)")
    parser.add_argument("--seconds", type=float, help="seconds per throughput run (default 3)")
    parser.add_argument("--no-postgresql", action="store_true", help="skip the PostgreSQL figure")
    options = parser.parse_args(argv)
    sizes = dict(QUICK if options.quick else FULL)
    for name in ("requests", "audit", "rounds", "seconds"):
        if getattr(options, name) is not None:
            sizes[name] = getattr(options, name)
    sizes["pending"] = min(sizes["pending"], sizes["requests"])
    folder = Path(tempfile.mkdtemp(prefix="pbnsec-bench-"))
    table = Table()
    try:
        with ExitStack() as running:
            took = run(table, folder, sizes, options, running)
    finally:
        if not database.is_closed():
            database.close()
        shutil.rmtree(folder, ignore_errors=True)
    table.print(f"pbnsec bench: {os.cpu_count()} CPUs, {sizes['rounds']} alternations per figure, medians; "
                f"ratio = first / second\nseeded on SQLite: {sizes['requests']:,} access requests in "
                f"{took['requests']:.1f} s, {sizes['audit']:,} audit events in {took['audit']:.1f} s, "
                f"{sizes['entries']:,} allowlist entries in {took['entries']:.1f} s")
    return 0


def run(table: Table, folder: Path, sizes: dict, options, running: ExitStack) -> dict:
    """Seed, serve and measure every row; the seconds seeding took."""
    rounds = sizes["rounds"]
    say(f"seeding in {folder} …")
    for name in ("big", "empty"):
        (folder / name).mkdir()
    took = seed_pages_db(f"sqlite:///{folder}/big/pbnsec.db", folder / "big", sizes["requests"], sizes["pending"],
                         sizes["audit"], sizes["entries"], sizes["requesters"])
    say("  SQLite seeding: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
    seed_pages_db(f"sqlite:///{folder}/empty/pbnsec.db", folder / "empty", 0, 0, 0, sizes["small_entries"], 0)
    for name, enforced in (("enforced", True), ("open", False)):
        (folder / name).mkdir()
        seed_access_db(f"sqlite:///{folder}/{name}/pbnsec.db", folder / name, sizes["throughput_entries"], enforced)

    say("pages (waitress on loopback) …")
    big = running.enter_context(serving(f"sqlite:///{folder}/big/pbnsec.db", folder, "big"))
    empty = running.enter_context(serving(f"sqlite:///{folder}/empty/pbnsec.db", folder, "empty"))
    memory: dict = {}
    statements = sign_in_and_count(f"sqlite:///{folder}/big/pbnsec.db", folder / "big", ADMIN, "/security/requests")
    measure_pages(table, big, empty, sizes, rounds, memory, statements)
    stop(big.process), stop(empty.process)

    say("throughput, enforcement on vs off …")
    on = running.enter_context(serving(f"sqlite:///{folder}/enforced/pbnsec.db", folder, "enforced"))
    off = running.enter_context(serving(f"sqlite:///{folder}/open/pbnsec.db", folder, "open"))
    entries = f"{sizes['throughput_entries']:,}"
    for row, source in ((ROWS[5], "127.0.0.1"), (ROWS[6], "::1")):
        a, b, spread = throughput_side_by_side(
            lambda: throughput(on, ONE, source, "/", sizes["seconds"], sizes["clients"]),
            lambda: throughput(off, ONE, source, "/", sizes["seconds"], sizes["clients"]), rounds)
        table.add(row, f"{a:.0f} vs {b:.0f} req/s, GET / from {source}, {entries} entries, user covered, "
                       f"{sizes['clients']} clients, {spread}", ratio(a, b), "≥ 0.90×")

    counts = {who: sign_in_and_count(f"sqlite:///{folder}/enforced/pbnsec.db", folder / "enforced", who)
              for who in (ADMIN, ADMIN_ONE, FIVE, ONE)}
    table.add(ROWS[7], f"GET /, enforcement on: an Owner {counts[ADMIN]} vs {counts[ADMIN_ONE]} statements, "
                       f"staff {counts[FIVE]} vs {counts[ONE]}",
              ratio(counts[ADMIN], counts[ADMIN_ONE]), "1.00× (same count)")

    say("decision vs in-memory matcher …")
    measure_decisions(table, folder, sizes["decide_sizes"], rounds)

    say("PostgreSQL vs SQLite …")
    measure_postgresql(table, folder, sizes, options, on, running)

    say("the gate: a static page through nginx, asking the gate or not …")
    measure_gate(table, folder, sizes, running)

    table.add(ROWS[12], f"{memory['before']:.0f} MiB before the big pages, {memory['after']:.0f} MiB after "
                        f"(a server on the empty database: {memory['empty']:.0f} MiB)",
              ratio(memory["after"], memory["before"]), "—")
    return took


def measure_postgresql(table: Table, folder: Path, sizes: dict, options, sqlite_server: Server,
                       running: ExitStack) -> None:
    if options.no_postgresql:
        table.add(ROWS[11], "skipped (--no-postgresql)", "n/a", "≥ 0.90×")
        return
    try:
        cluster = running.enter_context(pg_support.running_cluster())
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        table.add(ROWS[11], f"skipped: {str(exc).splitlines()[0]}", "n/a", "≥ 0.90×")
        return
    (folder / "pg").mkdir()
    url = cluster.create_database("bench")
    seed_access_db(url, folder / "pg", sizes["throughput_entries"], enforced=True)
    pg = running.enter_context(serving(url, folder, "postgresql"))
    a, b, spread = throughput_side_by_side(
        lambda: throughput(pg, ONE, "127.0.0.1", "/", sizes["seconds"], sizes["clients"]),
        lambda: throughput(sqlite_server, ONE, "127.0.0.1", "/", sizes["seconds"], sizes["clients"]),
        sizes["rounds"])
    table.add(ROWS[11], f"{a:.0f} vs {b:.0f} req/s, GET / enforced, {url.split(':')[0]}:// (default pooling), "
                        f"{spread}",
              ratio(a, b), "≥ 0.90×")
    stop(pg.process)


GATE_HOST = "charts.bench.example"


def gate_site(pbnsec_port: int, site: Path, app_port: int) -> str:
    """nginx for the gate figures: /open/ serves a static page as it is and /app/ the same page once pbnsec's gate
    port lets the request through (the README's snippet, with keep-alive to pbnsec, upstream `pbnsec_gate`); /main/
    asks /gate/verify on pbnsec's main port instead (waitress, upstream `pbnsec_main`); /open-app/ and /app-app/ the
    same for a page of a small app behind nginx (Python's http.server); /login passes sign-in on to pbnsec."""
    verify = """
            internal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-For $remote_addr;"""
    protected = """
            auth_request /_pbnsec_verify;
            auth_request_set $pbnsec_user $upstream_http_x_pbnsec_user;"""
    return f"""
        location = /login {{
            proxy_pass http://127.0.0.1:{pbnsec_port};
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
        location = /_pbnsec_verify {{ proxy_pass http://pbnsec_gate/gate/verify; {verify} }}
        location = /_pbnsec_main {{ proxy_pass http://pbnsec_main/gate/verify; {verify} }}
        location /open/ {{ alias {site}/; }}
        location /app/ {{ {protected} alias {site}/; }}
        location /main/ {{ auth_request /_pbnsec_main; alias {site}/; }}
        location /open-app/ {{ proxy_pass http://127.0.0.1:{app_port}/; }}
        location /app-app/ {{ {protected} proxy_pass http://127.0.0.1:{app_port}/; }}
    """


def measure_gate(table: Table, folder: Path, sizes: dict, running: ExitStack) -> None:
    """A static page through nginx, protected by the gate vs open, on the enforced database (one practice's user,
    their IP covered by an entry among many), pbnsec started as `make run` starts it: the figure issue 12 asks for;
    then the gate's own port vs asking the main port, and the same page served by a small app instead of nginx."""
    url = f"sqlite:///{folder}/enforced/pbnsec.db"
    app = new_app(url, folder / "enforced")
    with app.app_context():
        charts = ProtectedApp.create(name="Bench Charts", host=GATE_HOST)
        ProtectedAppPractice.create(app=charts, practice=Practice.get(Practice.name == PRACTICES[0]))
    database.close()
    site = folder / "site"
    site.mkdir()
    (site / "page.html").write_text("<!doctype html><title>Charts</title>" + "<p>Patient chart</p>" * 100)
    server = running.enter_context(serving(url, folder, "gate", make_run=True, PBNSEC_TRUSTED_PROXIES="1",
                                           PBNSEC_TRUSTED_PROXY_ADDRS="127.0.0.1"))
    app_port = free_port()
    log = folder / "static-app.log"
    with open(log, "wb") as out:
        static_app = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                                       str(site), str(app_port)], stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
    running.callback(stop, static_app)
    wait_for_port(app_port, static_app, log)
    pools = (f"upstream pbnsec_gate {{ server 127.0.0.1:{server.gate_port}; keepalive 16; }}\n"
             f"upstream pbnsec_main {{ server 127.0.0.1:{server.port}; keepalive 16; }}")
    proxy = running.enter_context(nginx(folder, gate_site(server.port, site, app_port), http_extra=pools))
    visitor = HttpVisitor("127.0.0.1")
    landed = visitor.sign_in(proxy, ONE, PASSWORD)
    if landed != "/":
        raise RuntimeError(f"signing in through nginx landed on {landed}")
    headers = {"Host": GATE_HOST, "Cookie": f"pbnsec_session={visitor.cookie}"}
    for path in ("/app/page.html", "/main/page.html", "/app-app/page.html"):
        status, _, _ = visitor.request(proxy, "GET", path, headers={"Host": GATE_HOST})
        if status != 200:
            raise RuntimeError(f"the protected page {path} answered HTTP {status}")

    def rate(path: str):
        return lambda: hammer(proxy, "127.0.0.1", path, headers, sizes["seconds"], sizes["clients"])

    rounds, clients = sizes["rounds"], sizes["clients"]
    a, b, spread = throughput_side_by_side(rate("/app/page.html"), rate("/open/page.html"), rounds)
    table.add(ROWS[13], f"{a:.0f} vs {b:.0f} req/s, a 2 KiB page nginx serves itself, auth_request to the gate "
                        f"port of `flask --app app serve` (keep-alive), {clients} clients, {spread}",
              ratio(a, b), "≥ 0.50×")
    a, b, spread = throughput_side_by_side(rate("/app/page.html"), rate("/main/page.html"), rounds)
    table.add(ROWS[14], f"{a:.0f} vs {b:.0f} req/s, the same page asking the gate port vs /gate/verify on the main "
                        f"port (waitress, 8 threads), {spread}", ratio(a, b), "—")
    a, b, spread = throughput_side_by_side(rate("/app-app/page.html"), rate("/open-app/page.html"), rounds)
    table.add(ROWS[15], f"{a:.0f} vs {b:.0f} req/s, the page served by a small app behind nginx (Python's "
                        f"http.server), {spread}", ratio(a, b), "≥ 0.50×")


@contextmanager
def serving(url: str, folder: Path, name: str, **settings):
    server = Server(url, folder, name, **settings)
    try:
        yield server
    finally:
        stop(server.process)


if __name__ == "__main__":
    sys.exit(main())

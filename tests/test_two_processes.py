"""Two waitress processes on one database agree: a revocation made in one stops a session in the other."""
import http.client
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pbnsec.migrations import LATEST
from pbnsec.models import Grant, Practice, User
from conftest import PASSWORD, make_app, restrict

ROOT = Path(__file__).resolve().parent.parent
SECRET = "two-processes-share-this-secret-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_server(database: Path, port: int, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    """Start `flask --app app serve` on the database as make run does; see wait_until_serving."""
    env = dict(os.environ, PBNSEC_DATABASE_URL=f"sqlite:///{database}", PBNSEC_PORT=str(port),
               PBNSEC_HOST="127.0.0.1", PBNSEC_SECRET_KEY=SECRET, PBNSEC_TRUSTED_PROXIES="0",
               PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "serve"], cwd=ROOT, env=env,
                            stdout=stdout, stderr=subprocess.PIPE)


def wait_until_serving(process: subprocess.Popen, port: int) -> subprocess.Popen:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server on port {port} did not start")


def start_server(database: Path, port: int) -> subprocess.Popen:
    return wait_until_serving(spawn_server(database, port), port)


class HttpVisitor:
    """A tiny browser over real HTTP: one cookie, a chosen loopback source address."""

    def __init__(self, source_ip: str):
        self.source_ip = source_ip
        self.cookie = None
        self.token = None

    def request(self, port, method, path, form=None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(self.source_ip, 0))
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.cookie:
            headers["Cookie"] = f"pbnsec_session={self.cookie}"
        body = None
        if form is not None:
            from urllib.parse import urlencode
            body = urlencode(dict(form, csrf_token=self.token))
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie" and value.startswith("pbnsec_session="):
                self.cookie = value.split(";")[0].split("=", 1)[1]
        if found := re.search(r'name="csrf_token" value="([^"]+)"', text):
            self.token = found.group(1)
        conn.close()
        return response.status, response.getheader("Location"), text

    def sign_in(self, port, email):
        self.request(port, "GET", "/login")
        status, location, _ = self.request(port, "POST", "/login", {"email": email, "password": PASSWORD})
        assert status == 303, location
        return location


@pytest.fixture
def two_servers(tmp_path, seeded_database):
    database = tmp_path / "pbnsec.db"
    shutil.copyfile(seeded_database, database)
    app = make_app(tmp_path)
    ports = [free_port(), free_port()]
    servers = [start_server(database, port) for port in ports]
    yield app, ports
    for server in servers:
        server.terminate()
        server.wait(timeout=10)


def test_revocation_in_one_process_stops_the_session_in_the_other(two_servers):
    app, (port_a, port_b) = two_servers
    restrict(app, "Riverside Dental", "127.0.0.1")  # Ann's desk
    with app.app_context():
        riverside = Practice.get(Practice.name == "Riverside Dental")
        fay = User.get(User.email == "fay@example.com")
        grant = Grant.create(user=fay, practice=riverside, ip="127.0.0.5")

    fay_browser, ann_browser = HttpVisitor("127.0.0.5"), HttpVisitor("127.0.0.1")
    assert fay_browser.sign_in(port_a, "fay@example.com") == "/"
    assert fay_browser.request(port_a, "GET", "/")[0] == 200
    assert fay_browser.request(port_b, "GET", "/")[0] == 200  # the same session works on either process

    ann_browser.sign_in(port_b, "ann@example.com")
    ann_browser.request(port_b, "GET", "/security/allowlist")
    status, _, _ = ann_browser.request(port_b, "POST", f"/security/grants/{grant.id}/revoke", {})
    assert status == 303

    status, location, _ = fay_browser.request(port_a, "GET", "/")
    assert (status, location) == (303, "/blocked")
    status, _, page = fay_browser.request(port_a, "GET", "/blocked")
    assert "Your IP address 127.0.0.5 requires approval" in page


def test_servers_starting_together_on_an_empty_database_all_come_up_and_create_it_once(tmp_path):
    database = tmp_path / "pbnsec.db"
    ports = [free_port(), free_port(), free_port()]
    outputs = [tmp_path / f"server-{port}.out" for port in ports]
    handles = [open(output, "w") for output in outputs]
    servers = [spawn_server(database, port, stdout=handle) for port, handle in zip(ports, handles)]
    try:
        for server, port in zip(servers, ports):
            wait_until_serving(server, port)
        for port in ports:
            status, _, page = HttpVisitor("127.0.0.1").request(port, "GET", "/login")
            assert status == 200 and 'name="password"' in page
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        for handle in handles:
            handle.close()

    printed = [output.read_text() for output in outputs]
    assert sum("Password: " in text for text in printed) == 1  # one Owner, its password shown once
    con = sqlite3.connect(database)
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(LATEST,)]
    assert con.execute('SELECT email FROM "user"').fetchall() == [("owner@example.com",)]
    con.close()

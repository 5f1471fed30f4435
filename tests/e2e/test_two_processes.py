"""Several app processes on one database agree: a revocation made in one stops a session in the other, and
processes starting together on an empty database all come up and create it once."""
import shutil
import sqlite3

import pytest
from conftest import PASSWORD, make_app, restrict
from realworld import HttpVisitor, app_server, spawn_app, stop, wait_for_port

from pbnsec.migrations import LATEST
from pbnsec.models import Grant, Practice, User


@pytest.fixture
def two_servers(tmp_path, seeded_database):
    database = tmp_path / "pbnsec.db"
    shutil.copyfile(seeded_database, database)
    app = make_app(tmp_path)
    with app_server(tmp_path, database) as a, app_server(tmp_path, database) as b:
        yield app, (a.port, b.port)


def test_revocation_in_one_process_stops_the_session_in_the_other(two_servers):
    app, (port_a, port_b) = two_servers
    restrict(app, "Riverside Dental", "127.0.0.1")  # Ann's desk
    with app.app_context():
        riverside = Practice.get(Practice.name == "Riverside Dental")
        fay = User.get(User.email == "fay@example.com")
        grant = Grant.create(user=fay, practice=riverside, ip="127.0.0.5")

    fay_browser, ann_browser = HttpVisitor("127.0.0.5"), HttpVisitor("127.0.0.1")
    assert fay_browser.sign_in(port_a, "fay@example.com", PASSWORD) == "/"
    assert fay_browser.request(port_a, "GET", "/")[0] == 200
    assert fay_browser.request(port_b, "GET", "/")[0] == 200  # the same session works on either process

    ann_browser.sign_in(port_b, "ann@example.com", PASSWORD)
    ann_browser.request(port_b, "GET", "/security/allowlist")
    status, _, _ = ann_browser.request(port_b, "POST", f"/security/grants/{grant.id}/revoke", {})
    assert status == 303

    status, location, _ = fay_browser.request(port_a, "GET", "/")
    assert (status, location) == (303, "/login")  # signed out: her password is needed again
    assert fay_browser.sign_in(port_b, "fay@example.com", PASSWORD) == "/blocked"
    status, _, page = fay_browser.request(port_b, "GET", "/blocked")
    assert "Your IP address 127.0.0.5 requires approval" in page


def test_servers_starting_together_on_an_empty_database_all_come_up_and_create_it_once(tmp_path):
    database = tmp_path / "pbnsec.db"
    servers = [spawn_app(tmp_path, database) for _ in range(3)]
    try:
        for server in servers:
            wait_for_port(server.port, server.process, server.log)
        for server in servers:
            status, _, page = HttpVisitor("127.0.0.1").request(server.port, "GET", "/login")
            assert status == 200 and 'name="password"' in page
    finally:
        for server in servers:
            stop(server.process)

    assert sum("Password: " in server.output for server in servers) == 1  # one Owner, its password shown once
    con = sqlite3.connect(database)
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(LATEST,)]
    assert con.execute('SELECT email FROM "user"').fetchall() == [("owner@example.com",)]
    con.close()


def test_an_approval_given_in_one_process_expires_in_the_other(two_servers):
    from datetime import timedelta

    from pbnsec.models import AccessRequest, utcnow

    app, (port_a, port_b) = two_servers
    restrict(app, "Riverside Dental", "127.0.0.1")  # Ann's desk
    with app.app_context():
        request = AccessRequest.create(user=User.get(User.email == "fay@example.com"),
                                       practice=Practice.get(Practice.name == "Riverside Dental"), ip="127.0.0.5")
    ann, fay = HttpVisitor("127.0.0.1"), HttpVisitor("127.0.0.5")
    ann.sign_in(port_b, "ann@example.com", PASSWORD)
    ann.request(port_b, "GET", "/security/requests")
    status, _, _ = ann.request(port_b, "POST", f"/security/requests/{request.id}/approve", {"duration": "8h"})
    assert status == 303
    with app.app_context():
        grant = Grant.get(Grant.request == request.id)
        assert timedelta(hours=7, minutes=59) < grant.expires_at - utcnow() <= timedelta(hours=8)

    assert fay.sign_in(port_a, "fay@example.com", PASSWORD) == "/"
    with app.app_context():  # eight hours pass
        Grant.update(expires_at=utcnow() - timedelta(seconds=1)).where(Grant.id == grant.id).execute()
    assert fay.request(port_b, "GET", "/")[:2] == (303, "/login")  # the other process stops her at once
    assert fay.sign_in(port_a, "fay@example.com", PASSWORD) == "/blocked"
    page = fay.request(port_a, "GET", "/blocked")[2]
    assert "Expired" in page and 'id="request-form"' in page  # she may ask again
    with app.app_context():
        assert Grant.select().where(Grant.id == grant.id).exists()  # kept for the record


def test_deactivation_in_one_process_ends_the_session_in_the_other(two_servers):
    app, (port_a, port_b) = two_servers
    with app.app_context():
        fay_id = User.get(User.email == "fay@example.com").id
    fay, ann = HttpVisitor("127.0.0.5"), HttpVisitor("127.0.0.1")
    assert fay.sign_in(port_a, "fay@example.com", PASSWORD) == "/"
    assert fay.request(port_a, "GET", "/")[0] == 200

    ann.sign_in(port_b, "ann@example.com", PASSWORD)
    ann.request(port_b, "GET", f"/people/{fay_id}")
    status, location, _ = ann.request(port_b, "POST", f"/people/{fay_id}/deactivate", {})
    assert (status, location) == (303, f"/people/{fay_id}")

    assert fay.request(port_a, "GET", "/")[:2] == (303, "/login")  # the other process stops her at once
    fay.request(port_a, "GET", "/login")
    status, _, page = fay.request(port_a, "POST", "/login", {"email": "fay@example.com", "password": PASSWORD})
    assert status == 401 and "Wrong email or password." in page


def test_a_policy_both_processes_compiled_is_dropped_by_a_change_in_either(two_servers, tmp_path):
    """Each process keeps a compiled policy per practice: a change through one, or written by hand straight into
    the database, stops the next request on both."""
    from pbnsec.models import AllowlistEntry

    app, (port_a, port_b) = two_servers
    restrict(app, "Riverside Dental", "127.0.0.1", "127.0.0.5")  # Ann's desk and Fay's
    with app.app_context():
        fay_desk = AllowlistEntry.get(AllowlistEntry.network == "127.0.0.5/32").id
    fay, ann = HttpVisitor("127.0.0.5"), HttpVisitor("127.0.0.1")
    assert fay.sign_in(port_a, "fay@example.com", PASSWORD) == "/"
    for _ in range(2):  # compiled, then used as compiled, in each process
        assert fay.request(port_a, "GET", "/")[0] == 200 and fay.request(port_b, "GET", "/")[0] == 200

    ann.sign_in(port_b, "ann@example.com", PASSWORD)
    ann.request(port_b, "GET", "/security/allowlist")
    status, _, _ = ann.request(port_b, "POST", f"/security/allowlist/{fay_desk}/active", {"active": "0"})
    assert status == 303
    assert fay.request(port_a, "GET", "/")[:2] == (303, "/login")  # the process that did not make the change

    # Switched on again by hand (a console UPDATE, no app involved): both processes let her in again...
    con = sqlite3.connect(tmp_path / "pbnsec.db")
    with con:
        con.execute("UPDATE allowlist_entry SET active = 1 WHERE id = ?", (fay_desk,))
    assert fay.sign_in(port_a, "fay@example.com", PASSWORD) == "/"
    for _ in range(2):
        assert fay.request(port_a, "GET", "/")[0] == 200 and fay.request(port_b, "GET", "/")[0] == 200
    # ...and off by hand: stopped on her very next request, whichever process answers it.
    with con:
        con.execute("UPDATE allowlist_entry SET active = 0 WHERE id = ?", (fay_desk,))
    con.close()
    assert fay.request(port_b, "GET", "/")[:2] == (303, "/login")

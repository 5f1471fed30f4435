"""The gate end to end: a real nginx with `auth_request` in front of a tiny upstream app, asking pbnsec (served as
the README serves it) about each request; clients on distinct loopback source addresses, the app's host name in the
Host header. Nothing here forges a forwarding header to stand for a client."""
import json
import os
import shutil
import sqlite3
import time

import pytest
from conftest import PASSWORD, make_app, protect_app, restrict
from realworld import HttpVisitor, app_server, app_server_block, free_port, header_echo_server, nginx

from pbnsec.models import User

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/nginx") and not shutil.which("nginx"),
                                reason="make test installs nginx-light")

BASE = "https://security.riverside.example"
CHARTS = "charts.riverside.example"
OFFICE, HOME = "127.0.0.71", "127.0.0.72"
HEADERS = ("User", "Name", "Role", "Practice")


def gate_locations(gate_port: int, upstream_port: int) -> str:
    """nginx in front of a protected app: every request asks /gate/verify first (the README's snippet, inline), at
    gate_port: the gate's own port or pbnsec's main port."""
    passed = " ".join(f"auth_request_set $pbnsec_{h.lower()} $upstream_http_x_pbnsec_{h.lower()}; "
                      f"proxy_set_header X-Pbnsec-{h} $pbnsec_{h.lower()};" for h in HEADERS)
    return f"""
        location = /_pbnsec_verify {{
            internal;
            proxy_pass http://127.0.0.1:{gate_port}/gate/verify;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host "";
            proxy_set_header X-Forwarded-Uri "";
            proxy_set_header X-Forwarded-Method "";
        }}
        location / {{
            auth_request /_pbnsec_verify;
            auth_request_set $pbnsec_location $upstream_http_location;
            error_page 401 403 = @pbnsec;
            {passed}
            proxy_set_header Host $host;
            proxy_pass http://127.0.0.1:{upstream_port};
        }}
        location @pbnsec {{
            if ($pbnsec_location = "") {{ return 403; }}
            return 302 $pbnsec_location;
        }}
    """


@pytest.fixture
def database(tmp_path, seeded_database):
    """The seeded people; Riverside Dental lets in only OFFICE; Charts is Riverside's app."""
    from pbnsec.db import database as db

    copy = tmp_path / "pbnsec.db"
    shutil.copyfile(seeded_database, copy)
    holder = tmp_path / "setup"
    holder.mkdir()
    app = make_app(holder, DATABASE_URL=f"sqlite:///{copy}")
    restrict(app, "Riverside Dental", OFFICE)
    protect_app(app, "Charts", CHARTS)
    with app.app_context():
        User.update(name="Håkon Ødegård").where(User.email == "hal@example.com").execute()
    db.close()
    return copy


@pytest.fixture(params=["make run", "waitress-serve"])
def gate(request, tmp_path, database):
    """(pbnsec's port, nginx's port): pbnsec believes X-Forwarded-For from 127.0.0.1 only (nginx), so clients on
    other loopback addresses sign in to it directly and are seen as themselves. nginx asks the gate's own port of
    `make run`, or /gate/verify on the port of the README's waitress-serve line (which opens no gate port)."""
    with app_server(tmp_path, database, proxies=1, proxy_addrs="127.0.0.1", command=request.param,
                    PBNSEC_BASE_URL=BASE) as app, header_echo_server() as upstream, \
            nginx(tmp_path, gate_locations(app.gate_port or app.port, upstream)) as proxy:
        yield app.port, proxy


def open_app(visitor: HttpVisitor, proxy: int, path: str = "/patients/7", host: str = CHARTS, headers=None):
    return visitor.request(proxy, "GET", path, headers={"Host": host, **(headers or {})})


def test_allowed_from_the_office_the_upstream_learns_who_it_is_and_the_request_is_counted(gate, database):
    pbnsec, proxy = gate
    fay = HttpVisitor(OFFICE)
    assert fay.sign_in(pbnsec, "fay@example.com", PASSWORD) == "/"
    status, _, body = open_app(fay, proxy)
    assert status == 200, body
    seen = json.loads(body)
    assert seen["path"] == "/patients/7"
    assert seen["headers"] == {"x-pbnsec-user": ["fay@example.com"], "x-pbnsec-name": ["Fay Desk"],
                               "x-pbnsec-role": ["Front Desk"], "x-pbnsec-practice": ["Riverside Dental"]}
    # Counted in the server's memory, then added to the table by its own thread, with no further request.
    assert counted(database) == [(1, 0)]


def counted(database, seconds: float = 30):
    """gate_count's (allowed, refused) rows once the server has written some (it does every few seconds)."""
    deadline = time.monotonic() + seconds
    while True:
        con = sqlite3.connect(database)
        rows = con.execute("SELECT allowed, refused FROM gate_count").fetchall()
        con.close()
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_from_elsewhere_the_same_browser_is_sent_to_the_blocked_page_and_nobody_to_sign_in(gate):
    pbnsec, proxy = gate
    fay = HttpVisitor(OFFICE)
    fay.sign_in(pbnsec, "fay@example.com", PASSWORD)
    fay.source_ip = HOME  # the laptop went home, with its cookie
    status, location, body = open_app(fay, proxy, "/patients/7?tab=x-rays")
    assert status == 302 and "fay@example.com" not in body
    assert location.startswith(f"{BASE}/gate/blocked?app=")
    assert location.endswith("&next=http%3A%2F%2Fcharts.riverside.example%2Fpatients%2F7%3Ftab%3Dx-rays")

    stranger = HttpVisitor(OFFICE)
    status, location, _ = open_app(stranger, proxy)
    assert (status, location) == (302, f"{BASE}/login?next=http%3A%2F%2Fcharts.riverside.example%2Fpatients%2F7")


def test_a_name_outside_ascii_reaches_the_upstream_as_utf8(gate):
    pbnsec, proxy = gate
    hal = HttpVisitor(OFFICE)
    hal.sign_in(pbnsec, "hal@example.com", PASSWORD)
    status, _, body = open_app(hal, proxy)
    assert status == 200 and json.loads(body)["headers"]["x-pbnsec-name"] == ["Håkon Ødegård"]


def test_an_unknown_host_is_refused(gate):
    pbnsec, proxy = gate
    fay = HttpVisitor(OFFICE)
    fay.sign_in(pbnsec, "fay@example.com", PASSWORD)
    status, location, body = open_app(fay, proxy, host="payroll.riverside.example")
    assert (status, location) == (403, None) and "fay@example.com" not in body


def test_a_forged_x_pbnsec_user_from_the_client_never_reaches_the_upstream(gate):
    pbnsec, proxy = gate
    fay = HttpVisitor(OFFICE)
    fay.sign_in(pbnsec, "fay@example.com", PASSWORD)
    forged = {"X-Pbnsec-User": "owner@example.com", "X-Pbnsec-Role": "Owner", "X-Pbnsec-Name": "Olive Owner",
              "X-Pbnsec-Practice": "Lakeside Dental"}
    status, _, body = open_app(fay, proxy, headers=forged)
    assert status == 200, body
    assert json.loads(body)["headers"] == {"x-pbnsec-user": ["fay@example.com"], "x-pbnsec-name": ["Fay Desk"],
                                           "x-pbnsec-role": ["Front Desk"], "x-pbnsec-practice": ["Riverside Dental"]}
    # Nor does one claiming a different original request, or a forwarded address: nginx sets those itself.
    status, _, body = open_app(fay, proxy, headers={"X-Original-URL": "https://payroll.riverside.example/",
                                                    "X-Forwarded-For": HOME, "X-Forwarded-Host": "evil.example"})
    assert status == 200 and json.loads(body)["headers"]["x-pbnsec-user"] == ["fay@example.com"]
    fay.source_ip = HOME
    assert open_app(fay, proxy, headers={"X-Forwarded-For": OFFICE})[0] == 302  # still seen at home


def test_signing_out_of_pbnsec_signs_out_of_the_app(gate):
    pbnsec, proxy = gate
    fay = HttpVisitor(OFFICE)
    fay.sign_in(pbnsec, "fay@example.com", PASSWORD)
    assert open_app(fay, proxy)[0] == 200
    fay.request(pbnsec, "GET", "/")
    assert fay.request(pbnsec, "POST", "/logout", {})[0] == 303
    status, location, _ = open_app(fay, proxy)
    assert status == 302 and location.startswith(f"{BASE}/login?next=")


def test_the_shipped_snippet_keeps_every_spelling_of_a_forged_x_pbnsec_header_from_the_upstream(tmp_path, database):
    """deploy/gate/nginx.conf as pasted into an nginx that passes header names with underscores on (a setting
    some sites need): an X_Pbnsec_User, which many app servers read as X-Pbnsec-User, is not passed either."""
    port = free_port()
    with app_server(tmp_path, database, proxies=1, proxy_addrs="127.0.0.1", PBNSEC_BASE_URL=BASE) as app, \
            header_echo_server() as upstream:
        servers = "underscores_in_headers on;\n" + app_server_block(port, CHARTS, app.gate_port, upstream, BASE)
        with nginx(tmp_path, "location / { return 404; }", http_extra=servers, port=port) as proxy:
            fay = HttpVisitor(OFFICE)
            fay.sign_in(app.port, "fay@example.com", PASSWORD)
            forged = {"X_Pbnsec_User": "owner@example.com", "x_pbnsec_role": "Owner",
                      "X-PBNSEC-NAME": "Olive Owner", "x-pbnsec-practice": "Lakeside Dental"}
            status, _, body = open_app(fay, proxy, headers=forged)
            assert status == 200, body
            assert json.loads(body)["headers"] == {
                "x-pbnsec-user": ["fay@example.com"], "x-pbnsec-name": ["Fay Desk"],
                "x-pbnsec-role": ["Front Desk"], "x-pbnsec-practice": ["Riverside Dental"]}
            # Nor does an underscore spelling of a header the gate reads stand for the client's address.
            fay.source_ip = HOME
            status, location, _ = open_app(fay, proxy, headers={"X_Forwarded_For": OFFICE,
                                                                 "X_Original_URL": f"http://{CHARTS}/"})
            assert status == 302 and location.startswith(f"{BASE}/gate/blocked?")

"""End to end through the real topology: the app started as the README starts it, a real nginx in front, and
clients on distinct loopback source addresses. No test here forges a forwarding header to stand for a client."""
import html
import os
import re
import shutil
import subprocess

import pytest
from conftest import PASSWORD, restrict
from realworld import (
    ROOT,
    SECRET,
    HttpVisitor,
    app_server,
    nginx,
    proxy_block,
    site_location_block,
)

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/nginx") and not shutil.which("nginx"),
                                reason="make test installs nginx-light")


def seen_ip(page: str) -> str:
    """The client IP the app derived, as the Connection check on the IP Allowlist page shows it."""
    found = re.search(r'id="conn-client">([^<]*)<', page)
    assert found, page[:3000]
    return html.unescape(found.group(1))


def seen_by_app(port: int, source_ip: str, headers=None) -> str:
    """Sign Bob (Admin of Lakeside, never restricted here) in from source_ip and read what the app thinks her IP is."""
    bob = HttpVisitor(source_ip)
    bob.sign_in(port, "bob@example.com", PASSWORD)
    status, _, page = bob.request(port, "GET", "/security/allowlist", headers=headers)
    assert status == 200
    return seen_ip(page)


@pytest.fixture
def database(tmp_path, seeded_database):
    copy = tmp_path / "pbnsec.db"
    shutil.copyfile(seeded_database, copy)
    return copy


def test_direct_without_proxies_the_socket_peer_is_the_client(tmp_path, database):
    with app_server(tmp_path, database, proxies=0, PBNSEC_HOST="127.0.0.1,::1") as app:
        assert seen_by_app(app.port, "127.0.0.7") == "127.0.0.7"
        assert seen_by_app(app.port, "::1") == "::1"
        # A client can write any header it likes; without proxies none is believed.
        assert seen_by_app(app.port, "127.0.0.8", {"X-Forwarded-For": "203.0.113.7"}) == "127.0.0.8"


@pytest.mark.parametrize("command", ["make run", "waitress-serve"])
def test_behind_the_shipped_nginx_site_the_app_sees_each_client(tmp_path, database, command):
    with app_server(tmp_path, database, proxies=1, command=command) as app, \
            nginx(tmp_path, site_location_block(app.port)) as proxy:
        assert seen_by_app(proxy, "127.0.0.21") == "127.0.0.21"
        assert seen_by_app(proxy, "::1") == "::1"
        # nginx replaces whatever X-Forwarded-For the client sent with the address it saw.
        assert seen_by_app(proxy, "127.0.0.22", {"X-Forwarded-For": "203.0.113.7"}) == "127.0.0.22"
        ann = HttpVisitor("127.0.0.23")
        ann.sign_in(proxy, "ann@example.com", PASSWORD)
        page = ann.request(proxy, "GET", "/security/allowlist")[2]
        assert '<code id="conn-xff">127.0.0.23</code>' in page and "Looks right" in page


def test_two_proxies_in_a_row(tmp_path, database):
    with app_server(tmp_path, database, proxies=2) as app, \
            nginx(tmp_path, proxy_block(app.port, "$proxy_add_x_forwarded_for")) as inner, \
            nginx(tmp_path, proxy_block(inner, "$remote_addr")) as outer:
        assert seen_by_app(outer, "127.0.0.31") == "127.0.0.31"
        assert seen_by_app(outer, "::1") == "::1"


def test_a_proxy_that_sends_no_header_leaves_the_ip_unknown_and_blocked(tmp_path, database):
    restrict_riverside(database, tmp_path, "127.0.0.0/8", "::1")
    with app_server(tmp_path, database, proxies=1) as app, nginx(tmp_path, proxy_block(app.port, None)) as proxy:
        # Never the proxy's own address (127.0.0.1 is on the allowlist): the sign-in is blocked instead.
        fay = HttpVisitor("127.0.0.41")
        assert fay.sign_in(proxy, "fay@example.com", PASSWORD) == "/blocked"
        assert "Your IP address (unknown) requires approval" in fay.request(proxy, "GET", "/blocked")[2]
        assert seen_by_app(proxy, "127.0.0.42") == "unknown"  


def test_a_forged_header_sent_straight_to_the_app_port_is_ignored(tmp_path, database):
    with app_server(tmp_path, database, proxies=1, proxy_addrs="127.0.0.1") as app, \
            nginx(tmp_path, proxy_block(app.port, "$remote_addr")) as proxy:
        assert seen_by_app(app.port, "127.0.0.51", {"X-Forwarded-For": "203.0.113.7"}) == "127.0.0.51"
        assert seen_by_app(proxy, "127.0.0.52") == "127.0.0.52"


def restrict_riverside(database, folder, *networks):
    from conftest import make_app

    from pbnsec.db import database as db

    holder = folder / "restrict"
    holder.mkdir(exist_ok=True)
    app = make_app(holder, DATABASE_URL=f"sqlite:///{database}")
    restrict(app, "Riverside Dental", *networks)
    db.close()


def test_enforcement_through_nginx_lets_the_office_in_and_blocks_everyone_else(tmp_path, database):
    restrict_riverside(database, tmp_path, "127.0.0.61")
    with app_server(tmp_path, database, proxies=1) as app, \
            nginx(tmp_path, site_location_block(app.port)) as proxy:
        office = HttpVisitor("127.0.0.61")
        assert office.sign_in(proxy, "fay@example.com", PASSWORD) == "/"
        assert "from <code>127.0.0.61</code>" in office.request(proxy, "GET", "/")[2]
        for source in ("127.0.0.62", "::1"):
            home = HttpVisitor(source)
            assert home.sign_in(proxy, "fay@example.com", PASSWORD) == "/blocked"
            assert f"Your IP address {source} requires approval" in home.request(proxy, "GET", "/blocked")[2]
        # The proxy's own address is allowlisted nowhere here, but even were it, nobody would be seen as it.
        assert "127.0.0.1" not in home.request(proxy, "GET", "/blocked")[2].split("requires approval")[0]


def practice_id_on(page: str) -> str:
    return re.search(r'name="practice" value="(\d+)"', page).group(1)


@pytest.mark.parametrize("command", ["make run", "waitress-serve"])
def test_following_the_readme_behind_nginx(tmp_path, command):
    """A fresh database, the README's nginx site and PBNSEC_TRUSTED_PROXIES=1: the Owner's one-time password is
    printed, the Owner sees their own IP, adds it, switches restrictions on, and a colleague elsewhere is blocked."""
    database = tmp_path / "fresh.db"
    with app_server(tmp_path, database, proxies=1, command=command) as app, \
            nginx(tmp_path, site_location_block(app.port)) as proxy:
        password = re.search(r"Password: (\S+)", app.output).group(1)
        owner = HttpVisitor("127.0.0.71")
        assert owner.sign_in(proxy, "owner@example.com", password) == "/account/password"
        owner.request(proxy, "GET", "/account/password")
        new_password = "tidy molar chart 2026 blue"
        status, location, _ = owner.request(proxy, "POST", "/account/password",
                                            {"current": password, "new": new_password, "repeat": new_password})
        assert (status, location) == (303, "/")
        assert "from <code>127.0.0.71</code>" in owner.request(proxy, "GET", "/")[2]

        page = owner.request(proxy, "GET", "/security/allowlist")[2]
        assert '<code id="my-ip">127.0.0.71</code>' in page and "Not covered" in page
        practice = practice_id_on(page)
        # Loopback stands in for the office here, so the app warns and wants the box ticked.
        assert 'id="quick-confirm-local" required' in page
        status, _, _ = owner.request(proxy, "POST", "/security/allowlist",
                                     {"address": "127.0.0.71", "label": "Owner's desk", "practice": practice,
                                      "confirm_local": "127.0.0.71"})
        assert status == 303
        owner.request(proxy, "GET", "/security/settings")
        status, _, _ = owner.request(proxy, "POST", f"/security/settings/{practice}/enforced", {"enforced": "1"})
        assert status == 303

        env = dict(os.environ, PBNSEC_DATABASE_URL=f"sqlite:///{database}", PBNSEC_SECRET_KEY=SECRET)
        created = subprocess.run([str(ROOT / ".venv/bin/flask"), "--app", "app", "users", "create",
                                  "--email", "fay@example.com", "--name", "Fay Desk", "--role", "Front Desk",
                                  "--practice", "Main Practice", "--password", PASSWORD],
                                 cwd=ROOT, env=env, capture_output=True, text=True)
        assert created.returncode == 0, created.stderr

        colleague = HttpVisitor("127.0.0.72")
        assert colleague.sign_in(proxy, "fay@example.com", PASSWORD) == "/blocked"
        assert "Your IP address 127.0.0.72 requires approval" in colleague.request(proxy, "GET", "/blocked")[2]
        assert owner.request(proxy, "GET", "/")[0] == 200  # and the Owner is still in


def test_pbnsec_hosts_behind_nginx_refuses_other_host_names_and_keeps_health_checks(tmp_path, database):
    with app_server(tmp_path, database, proxies=1, PBNSEC_HOSTS="pbnsec.example.org") as app, \
            nginx(tmp_path, site_location_block(app.port)) as proxy:
        visitor = HttpVisitor("127.0.0.81")
        status, _, page = visitor.request(proxy, "GET", "/login", headers={"Host": "pbnsec.example.org"})
        assert status == 200 and 'name="password"' in page
        assert visitor.request(proxy, "GET", "/login", headers={"Host": "evil.example"})[0] == 400
        # A health check on this machine reaches the app port by its own address.
        assert HttpVisitor("127.0.0.1").request(app.port, "GET", "/healthz")[:3:2] == (200, "ok")

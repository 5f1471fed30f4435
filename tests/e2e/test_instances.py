"""Several app instances on one PostgreSQL database behind one nginx `upstream` (round robin), as a larger group runs
pbnsec: one `make run` and two `waitress-serve` processes, clients on distinct loopback addresses.

Round robin sends consecutive requests to consecutive instances, so three requests in a row reach all three: a
change made through one instance must stop the next request on each of them.
"""
from __future__ import annotations

import threading
from datetime import datetime

import pytest
from conftest import PASSWORD, make_app, seed
from realworld import HttpVisitor, nginx, site_location_block, spawn_app, stop, wait_for_port

from pbnsec.models import AccessRequest, AllowlistEntry, AuditEvent, Grant, Practice, User

OFFICE, HOME, HAL_HOME, STRANGER = "127.0.0.1", "127.0.0.9", "127.0.0.8", "127.0.0.77"
INSTANCES = 3


class Group:
    def __init__(self, app, port, instances):
        self.app, self.port, self.instances = app, port, instances

    def visitor(self, ip: str, email: str | None = None) -> HttpVisitor:
        v = HttpVisitor(ip)
        if email:
            v.sign_in(self.port, email, PASSWORD)
        return v

    def get(self, v: HttpVisitor, path: str = "/"):
        return v.request(self.port, "GET", path)

    def post(self, v: HttpVisitor, path: str, form: dict, page: str = "/"):
        self.get(v, page)  # the session's CSRF token
        return v.request(self.port, "POST", path, form)

    def served(self, email: str, path: str) -> list[int]:
        """How many requests of this person for this path each instance logged."""
        needle = f'path="{path}"'
        return [sum(1 for line in i.output.splitlines() if needle in line and f'email="{email}"' in line)
                for i in self.instances]


@pytest.fixture(scope="module")
def group(tmp_path_factory, postgres):
    cluster, _ = postgres
    folder = tmp_path_factory.mktemp("instances")
    url = cluster.create_database("instances")
    app = make_app(folder, DATABASE_URL=url)
    seed(app)
    commands = ["make run"] + ["waitress-serve"] * (INSTANCES - 1)
    instances = [spawn_app(folder, folder / "unused.db", proxies=1, command=command, PBNSEC_DATABASE_URL=url)
                 for command in commands]
    try:
        for instance in instances:
            wait_for_port(instance.port, instance.process, instance.log)
        servers = " ".join(f"server 127.0.0.1:{i.port};" for i in instances)
        location = site_location_block(8000).replace("http://127.0.0.1:8000", "http://pbnsec_instances")
        with nginx(folder, location, http_extra=f"upstream pbnsec_instances {{ {servers} }}") as port:
            yield Group(app, port, instances)
    finally:
        for instance in instances:
            stop(instance.process)
        from pbnsec.db import database
        database.close()
        database.obj.close_all()
        cluster.drop_database("instances")


def test_a_session_made_on_one_instance_works_on_every_other(group):
    fay = group.visitor(HOME, "fay@example.com")
    statuses = [group.get(fay, "/")[0] for _ in range(2 * INSTANCES)]
    assert statuses == [200] * (2 * INSTANCES)
    assert all(count >= 2 for count in group.served("fay@example.com", "/")), group.served("fay@example.com", "/")


def test_signing_out_on_one_instance_ends_the_session_on_every_other(group):
    fay = group.visitor(HOME, "fay@example.com")
    cookie = fay.cookie
    assert group.post(fay, "/logout", {})[0] == 303
    fay.cookie = cookie  # the cookie kept by someone who copied it
    for _ in range(INSTANCES):
        status, location, _ = group.get(fay, "/")
        assert (status, location) == (303, "/login"), (status, location)


def test_the_sign_in_limit_is_one_counter_across_instances(group):
    stranger = HttpVisitor(STRANGER)
    group.get(stranger, "/login")
    statuses = [stranger.request(group.port, "POST", "/login", {"email": "owner@example.com",
                                                                  "password": "not the password"})[0]
                for _ in range(6)]
    assert statuses == [401] * 5 + [429]  # five wrong passwords per account and address, wherever they landed


def test_changes_on_one_instance_stop_the_next_request_on_every_instance(group):
    with group.app.app_context():
        riverside = Practice.get(Practice.name == "Riverside Dental").id
        hal_id = User.get(User.email == "hal@example.com").id
    ann = group.visitor(OFFICE, "ann@example.com")
    assert group.post(ann, "/security/allowlist", {"address": OFFICE, "label": "Office", "practice": riverside,
                                                   "confirm_local": OFFICE}, page="/security/allowlist")[0] == 303

    # IP restrictions switched on through one instance: Fay at home is stopped on every instance.
    fays = [group.visitor(HOME, "fay@example.com") for _ in range(INSTANCES)]
    status, _, text = group.post(ann, f"/security/settings/{riverside}/enforced", {"enforced": "1"},
                                 page="/security/settings")
    assert status == 409 and "Fay Desk" in text  # the impact preview first
    assert group.post(ann, f"/security/settings/{riverside}/enforced", {"enforced": "1", "confirm_impact": "1"},
                      page="/security/settings")[0] == 303
    assert [group.get(fay, "/")[0] for fay in fays] == [303] * INSTANCES

    # Fay asks from home; Ann approves; three sessions from home work; the grant is revoked: all three stop.
    fay = HttpVisitor(HOME)
    group.get(fay, "/login")
    assert fay.request(group.port, "POST", "/login", {"email": "fay@example.com", "password": PASSWORD})[1] == "/blocked"
    assert group.post(fay, "/access-requests", {"practice": riverside, "note": "home"}, page="/blocked")[0] == 303
    with group.app.app_context():
        request_id = AccessRequest.get(AccessRequest.status == "pending").id
    assert group.post(ann, f"/security/requests/{request_id}/approve", {"duration": "forever"},
                      page="/security/requests")[0] == 303
    fays = [group.visitor(HOME, "fay@example.com") for _ in range(INSTANCES)]
    assert [group.get(fay, "/")[0] for fay in fays] == [200] * INSTANCES
    with group.app.app_context():
        grant_id = Grant.get().id
    assert group.post(ann, f"/security/grants/{grant_id}/revoke", {}, page="/security/allowlist")[0] == 303
    assert [group.get(fay, "/")[0] for fay in fays] == [303] * INSTANCES

    # Her home added to the allowlist: every instance compiles Riverside's policy with it and keeps deciding on
    # it; the entry switched off through one instance: each instance drops its compiled policy on her next request.
    assert group.post(ann, "/security/allowlist", {"address": HOME, "label": "Fay at home", "practice": riverside,
                                                   "confirm_local": HOME}, page="/security/allowlist")[0] == 303
    fays = [group.visitor(HOME, "fay@example.com") for _ in range(INSTANCES)]
    for _ in range(2):
        assert [group.get(fay, "/")[0] for fay in fays] == [200] * INSTANCES
    with group.app.app_context():
        home_entry = AllowlistEntry.get(AllowlistEntry.label == "Fay at home").id
    assert group.post(ann, f"/security/allowlist/{home_entry}/active", {"active": "0"},
                      page="/security/allowlist")[0] == 303
    assert [group.get(fay, "/")[0] for fay in fays] == [303] * INSTANCES

    # Hal is deactivated by the Owner through one instance: his three sessions at the office stop everywhere.
    hals = [group.visitor(OFFICE, "hal@example.com") for _ in range(INSTANCES)]
    assert [group.get(hal, "/")[0] for hal in hals] == [200] * INSTANCES
    owner = group.visitor(OFFICE, "owner@example.com")
    assert group.post(owner, f"/people/{hal_id}/deactivate", {}, page=f"/people/{hal_id}")[0] == 303
    assert [group.get(hal, "/")[0] for hal in hals] == [303] * INSTANCES


def test_twenty_approvals_of_one_request_across_instances_decide_it_once(group):
    with group.app.app_context():
        riverside = Practice.get(Practice.name == "Riverside Dental")
        fay = User.get(User.email == "fay@example.com")
        request_id = AccessRequest.create(user=fay, practice=riverside, ip="127.0.0.60", note="race",
                                          created_at=datetime(2026, 12, 1)).id
    ann = group.visitor(OFFICE, "ann@example.com")
    group.get(ann, "/security/requests")
    statuses, barrier = [], threading.Barrier(20)

    def approve():
        barrier.wait()
        statuses.append(ann.request(group.port, "POST", f"/security/requests/{request_id}/approve",
                                    {"duration": "1d"})[0])

    threads = [threading.Thread(target=approve) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(statuses) == 20 and all(s < 500 for s in statuses), statuses
    with group.app.app_context():
        assert AccessRequest.get_by_id(request_id).status == "approved"
        assert Grant.select().where(Grant.ip == "127.0.0.60").count() == 1
        assert AuditEvent.select().where((AuditEvent.action == "request_approved")
                                         & AuditEvent.target.contains("127.0.0.60")).count() == 1

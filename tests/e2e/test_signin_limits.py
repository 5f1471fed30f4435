"""Sign-in limits: counted before the password is checked, apart for offices and elsewhere, IPv6 by its /64,
and the same for the current password on the change-password form."""
import shutil
import threading
from ipaddress import ip_address

import pytest
from conftest import PASSWORD, Visitor, restrict
from realworld import HttpVisitor, app_server

from pbnsec.domain.signin_limits import PER_ACCOUNT, PER_ACCOUNT_AND_IP, PER_IP, ip_key
from pbnsec.models import AuditEvent

WRONG = "not the password at all"


def test_the_limits_are_what_the_readme_says():
    assert (PER_ACCOUNT_AND_IP, PER_IP, PER_ACCOUNT) == (5, 20, 50)


@pytest.mark.parametrize("ip, key", [
    ("203.0.113.7", "203.0.113.7"), ("2001:db8:1:2::7", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"), (None, "unknown"),
])
def test_ipv6_clients_are_counted_by_their_64(ip, key):
    assert ip_key(ip_address(ip) if ip else None) == key


def test_parallel_guesses_never_get_more_checks_than_the_limit(tmp_path, seeded_database):
    """20 wrong passwords at once, through a real server with 8 threads: exactly 5 are checked."""
    database = tmp_path / "pbnsec.db"
    shutil.copyfile(seeded_database, database)
    with app_server(tmp_path, database) as app:
        guessers = [HttpVisitor("127.0.0.1") for _ in range(20)]
        for guesser in guessers:
            guesser.request(app.port, "GET", "/login")
        start, statuses = threading.Barrier(len(guessers)), []

        def guess(visitor):
            start.wait()
            statuses.append(visitor.request(app.port, "POST", "/login", {"email": "ann@example.com", "password": WRONG})[0])

        threads = [threading.Thread(target=guess, args=(g,)) for g in guessers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(statuses) == [401] * PER_ACCOUNT_AND_IP + [429] * (20 - PER_ACCOUNT_AND_IP)


def test_strangers_guessing_from_outside_cannot_lock_the_user_out_at_the_office(app, visitor):
    restrict(app, "Riverside Dental", "127.0.0.1")  # Fay's office
    for n in range(10):  # 5 wrong passwords from each of 10 addresses no practice of hers lets in
        stranger = visitor(ip=f"127.0.0.{10 + n}")
        assert [stranger.login("fay@example.com", WRONG).status_code for _ in range(5)] == [401] * 5
    assert visitor(ip="127.0.0.30").login("fay@example.com", WRONG).status_code == 429  # elsewhere: limited
    assert visitor(ip="127.0.0.1").login("fay@example.com").headers["Location"] == "/"  # the office: not


def test_guesses_at_the_office_are_limited_too(app, visitor):
    restrict(app, "Riverside Dental", "127.0.0.0/24")
    for n in range(10):
        at_the_office = visitor(ip=f"127.0.0.{10 + n}")
        assert [at_the_office.login("fay@example.com", WRONG).status_code for _ in range(5)] == [401] * 5
    assert visitor(ip="127.0.0.40").login("fay@example.com").status_code == 429


def test_rotating_ipv6_addresses_within_one_64_does_not_reset_the_per_ip_limit(app):
    statuses = []
    for n in range(PER_IP + 2):  # a different address and account each time: only the per-IP limit can bite
        v = Visitor(app, ip=f"2001:db8:1:2::{n + 1:x}")
        statuses.append(v.login(f"nobody{n}@example.com", WRONG).status_code)
    assert statuses == [401] * PER_IP + [429] * 2
    other_64 = Visitor(app, ip="2001:db8:1:3::1")
    assert other_64.login("nobody@example.com", WRONG).status_code == 401


def test_a_right_password_does_not_count(app, visitor):
    v = visitor()
    for _ in range(PER_ACCOUNT_AND_IP - 1):
        assert v.login("ann@example.com", WRONG).status_code == 401
    assert v.login("ann@example.com").status_code == 303
    v = visitor()
    for _ in range(PER_ACCOUNT_AND_IP):  # the account's guesses from here started over
        assert v.login("ann@example.com", WRONG).status_code == 401


def change(v, current):
    return v.post("/account/password", {"current": current, "new": "tidy molar chart 2026 blue",
                                        "repeat": "tidy molar chart 2026 blue"})


def test_current_password_guesses_are_limited_and_audited(app, signed_in):
    ann = signed_in("ann")
    ann.get("/account/password")
    statuses = [change(ann, WRONG).status_code for _ in range(8)]
    assert statuses == [422] * PER_ACCOUNT_AND_IP + [429] * 3
    assert "Too many password attempts" in change(ann, WRONG).text
    assert change(ann, PASSWORD).status_code == 429  # even the right one waits: the limit is the account's
    with app.app_context():
        failed = AuditEvent.select().where(AuditEvent.action == "password_change_failed")
        assert failed.exists() and all(e.actor_label == "ann@example.com" for e in failed)


def test_a_right_current_password_still_works_after_a_slip(app, signed_in):
    ann = signed_in("ann")
    ann.get("/account/password")
    assert change(ann, WRONG).status_code == 422
    assert change(ann, PASSWORD).status_code == 303


def test_a_control_character_in_the_current_password_does_not_reset_the_count(app, signed_in):
    ann = signed_in("ann")
    ann.get("/account/password")
    assert [change(ann, WRONG).status_code for _ in range(4)] == [422] * 4
    assert change(ann, "\x00").status_code == 422  # refused before any check: counts nothing, resets nothing
    assert [change(ann, WRONG).status_code for _ in range(2)] == [422, 429]


def test_strangers_cannot_lock_out_a_user_of_a_practice_without_restrictions_where_they_signed_in_before(app, visitor):
    assert visitor(ip="127.0.0.1").login("ann@example.com").status_code == 303  # Ann's usual desk
    for n in range(10):  # no IP restrictions anywhere: the strangers' guesses count as "elsewhere"
        stranger = visitor(ip=f"127.0.0.{10 + n}")
        assert [stranger.login("ann@example.com", WRONG).status_code for _ in range(5)] == [401] * 5
    assert visitor(ip="127.0.0.30").login("ann@example.com", WRONG).status_code == 429
    assert visitor(ip="127.0.0.1").login("ann@example.com").status_code == 303  # her desk: still in

"""Signing in, called as a domain function: no HTTP, no cookies."""
from ipaddress import ip_address

from conftest import PASSWORD, restrict

from pbnsec.domain import sign_in
from pbnsec.domain.visit import Visit
from pbnsec.models import AuditEvent

OFFICE, HOME = ip_address("127.0.0.1"), ip_address("127.0.0.2")


def actions(app):
    with app.app_context():
        return [(e.action, e.practice.name if e.practice else None, e.actor_ip, e.count)
                for e in AuditEvent.select().order_by(AuditEvent.id)]


def test_a_wrong_password_says_nothing_about_ips_and_is_counted_once_per_practice(app):
    restrict(app, "Riverside Dental", "127.0.0.1")
    with app.app_context():
        result = sign_in.attempt(Visit(None, HOME), "Fay@Example.com ", "wrong password")
    assert (result.error, result.status, result.email, result.user) == (
        "Wrong email or password.", 401, "fay@example.com", None)
    assert actions(app) == [("login_failed", "Riverside Dental", "127.0.0.2", 1)]


def test_blocked_everywhere_is_a_result_not_a_session(app):
    restrict(app, "Riverside Dental", "127.0.0.1")
    with app.app_context():
        result = sign_in.attempt(Visit(None, HOME), "fay@example.com", PASSWORD)
    assert result.error is None and result.blocked and result.practice is None
    assert [row.status for row in result.access.rows] == ["not_requested"]
    assert actions(app) == [("login_blocked", "Riverside Dental", "127.0.0.2", 1)]


def test_allowed_lands_in_the_first_practice_that_lets_the_ip_in_and_says_why(app):
    restrict(app, "Lakeside Dental", "127.0.0.1")  # Hal: Lakeside (allowed from the office), Riverside (open)
    with app.app_context():
        result = sign_in.attempt(Visit(None, HOME), "hal@example.com", PASSWORD)
        assert result.practice.name == "Riverside Dental"
        assert AuditEvent.get(AuditEvent.action == "login_allowed").detail == "allowed by IP restrictions are off"
    assert [a[:2] for a in actions(app)] == [("login_allowed", "Riverside Dental"), ("login_blocked", "Lakeside Dental")]


def test_a_control_character_is_refused_before_anything_is_looked_up(app):
    with app.app_context():
        result = sign_in.attempt(Visit(None, OFFICE), "ann@exa\x00mple.com", PASSWORD)
    assert (result.status, result.error, result.email) == (422, "The email address contains a control character.",
                                                           "ann@example.com")
    assert actions(app) == []


def test_allowed_lands_in_the_home_practice_not_the_first_by_name(app):
    # Olive was created in Riverside Dental and later joined Lakeside Dental, which comes first by name.
    with app.app_context():
        result = sign_in.attempt(Visit(None, OFFICE), "owner@example.com", PASSWORD)
        assert [row.practice.name for row in result.access.rows] == ["Lakeside Dental", "Riverside Dental"]
        assert result.practice.name == "Riverside Dental"


def test_a_home_practice_that_blocks_the_ip_is_passed_over_for_one_that_lets_it_in(app):
    restrict(app, "Riverside Dental", "127.0.0.1")
    with app.app_context():
        result = sign_in.attempt(Visit(None, HOME), "owner@example.com", PASSWORD)
        assert result.practice.name == "Lakeside Dental"


def test_a_sign_in_racing_a_password_reset_ends_at_its_first_use(app):
    """The password was right when checked; an administrator's reset lands before the sign-in is recorded."""
    from pbnsec.domain import people, sessions
    from pbnsec.models import Practice, User
    with app.app_context():
        result = sign_in.attempt(Visit(None, OFFICE), "fay@example.com", PASSWORD)
        assert result.user is not None and not result.blocked
        owner = User.get(User.email == "owner@example.com")
        issued = people.reset_password(Visit(owner, OFFICE), list(Practice.select()),
                                       User.get(User.email == "fay@example.com"), people.ONE_TIME_PASSWORD)
        assert issued.password
        token = sessions.start(result.user)  # the sign-in made with the password checked before the reset
        assert sessions.find(token) is None
        assert sessions.find(token) is None  # and it is gone for good


def test_changing_ones_own_password_keeps_this_sign_in_and_ends_the_others(app):
    from pbnsec.domain import sessions, users
    from pbnsec.models import User
    with app.app_context():
        fay = User.get(User.email == "fay@example.com")
        here, elsewhere = sessions.start(fay), sessions.start(fay)
        fay = sessions.find(here)
        assert users.change_password(fay, PASSWORD, "plum orchard tractor 88", "plum orchard tractor 88") == {}
        assert sessions.find(here) is not None and sessions.find(elsewhere) is None

"""The blocked sign-in, called as domain functions with a frozen `now`: how long it lasts, where it works, and
continuing once an approval lets the IP in (no password again, but the whole decision again)."""
from datetime import timedelta
from ipaddress import ip_address

import pytest
from conftest import person, practice_named, restrict

from pbnsec.domain import sessions, sign_in
from pbnsec.domain.sessions import BLOCKED_LIFETIME
from pbnsec.domain.visit import Visit
from pbnsec.models import AccessRequest, AuditEvent, Grant, SignIn, User, utcnow

HOME, ELSEWHERE = ip_address("127.0.0.2"), ip_address("127.0.0.3")  # neither on Riverside's allowlist
T0 = utcnow().replace(second=0)  # frozen: every call below says when it happens


@pytest.fixture
def fay_blocked(app):
    """Fay (Riverside only) blocked at HOME since T0: her blocked sign-in's token (inside an app context)."""
    restrict(app, "Riverside Dental", "127.0.0.1")
    with app.app_context():
        yield sessions.start(person("fay"), blocked=True, ip=HOME, now=T0)


def approve(ip=HOME):
    """What an administrator's approval leaves behind: fay may work at Riverside from ip."""
    fay, riverside = person("fay"), practice_named("Riverside Dental")
    request = AccessRequest.create(user=fay, practice=riverside, ip=str(ip), status="approved", decided_at=T0)
    Grant.create(user=fay, practice=riverside, ip=str(ip), request=request)


def resume(token, ip=HOME, at=T0 + timedelta(minutes=30), practice="Riverside Dental"):
    return sign_in.resume(Visit(None, ip, now=at), token, practice_named(practice).id)


def logins(action="login_allowed"):
    return [(e.actor_label, e.actor_ip, e.practice.name, e.detail)
            for e in AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)]


def test_a_blocked_sign_in_lasts_two_hours_to_the_second(fay_blocked):
    assert BLOCKED_LIFETIME == timedelta(hours=2)
    last_second = sessions.find_blocked(fay_blocked, HOME, T0 + BLOCKED_LIFETIME - timedelta(seconds=1))
    assert last_second.user is not None and last_second.user.email == "fay@example.com"
    over = sessions.find_blocked(fay_blocked, HOME, T0 + BLOCKED_LIFETIME)
    assert (over.user, over.ended) == (None, "expired")
    assert over.message == "You waited more than 2 hours on the blocked page. Please sign in again."
    # ended for good: not even a moment earlier does it come back
    assert sessions.find_blocked(fay_blocked, HOME, T0).user is None
    assert not SignIn.select().where(SignIn.token == fay_blocked).exists()


def test_a_blocked_sign_in_is_not_a_sign_in(fay_blocked):
    assert sessions.find(fay_blocked) is None  # what every other page asks for


def test_continue_once_approved_becomes_a_full_sign_in_audited_with_the_reason(fay_blocked):
    approve()
    done = resume(fay_blocked)
    assert done.error is None and done.practice.name == "Riverside Dental"
    assert sessions.find(done.token).email == "fay@example.com"  # a real sign-in now
    assert sessions.find_blocked(fay_blocked, HOME, T0).user is None  # and the blocked one is gone
    grant = Grant.get()
    assert logins() == [("fay@example.com", "127.0.0.2", "Riverside Dental",
                         f"allowed by user grant #{grant.id} for 127.0.0.2 approved in request #{grant.request_id}; "
                         "continued from the blocked page")]


def test_continue_twice_makes_one_sign_in(fay_blocked):
    approve()
    assert resume(fay_blocked).error is None
    again = resume(fay_blocked)
    assert (again.code, again.token) == ("ended", "")
    assert SignIn.select().count() == 1 and len(logins()) == 1


def test_continue_while_still_blocked_is_refused_and_the_blocked_sign_in_stays(fay_blocked):
    AccessRequest.create(user=person("fay"), practice=practice_named("Riverside Dental"), ip=str(HOME))
    refused = resume(fay_blocked)
    assert (refused.code, refused.error) == (
        "blocked", "Riverside Dental does not let you in from 127.0.0.2 now (Pending).")
    assert refused.token == "" and sessions.find_blocked(fay_blocked, HOME, T0).user is not None
    assert SignIn.select().count() == 1 and logins() == []


def test_continue_to_a_practice_that_is_not_yours_is_refused(fay_blocked):
    approve()
    refused = resume(fay_blocked, practice="Lakeside Dental")
    assert (refused.code, refused.error) == ("blocked", "Choose one of your practices.")
    assert logins() == []


def test_continue_from_another_ip_is_refused_and_ends_the_blocked_sign_in(fay_blocked):
    approve(HOME)
    approve(ELSEWHERE)  # even where an approval would let her in: this sign-in began at HOME
    moved = resume(fay_blocked, ip=ELSEWHERE)
    assert (moved.code, moved.error) == (
        "ended", "Your IP address changed since you signed in. Please sign in again from here.")
    assert resume(fay_blocked, ip=HOME).code == "ended"  # back home it is gone too: the password again
    assert SignIn.select().count() == 0 and logins() == []


def test_continue_after_deactivation_is_refused(fay_blocked):
    approve()
    User.update(active=False).where(User.email == "fay@example.com").execute()
    ended = resume(fay_blocked)
    assert (ended.code, ended.error) == ("ended", "Please sign in again.")
    assert SignIn.select().count() == 0 and logins() == []


def test_continue_after_the_password_changed_is_refused(fay_blocked):
    approve()
    # However it was changed (a reset from the console need not end sign-ins itself): the old typing is not enough.
    User.update(password_hash="pbkdf2:sha256:1$new$" + "0" * 64).where(User.email == "fay@example.com").execute()
    ended = resume(fay_blocked)
    assert (ended.code, ended.error) == (
        "ended", "Your password was changed since you signed in. Please sign in again.")
    assert SignIn.select().count() == 0 and logins() == []


def test_continue_after_two_hours_is_refused(fay_blocked):
    approve()
    ended = resume(fay_blocked, at=T0 + BLOCKED_LIFETIME)
    assert ended.code == "ended" and ended.error.startswith("You waited more than 2 hours")
    assert logins() == []


def test_continue_needs_a_blocked_sign_in_not_a_full_one(fay_blocked):
    approve()
    full = sessions.start(person("fay"), now=T0)
    assert resume(full).code == "ended"
    assert resume(None).code == "ended"

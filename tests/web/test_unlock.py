"""Break-glass: `flask security unlock --practice NAME` switches IP restrictions off when every admin is locked out."""
import pytest
from conftest import practice_id

from pbnsec.models import AuditEvent, IPRestriction


def enforced(app, name):
    with app.app_context():
        row = IPRestriction.get_or_none(IPRestriction.practice == practice_id(app, name))
        return bool(row and row.enforced)


def unlock_events(app):
    with app.app_context():
        return [(e.actor_label, e.actor_ip, e.practice.name if e.practice_id else None, e.target, e.detail)
                for e in AuditEvent.select().where(AuditEvent.action == "security_unlock").order_by(AuditEvent.id)]


def unlock(runner, name="Riverside Dental"):
    return runner.invoke(args=["security", "unlock", "--practice", name])


@pytest.fixture
def locked(app, signed_in):
    """Riverside Dental enforced with only 127.0.0.1 allowed; the same for Lakeside Dental."""
    ann = signed_in("ann")
    owner = signed_in("owner")
    for v, name in [(ann, "Riverside Dental"), (owner, "Lakeside Dental")]:
        added = v.post("/security/allowlist", {"address": "127.0.0.1", "label": "Old office",
                                               "practice": str(practice_id(app, name)), "confirm_local": "127.0.0.1"})
        assert added.status_code == 303
        switched = v.post(f"/security/settings/{practice_id(app, name)}/enforced", {"enforced": "1"})
        assert switched.status_code == 303
    assert enforced(app, "Riverside Dental") and enforced(app, "Lakeside Dental")


def test_unlock_switches_restrictions_off_says_so_and_is_audited(app, runner, locked):
    result = unlock(runner)
    assert result.exit_code == 0, result.output
    assert "IP restrictions are now OFF for Riverside Dental." in result.output
    assert "General Settings" in result.output  # how to switch them on again
    assert enforced(app, "Riverside Dental") is False
    assert enforced(app, "Lakeside Dental") is True  # only the practice named
    assert unlock_events(app) == [("cli", "local", "Riverside Dental", "IP restrictions", "enforced: on -> off")]


def test_running_it_again_changes_nothing_and_says_so(app, runner, locked):
    assert unlock(runner).exit_code == 0
    again = unlock(runner)
    assert again.exit_code == 0
    assert "IP restrictions were already off for Riverside Dental; nothing changed." in again.output
    assert "now OFF" not in again.output
    assert enforced(app, "Riverside Dental") is False


def test_a_practice_never_configured_is_already_off(app, runner):
    result = unlock(runner, "Lakeside Dental")
    assert result.exit_code == 0
    assert "were already off for Lakeside Dental; nothing changed." in result.output
    assert enforced(app, "Lakeside Dental") is False


def test_the_name_may_carry_stray_spaces(app, runner, locked):
    result = unlock(runner, "  Riverside   Dental ")
    assert result.exit_code == 0 and "now OFF for Riverside Dental" in result.output
    assert enforced(app, "Riverside Dental") is False


@pytest.mark.parametrize("name", ["Nowhere Dental", "Riverside", ""])
def test_an_unknown_practice_exits_non_zero_with_a_one_line_reason(app, runner, locked, name):
    result = unlock(runner, name)
    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1
    assert f"No practice named {name!r}" in result.output
    assert "Riverside Dental" in result.output and "Lakeside Dental" in result.output  # the names it knows
    assert enforced(app, "Riverside Dental") and enforced(app, "Lakeside Dental")
    assert unlock_events(app) == []


def test_the_practice_must_be_named(app, runner, locked):
    result = runner.invoke(args=["security", "unlock"])
    assert result.exit_code != 0 and "--practice" in result.output
    assert enforced(app, "Riverside Dental")


def test_after_unlock_a_blocked_admin_can_sign_in_again(app, runner, visitor, locked):
    # the office moved to a new address: Ann, the only admin of Riverside, is locked out
    ann = visitor(ip="127.0.0.2")
    response = ann.login("ann@example.com")
    assert response.status_code == 303 and response.headers["Location"] == "/blocked"
    assert "127.0.0.2" in ann.get("/blocked").text

    assert unlock(runner).exit_code == 0

    ann = visitor(ip="127.0.0.2")
    response = ann.login("ann@example.com")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    settings = ann.get("/security/settings")
    assert settings.status_code == 200 and 'id="enforced" checked' not in settings.text
    # and she finds the unlock in the audit log
    log = ann.get("/security/audit?action=security_unlock")
    assert "enforced: on -&gt; off" in log.text and '<td data-label="Actor">cli</td>' in log.text


def test_a_session_blocked_before_the_unlock_is_let_in_after_it(app, runner, visitor, locked):
    fay = visitor(ip="127.0.0.2")
    assert fay.login("fay@example.com").headers["Location"] == "/blocked"
    assert unlock(runner).exit_code == 0
    assert fay.login("fay@example.com").headers["Location"] == "/"
    assert fay.get("/").status_code == 200

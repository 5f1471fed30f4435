"""People on the command line: the same domain operations as the People screen, run from the server console."""
import re

import pytest
from conftest import PASSWORD, Visitor, signed_in_earlier

from pbnsec.models import AuditEvent, Membership, Practice, SignIn, User


def state(app):
    with app.app_context():
        return ([(u.email, u.active, u.role.name, u.password_hash, u.must_change_password)
                 for u in User.select().order_by(User.id)],
                [(m.user_id, m.practice_id) for m in Membership.select().order_by(Membership.id)],
                [p.name for p in Practice.select().order_by(Practice.id)], AuditEvent.select().count())


def test_users_list_shows_role_practices_status_and_last_sign_in(runner, app):
    from datetime import datetime
    with app.app_context():
        signed_in_earlier("fay", "127.0.0.7", datetime(2026, 12, 1, 8, 30))
        AuditEvent.update(practice=Practice.get(Practice.name == "Riverside Dental")).execute()
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["ann@example.com", "bob@example.com", "fay@example.com",
                                                      "hal@example.com", "owner@example.com"]
    assert lines[2].split("\t") == ["fay@example.com", "Fay Desk", "Front Desk", "Riverside Dental", "active",
                                    "2026-12-01 08:30 UTC from 127.0.0.7"]
    assert lines[3].split("\t")[3] == "Lakeside Dental, Riverside Dental"
    only = runner.invoke(args=["users", "list", "--search", "hygien"])
    assert only.output.splitlines()[0].startswith("hal@example.com\t") and len(only.output.splitlines()) == 1


def test_an_owner_password_is_reset_from_the_console(runner, app):
    owner = Visitor(app)
    owner.login("owner@example.com")
    result = runner.invoke(args=["users", "reset-password", "owner@example.com"])
    assert result.exit_code == 0, result.output
    password = re.search(r"One-time password for owner@example\.com .*: (\S+)$", result.output.strip()).group(1)
    assert owner.get("/").headers["Location"].startswith("/login")  # the old sign-in ended
    assert Visitor(app).login("owner@example.com").status_code == 401
    assert Visitor(app).login("owner@example.com", password).headers["Location"] == "/account/password"
    with app.app_context():
        event = AuditEvent.get(AuditEvent.action == "password_reset")
        assert (event.actor_label, event.actor_ip, event.target) == ("cli", "local", "owner@example.com")


def test_reset_password_can_print_an_invite_link(runner, app):
    result = runner.invoke(args=["users", "reset-password", "fay@example.com", "--invite"])
    assert result.exit_code == 0, result.output
    path = re.search(r"(/people/invite/[\w-]+)", result.output).group(1)
    v = Visitor(app, ip="127.0.0.9")
    assert v.get(path).status_code == 200
    assert v.post(path, {"new": "tidy molar chart 2026", "repeat": "tidy molar chart 2026"}).status_code == 200
    assert Visitor(app).login("fay@example.com", "tidy molar chart 2026").status_code == 303


def test_deactivate_reactivate_set_role_and_add_practice(runner, app):
    fay = Visitor(app)
    fay.login("fay@example.com")
    result = runner.invoke(args=["users", "deactivate", "FAY@example.com"])
    assert result.exit_code == 0 and "Deactivated Fay Desk <fay@example.com>" in result.output
    assert fay.get("/").headers["Location"].startswith("/login")
    with app.app_context():
        assert not SignIn.select().join(User).where(User.email == "fay@example.com").exists()
    assert Visitor(app).login("fay@example.com").status_code == 401
    assert runner.invoke(args=["users", "reactivate", "fay@example.com"]).exit_code == 0
    assert Visitor(app).login("fay@example.com").status_code == 303

    result = runner.invoke(args=["users", "set-role", "fay@example.com", "office manager"])
    assert result.exit_code == 0 and "is now Office Manager" in result.output
    result = runner.invoke(args=["users", "add-practice", "fay@example.com", "lakeside dental"])
    assert result.exit_code == 0 and "is now in Lakeside Dental, Riverside Dental" in result.output
    with app.app_context():
        actions = [e.action for e in AuditEvent.select().where(AuditEvent.actor_label == "cli").order_by(AuditEvent.id)]
    assert actions == ["user_deactivated", "user_reactivated", "user_role_changed", "user_practices_changed",
                       "user_practices_changed"]  # the last one in each of Fay's two practices now


def test_practices_rename_and_list(runner, app):
    result = runner.invoke(args=["practices", "rename", "riverside dental", "Riverside Smiles"])
    assert result.exit_code == 0 and "Renamed 'Riverside Dental' to 'Riverside Smiles'." in result.output
    listed = runner.invoke(args=["practices", "list"]).output
    assert "Riverside Smiles" in listed and "Riverside Dental" not in listed
    assert Visitor(app).login("ann@example.com", PASSWORD).status_code == 303


@pytest.mark.parametrize("args,reason", [
    (["users", "reset-password", "nobody@example.com"], "No user with the email 'nobody@example.com'."),
    (["users", "deactivate", "owner@example.com"], "Olive Owner is the last active Owner and cannot be deactivated."),
    (["users", "set-role", "owner@example.com", "Admin"], "Olive Owner is the last active Owner"),
    (["users", "set-role", "fay@example.com", "Janitor"], "No role named 'Janitor'"),
    (["users", "set-role", "fay@example.com", "Front Desk"], "Fay Desk is already Front Desk."),
    (["users", "reactivate", "fay@example.com"], "Fay Desk is already active."),
    (["users", "add-practice", "fay@example.com", "Nowhere"], "No practice named 'Nowhere'"),
    (["users", "add-practice", "fay@example.com", "Riverside Dental"], "already in exactly these practices"),
    (["practices", "rename", "Riverside Dental", "Lakeside Dental"], "A practice named 'Lakeside Dental' already"),
    (["practices", "rename", "Riverside Dental", "  "], "Enter a practice name."),
    (["practices", "rename", "Riverside Dental", "Hill\x1bside"], "A practice name cannot contain control"),
    (["practices", "rename", "Nowhere", "Somewhere"], "No practice named 'Nowhere'"),
])
def test_bad_input_is_one_line_on_stderr_a_non_zero_exit_and_no_change(runner, app, args, reason):
    before = state(app)
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    assert reason in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert state(app) == before

"""A user's own password: changing it ends their other sessions; a console password must be replaced."""
import pytest
from conftest import PASSWORD, Visitor, make_app

from pbnsec.models import AuditEvent

NEW = "a brand new passphrase"
HIDDEN = ["\x00", "\x1b", "\u202e"]  # NUL, ESC, a right-to-left override


def change(v, current=PASSWORD, new=NEW, repeat=NEW):
    v.get("/account/password")
    return v.post("/account/password", {"current": current, "new": new, "repeat": repeat})


def test_changing_the_password_ends_the_other_sessions_but_not_this_one(app, signed_in, visitor):
    here, elsewhere = signed_in("ann"), signed_in("ann", ip="127.0.0.3")
    response = change(here)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert "Your password is changed" in here.get("/").text
    assert here.get("/security/allowlist").status_code == 200
    assert elsewhere.get("/").headers["Location"].startswith("/login")
    assert visitor().login("ann@example.com").status_code == 401
    assert visitor().login("ann@example.com", NEW).status_code == 303
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.action == "password_changed").count() == 1


@pytest.mark.parametrize("form,field,message", [
    ({"current": "not my password"}, "current", "That is not your current password."),
    ({"new": "short", "repeat": "short"}, "new", "at least 12 characters"),
    ({"repeat": "something else entirely"}, "repeat", "The two new passwords differ."),
    ({"new": PASSWORD, "repeat": PASSWORD}, "new", "Choose a password you have not been using."),
    *[({"current": PASSWORD + c}, "current", "The password contains a control character.") for c in HIDDEN],
    *[({"new": NEW + c, "repeat": NEW + c}, "new", "The password contains a control character.") for c in HIDDEN],
])
def test_a_refused_change_says_why_and_changes_nothing(visitor, signed_in, form, field, message):
    v = signed_in("ann")
    response = change(v, **form)
    assert response.status_code == 422
    assert f'id="{field}-error" role="alert">' in response.text and message in response.text
    assert visitor().login("ann@example.com").status_code == 303  # the old password still works


def test_the_change_needs_the_csrf_token(signed_in):
    v = signed_in("ann")
    assert v.post("/account/password", {"current": PASSWORD, "new": NEW, "repeat": NEW}, csrf=False).status_code == 400


def test_the_owner_with_a_console_password_is_asked_to_choose_one(tmp_path):
    app = make_app(tmp_path)
    output = app.test_cli_runner().invoke(args=["init-db"]).output
    password = output.split("Password: ")[1].split()[0]
    v = Visitor(app)
    response = v.login("owner@example.com", password)
    assert response.headers["Location"] == "/account/password"
    assert "Choose your own now." in v.get("/account/password").text
    assert change(v, current=password).status_code == 303
    assert "Choose your own now." not in v.get("/account/password").text


def test_people_get_a_slow_scrypt_hash(app):
    from pbnsec.domain.users import create_user
    from pbnsec.models import User
    with app.app_context():
        user, _ = create_user("new@example.com", "New Person", "Hygienist", ["Riverside Dental"],
                              "tidy molar chart 2026 blue")
        assert User.get_by_id(user.id).password_hash.startswith("scrypt:")

"""The impact preview on General Settings and Time Windows: people who really signed in (through /login) from
elsewhere or at other times are named before the change is saved; "Switch on anyway" saves it, page and fragment."""
import re

import pytest
from conftest import practice_id

from pbnsec.models import AllowlistEntry, AuditEvent, IPRestriction, Practice, TimeRule

HOME = "127.0.0.9"


@pytest.fixture
def riverside_with_office_entry(app, ann):
    response = ann.post("/security/allowlist", {"address": "127.0.0.1", "label": "Office", "practice":
                                                practice_id(app), "confirm_local": "127.0.0.1"})
    assert response.status_code == 303
    return practice_id(app)


def enforced(app) -> bool:
    with app.app_context():
        row = IPRestriction.get_or_none(IPRestriction.practice == Practice.get(Practice.name == "Riverside Dental"))
        return bool(row and row.enforced)


def hidden_fields(body: str) -> list[tuple[str, str]]:
    form = body[body.index('id="impact-'):]
    form = form[:form.index("</form>")]
    return re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)


def test_switching_on_shows_who_would_be_blocked_then_switch_on_anyway(app, ann, signed_in,
                                                                      riverside_with_office_entry):
    signed_in("fay", ip=HOME)
    signed_in("hal")  # from the office
    url = f"/security/settings/{riverside_with_office_entry}/enforced"

    response = ann.post(url, {"enforced": "1"}, htmx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 409 and "HX-Request" in response.headers["Vary"]
    assert body.strip().startswith("<section id=\"setting-enforced\"")  # the control, swapped in place
    assert "From their sign-ins over the last 30 days, 1 of 3 people would be blocked." in body
    assert "Fay Desk" in body and HOME in body and "Hal Hygienist" not in body
    assert "Switch on anyway" in body and "1 other person has not signed in" in body
    assert [f for f in hidden_fields(body) if f[0] != "csrf_token"] == [("enforced", "1"), ("confirm_impact", "1")]
    assert not enforced(app)

    response = ann.post(url, {"enforced": "1", "confirm_impact": "1"}, htmx=True)
    assert response.status_code == 200 and "✓ Saved" in response.get_data(as_text=True)
    assert enforced(app)
    with app.app_context():
        detail = AuditEvent.select().where(AuditEvent.action == "settings_changed").order_by(AuditEvent.id.desc()).get().detail
    assert detail == "enforced: on; saved although it blocks 1 of 3 people signed in over the last 30 days: fay@example.com"


def test_without_javascript_the_page_shows_the_preview_and_its_button(app, ann, signed_in,
                                                                    riverside_with_office_entry):
    signed_in("fay", ip=HOME)
    url = f"/security/settings/{riverside_with_office_entry}/enforced"
    response = ann.post(url, {"enforced": "1"})
    body = response.get_data(as_text=True)
    assert response.status_code == 409 and "<html" in body and "Fay Desk" in body
    assert f'action="{url}"' in body.split('id="impact-enforced"')[1]
    response = ann.post(url, {"enforced": "1", "confirm_impact": "1"})
    assert response.status_code == 303 and enforced(app)


def test_a_forged_confirmation_of_something_refused_changes_nothing(app, ann, signed_in):
    """confirm_impact only skips the preview: an empty allowlist is still refused."""
    signed_in("fay", ip=HOME)
    response = ann.post(f"/security/settings/{practice_id(app)}/enforced", {"enforced": "1", "confirm_impact": "1"},
                        htmx=True)
    assert response.status_code == 409 and "The allowlist is empty" in response.get_data(as_text=True)
    assert not enforced(app)


def test_the_scope_preview_resends_the_ticks(app, ann, signed_in, riverside_with_office_entry):
    with app.app_context():
        from pbnsec.models import Role, User
        front_desk = Role.get(Role.name == "Front Desk").id
        hal = User.get(User.email == "hal@example.com").id
    pid = riverside_with_office_entry
    assert ann.post(f"/security/settings/{pid}/scope", {"applies_to": "selected", "roles": [front_desk]},
                    htmx=True).status_code == 200
    assert ann.post(f"/security/settings/{pid}/enforced", {"enforced": "1"}, htmx=True).status_code == 200
    signed_in("hal", ip=HOME)

    response = ann.post(f"/security/settings/{pid}/scope", {"applies_to": "selected", "roles": [front_desk],
                                                            "users": [hal]}, htmx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 409 and "Hal Hygienist" in body and "Save anyway" in body
    assert [f for f in hidden_fields(body) if f[0] != "csrf_token"] == [
        ("applies_to", "selected"), ("roles", str(front_desk)), ("users", str(hal)), ("confirm_impact", "1")]
    response = ann.post(f"/security/settings/{pid}/scope", dict(hidden_fields(body)) | {"roles": [front_desk]},
                        htmx=True)
    assert response.status_code == 200
    with app.app_context():
        from pbnsec.models import RestrictedUser
        assert [r.user_id for r in RestrictedUser.select()] == [hal]


def test_time_windows_switch_on_names_who_signed_in_outside_them(app, ann, signed_in):
    pid = practice_id(app)
    signed_in("fay")
    # Fay's sign-in happened now; windows that leave out this very minute's weekday would block her, and Ann too
    # (lockout) -- so the window covers today, and Fay's sign-in is moved to another day.
    with app.app_context():
        from datetime import timedelta

        from pbnsec.models import User, utcnow
        fay = User.get(User.email == "fay@example.com")
        AuditEvent.update(at=utcnow() - timedelta(days=1)).where(AuditEvent.actor == fay).execute()
        today = utcnow().weekday()
    assert ann.post(f"/security/windows/{pid}/add", {"days": [str(today)], "start": "00:00", "end": "24:00"},
                    htmx=True).status_code == 200
    response = ann.post(f"/security/windows/{pid}/enabled", {"enabled": "1"}, htmx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 409 and "Fay Desk" in body and "outside the windows" in body
    with app.app_context():
        assert TimeRule.get_or_none() is None
    response = ann.post(f"/security/windows/{pid}/enabled", {"enabled": "1", "confirm_impact": "1"}, htmx=True)
    assert response.status_code == 200
    with app.app_context():
        assert TimeRule.get().enabled
        assert AllowlistEntry.select().count() == 0

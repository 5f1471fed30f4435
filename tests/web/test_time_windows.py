"""Security Management › Time Windows, and Time Windows at sign-in and on every request (a frozen clock: the
visit's now, set by the hook from pbnsec.domain.visit.utcnow)."""
import html
from datetime import datetime

import pytest
from conftest import practice_id

from pbnsec.models import AuditEvent, Role, TimeRule, TimeRuleRole, TimeWindow

TUESDAY_10 = datetime(2026, 12, 1, 10, 0)  # UTC, the zone of a practice without one
TUESDAY_22 = datetime(2026, 12, 1, 22, 0)
WEEKDAYS = ["0", "1", "2", "3", "4"]


class Clock:
    def __init__(self, monkeypatch, now):
        self.now = now
        monkeypatch.setattr("pbnsec.domain.visit.utcnow", lambda: self.now)


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch, TUESDAY_10)


def url(app, action, practice="Riverside Dental"):
    return f"/security/windows/{practice_id(app, practice)}/{action}"


def add(app, v, days=WEEKDAYS, start="07:00", end="18:00", htmx=True):
    return v.post(url(app, "add"), {"days": list(days), "start": start, "end": end}, htmx=htmx)


def stored(app):
    with app.app_context():
        return sorted((w.day, w.start_minute, w.end_minute) for w in TimeWindow.select())


def working_hours(app, practice="Riverside Dental", roles=("Front Desk",)):
    """Mon–Fri 07:00–18:00 for the roles, switched on (written straight to the database)."""
    pid = practice_id(app, practice)
    with app.app_context():
        TimeRule.create(practice=pid, enabled=True, everyone=not roles)
        for name in roles:
            TimeRuleRole.create(practice=pid, role=Role.get(Role.name == name))
        for day in range(5):
            TimeWindow.create(practice=pid, day=day, start_minute=420, end_minute=1080)


def test_the_page_is_a_tab_of_security_management(app, clock, ann):
    body = ann.get("/security/windows").get_data(as_text=True)
    assert '<a href="/security/windows" aria-current="page">Time Windows' in body
    assert "No windows yet." in body and "An access request does not extend working hours" in body


def test_add_a_window_through_htmx_returns_only_the_list(app, clock, ann):
    response = add(app, ann)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    body = response.get_data(as_text=True).strip()
    assert body.startswith('<section id="windows-list"') and "<html" not in body
    assert body.count('<tr id="window-') == 5 and "✓ Saved" in body
    assert stored(app) == [(d, 420, 1080) for d in range(5)]
    with app.app_context():
        assert [e.detail for e in AuditEvent.select().where(AuditEvent.target == "Time Windows")] == [
            "window added: Mon–Fri 07:00–18:00"]


def test_add_a_window_without_javascript_redirects_to_the_page(app, clock, ann):
    response = add(app, ann, ["4"], "22:00", "02:00", htmx=False)
    assert response.status_code == 303 and response.headers["Location"].startswith("/security/windows")
    page = ann.get(response.headers["Location"]).get_data(as_text=True)
    assert "(next day)" in page and stored(app) == [(4, 1320, 120)]
    assert "Working hours: Fri 22:00–02:00 (UTC). It is now Tue 10:00 (UTC) at Riverside Dental." in page
    assert 'hx-confirm="Delete the window Fri 22:00–02:00?"' in page


@pytest.mark.parametrize("htmx", [True, False])
def test_a_bad_window_is_refused_with_its_reason_and_the_form_keeps_what_was_typed(app, clock, ann, htmx):
    response = add(app, ann, ["1"], "07:00", "25:00", htmx=htmx)
    assert response.status_code == 422
    body = html.unescape(response.get_data(as_text=True))
    assert "is not a time of day" in body and 'value="25:00"' in body
    assert ("<html" in body) is not htmx
    assert stored(app) == []


def test_without_the_csrf_token_nothing_is_saved(app, clock, ann):
    assert ann.post(url(app, "add"), {"days": ["1"], "start": "07:00", "end": "18:00"}, csrf=False,
                    htmx=True).status_code == 400
    assert stored(app) == []


def test_other_practices_and_other_roles_cannot_touch_them(app, clock, signed_in, bob):
    assert bob.get(f"/security/windows?practice={practice_id(app)}").status_code == 404
    assert add(app, bob).status_code == 404
    assert signed_in("fay").get("/security/windows").status_code == 403
    assert stored(app) == []


def test_switch_on_inside_the_windows_then_delete_one(app, clock, ann):
    add(app, ann)
    add(app, ann, ["5"], "08:00", "12:00")
    response = ann.post(url(app, "enabled"), {"enabled": "1"}, htmx=True)
    assert response.status_code == 200 and "✓ Saved" in response.get_data(as_text=True)
    assert response.get_data(as_text=True).strip().startswith('<section id="setting-windows_enabled"')
    with app.app_context():
        saturday = TimeWindow.get(TimeWindow.day == 5).id
        tuesday = TimeWindow.get(TimeWindow.day == 1).id
    response = ann.post(url(app, f"{saturday}/delete"), htmx=True)
    assert response.status_code == 200 and response.get_data(as_text=True).count('<tr id="window-') == 5
    # Tuesday's window holds this very minute: deleting it would lock Ann out.
    response = ann.post(url(app, f"{tuesday}/delete"), htmx=True)
    assert response.status_code == 409
    assert "This would block you" in html.unescape(response.get_data(as_text=True))
    assert len(stored(app)) == 5


def test_switching_on_outside_the_windows_is_refused(app, clock, ann):
    add(app, ann)
    clock.now = TUESDAY_22
    response = ann.post(url(app, "enabled"), {"enabled": "1"}, htmx=True)
    assert response.status_code == 409
    body = html.unescape(response.get_data(as_text=True))
    assert "This would block you: it is Tue 22:00 (UTC), outside the windows Mon–Fri 07:00–18:00." in body
    with app.app_context():
        assert TimeRule.select().where(TimeRule.enabled).count() == 0


def test_applies_to_selected_roles(app, clock, ann):
    add(app, ann)
    with app.app_context():
        front_desk = Role.get(Role.name == "Front Desk").id
    response = ann.post(url(app, "scope"), {"applies_to": "selected", "roles": [str(front_desk)]}, htmx=True)
    assert response.status_code == 200
    assert response.get_data(as_text=True).strip().startswith('<section id="setting-scope"')
    assert f'action="/security/windows/{practice_id(app)}/scope"' in response.get_data(as_text=True)
    with app.app_context():
        assert [r.role_id for r in TimeRuleRole.select()] == [front_desk]


def test_a_signed_in_session_outside_its_window_is_stopped_on_its_next_request(app, clock, signed_in):
    working_hours(app)
    fay = signed_in("fay")
    assert fay.get("/").status_code == 200
    clock.now = TUESDAY_22
    response = fay.get("/access-requests", htmx=True)
    assert response.headers.get("HX-Redirect") == "/login"
    assert fay.get("/").status_code in (302, 303)
    with app.app_context():
        detail = AuditEvent.get(AuditEvent.action == "session_blocked").detail
    assert detail == "outside your working hours at Riverside Dental: Mon–Fri 07:00–18:00 (UTC)"


def test_time_windows_off_change_nothing(app, clock, signed_in):
    working_hours(app)
    with app.app_context():
        TimeRule.update(enabled=False).execute()
    clock.now = TUESDAY_22
    assert signed_in("fay").get("/").status_code == 200


def test_signing_in_outside_working_hours_shows_the_rule_and_offers_no_access_request(app, clock, visitor):
    working_hours(app)
    clock.now = TUESDAY_22
    v = visitor()
    response = v.login("fay@example.com")
    page = html.unescape(v.get(response.headers["Location"]).get_data(as_text=True))
    assert "<h1>Outside your working hours</h1>" in page
    assert ("You are outside your working hours at Riverside Dental:\n  Mon–Fri 07:00–18:00 (UTC). "
            "An access request does not extend working hours") in page
    assert 'id="request-form"' not in page and "Outside working hours" in page
    with app.app_context():
        assert AuditEvent.get(AuditEvent.action == "login_blocked").detail == (
            "outside_hours: outside your working hours at Riverside Dental: Mon–Fri 07:00–18:00 (UTC)")
    # Inside the hours Fay signs in as before.
    clock.now = TUESDAY_10
    assert visitor().login("fay@example.com").status_code == 303


def test_a_blocked_user_cannot_file_an_access_request_for_a_practice_outside_their_hours(app, clock, visitor):
    working_hours(app)
    clock.now = TUESDAY_22
    v = visitor()
    v.get(v.login("fay@example.com").headers["Location"])
    response = v.post("/access-requests", {"practice": [str(practice_id(app))], "note": ""})
    assert "an access request does not extend working hours" in html.unescape(response.get_data(as_text=True))
    with app.app_context():
        from pbnsec.models import AccessRequest
        assert AccessRequest.select().count() == 0


def test_hal_outside_his_hours_at_one_practice_is_moved_to_the_other(app, clock, signed_in):
    working_hours(app, "Lakeside Dental", roles=("Hygienist",))
    hal = signed_in("hal")  # Lakeside first by name, inside his hours
    with hal.client.session_transaction() as session:
        session["practice_id"] = practice_id(app, "Lakeside Dental")
    clock.now = TUESDAY_22
    response = hal.get("/")
    assert response.status_code in (302, 303)
    page = html.unescape(hal.get(response.headers["Location"]).get_data(as_text=True))
    assert "It is outside your working hours there; you are now working in Riverside Dental." in page


def test_a_page_costs_the_same_for_one_practice_or_six_with_time_windows_on(app, clock, signed_in,
                                                                          count_statements):
    from conftest import restrict
    from test_query_budgets import cost as page_cost
    from test_query_budgets import join_practices

    def cost(v):
        return page_cost(v, count_statements, "/")  # once the compiled policies are current

    restrict(app, "Riverside Dental", "127.0.0.0/24")  # as join_practices does for the others
    working_hours(app, roles=("Front Desk",))
    fay = signed_in("fay")
    one, one_log = cost(fay)
    join_practices(app, "fay@example.com", 5)
    for n in range(5):
        working_hours(app, f"Extra Dental {n}", roles=("Front Desk",))
    six, six_log = cost(fay)
    assert six == one, f"one practice: {one_log}\nsix practices: {six_log}"

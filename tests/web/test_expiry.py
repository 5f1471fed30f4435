"""Expiring approvals and allowlist entries over HTTP: page and fragment, the wording people read, bad input."""
import re
from datetime import timedelta

import pytest
from conftest import PEOPLE, practice_id, restrict

from pbnsec.models import AccessRequest, AllowlistEntry, AuditEvent, Grant, IPRestriction, Practice, User, utcnow

RIVERSIDE = "Riverside Dental"
AWAY = "127.0.0.7"
DELTAS = {"8h": timedelta(hours=8), "1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30),
          "forever": None}


@pytest.fixture
def asked(app):
    """Riverside enforced with the office on its allowlist; Hal asked for access from home. Returns the id."""
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    with app.app_context():
        return AccessRequest.create(user=User.get(User.email == PEOPLE["hal"][0]),
                                    practice=Practice.get(Practice.name == RIVERSIDE), ip=AWAY).id


def grant_lasts(app):
    with app.app_context():
        grant = Grant.get()
        return None if grant.expires_at is None else grant.expires_at - grant.created_at


def fragment_of(response):
    return response.get_data(as_text=True).strip()


@pytest.mark.parametrize("duration", list(DELTAS))
@pytest.mark.parametrize("htmx", [False, True])
def test_approve_with_each_duration(app, ann, asked, duration, htmx):
    response = ann.post(f"/security/requests/{asked}/approve", {"duration": duration}, htmx=htmx)
    if htmx:
        assert response.status_code == 200 and response.headers["HX-Trigger"] == "requests-changed"
        assert "HX-Request" in response.headers["Vary"]
        assert fragment_of(response).startswith(f'<tr id="request-{asked}"') and "Approved" in response.text
    else:
        assert response.status_code == 303 and response.headers["Location"] == "/security/requests"
    assert grant_lasts(app) == DELTAS[duration]


@pytest.mark.parametrize("default", ["8h", "forever"])
def test_one_click_approves_with_the_practice_default(app, ann, asked, default):
    ann.post(f"/security/settings/{practice_id(app)}/duration", {"default_duration": default})
    page = ann.get("/security/requests").text
    row = re.search(rf'<tr id="request-{asked}".*?</tr>', page, re.S).group(0)
    assert "8 hours" in row and "until revoked" in row  # the default beside Approve, the others in its menu
    assert ann.post(f"/security/requests/{asked}/approve").status_code == 303
    assert grant_lasts(app) == DELTAS[default]


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("bad", ["", "2h", "forever!", "x" * 500])
def test_a_bad_duration_is_422_and_decides_nothing(app, ann, asked, htmx, bad):
    response = ann.post(f"/security/requests/{asked}/approve", {"duration": bad}, htmx=htmx)
    assert response.status_code == 422
    assert "Choose how long the approval lasts: 8h, 1d, 7d, 30d or forever" in response.text
    if htmx:
        assert fragment_of(response).startswith(f'<tr id="request-{asked}"') and "<html" not in response.text
    with app.app_context():
        assert AccessRequest.get_by_id(asked).status == "pending" and Grant.select().count() == 0
        assert not AuditEvent.select().where(AuditEvent.action == "request_approved").exists()


def test_the_grants_list_says_when_each_expires_and_greys_expired_ones(app, ann, asked):
    with app.app_context():
        riverside, now = Practice.get(Practice.name == RIVERSIDE), utcnow()
        for who, ip, expires_at in [("hal", AWAY, now + timedelta(hours=6, minutes=30)),
                                    ("fay", "127.0.0.8", now - timedelta(days=2, minutes=1)),
                                    ("owner", "127.0.0.9", None)]:
            Grant.create(user=User.get(User.email == PEOPLE[who][0]), practice=riverside, ip=ip, expires_at=expires_at)
    rows = {ip: row for row, ip in re.findall(r'(<tr id="grant-\d+".*?<code>([\d.]+)</code>.*?</tr>)',
                                               ann.get("/security/allowlist").text, re.S)}
    assert "expires in 6 h" in rows[AWAY] and 'class="expired"' not in rows[AWAY]
    assert "expired 2 days ago" in rows["127.0.0.8"] and 'class="expired"' in rows["127.0.0.8"]
    assert "until revoked" in rows["127.0.0.9"]


def test_an_expired_approval_shows_expired_with_the_form_to_ask_again(app, asked, visitor):
    with app.app_context():
        AccessRequest.update(status="approved").execute()
        Grant.create(user=User.get(User.email == PEOPLE["hal"][0]), practice=Practice.get(Practice.name == RIVERSIDE),
                     ip=AWAY, request=asked, expires_at=utcnow() - timedelta(seconds=1))
    restrict(app, "Lakeside Dental", "127.0.0.1/32")  # Hal's other practice blocks him too
    hal = visitor(ip=AWAY)
    assert hal.login(PEOPLE["hal"][0]).headers["Location"] == "/blocked"
    page = hal.get("/blocked").text
    status = re.search(rf'<tr id="status-{practice_id(app)}">.*?</tr>', page, re.S).group(0)
    assert "status-expired" in status and ">Expired<" in status and "you may request again" in status
    assert 'id="request-form"' in page and f'value="{practice_id(app)}"' in page


def test_a_grant_that_expires_stops_a_signed_in_session_on_its_next_request(app, asked, signed_in):
    with app.app_context():
        Grant.create(user=User.get(User.email == PEOPLE["hal"][0]), practice=Practice.get(Practice.name == RIVERSIDE),
                     ip=AWAY, expires_at=utcnow() + timedelta(hours=1))
    restrict(app, "Lakeside Dental", "127.0.0.1/32")
    hal = signed_in("hal", ip=AWAY)
    assert hal.get("/").status_code == 200
    with app.app_context():
        Grant.update(expires_at=utcnow() - timedelta(seconds=1)).execute()  # as another process's clock reaches it
    assert hal.get("/").headers["Location"] == "/login"


@pytest.mark.parametrize("htmx", [False, True])
def test_the_default_duration_control_saves_itself(app, ann, htmx):
    response = ann.post(f"/security/settings/{practice_id(app)}/duration", {"default_duration": "7d"}, htmx=htmx)
    if htmx:
        assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
        body = fragment_of(response)
        assert body.startswith('<section id="setting-duration"') and body.count("<section") == 1
        assert "✓ Saved" in body and '<option value="7d" selected>' in body
    else:
        assert response.status_code == 303
        assert '<option value="7d" selected>' in ann.get("/security/settings").text
    with app.app_context():
        assert IPRestriction.get().default_duration == "7d"


@pytest.mark.parametrize("htmx", [False, True])
def test_a_bad_default_duration_is_422_and_saves_nothing(app, ann, htmx):
    response = ann.post(f"/security/settings/{practice_id(app)}/duration", {"default_duration": "1y"}, htmx=htmx)
    assert response.status_code == 422 and "8h, 1d, 7d, 30d or forever" in response.text
    with app.app_context():
        assert not IPRestriction.select().where(IPRestriction.default_duration != "forever").exists()


# --- entries ---

def entry(app, network):
    with app.app_context():
        return AllowlistEntry.get(AllowlistEntry.network == network)


def add(ann, app, address, until, htmx=False):
    return ann.post("/security/allowlist", {"address": address, "label": "Contractor", "until": until,
                                            "confirm_local": address, "practice": str(practice_id(app))}, htmx=htmx)


def test_an_entry_added_with_an_until_shows_when_it_expires(app, ann):
    until = (utcnow() + timedelta(days=3, hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert add(ann, app, "127.0.0.9", until).status_code == 303
    assert entry(app, "127.0.0.9/32").expires_at.strftime("%Y-%m-%dT%H:%M") == until
    row = re.search(r'<tr id="entry-\d+"[^>]*>\s*<td data-label="Address"><code>127.0.0.9/32</code>.*?</tr>',
                    ann.get("/security/allowlist").text, re.S).group(0)
    assert "expires in 3 days" in row and "inactive" not in row


@pytest.mark.parametrize("htmx", [False, True])
def test_an_until_in_the_past_is_refused_with_a_message(app, ann, htmx):
    response = add(ann, app, "127.0.0.9", "2020-01-01T09:00", htmx=htmx)
    assert response.status_code == 422 and "2020-01-01 09:00 UTC has passed" in response.text
    with app.app_context():
        assert AllowlistEntry.select().count() == 0


@pytest.mark.parametrize("htmx", [False, True])
def test_an_until_set_inline_re_renders_the_row(app, ann, htmx):
    restrict(app, RIVERSIDE, "127.0.0.1/32", "192.0.2.0/24")
    target = entry(app, "192.0.2.0/24")
    edit = ann.get(f"/security/allowlist/{target.id}/edit", htmx=True)
    assert 'name="until" type="datetime-local"' in edit.text
    response = ann.post(f"/security/allowlist/{target.id}/until", {"until": "2999-01-01T00:00"}, htmx=htmx)
    if htmx:
        assert response.status_code == 200 and response.headers["HX-Trigger"] == "allowlist-changed"
        assert fragment_of(response).startswith(f'<tr id="entry-{target.id}"') and "expires in" in response.text
    else:
        assert response.status_code == 303
    assert entry(app, "192.0.2.0/24").expires_at.year == 2999


def test_an_expired_entry_is_greyed_and_says_since_when(app, ann):
    restrict(app, RIVERSIDE, "127.0.0.1/32", "192.0.2.0/24")
    with app.app_context():
        AllowlistEntry.update(expires_at=utcnow() - timedelta(days=2, minutes=1)).where(
            AllowlistEntry.network == "192.0.2.0/24").execute()
    row = re.search(r'<tr id="entry-\d+"[^>]*>\s*<td data-label="Address"><code>192.0.2.0/24</code>.*?</tr>',
                    ann.get("/security/allowlist").text, re.S).group(0)
    assert "inactive expired" in row and "expired 2 days ago" in row


@pytest.mark.parametrize("htmx", [False, True])
def test_letting_your_own_entry_expire_within_15_minutes_is_refused(app, ann, htmx):
    restrict(app, RIVERSIDE, "127.0.0.0/24")
    target = entry(app, "127.0.0.0/24")
    soon = (utcnow() + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M")
    response = ann.post(f"/security/allowlist/{target.id}/until", {"until": soon}, htmx=htmx)
    assert response.status_code == 409 and "This would block you within the next 15 minutes" in response.text
    assert entry(app, "127.0.0.0/24").expires_at is None


@pytest.mark.parametrize("htmx", [False, True])
def test_an_inline_until_that_is_no_date_is_422(app, ann, htmx):
    restrict(app, RIVERSIDE, "127.0.0.1/32", "192.0.2.0/24")
    target = entry(app, "192.0.2.0/24")
    response = ann.post(f"/security/allowlist/{target.id}/until", {"until": "next week"}, htmx=htmx)
    assert response.status_code == 422 and "YYYY-MM-DD" in response.text and 'value="next week"' in response.text
    assert entry(app, "192.0.2.0/24").expires_at is None

"""Practice time zone over HTTP: the General Settings control, and every time shown local with UTC underneath."""
import csv
import io
import re
from datetime import datetime
from ipaddress import ip_network

import pytest
from conftest import PEOPLE, practice_id, restrict

from pbnsec.models import AccessRequest, AllowlistEntry, AuditEvent, Grant, Practice, User

RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
AWAY = "127.0.0.7"
WINTER = datetime(2026, 1, 15, 18, 12)  # 11:12 MST in Denver
SUMMER = datetime(2026, 7, 15, 17, 12)  # 11:12 MDT in Denver
NEXT_SUMMER = datetime(2027, 7, 15, 17, 12)  # still to come, for an expiry (the tests run on the real clock)


def shown(utc: datetime, local: str, seconds: bool = False) -> str:
    """The markup of a time at a Denver practice: the local time shown, the UTC instant in datetime and title."""
    clock = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return (f'<time datetime="{utc.isoformat()}Z" title="{local} (America/Denver) = {utc:{clock}} UTC">'
            f'{local}</time>')


def in_denver(app, name: str = RIVERSIDE) -> None:
    with app.app_context():
        Practice.update(time_zone="America/Denver").where(Practice.name == name).execute()


def zone_of(app, name: str = RIVERSIDE) -> str:
    with app.app_context():
        return Practice.get(Practice.name == name).time_zone


# --- the control ---

def test_the_settings_page_offers_every_zone_with_the_practices_selected(app, ann):
    in_denver(app)
    page = ann.get("/security/settings").text
    assert '<select id="time-zone" name="time_zone">' in page
    assert '<option value="America/Denver" selected>' in page
    assert '<option value="Europe/London" >' in page


@pytest.mark.parametrize("htmx", [False, True])
def test_the_time_zone_control_saves_itself_and_is_audited(app, ann, htmx):
    response = ann.post(f"/security/settings/{practice_id(app)}/time-zone", {"time_zone": "America/Denver"},
                        htmx=htmx)
    if htmx:
        assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
        body = response.get_data(as_text=True).strip()
        assert body.startswith('<section id="setting-time-zone"') and body.count("<section") == 1
        assert "✓ Saved" in body and '<option value="America/Denver" selected>' in body
    else:
        assert response.status_code == 303
        assert response.headers["Location"] == f"/security/settings?practice={practice_id(app)}"
        assert '<option value="America/Denver" selected>' in ann.get("/security/settings").text
    assert zone_of(app) == "America/Denver" and zone_of(app, LAKESIDE) == "UTC"
    audit = ann.get("/security/audit?action=settings_changed").text
    assert "Time zone" in audit and "UTC -&gt; America/Denver" in audit


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("bad", ["Denver", "", "America/Nowhere"])
def test_a_bad_time_zone_is_422_with_a_clear_message_and_saves_nothing(app, ann, htmx, bad):
    response = ann.post(f"/security/settings/{practice_id(app)}/time-zone", {"time_zone": bad}, htmx=htmx)
    assert response.status_code == 422
    assert ("Choose a time zone" if not bad else f"&#39;{bad}&#39; is not a time zone this server knows") \
        in response.text
    assert zone_of(app) == "UTC"
    with app.app_context():
        assert not AuditEvent.select().where(AuditEvent.action == "settings_changed").exists()


def test_only_an_administrator_of_the_practice_may_set_its_zone(app, signed_in, bob):
    assert signed_in("fay").post(f"/security/settings/{practice_id(app)}/time-zone",
                                 {"time_zone": "America/Denver"}).status_code == 403
    assert bob.post(f"/security/settings/{practice_id(app)}/time-zone",
                    {"time_zone": "America/Denver"}).status_code == 404
    assert zone_of(app) == "UTC"


# --- times shown ---

@pytest.mark.parametrize("utc, local", [(WINTER, "2026-01-15 11:12 MST"), (SUMMER, "2026-07-15 11:12 MDT")])
def test_the_allowlist_shows_when_an_entry_was_added_in_the_practices_time(app, ann, utc, local):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    in_denver(app)
    with app.app_context():
        AllowlistEntry.update(added_at=utc).execute()
    page = ann.get("/security/allowlist").text
    assert shown(utc, local) in page
    assert f"{utc:%H:%M}" not in re.sub(r'<time datetime="[^"]*" title="[^"]*">', "", page)  # no UTC clock shown


def test_an_entry_for_all_practices_is_shown_in_the_practice_being_worked_in(app, signed_in):
    owner = signed_in("owner")
    in_denver(app, RIVERSIDE)  # the owner works in Riverside (her home practice), Lakeside stays UTC
    with app.app_context():
        AllowlistEntry.create(**AllowlistEntry.stored(ip_network("198.51.100.0/24"), None, label="Everywhere"),
                              added_at=WINTER)
    assert shown(WINTER, "2026-01-15 11:12 MST") in owner.get("/security/allowlist").text


def test_an_entrys_until_and_a_grants_times_are_local(app, ann):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    in_denver(app)
    with app.app_context():
        AllowlistEntry.update(expires_at=NEXT_SUMMER).execute()
        Grant.create(user=User.get(User.email == PEOPLE["hal"][0]), practice=Practice.get(Practice.name == RIVERSIDE),
                     ip=AWAY, created_at=WINTER, expires_at=NEXT_SUMMER)
    page = ann.get("/security/allowlist").text
    assert shown(WINTER, "2026-01-15 11:12 MST") in page  # the grant's approval
    until = re.findall(r'<time datetime="2027-07-15T17:12:00Z" title="([^"]+)">(expires in [^<]+)</time>', page)
    assert len(until) == 2  # the entry's until and the grant's expiry, each in words with the local time in title
    assert {title for title, _ in until} == {"2027-07-15 11:12 MDT (America/Denver) = 2027-07-15 17:12 UTC"}


def test_access_requests_show_asked_and_decided_in_the_practices_time(app, ann):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    in_denver(app)
    with app.app_context():
        hal, riverside = User.get(User.email == PEOPLE["hal"][0]), Practice.get(Practice.name == RIVERSIDE)
        AccessRequest.create(user=hal, practice=riverside, ip=AWAY, created_at=WINTER)
        AccessRequest.create(user=hal, practice=riverside, ip="127.0.0.8", created_at=WINTER, status="rejected",
                             decided_by=User.get(User.email == PEOPLE["ann"][0]), decided_at=SUMMER)
    page = ann.get("/security/requests").text
    assert page.count(shown(WINTER, "2026-01-15 11:12 MST")) == 2
    assert shown(SUMMER, "2026-07-15 11:12 MDT") in page


def test_the_audit_log_shows_each_events_time_and_span_in_its_practices_zone(app, ann):
    in_denver(app)
    with app.app_context():
        AuditEvent.create(at=datetime(2026, 1, 15, 18, 12, 5), last_at=datetime(2026, 1, 15, 18, 14, 9), count=4,
                          actor_label="hal@example.com", actor_ip="127.0.0.1", target="hal@example.com",
                          action="login_failed", practice=Practice.get(Practice.name == RIVERSIDE))
    page = ann.get("/security/audit?action=login_failed").text
    assert shown(datetime(2026, 1, 15, 18, 12, 5), "2026-01-15 11:12:05 MST", seconds=True) in page
    cell = " ".join(re.sub(r"<[^>]+>", "", page.split("<tbody>")[1].split("</td>")[0]).split())
    assert cell == "2026-01-15 11:12:05 MST ×4, 11:12:05–11:14:09 MST"
    assert '<time datetime="2026-01-15T18:14:09Z"' in page


def test_the_audit_csv_keeps_utc_and_adds_local_time_at_the_end(app, ann):
    in_denver(app)
    with app.app_context():
        for at in (WINTER, SUMMER):
            AuditEvent.create(at=at, actor_label="script", actor_ip="", target=f"{at:%B}", action="entry_added",
                              practice=Practice.get(Practice.name == RIVERSIDE))
    table = list(csv.reader(io.StringIO(ann.get("/security/audit.csv?action=entry_added").text)))
    assert table[0] == ["time_utc", "actor", "actor_ip", "practice", "action", "target", "detail", "count",
                        "last_utc", "time_local", "subject_ip"]
    assert [(row[0], row[5], row[9]) for row in table[1:]] == [
        ("2026-07-15T17:12:00Z", "July", "2026-07-15T11:12:00-06:00"),
        ("2026-01-15T18:12:00Z", "January", "2026-01-15T11:12:00-07:00")]


def test_the_blocked_page_shows_the_users_requests_in_each_practices_time(app, visitor):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    restrict(app, LAKESIDE, "127.0.0.1/32")
    in_denver(app)
    with app.app_context():
        hal = User.get(User.email == PEOPLE["hal"][0])
        for name in (RIVERSIDE, LAKESIDE):
            AccessRequest.create(user=hal, practice=Practice.get(Practice.name == name), ip=AWAY, created_at=WINTER)
    v = visitor(ip=AWAY)
    assert v.login(PEOPLE["hal"][0]).headers["Location"] == "/blocked"
    page = v.get("/blocked").text
    assert shown(WINTER, "2026-01-15 11:12 MST") in page  # Riverside's, in Denver
    assert '<time datetime="2026-01-15T18:12:00Z" title="2026-01-15 18:12 UTC">2026-01-15 18:12 UTC</time>' in page


def test_an_entrys_until_field_holds_the_practices_local_time(app, ann):
    restrict(app, RIVERSIDE, "127.0.0.1/32", "192.0.2.0/24")
    in_denver(app)
    with app.app_context():
        AllowlistEntry.update(expires_at=NEXT_SUMMER).where(AllowlistEntry.network == "192.0.2.0/24").execute()
        entry = AllowlistEntry.get(AllowlistEntry.network == "192.0.2.0/24").id
    page = ann.get(f"/security/allowlist/{entry}/edit", htmx=True)
    assert 'value="2027-07-15T11:12"' in page.text
    assert "Until (time in America/Denver)" in page.text
    saved = ann.post(f"/security/allowlist/{entry}/until", {"until": "2027-01-15T11:12"}, htmx=True)
    assert saved.status_code == 200
    assert shown(datetime(2027, 1, 15, 18, 12), "2027-01-15 11:12 MST").split(">")[0] in saved.text
    with app.app_context():
        assert AllowlistEntry.get_by_id(entry).expires_at == datetime(2027, 1, 15, 18, 12)

"""The home page as a dashboard, and the one practice picker (the header's) that every page follows."""
import re
from datetime import timedelta
from ipaddress import ip_network

from conftest import practice_id, restrict

from pbnsec.models import (
    AccessRequest,
    AllowlistEntry,
    AuditEvent,
    Practice,
    Role,
    TimeRule,
    TimeRuleRole,
    User,
    utcnow,
)


def card(page_text: str, app, name: str) -> str:
    """The dashboard card of one practice."""
    found = re.search(rf'<section class="card practice-summary" id="practice-{practice_id(app, name)}".*?</section>',
                      page_text, re.S)
    assert found, f"no card for {name}"
    return found.group(0)


def link(card_text: str, css_class: str) -> tuple[str, str]:
    """(href, words) of the card's link of that class, the words without the screen-reader-only suffix."""
    found = re.search(rf'<a class="{css_class}" href="([^"]+)">(.*?)</a>', card_text, re.S)
    assert found, f"no {css_class} link"
    words = re.sub(r'<span class="visually-hidden">.*?</span>', "", found.group(2))
    return found.group(1).replace("&amp;", "&"), " ".join(words.split())


def lakeside_in_use(app):
    """Lakeside: IP restrictions on for selected people, Time Windows on, entries (one off, one expired, one for
    every practice), two pending requests and blocked sign-ins, some older than a week."""
    restrict(app, "Lakeside Dental", "127.0.0.0/24", "127.0.1.0/24", everyone=False, roles=["Hygienist"])
    with app.app_context():
        lakeside = Practice.get(Practice.name == "Lakeside Dental")
        hal = User.get(User.email == "hal@example.com")
        now = utcnow()
        AllowlistEntry.update(active=False).where(AllowlistEntry.network == "127.0.1.0/24").execute()
        AllowlistEntry.create(**AllowlistEntry.stored(ip_network("198.51.100.0/24"), lakeside, label="Old",
                                                      expires_at=now - timedelta(days=1)))
        AllowlistEntry.create(**AllowlistEntry.stored(ip_network("2001:db8::/48"), None, label="Head office"))
        TimeRule.create(practice=lakeside, enabled=True, everyone=False)  # for the Front Desk: none here
        TimeRuleRole.create(practice=lakeside, role=Role.get(Role.name == "Front Desk"))
        for ip in ("203.0.113.7", "203.0.113.8"):
            AccessRequest.create(user=hal, practice=lakeside, ip=ip)
        AccessRequest.create(user=hal, practice=lakeside, ip="203.0.113.9", status="rejected")
        for at, count, action in ((now - timedelta(days=1), 3, "login_blocked"),
                                  (now - timedelta(days=2), 1, "login_blocked"),
                                  (now - timedelta(days=9), 4, "login_blocked"),
                                  (now - timedelta(hours=1), 2, "session_blocked")):
            AuditEvent.create(action=action, at=at, count=count, actor_label="hal@example.com",
                              actor_ip="203.0.113.7", practice=lakeside, target="hal@example.com")


def test_an_administrator_sees_each_practice_at_a_glance_each_number_linking_to_its_screen(app, signed_in):
    lakeside_in_use(app)
    owner = signed_in("owner")
    page = owner.get("/").text
    lid, rid = practice_id(app, "Lakeside Dental"), practice_id(app, "Riverside Dental")
    lakeside, riverside = card(page, app, "Lakeside Dental"), card(page, app, "Riverside Dental")
    assert link(lakeside, "restrictions") == (f"/security/settings?practice={lid}", "On, for selected roles and users")
    assert link(lakeside, "windows") == (f"/security/windows?practice={lid}", "On, for selected roles and users")
    assert link(lakeside, "entries") == (f"/security/allowlist?practice={lid}", "2 active entries")
    assert link(lakeside, "pending") == ("/security/requests", "2 pending")
    assert link(lakeside, "blocked") == (f"/security/audit?practice={lid}&action=login_blocked", "4 sign-ins")
    assert link(lakeside, "stopped") == (f"/security/audit?practice={lid}&action=session_blocked", "2 sessions stopped")
    assert link(riverside, "restrictions") == (f"/security/settings?practice={rid}", "Off")
    assert link(riverside, "windows")[1] == "Off"
    assert link(riverside, "entries")[1] == "1 active entry"  # the All practices one
    assert link(riverside, "pending")[1] == "0 pending" and link(riverside, "blocked")[1] == "0 sign-ins"
    assert 'class="stopped"' not in riverside
    assert '<span class="visually-hidden"> at Lakeside Dental</span>' in lakeside  # each link says whose it is


def test_a_person_who_administers_nothing_sees_their_practices_and_status_only(app, signed_in, visitor):
    lakeside_in_use(app)
    restrict(app, "Riverside Dental", "127.0.0.0/24")
    hal = visitor("127.0.0.1")
    hal.login("hal@example.com")
    page = hal.get("/").text
    for name in ("Riverside Dental", "Lakeside Dental"):
        shown = card(page, app, name)
        assert 'class="badge status-allowed">Allowed' in shown
        assert "<dl" not in shown and "/security/" not in shown


def test_an_administrator_sees_a_practice_that_blocks_this_ip_without_its_numbers(app, signed_in):
    restrict(app, "Lakeside Dental", "127.0.0.0/24")
    with app.app_context():
        AccessRequest.create(user=User.get(User.email == "hal@example.com"),
                             practice=Practice.get(Practice.name == "Lakeside Dental"), ip="203.0.113.7")
    owner = signed_in("owner", ip="127.0.2.1")  # outside Lakeside's allowlist: only Riverside lets her in
    page = owner.get("/").text
    lakeside = card(page, app, "Lakeside Dental")
    assert "status-not_requested" in lakeside and "<dl" not in lakeside and "1 pending" not in lakeside
    assert "only from where it lets you in" in lakeside and 'href="/access-requests"' in lakeside
    assert "<dl" in card(page, app, "Riverside Dental")


def test_sign_in_lands_in_the_home_practice(app, visitor):
    owner = visitor()
    landing = owner.login("owner@example.com")
    assert landing.status_code == 303
    assert "<h1>Riverside Dental</h1>" in owner.get("/").text  # her first practice, though Lakeside sorts first


def test_the_header_picker_switches_and_returns_to_the_page_it_was_used_on(app, signed_in):
    owner = signed_in("owner")
    page = owner.get("/security/settings")
    assert 'id="practice-switch"' in page.text and '<input type="hidden" name="next" value="/security/settings">' in page.text
    assert 'id="settings-practice"' not in page.text  # no second picker on the page
    lid = practice_id(app, "Lakeside Dental")
    switched = owner.post("/practice", {"practice": str(lid), "next": "/security/settings"})
    assert switched.status_code == 303 and switched.headers["Location"] == "/security/settings"
    page = owner.get("/security/settings").text
    assert "<small>Lakeside Dental</small>" in page
    assert re.search(rf'<option value="{lid}" selected>\s*Lakeside Dental', page)
    away = owner.post("/practice", {"practice": str(lid), "next": "//evil.example/"})
    assert away.headers["Location"] == "/"  # no open redirect


def test_a_link_naming_a_practice_switches_the_header_to_it(app, signed_in):
    owner = signed_in("owner")
    lid, rid = practice_id(app, "Lakeside Dental"), practice_id(app, "Riverside Dental")
    for path in ("/security/settings", "/security/windows", "/security/allowlist"):
        page = owner.get(f"{path}?practice={lid}").text
        assert re.search(rf'<option value="{lid}" selected>\s*Lakeside Dental', page), path
        assert "Lakeside Dental" in re.search(r"<h1>.*?</h1>", page, re.S).group(0), path
        # … and stays there: the page without the parameter, and the next page, show the same practice
        assert re.search(rf'<option value="{lid}" selected>', owner.get("/").text), path
        owner.get(f"{path}?practice={rid}")
    assert owner.get("/security/settings?practice=999999").status_code == 404
    assert re.search(rf'<option value="{rid}" selected>', owner.get("/").text)  # a bad link switches nothing

"""Security Management › Why blocked?: the tester as a page and as a fragment, its refusals, the audit-row link."""
import html
import re
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import practice_id, restrict

from pbnsec.models import AuditEvent

RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
HOME = "127.0.0.66"


def answer_of(response):
    """The answer block's text as a person reads it."""
    body = response.text
    if 'id="why-answer"' in body:
        body = body.split('id="why-answer"', 1)[1]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_page_and_fragment_answer_alike(app, ann):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    url = f"/security/why?user=fay@example.com&ip={HOME}&at=2026-11-30T09:00:00Z"
    page = ann.get(url)
    assert page.status_code == 200 and "<h1>Why blocked?</h1>" in page.text and 'id="why-form"' in page.text
    assert 'hx-get="/security/why"' in page.text and 'hx-target="#why-answer"' in page.text
    assert 'aria-current="page">Why blocked?' in page.text
    fragment = ann.get(url, htmx=True)
    assert fragment.status_code == 200 and "<h1>" not in fragment.text and 'id="why-form"' not in fragment.text
    for response in (page, fragment):
        assert "HX-Request" in response.headers["Vary"]
        said = answer_of(response)
        assert "Fay Desk (fay@example.com) from 127.0.0.66 at 2026-11-30 09:00 UTC" in said
        assert "Riverside Dental: Blocked (Not Requested)" in said
        assert "No allowlist entry of this practice or of All practices holds 127.0.0.66" in said
        assert "Blocked: the IP is not approved." in said
    assert 'value="fay@example.com"' in page.text and 'value="2026-11-30T09:00:00Z"' in page.text


def test_the_empty_form_asks_and_the_time_defaults_to_now(app, ann):
    empty = ann.get("/security/why")
    assert empty.status_code == 200 and "Enter a user and an IP address to test." in empty.text
    now = ann.get("/security/why?user=fay@example.com&ip=127.0.0.1", htmx=True)
    assert now.status_code == 200
    assert f"at {datetime.utcnow():%Y-%m-%d}" in answer_of(now)
    assert "Allowed: IP restrictions are off." in answer_of(now)


@pytest.mark.parametrize("query, message", [
    ("user=fay@example.com", "Enter the IP address to test"),
    ("user=fay@example.com&ip=not-an-ip", "not-an-ip"),
    ("user=fay@example.com&ip=10.0.0.0/8", "Enter a single address, not a network"),
    ("user=fay@example.com&ip=127.0.0.1&at=soon", "“soon” is not a time"),
    ("user=nobody@example.com&ip=127.0.0.1", "No one with the email or id “nobody@example.com”"),
    ("user=bob@example.com&ip=127.0.0.1", "No one with the email or id “bob@example.com”"),
    ("ip=127.0.0.1", "Enter the user's email address or id, or choose a role."),
])
def test_refusals_400_on_the_page_and_swappable_in_the_fragment(app, ann, query, message):
    page = ann.get(f"/security/why?{query}")
    assert page.status_code == 400 and message in html.unescape(page.text)
    assert 'id="why-form"' in page.text  # the form stays, with what was typed
    fragment = ann.get(f"/security/why?{query}", htmx=True)
    assert fragment.status_code == 422 and message in html.unescape(fragment.text)  # htmx swaps 422, not 400
    assert 'role="alert"' in fragment.text


def test_another_practice_is_neither_explained_nor_named(app, ann):
    lakeside = practice_id(app, LAKESIDE)
    response = ann.get(f"/security/why?user=hal@example.com&ip=127.0.0.1&practice={lakeside}")
    assert response.status_code == 400 and LAKESIDE not in response.text
    hal = ann.get("/security/why?user=hal@example.com&ip=127.0.0.1")
    assert hal.status_code == 200 and RIVERSIDE in answer_of(hal) and LAKESIDE not in hal.text


def test_a_practice_that_blocks_the_admins_ip_is_not_explained(app, signed_in):
    # Olive administers both; from home Riverside blocks her, so from there she may ask only about Lakeside.
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    olive = signed_in("owner", ip=HOME)
    riverside = practice_id(app, RIVERSIDE)
    refused = olive.get(f"/security/why?user=hal@example.com&ip=127.0.0.1&practice={riverside}")
    assert refused.status_code == 400 and "not a practice you administer from here" in html.unescape(refused.text)
    both = olive.get("/security/why?user=hal@example.com&ip=127.0.0.1")
    assert "Lakeside Dental: Allowed" in answer_of(both) and "Riverside Dental:" not in answer_of(both)
    fay = olive.get("/security/why?user=fay@example.com&ip=127.0.0.1")  # Riverside only
    assert fay.status_code == 400 and "No one with the email or id" in html.unescape(fay.text)


def test_other_roles_get_403(app, signed_in):
    fay = signed_in("fay")
    assert fay.get("/security/why?user=fay@example.com&ip=127.0.0.1").status_code == 403
    assert fay.get("/security/why?user=fay@example.com&ip=127.0.0.1", htmx=True).status_code == 403


def test_read_only_get_needs_no_csrf_and_post_is_not_allowed(app, ann):
    def before():
        return AuditEvent.select().count()

    with app.app_context():
        events = before()
    response = ann.get("/security/why?user=fay@example.com&ip=127.0.0.1")  # no token sent: a GET needs none
    assert response.status_code == 200
    assert ann.post("/security/why", {"user": "fay@example.com", "ip": "127.0.0.1"}).status_code == 405
    with app.app_context():
        assert before() == events  # nothing recorded, nothing changed


def test_blocked_audit_rows_link_to_the_tester_prefilled(app, ann, visitor):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    fay = visitor(ip=HOME)
    assert fay.login("fay@example.com").headers["Location"] == "/blocked"
    audit = ann.get("/security/audit?action=login_blocked")
    links = re.findall(r'<a class="why-link"[^>]*href="([^"]+)"', audit.text)
    assert len(links) == 1
    link = html.unescape(links[0])
    query = parse_qs(urlsplit(link).query)
    with app.app_context():
        event = AuditEvent.get(AuditEvent.action == "login_blocked")
    assert query["user"] == ["fay@example.com"] and query["ip"] == [HOME]
    assert query["at"] == [event.at.isoformat() + "Z"] and query["practice"] == [str(practice_id(app, RIVERSIDE))]
    opened = ann.get(link)
    assert opened.status_code == 200
    said = answer_of(opened)
    assert f"Fay Desk (fay@example.com) from {HOME}" in said and "Riverside Dental: Blocked" in said
    # Other rows get no link.
    assert ann.get("/security/audit?action=login_allowed").text.count('class="why-link"') == 0


def test_a_role_is_offered_and_answered_page_and_fragment(app, ann):
    with app.app_context():
        from pbnsec.models import Role
        hygienist = Role.get(Role.name == "Hygienist").id
    form = ann.get("/security/why")
    assert f'<option value="{hygienist}" >Hygienist</option>' in form.text
    for htmx in (False, True):
        response = ann.get(f"/security/why?role={hygienist}&ip=127.0.0.1", htmx=htmx)
        assert response.status_code == 200 and "Someone with the role Hygienist" in response.text
        assert ("<html" in response.text) is not htmx and RIVERSIDE in answer_of(response)


@pytest.mark.parametrize("query, message", [("user=x%00y&ip=127.0.0.1", "The user contains a control character."),
                                            ("role=Ad%00min&ip=127.0.0.1", "The role contains a control character.")])
def test_a_control_character_is_refused_on_both_databases(app, ann, query, message):
    response = ann.get(f"/security/why?{query}")
    assert response.status_code == 400 and message in response.text  # PostgreSQL would refuse the NUL: a 500

"""The pending-requests count in the header of every page, for security administrators: the practices they
administer from here only, refreshed by polling and by the requests-changed event."""
import re

import pytest
from conftest import restrict

from pbnsec.models import AccessRequest, Practice, User

RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
HEADER_BADGE = re.compile(r'<span id="header-pending-badge"[^>]*>(\d+)</span>')


def pending(app, who_email: str, practice: str, ip: str = "198.51.100.7"):
    with app.app_context():
        return AccessRequest.create(user=User.get(User.email == who_email),
                                    practice=Practice.get(Practice.name == practice), ip=ip).id


def header_count(page_text: str) -> int | None:
    """The count in the page's header (None when the header has no badge)."""
    header = page_text.split("</header>")[0]
    found = HEADER_BADGE.search(header)
    return int(found.group(1)) if found else None


@pytest.mark.parametrize("url", ["/", "/account/password", "/access-requests", "/security/allowlist"])
def test_every_page_shows_an_administrator_the_requests_waiting_in_their_practices(app, signed_in, url):
    pending(app, "hal@example.com", RIVERSIDE)
    pending(app, "fay@example.com", RIVERSIDE)
    pending(app, "hal@example.com", LAKESIDE)
    assert header_count(signed_in("ann").get(url).text) == 2
    assert header_count(signed_in("bob").get(url).text) == 1
    assert header_count(signed_in("owner").get(url).text) == 3
    assert header_count(signed_in("fay").get(url).text) is None  # not a security administrator


def test_the_header_links_to_the_requests_and_shows_zero_greyed(app, ann):
    page = ann.get("/").text.split("</header>")[0]
    assert re.search(r'<a href="/security/requests">Access requests <span id="header-pending-badge" '
                     r'class="badge count zero" aria-label="0 pending"', page), page


def test_a_practice_that_blocks_the_administrator_here_is_not_counted(app, signed_in):
    pending(app, "hal@example.com", RIVERSIDE)
    pending(app, "hal@example.com", LAKESIDE)
    restrict(app, LAKESIDE, "127.0.0.0/30")
    owner = signed_in("owner", ip="127.0.0.5")  # Lakeside does not allow this IP
    assert header_count(owner.get("/").text) == 1
    assert header_count(signed_in("owner", ip="127.0.0.2").get("/").text) == 2


def test_the_badge_refreshes_itself_as_a_fragment(app, ann, signed_in):
    pending(app, "hal@example.com", RIVERSIDE)
    response = ann.get("/security/requests/header-badge", htmx=True)
    assert response.status_code == 200
    assert response.text.startswith('<span id="header-pending-badge"') and "<html" not in response.text
    assert header_count("<header>" + response.text) == 1
    assert "HX-Request" in response.headers["Vary"]
    attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', response.text))
    assert attributes["hx-get"] == "/security/requests/header-badge"
    assert attributes["hx-swap"] == "outerHTML"
    assert "requests-changed from:body" in attributes["hx-trigger"] and "every" in attributes["hx-trigger"]

    # a decision anywhere announces requests-changed, and the badge then counts one fewer
    rid = pending(app, "fay@example.com", RIVERSIDE)
    assert header_count("<header>" + ann.get("/security/requests/header-badge", htmx=True).text) == 2
    decided = signed_in("owner").post(f"/security/requests/{rid}/reject", htmx=True)
    assert "requests-changed" in decided.headers["HX-Trigger"]
    assert header_count("<header>" + ann.get("/security/requests/header-badge", htmx=True).text) == 1


def test_the_badge_url_opened_as_a_page_leads_to_the_requests(app, ann):
    response = ann.get("/security/requests/header-badge")
    assert response.status_code == 303 and response.headers["Location"] == "/security/requests"
    assert "HX-Request" in response.headers["Vary"]


@pytest.mark.parametrize("htmx", [False, True])
def test_only_security_administrators_get_the_badge(app, signed_in, htmx):
    fay = signed_in("fay")
    assert fay.get("/security/requests/header-badge", htmx=htmx).status_code == 403


"""At 360 px wide (a small phone) every Security Management page fits: no sideways scrolling, long IPv6
addresses and notes included."""
from datetime import timedelta
from ipaddress import ip_network

import pytest
from browser_support import chromium_page, live_app, sign_in
from conftest import PASSWORD, seed

PAGES = ["/security/allowlist", "/security/settings", "/security/windows", "/security/requests", "/security/audit",
         "/security/why?user=fay@example.com&ip=203.0.113.77", "/access-requests"]


def with_long_rows(app):
    from pbnsec.models import AccessRequest, AllowlistEntry, AuditEvent, Grant, Practice, User, utcnow

    seed(app)
    practice = Practice.get(Practice.name == "Lakeside Dental")
    hal, fay = User.get(User.email == "hal@example.com"), User.get(User.email == "fay@example.com")
    AllowlistEntry.create(**AllowlistEntry.stored(ip_network("2001:db8:abcd:1234::/64"), practice,
                                                  label="Contractor on the third floor", expires_at=utcnow() + timedelta(days=3)))
    AccessRequest.create(user=hal, practice=practice, ip="2001:db8:abcd:1234:5678:9abc:def0:1234",
                         note="Working from home on Thursdays, please approve quickly")
    Grant.create(user=hal, practice=practice, ip="2001:db8:abcd:1234:5678:9abc:def0:4321",
                 expires_at=utcnow() + timedelta(hours=6))
    AuditEvent.create(action="login_blocked", actor=fay, actor_label="fay@example.com",
                      actor_ip="2001:db8:abcd:1234:5678:9abc:def0:1234", practice=practice, target="fay@example.com",
                      detail="ip_not_approved: IP 2001:db8:abcd:1234:5678:9abc:def0:1234 is not approved", count=5,
                      last_at=utcnow())


def test_security_pages_fit_a_360_pixel_screen(tmp_path):
    with live_app(tmp_path, setup=with_long_rows) as (app, base_url), chromium_page() as page:
        page.set_viewport_size({"width": 360, "height": 800})
        sign_in(page, base_url, "owner@example.com", PASSWORD)
        widths = {}
        for path in PAGES:
            page.goto(base_url + path)
            widths[path] = page.evaluate("document.documentElement.scrollWidth")
        assert {path: w for path, w in widths.items() if w > 360} == {}, widths


@pytest.mark.parametrize("path", ["/security/requests", "/security/audit"])
def test_the_tables_are_tables_again_on_a_desktop(tmp_path, path):
    with live_app(tmp_path, setup=with_long_rows) as (app, base_url), chromium_page() as page:
        page.set_viewport_size({"width": 1280, "height": 800})
        sign_in(page, base_url, "owner@example.com", PASSWORD)
        page.goto(base_url + path)
        assert page.locator("table thead").first.is_visible()

"""Every screen fits a 360 px phone and a 1280 px desktop: no sideways scrolling, with realistic data — long notes,
IPv6 addresses, 50 rows, a lockout refusal shown in an allowlist row."""
from datetime import timedelta
from ipaddress import ip_network

import pytest
from browser_support import chromium_page, fits, live_app, overflow, sign_in
from conftest import PASSWORD, practice_id, seed
from pbnsec.models import utcnow
from playwright.sync_api import expect

SIZES = [(360, 740), (1280, 800)]
PAGES = ["/", "/security/allowlist", "/security/settings", "/security/windows", "/security/requests",
         "/security/audit", "/security/why?user=fay@example.com&ip=2001:db8:abcd:1234:5678:9abc:def0:1234",
         "/access-requests", "/account/password", "/security/apps"]
LONG_NOTE = ("Working from the hospital on-call room on Thursdays and every other weekend; the address changes when "
             "the hospital's network does, please approve quickly so I can read the morning list")
ROWS = 50


def with_long_rows(app):
    """Seeded people; Lakeside: 50 allowlist entries (IPv6 among them), 50 requests with long notes, grants and audit
    events from long IPv6 addresses; its IP restrictions on, with the Owner let in by one entry only (so switching
    that one off is refused in its row). Riverside restricts Fay alone, from nowhere: Fay is blocked."""
    from pbnsec.models import (
        AccessRequest,
        AllowlistEntry,
        AuditEvent,
        Grant,
        IPRestriction,
        Practice,
        ProtectedApp,
        ProtectedAppPractice,
        RestrictedUser,
        User,
        utcnow,
    )

    seed(app)
    lakeside, riverside = (Practice.get(Practice.name == n) for n in ("Lakeside Dental", "Riverside Dental"))
    hal, fay = User.get(User.email == "hal@example.com"), User.get(User.email == "fay@example.com")
    AllowlistEntry.create(**AllowlistEntry.stored(ip_network("127.0.0.0/24"), lakeside, label="This machine"))
    for n in range(ROWS):
        network = f"2001:db8:abcd:{n:x}::/64" if n % 2 else f"198.51.{n}.0/24"
        AllowlistEntry.create(**AllowlistEntry.stored(ip_network(network), lakeside,
                                                      label=f"Contractor on the third floor, desk {n}",
                                                      expires_at=utcnow() + timedelta(days=3) if n % 3 else None))
        ip = f"2001:db8:abcd:1234:5678:9abc:def0:{n:04x}"
        AccessRequest.create(user=hal, practice=lakeside, ip=ip, note=LONG_NOTE,
                             status="pending" if n % 2 else "rejected")
        Grant.create(user=hal, practice=lakeside, ip=ip.replace("def0", "fed0"), expires_at=utcnow() + timedelta(hours=n))
        AuditEvent.create(action="login_blocked", actor=fay, actor_label="fay@example.com", actor_ip=ip,
                          practice=lakeside, target="fay@example.com",
                          detail=f"ip_not_approved: IP {ip} is not approved", count=5, last_at=utcnow())
    # Protected apps with long names and hosts: their snippets' long lines scroll inside their boxes.
    for n, proxy in enumerate(("nginx", "caddy", "traefik")):
        protected = ProtectedApp.create(name=f"Imaging viewer for the third-floor surgery, workstation {n}",
                                        host=f"imaging-viewer-third-floor-{n}.lakeside-dental-group.example:8443",
                                        proxy=proxy)
        ProtectedAppPractice.create(app=protected, practice=lakeside)
    IPRestriction.create(practice=lakeside, enforced=True)
    IPRestriction.create(practice=riverside, enforced=True, everyone=False)
    RestrictedUser.create(practice=riverside, user=fay)


@pytest.mark.parametrize("width,height", SIZES)
def test_every_screen_fits_a_phone_and_a_desktop(tmp_path, width, height):
    with live_app(tmp_path, setup=with_long_rows) as (app, base_url), chromium_page() as page:
        page.set_viewport_size({"width": width, "height": height})
        widths = {}
        page.goto(base_url + "/login")
        widths["/login"] = overflow(page)
        sign_in(page, base_url, "fay@example.com", PASSWORD)  # restricted at Riverside, from nowhere: blocked
        expect(page.get_by_role("heading", name="requires approval")).to_be_visible()
        widths["/blocked"] = overflow(page)
        page.context.clear_cookies()

        sign_in(page, base_url, "owner@example.com", PASSWORD)
        page.goto(base_url + "/security/allowlist?practice=" + str(practice_id(app, "Lakeside Dental")))
        for path in PAGES:
            page.goto(base_url + path)
            widths[path] = overflow(page)
            if path == "/security/requests":  # the data is really there
                assert page.locator("#pending-requests tbody tr").count() == ROWS // 2
            if path == "/security/apps":  # each app's own snippet is open, its long lines scrolling in their box
                boxes = page.locator("details[open] pre.snippet-box")
                assert boxes.count() == 3
                if width == 360:
                    assert boxes.first.evaluate("e => e.scrollWidth > e.clientWidth")

        # A refusal inside a row (switching off the one entry that lets the Owner in) widens nothing.
        page.goto(base_url + "/security/allowlist")
        page.wait_for_load_state("load")
        row = page.locator("#allowlist-table tr[id^='entry-']", has_text="This machine")
        row.get_by_role("switch").click()
        refusal = page.locator("#allowlist-table tr.refusal")
        expect(refusal).to_contain_text("This would block you")
        expect(refusal.get_by_role("button", name="Add my current IP")).to_be_visible()
        widths["/security/allowlist (lockout refused)"] = overflow(page)
        assert {path: w for path, w in widths.items() if w["scroll"] > w["inner"]} == {}, widths



@pytest.mark.parametrize("path", ["/security/requests", "/security/audit", "/security/allowlist"])
def test_the_tables_are_tables_again_on_a_desktop(tmp_path, path):
    with live_app(tmp_path, setup=with_long_rows) as (app, base_url), chromium_page() as page:
        page.set_viewport_size({"width": 1280, "height": 800})
        sign_in(page, base_url, "owner@example.com", PASSWORD)
        page.goto(base_url + path)
        assert page.locator("table thead").first.is_visible()


def test_on_a_phone_an_address_is_never_broken_and_the_actions_are_on_screen(tmp_path):
    with live_app(tmp_path, setup=with_long_rows) as (app, base_url), chromium_page() as page:
        page.set_viewport_size({"width": 360, "height": 740})
        sign_in(page, base_url, "owner@example.com", PASSWORD)
        page.goto(base_url + "/security/requests?practice=" + str(practice_id(app, "Lakeside Dental")))
        ip = page.locator("#pending-requests td[data-label='IP'] code").first
        line_height = ip.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || e.offsetHeight")
        assert ip.bounding_box()["height"] < 1.5 * line_height  # one line: not one digit per line
        for name in ("Approve", "Reject"):
            box = page.locator("#pending-requests").get_by_role("button", name=name).first.bounding_box()
            assert 0 <= box["x"] and box["x"] + box["width"] <= 360, (name, box)


def test_on_a_phone_the_audit_filters_stack_and_filter_by_ip_and_day(tmp_path):
    with live_app(tmp_path, setup=with_long_rows) as (app, base_url), chromium_page() as page:
        page.set_viewport_size({"width": 360, "height": 740})
        sign_in(page, base_url, "owner@example.com", PASSWORD)
        page.goto(base_url + "/security/audit?ip=nonsense&from=2024-13-01")
        expect(page.locator("#f-ip-error")).to_have_text(
            "'nonsense' is not an IP address: type one such as 203.0.113.7 or 2001:db8::1.")
        expect(page.locator("#f-from-error")).to_contain_text("is not a date")
        assert fits(page), overflow(page)
        boxes = [page.locator(f"#f-{name}").bounding_box() for name in ("practice", "action", "user", "ip", "from", "to")]
        assert len({round(box["x"]) for box in boxes}) == 1, boxes  # one field a row: stacked
        assert all(box["x"] >= 0 and box["x"] + box["width"] <= 360 for box in boxes), boxes

        today = utcnow().date().isoformat()
        page.locator("#f-ip").fill("::ffff:127.0.0.1")  # where the Owner signed in from, just now
        page.locator("#f-from").fill(today)
        page.locator("#f-to").fill(today)
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("#audit-table td[data-label='Action']").first).to_have_text("login allowed")
        assert set(page.locator("#audit-table td[data-label='IP']").all_inner_texts()) == {"127.0.0.1"}
        expect(page.locator("#f-ip")).to_have_value("127.0.0.1")
        assert "ip=%3A%3Affff%3A127.0.0.1" in page.url and f"from={today}" in page.url and f"to={today}" in page.url
        assert fits(page), overflow(page)

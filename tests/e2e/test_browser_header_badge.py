"""In a real browser: the header of every page shows a security administrator the requests waiting, and a decision
made on the page lowers it at once (the requests-changed event), without a reload."""
from browser_support import chromium_page, live_app, sign_in
from conftest import PASSWORD, seed
from playwright.sync_api import expect


def with_two_requests(app):
    from pbnsec.models import AccessRequest, Practice, User

    seed(app)
    riverside = Practice.get(Practice.name == "Riverside Dental")
    for who, ip in (("hal@example.com", "198.51.100.7"), ("fay@example.com", "198.51.100.8")):
        AccessRequest.create(user=User.get(User.email == who), practice=riverside, ip=ip)


def test_the_header_count_follows_decisions_made_on_the_page(tmp_path):
    with live_app(tmp_path, setup=with_two_requests) as (app, base_url), chromium_page() as page:
        sign_in(page, base_url, "ann@example.com", PASSWORD)
        header = page.locator("header")
        link = header.get_by_role("link", name="Access requests 2 pending")
        expect(link).to_be_visible()
        link.click()
        expect(page).to_have_url(base_url + "/security/requests")
        page.wait_for_load_state("load")  # htmx (a deferred script) has processed the page
        badge = header.locator("#header-pending-badge")
        expect(badge).to_have_text("2")
        page.locator("#pending-requests tbody tr").first.get_by_role("button", name="Approve").click()
        expect(badge).to_have_text("1")
        expect(badge).to_have_attribute("aria-label", "1 pending")
        expect(page.locator("#pending-badge")).to_have_text("1")  # the tab's badge agrees

"""In a real browser: an admin builds the practice's IP allowlist with htmx, without a page reload."""
from __future__ import annotations

import re

from browser_support import chromium_page, live_app, sign_in, stays_in_place
from playwright.sync_api import expect

from pbnsec.models import AllowlistEntry

EMAIL = "ann@example.com"
PASSWORD = "correct horse battery"
ALLOWLIST_PATH = "/security/allowlist"


def seed(app):
    from pbnsec.domain.users import create_practice, create_user

    create_practice("Riverside Dental")
    create_user(EMAIL, "Ann Lee", "Admin", ["Riverside Dental"], PASSWORD)


def networks(app) -> set[str]:
    with app.app_context():
        return {entry.network for entry in AllowlistEntry.select()}


def test_admin_builds_the_allowlist_in_the_browser_without_reloading_the_page(tmp_path):
    with live_app(tmp_path, setup=seed) as (app, base_url), chromium_page() as page:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(f"console: {m.text} [{m.location['url']}]") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        navigations: list[str] = []
        page.on("framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None)

        # Sign in through the form and land on the practice home.
        sign_in(page, base_url, EMAIL, PASSWORD)
        expect(page).to_have_url(base_url + "/")
        expect(page.get_by_role("heading", level=1, name="Riverside Dental")).to_be_visible()

        # Security Management opens the IP Allowlist.
        page.get_by_role("link", name="Security Management").click()
        expect(page).to_have_url(base_url + ALLOWLIST_PATH)
        page.wait_for_load_state("load")  # htmx (a deferred script) has processed the page
        expect(page.get_by_role("heading", name=re.compile(r"^IP Allowlist"))).to_be_visible()
        status = page.locator("#ip-status")
        badge = status.locator(".badge")
        rows = page.locator("#allowlist-table tbody tr[id^='entry-']")
        expect(page.locator("#my-ip")).to_have_text("127.0.0.1")
        expect(badge).to_have_text("✗ Not covered")
        expect(status).to_have_class(re.compile(r"\bnot-covered\b"))
        expect(rows).to_have_count(0)

        # From here on every action is an htmx swap: the document must never be replaced.
        still_the_same_page = stays_in_place(page, base_url + ALLOWLIST_PATH, navigations)

        # The admin's IP is this machine's own: a warning, and a box to tick before adding it.
        expect(page.locator("#local-warning")).to_contain_text("this machine's own address (127.0.0.1)")
        page.get_by_label("Yes, people really connect from 127.0.0.1").check()
        # Then one click adds the admin's own IP; the status turns to Covered.
        page.get_by_role("button", name="Add my current IP (127.0.0.1)").click()
        mine = rows.filter(has=page.locator("code", has_text=re.compile(r"^127\.0\.0\.1/32$")))
        expect(mine).to_have_count(1)
        expect(mine).to_contain_text("Ann Lee – current IP")
        expect(badge).to_have_text("✓ Covered")
        expect(status).to_contain_text("127.0.0.1/32 (Ann Lee – current IP)")
        expect(page.get_by_role("status")).to_have_text("Added 127.0.0.1/32 (Ann Lee – current IP) to the allowlist.")
        still_the_same_page()

        # A labelled network through the add form.
        page.locator("#address").fill("192.0.2.0/24")
        page.locator("#label").fill("Office Network")
        expect(page.locator("#practice")).to_have_value(re.compile(r"^\d+$"))  # this practice, not All practices
        page.get_by_role("button", name="Add entry").click()
        office = rows.filter(has=page.locator("code", has_text=re.compile(r"^192\.0\.2\.0/24$")))
        expect(office).to_have_count(1)
        expect(office.locator("td[data-label='Label']")).to_have_text("Office Network")
        expect(office.locator("td[data-label='Applies to']")).to_have_text("Riverside Dental")
        expect(rows).to_have_count(2)
        expect(page.locator("#address")).to_have_value("")  # a fresh form for the next entry
        still_the_same_page()

        # An ambiguous address: a specific message next to the field, the typed text kept, nothing added.
        page.locator("#address").fill("010.0.0.1")
        page.locator("#label").fill("Typo")
        page.get_by_role("button", name="Add entry").click()
        error = page.locator("#address-error")
        expect(error).to_contain_text("010.0.0.1 is ambiguous")
        expect(page.locator("#address")).to_have_value("010.0.0.1")
        expect(page.locator("#address")).to_have_attribute("aria-describedby", "address-error")
        expect(page.locator("#address")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#label")).to_have_value("Typo")
        expect(rows).to_have_count(2)
        still_the_same_page()

        # Delete the office network, accepting the browser's confirm; the row goes, the status stays Covered.
        dialogs: list[str] = []

        def accept(dialog):
            dialogs.append(dialog.message)
            dialog.accept()

        page.once("dialog", accept)
        with page.expect_response(lambda r: r.url.endswith(ALLOWLIST_PATH + "/status")) as refreshed:
            office.get_by_role("button", name="Delete").click()
        assert refreshed.value.status == 200  # the allowlist-changed event made the status refresh itself
        expect(office).to_have_count(0)
        expect(rows).to_have_count(1)
        expect(mine).to_have_count(1)
        expect(badge).to_have_text("✓ Covered")
        assert dialogs == ["Delete 192.0.2.0/24 (Office Network) from the allowlist?"]
        still_the_same_page()

        # A reload shows what the database holds, and that is what the screen showed.
        page.reload()
        expect(rows).to_have_count(1)
        expect(mine).to_have_count(1)
        expect(office).to_have_count(0)
        expect(badge).to_have_text("✓ Covered")
        assert networks(app) == {"127.0.0.1/32"}

        # Chromium reports every 4xx answer as a console error. Two are expected: the 422 for the rejected
        # address, and the 404 for /favicon.ico (the app has none) - anything else, a CSP violation included, fails.
        expected = (
            re.compile(r"status of 422 \(UNPROCESSABLE (ENTITY|CONTENT)\) \[" + re.escape(base_url + ALLOWLIST_PATH) + r"\]$"),
            re.compile(r"status of 404 \(NOT FOUND\) \[" + re.escape(base_url + "/favicon.ico") + r"\]$"),
        )
        unexpected = [e for e in errors if not any(pattern.search(e) for pattern in expected)]
        assert unexpected == []

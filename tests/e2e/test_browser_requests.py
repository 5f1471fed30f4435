"""In a real browser: a blocked hygienist asks for access, an administrator decides in one click each (htmx,
no page reload), and the hygienist signs in again to the approved practice only."""
from __future__ import annotations

import re
from ipaddress import ip_network

from browser_support import chromium_pages, live_app, sign_in, stays_in_place
from playwright.sync_api import Page, expect

from pbnsec.models import AccessRequest, Grant

PASSWORD = "correct horse battery"
ADMIN = "ann@example.com"
HYGIENIST = "hal@example.com"
RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
REQUESTS_PATH = "/security/requests"
NOTE = "New laptop in surgery 3 - Hal"


def seed(app):
    """Both practices restrict only the Hygienist role, with an allowlist that does not cover 127.0.0.1:
    Hal, browsing from 127.0.0.1, is blocked everywhere; Ann (an Admin) is not restricted at all."""
    from pbnsec.domain.users import create_practice, create_user
    from pbnsec.models import AllowlistEntry, IPRestriction, RestrictedRole, Role

    practices = [create_practice(RIVERSIDE), create_practice(LAKESIDE)]
    create_user(ADMIN, "Ann Lee", "Admin", [RIVERSIDE, LAKESIDE], PASSWORD)
    create_user(HYGIENIST, "Hal Hygienist", "Hygienist", [RIVERSIDE, LAKESIDE], PASSWORD)
    hygienist = Role.get(Role.name == "Hygienist")
    office = ip_network("192.0.2.0/24")
    for practice in practices:
        IPRestriction.create(practice=practice, enforced=True, everyone=False)
        RestrictedRole.create(practice=practice, role=hygienist)
        AllowlistEntry.create(**AllowlistEntry.stored(office, practice, label="Office Network"))


def watch(page: Page, who: str, errors: list[str]) -> list[str]:
    """Collect console errors and page errors into errors; return the main frame's navigations."""
    page.on("console", lambda m: errors.append(f"{who} console: {m.text} [{m.location['url']}]")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"{who} pageerror: {e}"))
    navigations: list[str] = []
    page.on("framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None)
    return navigations




def status_badge(page: Page, practice: str):
    row = page.locator("#practice-statuses tbody tr").filter(has=page.get_by_role("cell", name=practice, exact=True))
    expect(row).to_have_count(1)
    return row.locator(".badge")


def stored(app) -> list[tuple[str, str, str, str, str]]:
    with app.app_context():
        return sorted((r.practice.name, r.user.email, r.ip, r.status, r.note) for r in AccessRequest.select())


def grants(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        return sorted((g.practice.name, g.user.email, g.ip) for g in Grant.select())


def test_blocked_hygienist_requests_access_and_admin_decides_in_place(tmp_path):
    with live_app(tmp_path, setup=seed) as (app, base_url), chromium_pages(2) as (hal, ann):
        errors: list[str] = []
        hal_navigations = watch(hal, "Hal", errors)
        ann_navigations = watch(ann, "Ann", errors)

        # Ann, not restricted, signs in from the same 127.0.0.1 and works as usual.
        sign_in(ann, base_url, ADMIN, PASSWORD)
        expect(ann).to_have_url(base_url + "/")
        expect(ann.get_by_role("heading", level=1)).to_have_text(RIVERSIDE)  # her home practice: the first she was made a member of

        # Hal's password is right, but his IP is approved nowhere: the blocked-login page, not signed in.
        sign_in(hal, base_url, HYGIENIST, PASSWORD)
        expect(hal).to_have_url(base_url + "/blocked")
        expect(hal.get_by_role("heading", level=1)).to_have_text("Your IP address 127.0.0.1 requires approval")
        expect(status_badge(hal, RIVERSIDE)).to_have_text("Not Requested")
        expect(status_badge(hal, LAKESIDE)).to_have_text("Not Requested")

        # He asks for both practices with a note.
        hal.get_by_role("checkbox", name=RIVERSIDE).check()
        hal.get_by_role("checkbox", name=LAKESIDE).check()
        hal.locator("#note").fill(NOTE)
        hal.get_by_role("button", name="Request access").click()
        expect(hal.get_by_role("status")).to_have_text(
            f"Access requested for {LAKESIDE}, {RIVERSIDE}. An administrator will review it.")  # name order
        expect(hal).to_have_url(base_url + "/blocked")
        expect(status_badge(hal, RIVERSIDE)).to_have_text("Pending")
        expect(status_badge(hal, LAKESIDE)).to_have_text("Pending")
        expect(hal.locator("#request-form")).to_have_count(0)  # nothing left to ask for
        assert stored(app) == [(LAKESIDE, HYGIENIST, "127.0.0.1", "pending", NOTE),
                               (RIVERSIDE, HYGIENIST, "127.0.0.1", "pending", NOTE)]

        # Ann: Security Management, then the IP Access Requests tab, which shows 2 pending.
        ann.get_by_role("link", name="Security Management").click()
        expect(ann).to_have_url(base_url + "/security/allowlist")
        tab = ann.get_by_role("navigation", name="Security Management").get_by_role(
            "link", name=re.compile(r"^IP Access Requests"))
        expect(tab.locator("#pending-badge")).to_have_text("2")
        tab.click()
        expect(ann).to_have_url(base_url + REQUESTS_PATH)
        ann.wait_for_load_state("load")  # htmx (a deferred script) has processed the page
        expect(ann.get_by_role("heading", level=1)).to_have_text("IP Access Requests")
        expect(tab).to_have_attribute("aria-current", "page")
        badge = ann.locator("#pending-badge")
        expect(badge).to_have_text("2")
        expect(badge).to_have_attribute("aria-label", "2 pending")

        pending_rows = ann.locator("#pending-requests tbody tr[id^='request-']")
        expect(pending_rows).to_have_count(2)

        def row_of(practice: str):
            row = pending_rows.filter(has=ann.locator("td[data-label='Practice']", has_text=practice))
            expect(row).to_have_count(1)
            expect(row.locator("td[data-label='User']")).to_contain_text("Hal Hygienist")
            expect(row.locator("td[data-label='Role']")).to_have_text("Hygienist")
            expect(row.locator("td[data-label='IP']")).to_have_text("127.0.0.1")
            expect(row.locator("td[data-label='Note']")).to_have_text(NOTE)
            # By id from here on: the row is swapped out for a new element with the same id.
            return ann.locator("#" + row.get_attribute("id"))

        riverside, lakeside = row_of(RIVERSIDE), row_of(LAKESIDE)

        # From here on every decision is an htmx swap: the document must never be replaced.
        still_the_same_page = stays_in_place(ann, base_url + REQUESTS_PATH, ann_navigations)

        # One click approves Riverside: the row shows who decided, and the badge drops to 1.
        riverside.get_by_role("button", name="Approve").click()
        expect(riverside).to_have_class(re.compile(r"\brequest-approved\b"))
        expect(riverside.locator("td.decision .badge")).to_have_text("Approved")
        expect(riverside.locator("td.decision")).to_contain_text("by Ann Lee")
        expect(riverside.get_by_role("button")).to_have_count(0)
        expect(lakeside.get_by_role("button", name="Approve")).to_be_visible()  # the other row is untouched
        expect(badge).to_have_text("1")
        expect(badge).to_have_attribute("aria-label", "1 pending")
        still_the_same_page()

        # One click rejects Lakeside; the badge drops to 0.
        lakeside.get_by_role("button", name="Reject").click()
        expect(lakeside).to_have_class(re.compile(r"\brequest-rejected\b"))
        expect(lakeside.locator("td.decision .badge")).to_have_text("Rejected")
        expect(lakeside.locator("td.decision")).to_contain_text("by Ann Lee")
        expect(lakeside.get_by_role("button")).to_have_count(0)
        expect(badge).to_have_text("0")
        expect(badge).to_have_class(re.compile(r"\bzero\b"))
        expect(riverside.locator("td.decision .badge")).to_have_text("Approved")
        still_the_same_page()

        # The database holds exactly what the screen showed: one decision per click, one grant.
        assert stored(app) == [(LAKESIDE, HYGIENIST, "127.0.0.1", "rejected", NOTE),
                               (RIVERSIDE, HYGIENIST, "127.0.0.1", "approved", NOTE)]
        assert grants(app) == [(RIVERSIDE, HYGIENIST, "127.0.0.1")]

        # Hal reloads the blocked page: Riverside approved, Lakeside rejected and open to a new request.
        hal.reload()
        expect(status_badge(hal, RIVERSIDE)).to_have_text("Approved")
        expect(status_badge(hal, LAKESIDE)).to_have_text("Rejected")
        lakeside_status = hal.locator("#practice-statuses tbody tr").filter(has_text=LAKESIDE)
        expect(lakeside_status).to_contain_text("You may request again.")
        expect(hal.get_by_role("checkbox", name=LAKESIDE)).to_be_visible()
        expect(hal.get_by_role("checkbox", name=RIVERSIDE)).to_have_count(0)

        # Back to sign in; this time he gets in, to Riverside Dental only.
        hal.get_by_role("link", name="Back to sign in").click()
        expect(hal).to_have_url(base_url + "/login")
        hal.locator("#email").fill(HYGIENIST)
        hal.locator("#password").fill(PASSWORD)
        hal.get_by_role("button", name="Sign in").click()
        expect(hal).to_have_url(base_url + "/")
        expect(hal.get_by_role("heading", level=1)).to_have_text(RIVERSIDE)
        switcher = hal.locator("#practice-switch")
        expect(switcher).to_have_value(re.compile(r"^\d+$"))
        options = switcher.locator("option")
        expect(options).to_have_count(2)
        expect(options.filter(has_text=RIVERSIDE)).to_have_text(RIVERSIDE)
        expect(options.filter(has_text=RIVERSIDE)).to_have_js_property("selected", True)
        expect(options.filter(has_text=LAKESIDE)).to_have_text(f"{LAKESIDE} — blocked (Rejected)")
        assert hal_navigations[-1] == base_url + "/"

        # No console error and no page error in either browser: a CSP violation would show up here.
        assert errors == []

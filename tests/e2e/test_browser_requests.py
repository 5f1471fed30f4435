"""In a real browser: a blocked hygienist asks for access, an administrator decides in one click each (htmx,
no page reload), and the hygienist signs in again to the approved practice only; the blocked page and the
administrators' request tables update by themselves."""
from __future__ import annotations

import re
from ipaddress import ip_network

from browser_support import chromium_pages, live_app, sign_in, stays_in_place
from playwright.sync_api import Page, expect

from pbnsec.models import AccessRequest, Grant

PASSWORD = "correct horse battery"
ADMIN = "ann@example.com"
SECOND_ADMIN = "olive@example.com"
HYGIENIST = "hal@example.com"
RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
REQUESTS_PATH = "/security/requests"
NOTE = "New laptop in surgery 3 - Hal"


def seed(app):
    """Both practices restrict only the Hygienist role, with an allowlist that does not cover 127.0.0.1:
    Hal, browsing from 127.0.0.1, is blocked everywhere; Ann (an Admin) and Olive (the Owner) are not restricted."""
    from pbnsec.domain.users import create_practice, create_user
    from pbnsec.models import AllowlistEntry, IPRestriction, RestrictedRole, Role

    practices = [create_practice(RIVERSIDE), create_practice(LAKESIDE)]
    create_user(ADMIN, "Ann Lee", "Admin", [RIVERSIDE, LAKESIDE], PASSWORD)
    create_user(SECOND_ADMIN, "Olive Owner", "Owner", [RIVERSIDE, LAKESIDE], PASSWORD)
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


# The blocked page asks again every 5 s at first, the request tables every 20 s as the badge does: a wait for
# either is bounded by that, never by how fast the machine is.
POLLED_MS = 30_000


def open_requests_tab(page: Page, base_url: str) -> None:
    page.goto(base_url + REQUESTS_PATH)
    page.wait_for_load_state("load")  # htmx (a deferred script) has processed the page
    expect(page.get_by_role("heading", level=1)).to_have_text("IP Access Requests")


def test_the_blocked_page_shows_the_decisions_by_itself_and_continues_without_the_password(tmp_path):
    with live_app(tmp_path, setup=seed) as (app, base_url), chromium_pages(2) as (hal, ann):
        errors: list[str] = []
        hal_navigations = watch(hal, "Hal", errors)
        watch(ann, "Ann", errors)
        sign_in(ann, base_url, ADMIN, PASSWORD)
        sign_in(hal, base_url, HYGIENIST, PASSWORD)
        expect(hal).to_have_url(base_url + "/blocked")
        contacts = hal.locator("#practice-statuses .contacts").first
        expect(contacts).to_have_text("Administrators to contact: Ann Lee, Olive Owner")
        hal.get_by_role("checkbox", name=RIVERSIDE).check()
        hal.get_by_role("checkbox", name=LAKESIDE).check()
        hal.get_by_role("button", name="Request access").click()
        expect(status_badge(hal, RIVERSIDE)).to_have_text("Pending")
        hal.wait_for_load_state("load")
        expect(hal.get_by_text("This page updates by itself while a request is pending.")).to_be_visible()
        hal_waits_in_place = stays_in_place(hal, base_url + "/blocked", hal_navigations)

        # Ann rejects Lakeside with a reason and approves Riverside, in her own browser.
        open_requests_tab(ann, base_url)
        rows = ann.locator("#pending-requests tbody tr[id^='request-']")
        expect(rows).to_have_count(2)
        lakeside = rows.filter(has=ann.locator("td[data-label='Practice']", has_text=LAKESIDE))
        lakeside.get_by_label(re.compile(r"^Reason for rejecting")).fill("Use the surgery PC, please")
        lakeside.get_by_role("button", name="Reject").click()
        expect(ann.locator("#decided-requests")).to_contain_text("Reason: Use the surgery PC, please")
        riverside = rows.filter(has=ann.locator("td[data-label='Practice']", has_text=RIVERSIDE))
        riverside.get_by_role("button", name="Approve").click()
        expect(ann.locator("#pending-requests")).to_contain_text("No pending requests.")

        # Hal did nothing: his page shows both decisions, the reason, and asking again for Lakeside.
        expect(status_badge(hal, RIVERSIDE)).to_have_text("Approved", timeout=POLLED_MS)
        expect(status_badge(hal, LAKESIDE)).to_have_text("Rejected", timeout=POLLED_MS)
        lakeside_status = hal.locator("#practice-statuses tbody tr").filter(has_text=LAKESIDE)
        expect(lakeside_status).to_contain_text("Reason: Use the surgery PC, please")
        expect(hal.get_by_role("checkbox", name=LAKESIDE)).to_be_visible()
        expect(hal.get_by_text("This page updates by itself while a request is pending.")).to_have_count(0)
        hal_waits_in_place()

        # One click, no password: he is signed in, at Riverside Dental.
        hal.get_by_role("button", name="Continue to Riverside Dental").click()
        expect(hal).to_have_url(base_url + "/")
        expect(hal.get_by_role("heading", level=1)).to_have_text(RIVERSIDE)
        expect(hal.locator("#practice-switch option").filter(has_text=LAKESIDE)).to_have_text(
            f"{LAKESIDE} — blocked (Rejected)")
        assert errors == []


def test_a_row_decided_by_one_administrator_moves_out_of_pending_on_the_others_screen(tmp_path):
    def seed_with_requests(app):
        seed(app)
        from pbnsec.models import Practice, User

        hal = User.get(User.email == HYGIENIST)
        for name in (RIVERSIDE, LAKESIDE):
            AccessRequest.create(user=hal, practice=Practice.get(Practice.name == name), ip="127.0.0.1", note=NOTE)

    with live_app(tmp_path, setup=seed_with_requests) as (app, base_url), chromium_pages(2) as (ann, olive):
        errors: list[str] = []
        watch(ann, "Ann", errors)
        olive_navigations = watch(olive, "Olive", errors)
        for page, email in ((ann, ADMIN), (olive, SECOND_ADMIN)):
            sign_in(page, base_url, email, PASSWORD)
            open_requests_tab(page, base_url)
            expect(page.locator("#pending-requests tbody tr[id^='request-']")).to_have_count(2)
        olive_stays = stays_in_place(olive, base_url + REQUESTS_PATH, olive_navigations)

        def row_on(page: Page, table: str, practice: str):
            return page.locator(f"#{table} tbody tr[id^='request-']").filter(
                has=page.locator("td[data-label='Practice']", has_text=practice))

        # Olive starts typing a reason for Lakeside while Ann approves Riverside.
        olive_reason = row_on(olive, "pending-requests", LAKESIDE).get_by_label(re.compile(r"^Reason for rejecting"))
        olive_reason.fill("Not from home")
        row_on(ann, "pending-requests", RIVERSIDE).get_by_role("button", name="Approve").click()
        expect(row_on(ann, "decided-requests", RIVERSIDE)).to_contain_text("by Ann Lee")

        # Olive's screen follows by itself: Riverside leaves Pending for Decided, the badge says 1, her typing stays.
        expect(row_on(olive, "pending-requests", RIVERSIDE)).to_have_count(0, timeout=POLLED_MS)
        expect(row_on(olive, "decided-requests", RIVERSIDE)).to_contain_text("Approved")
        expect(row_on(olive, "decided-requests", RIVERSIDE)).to_contain_text("by Ann Lee")
        expect(olive.locator("#pending-badge")).to_have_text("1", timeout=POLLED_MS)
        expect(olive_reason).to_have_value("Not from home")
        olive_stays()

        # She rejects Lakeside with it; Ann's screen follows in turn.
        row_on(olive, "pending-requests", LAKESIDE).get_by_role("button", name="Reject").click()
        expect(row_on(olive, "decided-requests", LAKESIDE)).to_contain_text("Reason: Not from home")
        expect(row_on(ann, "pending-requests", LAKESIDE)).to_have_count(0, timeout=POLLED_MS)
        expect(row_on(ann, "decided-requests", LAKESIDE)).to_contain_text("by Olive Owner")
        expect(ann.locator("#pending-requests")).to_contain_text("No pending requests.")
        olive_stays()
        assert stored(app) == [(LAKESIDE, HYGIENIST, "127.0.0.1", "rejected", NOTE),
                               (RIVERSIDE, HYGIENIST, "127.0.0.1", "approved", NOTE)]
        assert errors == []

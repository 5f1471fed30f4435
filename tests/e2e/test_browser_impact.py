"""In a real browser: switching IP restrictions on first shows who would be blocked (a colleague who really signed
in over HTTP from another loopback address), and "Switch on anyway" saves it in place; the preview fits a phone."""
from __future__ import annotations

import re
from ipaddress import ip_network

from browser_support import chromium_pages, live_app, sign_in, stays_in_place
from playwright.sync_api import expect
from realworld import HttpVisitor

from pbnsec.models import AllowlistEntry, IPRestriction, Practice

PASSWORD = "correct horse battery"


def seed(app):
    from pbnsec.domain.users import create_practice, create_user

    riverside = create_practice("Riverside Dental")
    create_user("ann@example.com", "Ann Lee", "Admin", ["Riverside Dental"], PASSWORD)
    create_user("fay@example.com", "Fay Desk", "Front Desk", ["Riverside Dental"], PASSWORD)
    AllowlistEntry.create(**AllowlistEntry.stored(ip_network("127.0.0.1"), riverside, label="Office"))


def test_switch_on_shows_who_would_be_blocked_first(tmp_path):
    with live_app(tmp_path, setup=seed) as (app, base_url), chromium_pages(2) as (desk, phone):
        port = int(base_url.rsplit(":", 1)[1])
        HttpVisitor("127.0.0.9").sign_in(port, "fay@example.com", PASSWORD)  # Fay, from home
        phone.set_viewport_size({"width": 360, "height": 740})
        for page in (desk, phone):
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            navigations: list[str] = []
            page.on("framenavigated", lambda f, page=page: navigations.append(f.url) if f == page.main_frame else None)
            sign_in(page, base_url, "ann@example.com", PASSWORD)
            page.goto(base_url + "/security/settings")
            still_the_same_page = stays_in_place(page, base_url + "/security/settings", navigations)

            switch = page.get_by_label(re.compile("Only allow access from approved IP addresses"))
            switch.check()
            preview = page.locator("#impact-enforced")
            expect(preview).to_contain_text("1 of 2 people would be blocked")
            expect(preview).to_contain_text("Fay Desk")
            expect(preview).to_contain_text("127.0.0.9")
            expect(switch).not_to_be_checked()  # nothing saved yet
            assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
            if page is desk:
                page.get_by_role("button", name="Switch on anyway").click()
                expect(page.locator("#setting-enforced .saved")).to_have_text("✓ Saved")
                expect(switch).to_be_checked()
                with app.app_context():
                    assert IPRestriction.get(IPRestriction.practice == Practice.get()).enforced
                # Off again, for the phone's turn.
                switch.uncheck()
                expect(page.locator("#setting-enforced .saved")).to_have_text("✓ Saved")
            still_the_same_page()
            assert errors == []

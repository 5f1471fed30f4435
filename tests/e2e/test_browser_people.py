"""The People screen in a real Chromium: it fits a 360 px phone with realistic data, searching filters as one
types, and Deactivate swaps only the status."""
from browser_support import chromium_page, live_app, sign_in
from conftest import PASSWORD, seed
from playwright.sync_api import expect


def with_many_people(app):
    from pbnsec.models import AuditEvent, Membership, Practice, Role, User, utcnow

    seed(app)
    riverside = Practice.get(Practice.name == "Riverside Dental")
    role = Role.get(Role.name == "Billing")
    for i in range(55):
        user = User.create(email=f"maximilian.bartholomew-featherstonehaugh.{i:02}@riverside-family-dentistry.example",
                           name=f"Maximilian Bartholomew Featherstonehaugh {i:02}", password_hash="x", role=role)
        Membership.create(user=user, practice=riverside)
        AuditEvent.create(action="login_allowed", actor=user, actor_label=user.email, practice=riverside,
                          actor_ip="2001:db8:abcd:1234:5678:9abc:def0:1234", target=user.email, at=utcnow())


def test_people_pages_fit_a_360_pixel_screen_and_a_desktop(tmp_path):
    with live_app(tmp_path, setup=with_many_people) as (app, base_url), chromium_page() as page:
        from pbnsec.models import User
        with app.app_context():
            person = User.select().where(User.email.startswith("maximilian")).first().id
        sign_in(page, base_url, "owner@example.com", PASSWORD)
        for width, height in ((360, 740), (1280, 800)):
            page.set_viewport_size({"width": width, "height": height})
            widths = {}
            for path in ("/people/", f"/people/{person}", "/people/new", "/people/practices"):
                page.goto(base_url + path)
                widths[path] = page.evaluate("document.documentElement.scrollWidth")
            assert {p: w for p, w in widths.items() if w > width} == {}, (width, widths)


def test_search_filters_as_one_types_and_deactivate_swaps_the_status(tmp_path):
    with live_app(tmp_path, setup=seed) as (app, base_url), chromium_page() as page:
        sign_in(page, base_url, "ann@example.com", PASSWORD)
        page.click("text=People")
        expect(page.locator("#people-table tbody tr")).to_have_count(4)
        page.fill("#people-q", "fay")
        expect(page.locator("#people-table tbody tr")).to_have_count(1)
        assert page.url.endswith("/people/?q=fay")
        page.click("text=Fay Desk")
        page.click("#person-status button")
        expect(page.locator("#person-status .badge")).to_have_text("Deactivated")
        expect(page.locator("#person-status button")).to_have_text("Reactivate")
        page.click("#person-status button")
        expect(page.locator("#person-status .badge")).to_have_text("Active")

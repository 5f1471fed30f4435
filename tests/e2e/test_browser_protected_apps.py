"""The Protected apps screen in a real Chromium: an app is added and removed in place (htmx), a bad host is refused
under its field, and an app is changed on its own page."""
from browser_support import chromium_page, live_app, sign_in, stays_in_place
from conftest import PASSWORD, seed
from playwright.sync_api import expect


def test_an_app_is_added_refused_changed_and_removed(tmp_path):
    with live_app(tmp_path, setup=seed, BASE_URL="https://security.riverside.example",
                  COOKIE_DOMAIN="riverside.example") as (app, base_url), chromium_page() as page:
        navigations = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
        sign_in(page, base_url, "ann@example.com", PASSWORD)
        page.goto(base_url + "/security/allowlist")
        page.get_by_role("link", name="Protected apps").click()
        expect(page.locator("#apps-empty")).to_be_visible()
        same_page = stays_in_place(page, base_url + "/security/apps", navigations)

        page.fill("#name", "Patient charts")
        page.fill("#host", "charts.lakeside.example")
        page.click("#app-form-button")
        expect(page.locator("#host-error")).to_contain_text("is not under riverside.example")
        expect(page.locator("#host")).to_have_value("charts.lakeside.example")
        page.fill("#host", "Charts.Riverside.Example")
        page.select_option("#proxy", "caddy")
        page.check("#roles-chosen")
        page.get_by_label("Hygienist").check()
        page.click("#app-form-button")
        card = page.locator("article.app", has_text="Patient charts")
        expect(card).to_contain_text("charts.riverside.example")
        expect(card.locator("details[open] summary")).to_have_text("Caddy snippet (this app's proxy)")
        expect(card.locator("details[open] pre")).to_contain_text("charts.riverside.example {")
        expect(page.locator("#apps-message")).to_contain_text("Added Patient charts")
        expect(page.locator("#name")).to_have_value("")  # the form is ready for the next one
        same_page()

        card.get_by_role("link", name="Change Patient charts").click()
        expect(page.locator("#name")).to_have_value("Patient charts")
        page.fill("#name", "Charts")
        page.click("#app-form-button")
        expect(page.locator("#app-form")).to_contain_text("Saved Charts.")
        page.get_by_role("link", name="Back to Protected apps").click()

        same_page = stays_in_place(page, base_url + "/security/apps", navigations)
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Remove Charts").click()
        expect(page.locator("article.app")).to_have_count(0)
        expect(page.locator("#apps-list h2")).to_have_text("0 protected apps")  # the list followed the removal
        same_page()

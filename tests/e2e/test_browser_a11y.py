"""Keyboard and screen readers, in a real Chromium and offline: an access request approved with Tab and Enter only,
focus kept on the changed control after each htmx swap, every control and switch named (Playwright's ARIA
snapshot), and the contrast of the colours the stylesheet sets, computed on the rendered pages."""
from __future__ import annotations

import re

import pytest
from browser_support import chromium_page, live_app, sign_in
from conftest import PASSWORD, practice_id
from playwright.sync_api import expect
from test_browser_phone import PAGES, with_long_rows

# WCAG 2.1 relative luminance and contrast ratio, the same formula in Python (for the unit check) and in the page.
CONTRAST_JS = """
() => {
  const rgb = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
                     const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
                     return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = ({r, g, b}) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
                               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = el => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
                                                                        if (c && c.a > 0) return c; }
                             return {r: 255, g: 255, b: 255, a: 1}; };
  const visible = el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden"
                        && !el.closest(".visually-hidden, [hidden], details:not([open]) > :not(summary)");
  const name = el => el.id ? "#" + el.id : el.tagName.toLowerCase() + "." + [...el.classList].join(".") + " "
                     + (el.textContent || "").trim().slice(0, 40);
  const low = [];
  for (const el of document.querySelectorAll("body *")) {
    if (!visible(el) || el.disabled || el.closest(":disabled")) continue;
    const hasText = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (hasText) {
      const r = ratio(rgb(getComputedStyle(el).color), background(el));
      if (r < 4.5) low.push(["text", name(el), Math.round(r * 100) / 100]);
    }
    if (el.matches("input:not([type=checkbox]):not([type=radio]):not([type=hidden]), select, textarea, button")) {
      const s = getComputedStyle(el);
      if (s.borderStyle !== "none" && parseFloat(s.borderWidth) > 0) {
        const r = ratio(rgb(s.borderColor), background(el.parentElement));
        if (r < 3) low.push(["border", name(el), Math.round(r * 100) / 100]);
      }
    }
  }
  return low;
}
"""


def contrast(foreground: str, background: str) -> float:
    def luminance(colour: str) -> float:
        channels = [int(colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_contrast_formula_knows_the_old_input_border_was_too_faint():
    assert round(contrast("#b7c3cf", "#ffffff"), 2) == 1.79  # the input border before issue 10
    assert contrast("#6b7a89", "#ffffff") >= 3  # --control, the border of every control now
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0


def settled(page) -> None:
    """Wait until htmx has finished swapping and settling (the new content answers keys as htmx, not as a form)."""
    expect(page.locator(".htmx-request, .htmx-swapping, .htmx-settling")).to_have_count(0)


def unnamed_controls(snapshot: str) -> list[str]:
    """ARIA snapshot lines of form controls, switches and links that have no accessible name."""
    roles = "button|textbox|checkbox|switch|combobox|radio|link|spinbutton|listbox|searchbox"
    return [line.strip() for line in snapshot.splitlines()
            if re.match(rf"^\s*- '?({roles})(\s*\[[^\]]*\])*\s*:?\s*$", line)]


@pytest.fixture
def owner_page(tmp_path):
    with live_app(tmp_path, setup=with_long_rows) as (app, base_url), chromium_page() as page:
        page.set_viewport_size({"width": 1280, "height": 800})
        sign_in(page, base_url, "owner@example.com", PASSWORD)
        page.goto(f"{base_url}/security/allowlist?practice={practice_id(app, 'Lakeside Dental')}")
        yield app, base_url, page


@pytest.mark.parametrize("width", [360, 1280])
def test_every_control_has_a_name_and_the_colours_have_enough_contrast(owner_page, width):
    app, base_url, page = owner_page
    page.set_viewport_size({"width": width, "height": 740})
    found = {}
    for path in PAGES + ["/security/windows", "/security/confirm", "/security/apps/edit", "/security/apps/confirm"]:
        if path == "/security/confirm":  # the delete confirmation page (without JavaScript, Delete opens it)
            page.goto(base_url + "/security/allowlist")
            path = page.locator("#allowlist-table form.inline").first.get_attribute("action")
        if path.startswith("/security/apps/"):  # an app's edit view, and its removal page (Remove without JavaScript)
            page.goto(base_url + "/security/apps")
            card = page.locator("article.app").first
            path = (card.get_by_role("link", name="Change").get_attribute("href") if path.endswith("edit")
                    else card.locator("form.inline").get_attribute("action"))
        page.goto(base_url + path)
        page.wait_for_load_state("load")
        snapshot = page.locator("body").aria_snapshot()
        problems = unnamed_controls(snapshot) + page.evaluate(CONTRAST_JS)
        if problems:
            found[path] = problems
    assert found == {}


def test_switches_are_named_with_their_subject_and_state(owner_page):
    app, base_url, page = owner_page
    snapshot = page.locator("#allowlist-table").aria_snapshot()
    assert re.search(r'- \'?switch "Active: on, This machine \(127\.0\.0\.0/24\)" \[checked\]', snapshot), snapshot
    page.goto(base_url + "/security/settings")
    page.wait_for_load_state("load")
    switch = page.get_by_role("switch", name=re.compile(r"^Only allow access from approved IP addresses at Lakeside Dental\s*:\s*On$"))
    expect(switch).to_be_checked()
    requests = page.get_by_role("switch", name=re.compile(r"^Let blocked users ask for access from their IP at Lakeside Dental\s*:\s*On$"))
    requests.focus()
    page.keyboard.press("Space")  # switch it off from the keyboard: saved, re-rendered, focus kept on it
    expect(page.get_by_role("switch", name=re.compile(r"their IP at Lakeside Dental\s*:\s*Off$"))).to_be_focused()
    expect(page.locator("#setting-requests")).to_contain_text("Saved")


def test_focus_returns_to_the_changed_control_after_a_swap(owner_page):
    app, base_url, page = owner_page
    row_id = page.locator("#allowlist-table tr[id^='entry-']", has_text="2001:db8:abcd:1::/64").first.get_attribute("id")
    row = page.locator(f"#{row_id}")
    switch = row.get_by_role("switch")
    switch.focus()
    page.keyboard.press("Enter")  # switched off: the row is re-rendered by htmx
    expect(row.get_by_role("switch", name=re.compile(r"^Active: off, "))).to_be_focused()
    settled(page)
    page.keyboard.press("Space")  # and on again, with Space: it is a button
    expect(row.get_by_role("switch", name=re.compile(r"^Active: on, "))).to_be_focused()
    settled(page)
    # Edit the label from the keyboard: the field takes the focus, Enter saves, the focus is back on Edit.
    row.get_by_role("link", name=re.compile("^Edit ")).focus()
    page.keyboard.press("Enter")
    expect(page.locator(f"#label-{row_id.split('-')[1]}")).to_be_focused()
    settled(page)
    page.keyboard.press("End")
    page.keyboard.type(" (window seat)")
    page.keyboard.press("Enter")
    expect(row.get_by_role("link", name=re.compile(r"^Edit .*\(window seat\)"))).to_be_focused()
    settled(page)
    # Delete answers Space too; after the row goes, focus lands in the row that took its place.
    page.once("dialog", lambda dialog: dialog.accept())
    delete = row.get_by_role("button", name=re.compile("^Delete "))
    delete.focus()
    page.keyboard.press("Space")
    expect(row).to_have_count(0)
    expect(page.locator("#allowlist-table tr[id^='entry-'] :focus")).to_have_count(1)  # the next row's first control


def test_an_access_request_is_approved_with_the_keyboard_alone(owner_page):
    app, base_url, page = owner_page
    page.goto(base_url + "/security/requests")
    page.wait_for_load_state("load")
    first = page.locator("#pending-requests tr[id^='request-']").first
    row_id = first.get_attribute("id")
    approve_id = f"{row_id}-approve"
    for _ in range(200):  # Tab through the page until the first Approve button has the focus
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == approve_id:
            break
    else:
        pytest.fail("Tab never reached the first Approve button")
    page.keyboard.press("Enter")
    decided = page.locator(f"#{row_id}")
    expect(decided).to_contain_text("Approved")
    expect(decided).to_be_focused()  # the decided row itself: its buttons are gone, the focus is not lost
    with app.app_context():
        from pbnsec.models import AccessRequest

        assert AccessRequest.get_by_id(int(row_id.split("-")[1])).status == "approved"

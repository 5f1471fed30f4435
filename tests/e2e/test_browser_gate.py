"""The gate end to end in Chromium: pbnsec and a tiny app behind one real nginx, the app's server block being the
shipped snippet deploy/gate/nginx.conf filled in as the Protected apps screen fills it.

Names under riverside.test lead to that nginx by Chromium's --host-resolver-rules: the office browser reaches it at
127.0.0.1 (on Riverside's allowlist), the home browser at ::1 (on no allowlist), so nginx and pbnsec see two
clients. The session cookie is scoped to riverside.test (PBNSEC_COOKIE_DOMAIN) and pbnsec is opened at
http://security.riverside.test (PBNSEC_BASE_URL).
"""
import html
import os
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from browser_support import chromium_browsers, fits, gate_port, live_app
from conftest import PASSWORD, protect_app, restrict, seed
from playwright.sync_api import expect
from realworld import app_server_block, free_port, nginx, site_location_block

from pbnsec.config import load_config

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/nginx") and not shutil.which("nginx"),
                                reason="make test installs nginx-light")

SECURITY = "http://security.riverside.test"
CHARTS = "http://charts.riverside.test/notes?patient=7"
RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
FORGED = "forged@evil.example"


class EchoApp(BaseHTTPRequestHandler):
    """The protected app: a page listing the request headers it received, each request remembered."""

    seen: list[dict] = []

    def do_GET(self):
        EchoApp.seen.append(dict(self.headers))
        lines = "\n".join(f"{name}: {value}" for name, value in self.headers.items())
        body = f"<!doctype html><title>Charts</title><h1>Charts</h1><pre id='headers'>{html.escape(lines)}</pre>"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def setup(app):
    seed(app)
    restrict(app, RIVERSIDE, "127.0.0.1/32")  # the office
    restrict(app, LAKESIDE, "127.0.0.1/32", everyone=False, roles=["Hygienist"])
    protect_app(app, "Charts", "charts.riverside.test", practices=[RIVERSIDE])


def sign_in_here(page, email):
    """On pbnsec's sign-in page (where the gate sent the browser), as a person does."""
    expect(page).to_have_url(re.compile(r"^http://security\.riverside\.test/login\?next=http"))
    page.locator("#email").fill(email)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def at_the_app_as(page, email):
    """The app's page, showing what nginx passed on: the user pbnsec let in, nothing the client forged."""
    expect(page).to_have_url(CHARTS)
    headers = page.locator("#headers")
    expect(headers).to_contain_text(f"X-Pbnsec-User: {email}")
    text = headers.inner_text()
    assert FORGED not in text
    assert "pbnsec_session" not in text  # nginx keeps pbnsec's cookie from the app
    return text


def approve(admin, user_name):
    """An administrator approves the user's pending request on IP Access Requests."""
    admin.goto(SECURITY + "/security/requests")
    row = admin.locator("#pending-requests tbody tr[id^='request-']").filter(has_text=user_name)
    expect(row).to_have_count(1)
    row_id = row.get_attribute("id")
    admin.wait_for_load_state("load")
    row.get_by_role("button", name="Approve").click()
    expect(admin.locator(f"#{row_id} td.decision .badge")).to_have_text("Approved")


def test_an_app_behind_the_gate_in_chromium(tmp_path):
    EchoApp.seen = []
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), EchoApp)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    # The settings as an administrator writes them, read the way pbnsec reads its environment.
    env = load_config({"PBNSEC_COOKIE_DOMAIN": "riverside.test", "PBNSEC_BASE_URL": SECURITY,
                       "PBNSEC_TRUSTED_PROXIES": "1"}, tmp_path)
    settings = {key: env[key] for key in ("COOKIE_DOMAIN", "SESSION_COOKIE_DOMAIN", "BASE_URL", "TRUSTED_PROXIES")}
    try:
        with live_app(tmp_path, setup=setup, **settings) as (app, base_url), gate_port(app) as gate:
            pbnsec_port = int(base_url.rsplit(":", 1)[1])
            servers = "\n".join([
                # pbnsec itself, as the README's site file proxies to it
                f"server {{ listen 127.0.0.1:{port}; listen [::1]:{port}; server_name security.riverside.test; "
                f"{site_location_block(pbnsec_port)} }}",
                # the apps, asking the gate's own port as the shipped snippet does
                app_server_block(port, "charts.riverside.test", gate, upstream.server_port, SECURITY),
                # an app nginx protects but pbnsec does not know (removed from the Protected apps screen)
                app_server_block(port, "wiki.riverside.test", gate, upstream.server_port, SECURITY),
            ])
            office_rules = f"--host-resolver-rules=MAP *.riverside.test 127.0.0.1:{port}"
            home_rules = f"--host-resolver-rules=MAP *.riverside.test [::1]:{port}"
            no_upgrades = "--disable-features=HttpsUpgrades"
            with nginx(tmp_path, "location / { return 404; }", http_extra=servers, port=port), \
                    chromium_browsers([office_rules, no_upgrades], [home_rules, no_upgrades],
                                      timeout_ms=15_000) as (office, home):
                for page in (office, home):
                    page.context.set_extra_http_headers({"X-Pbnsec-User": FORGED})
                home.set_viewport_size({"width": 360, "height": 740})  # Hal and Olive are on their phones
                run_the_story(app, office, home)
    finally:
        upstream.shutdown()
        upstream.server_close()


def run_the_story(app, office, home):
    # Fay, at the office, opens the app: pbnsec's sign-in, then straight back to the page she opened.
    office.goto(CHARTS)
    sign_in_here(office, "fay@example.com")
    seen = at_the_app_as(office, "fay@example.com")
    assert "X-Pbnsec-Practice: Riverside Dental" in seen and "X-Pbnsec-Role: Front Desk" in seen
    assert "X-Pbnsec-Name: Fay Desk" in seen

    # A host nginx sends to the gate but pbnsec protects no app at: refused.
    assert office.goto("http://wiki.riverside.test/").status == 403

    # Signing out of pbnsec signs out of the app: the next app request goes to sign in.
    office.goto(SECURITY + "/")
    office.get_by_role("button", name="Sign out").click()
    expect(office).to_have_url(SECURITY + "/login")
    reached = len(EchoApp.seen)
    office.goto(CHARTS)
    expect(office).to_have_url(re.compile(r"^http://security\.riverside\.test/login\?next="))
    assert len(EchoApp.seen) == reached

    # Hal, at home (::1, on no allowlist), opens the app: after the sign-in, pbnsec's blocked page, which remembers
    # where he was going; he asks for access to Riverside.
    home.goto(CHARTS)
    sign_in_here(home, "hal@example.com")
    expect(home).to_have_url(SECURITY + "/blocked")
    expect(home.get_by_role("heading", level=1)).to_have_text("Your IP address ::1 requires approval")
    expect(home.locator("#going-back")).to_contain_text(CHARTS)
    assert fits(home)
    home.wait_for_load_state("load")
    home.locator("#request-form").get_by_label(RIVERSIDE).check()
    home.get_by_label("Note for the administrator").fill("Charts from home")
    home.get_by_role("button", name="Request access").click()
    expect(home.locator("#practice-statuses")).to_contain_text("Pending")

    # Ann, at the office, approves; Hal's page shows it by itself and he continues, into the app.
    office.goto(SECURITY + "/login")
    office.locator("#email").fill("ann@example.com")
    office.locator("#password").fill(PASSWORD)
    office.get_by_role("button", name="Sign in").click()
    approve(office, "Hal Hygienist")
    home.get_by_role("button", name=f"Continue to {RIVERSIDE}").click()
    at_the_app_as(home, "hal@example.com")

    # Ann revokes the approval: Hal's next app request is refused and the app never sees it.
    office.goto(SECURITY + "/security/allowlist")
    office.wait_for_load_state("load")
    office.once("dialog", lambda dialog: dialog.accept())
    office.get_by_role("button", name="Revoke Hal Hygienist's access from ::1").click()
    expect(office.locator("tr[id^='grant-']")).to_have_count(0)
    reached = len(EchoApp.seen)
    home.goto(CHARTS)
    expect(home).to_have_url(re.compile(r"^http://security\.riverside\.test/login\?next="))
    assert len(EchoApp.seen) == reached

    # Olive (the Owner), at home: Lakeside lets her in, but Charts belongs to Riverside, which does not. The gate
    # sends her to the app's blocked page, where she asks for Riverside; once approved she continues into the app.
    sign_in_here(home, "owner@example.com")
    expect(home).to_have_url(re.compile(r"^http://security\.riverside\.test/gate/blocked\?app=\d+&next="))
    expect(home.get_by_role("heading", level=1)).to_have_text("Charts is not open to you from here")
    expect(home.locator("#gate-reason")).to_have_text(
        "Charts belongs to Riverside Dental, where your IP address ::1 requires approval.")
    assert fits(home)
    home.wait_for_load_state("load")
    home.locator("#request-form").get_by_label(RIVERSIDE).check()
    home.get_by_role("button", name="Request access").click()
    expect(home.locator("#practice-statuses")).to_contain_text("Pending")
    approve(office, "Olive Owner")
    home.get_by_role("link", name="Continue to Charts").click()
    at_the_app_as(home, "owner@example.com")

    # An administrator resets Fay's password (shown on a console). Opening the app at the office she signs in, is
    # asked for a password of her own, and goes on into the app: the password page's form may send the browser to
    # the app (its CSP form-action names the app's origin, or Chromium would hold the redirect).
    from pbnsec.models import User

    with app.app_context():
        User.update(must_change_password=True).where(User.email == "fay@example.com").execute()
    office.goto(SECURITY + "/")
    office.get_by_role("button", name="Sign out").click()  # Ann
    office.goto(CHARTS)
    sign_in_here(office, "fay@example.com")
    expect(office).to_have_url(SECURITY + "/account/password")
    office.get_by_label("Current password").fill(PASSWORD)
    office.get_by_label("New password (12 characters or more)").fill("a new horse battery staple")
    office.get_by_label("New password again").fill("a new horse battery staple")
    office.get_by_role("button", name="Change password").click()
    at_the_app_as(office, "fay@example.com")

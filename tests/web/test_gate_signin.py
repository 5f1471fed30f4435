"""Signing in for the gate's apps: return URLs only to registered app hosts, the blocked-login flow carrying the
return URL to "Continue", an app's blocked page (/gate/blocked), the shared cookie domain and signing out of all."""
import html
import re
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from conftest import PASSWORD, flashes, practice_id, protect_app, restrict

from pbnsec.models import AccessRequest, ProtectedApp, SignIn, User

AWAY = "127.0.0.7"  # on no allowlist
CHARTS = "https://charts.riverside.example/patients?id=7"
RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"


@pytest.fixture
def charts(app):
    """Charts, an app of Riverside Dental at charts.riverside.example (HTTPS's and HTTP's default ports)."""
    return protect_app(app, "Charts", "charts.riverside.example")


def login_with_next(v, target, email="ann@example.com"):
    v.get("/login?next=" + quote(target, safe=""))
    return v.post("/login", {"email": email, "password": PASSWORD, "next": target})


def sent_to_sign_in(response) -> str | None:
    """The `next` of a redirect to the sign-in page ("" when there is none)."""
    location = urlsplit(response.headers["Location"])
    assert response.status_code == 303 and location.path == "/login", response.headers["Location"]
    return parse_qs(location.query).get("next", [""])[0]



# --- return URLs ---

@pytest.mark.parametrize("target,expected", [
    (CHARTS, CHARTS),
    ("http://charts.riverside.example/", "http://charts.riverside.example/"),
    ("https://CHARTS.Riverside.Example:443/x", "https://charts.riverside.example/x"),  # the same app, written oddly
    ("https://charts.riverside.example", "https://charts.riverside.example/"),
    ("/security/allowlist", "/security/allowlist"),  # this site's own paths as before
])
def test_sign_in_goes_back_to_a_registered_app(visitor, charts, target, expected):
    response = login_with_next(visitor(), target)
    assert response.status_code == 303 and response.headers["Location"] == expected


@pytest.mark.parametrize("target", [
    "//evil.example/",
    "///evil.example/",
    "https://evil.example/",
    "https://charts.riverside.example@evil.example/",  # userinfo: the browser would go to evil.example
    "https://evil.example@charts.riverside.example/",  # any userinfo at all
    "https://charts.riverside.example:443@evil.example/",
    "https://charts.riverside.example:8443/",  # another port of the app's host
    "http://charts.riverside.example:8080/",
    "https://charts.riverside.example.evil.example/",
    "https://evilcharts.riverside.example/",
    "https://riverside.example/",
    "https://chаrts.riverside.example/",  # IDN look-alike: a Cyrillic а
    "https://xn--chrts-3ve.riverside.example/",  # and in its punycode form: not the registered host
    "https:\\\\charts.riverside.example/",
    "https://charts.riverside.example\\@evil.example/",
    "/\\evil.example",
    "javascript:alert(1)",
    "javascript://charts.riverside.example/%0aalert(1)",
    "data:text/html,<script>alert(1)</script>",
    "ftp://charts.riverside.example/",
    "https://charts.riverside.example/\nSet-Cookie: x=1",
    "https:/charts.riverside.example/",
    "https://10.0.0.5/",
])
def test_a_return_url_that_is_no_registered_app_is_dropped(visitor, charts, target):
    response = login_with_next(visitor(), target)
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_an_app_on_a_port_of_its_own_gets_that_port_only(app, visitor):
    protect_app(app, "Imaging", "imaging.riverside.example:8443")
    assert login_with_next(visitor(), "https://imaging.riverside.example:8443/s").headers["Location"] == \
        "https://imaging.riverside.example:8443/s"
    assert login_with_next(visitor(), "https://imaging.riverside.example/s").headers["Location"] == "/"


def test_the_sign_in_form_carries_the_return_url(visitor, charts):
    page = visitor().get("/login?next=" + quote(CHARTS, safe=""))
    assert '<input type="hidden" name="next" value="https://charts.riverside.example/patients?id=7">' in page.text
    dropped = visitor().get("/login?next=" + quote("https://evil.example/", safe=""))
    assert 'name="next"' not in dropped.text


def test_the_sign_in_page_says_which_app_the_person_is_signing_in_for(visitor, charts):
    # sent here by the app's proxy, on another host: the page says why, and where the sign-in leads
    page = visitor().get("/login?next=" + quote(CHARTS, safe=""))
    assert '<p class="hint" id="login-for">Sign in to open <strong>Charts</strong> ' \
           '(charts.riverside.example).</p>' in page.text
    for elsewhere in ("https://evil.example/", "/security/audit", ""):
        assert 'id="login-for"' not in visitor().get("/login?next=" + quote(elsewhere, safe="")).text


def form_action(response) -> str:
    return re.search(r"form-action ([^;]+);", response.headers["Content-Security-Policy"]).group(1)


def test_the_sign_in_page_lets_its_form_end_at_the_app_and_nowhere_else(visitor, charts):
    # Browsers hold a form's redirect to the page's CSP form-action: without the app's origin there, the browser
    # would stay on the sign-in page after a right password.
    assert form_action(visitor().get("/login?next=" + quote(CHARTS, safe=""))) == \
        "'self' https://charts.riverside.example"
    assert form_action(visitor().get("/login?next=" + quote("https://evil.example/", safe=""))) == "'self'"
    assert form_action(visitor().get("/login")) == "'self'"
    failed = visitor().post("/login", {"email": "ann@example.com", "password": "wrong", "next": CHARTS})
    assert failed.status_code == 401 and form_action(failed) == "'self' https://charts.riverside.example"


def test_a_signed_in_user_sent_back_by_an_app_is_told_the_sign_in_does_not_reach_it(signed_in, charts):
    ann = signed_in("ann")
    response = ann.get("/login?next=" + quote(CHARTS, safe=""))
    assert response.status_code == 302 and response.headers["Location"] == "/"  # no loop back to the app
    assert any("Charts does not receive your sign-in" in m for m in flashes(ann.get("/")))


# --- the blocked-login flow keeps the return URL ---

def test_the_return_url_survives_the_blocked_page_the_request_and_the_approval(app, visitor, signed_in, charts):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    restrict(app, LAKESIDE, "127.0.0.1/32")
    hal = visitor(ip=AWAY)
    response = login_with_next(hal, CHARTS, "hal@example.com")
    assert response.status_code == 303 and response.headers["Location"] == "/blocked"
    page = hal.get("/blocked")
    assert "Once you continue you go back to <code>https://charts.riverside.example/patients?id=7</code>" in page.text
    assert form_action(page) == "'self' https://charts.riverside.example"  # "Continue" ends at the app
    asked = hal.post("/access-requests", {"practice": str(practice_id(app, RIVERSIDE)), "note": "charts"})
    assert asked.status_code == 303
    with app.app_context():
        request_id = AccessRequest.get().id
    assert signed_in("ann").post(f"/security/requests/{request_id}/approve").status_code == 303
    assert "Continue to Riverside Dental" in hal.get("/blocked").text
    done = hal.post("/blocked/continue", {"practice": str(practice_id(app, RIVERSIDE))})
    assert done.status_code == 303 and done.headers["Location"] == CHARTS
    assert hal.get("/").status_code == 200  # signed in for real


def test_continuing_after_the_app_was_removed_lands_on_the_home_page(app, visitor, signed_in, charts):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    restrict(app, LAKESIDE, "127.0.0.1/32")
    fay = visitor(ip=AWAY)
    assert login_with_next(fay, CHARTS, "fay@example.com").headers["Location"] == "/blocked"
    with app.app_context():
        user = User.get(User.email == "fay@example.com")
        from pbnsec.models import Grant
        Grant.create(user=user, practice=practice_id(app, RIVERSIDE), ip=AWAY)
        ProtectedApp.delete().execute()
    fay.get("/blocked")
    done = fay.post("/blocked/continue", {"practice": str(practice_id(app, RIVERSIDE))})
    assert done.status_code == 303 and done.headers["Location"] == "/"


def test_a_plain_blocked_sign_in_says_nothing_about_going_back(app, visitor, charts):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    restrict(app, LAKESIDE, "127.0.0.1/32")
    hal = visitor(ip=AWAY)
    assert login_with_next(hal, "https://evil.example/", "hal@example.com").headers["Location"] == "/blocked"
    assert 'id="going-back"' not in hal.get("/blocked").text


# --- /gate/blocked ---

def gate_url(app_id, target=CHARTS):
    return f"/gate/blocked?app={app_id}&next={quote(target, safe='')}"


def same_gate_url(url: str, app_id, target=CHARTS) -> bool:
    """Whether a URL the app wrote (escaped in HTML or not) is the blocked page of that app with that next."""
    parts = urlsplit(html.unescape(url))
    return parts.path == "/gate/blocked" and parse_qs(parts.query) == {"app": [str(app_id)], "next": [target]}


@pytest.fixture
def hal_at_lakeside(app, signed_in):
    """Riverside lets only the office in, Lakeside everyone: Hal, away from the office, works at Lakeside."""
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    return signed_in("hal", ip=AWAY)


def test_signed_out_the_blocked_page_sends_to_sign_in_then_to_the_app(visitor, charts):
    assert sent_to_sign_in(visitor().get(gate_url(charts))) == CHARTS
    assert sent_to_sign_in(visitor().get(gate_url(charts, "https://evil.example/"))) == ""


def test_the_blocked_page_says_why_and_offers_a_request_for_the_apps_practice(app, hal_at_lakeside, charts):
    page = hal_at_lakeside.get(gate_url(charts))
    assert page.status_code == 200 and "HX-Request" in page.headers["Vary"]
    assert "<h1>Charts is not open to you from here</h1>" in page.text
    assert "Charts belongs to Riverside Dental, where your IP address 127.0.0.7 requires approval." in page.text
    statuses = re.search(r'<table class="statuses".*?</table>', page.text, re.S).group(0)
    assert RIVERSIDE in statuses and LAKESIDE not in statuses  # only the app's practice
    form = re.search(r'<form method="post" action="([^"]+)" class="card" id="request-form">', page.text)
    assert same_gate_url(form.group(1), charts)
    assert re.findall(r'name="practice" value="(\d+)"', page.text) == [str(practice_id(app, RIVERSIDE))]
    assert "Continue to Charts" not in page.text


def test_a_request_from_the_blocked_page_then_the_approval_lets_the_user_continue(app, hal_at_lakeside, signed_in,
                                                                                 charts):
    hal = hal_at_lakeside
    hal.get(gate_url(charts))
    asked = hal.post(gate_url(charts), {"practice": str(practice_id(app, RIVERSIDE)), "note": "for charts"})
    assert asked.status_code == 303 and same_gate_url(asked.headers["Location"], charts)
    page = hal.get(gate_url(charts))
    assert "Access requested for Riverside Dental." in page.text and "Pending" in page.text
    fragment = hal.get(gate_url(charts) + "&polls=1&offered=", htmx=True)
    assert fragment.text.lstrip().startswith('<div id="request-statuses"')
    assert "HX-Request" in fragment.headers["Vary"]
    assert 'hx-get="/gate/blocked?polls=2&amp;offered=&amp;app=' in fragment.text
    with app.app_context():
        request_id = AccessRequest.get().id
        assert (AccessRequest.get().ip, AccessRequest.get().practice.name) == (AWAY, RIVERSIDE)
    assert signed_in("ann").post(f"/security/requests/{request_id}/approve").status_code == 303
    approved = hal.get(gate_url(charts) + "&polls=2&offered=", htmx=True)
    assert f'<a class="button primary" href="{CHARTS}">Continue to Charts</a>' in approved.text
    assert "hx-trigger" not in approved.text  # nothing pending: the page stops asking
    assert "<h1>Charts lets you in</h1>" in hal.get(gate_url(charts)).text


def test_a_request_refused_on_the_blocked_page_is_shown_there(app, hal_at_lakeside, charts):
    hal = hal_at_lakeside
    hal.get(gate_url(charts))
    refused = hal.post(gate_url(charts), {"practice": str(practice_id(app, LAKESIDE))})
    assert refused.status_code == 422 and "Choose only practices you belong to." in refused.text
    with app.app_context():
        assert AccessRequest.select().count() == 0


def test_continue_goes_only_to_the_apps_own_url(app, hal_at_lakeside, charts):
    protect_app(app, "Wiki", "wiki.lakeside.example", practices=[LAKESIDE])
    files = protect_app(app, "Files", "files.lakeside.example", practices=[LAKESIDE])
    page = hal_at_lakeside.get(gate_url(files, "https://wiki.lakeside.example/"))  # another app's URL
    assert "Continue to" not in page.text and "Files lets you in now: open it again." in page.text


def test_an_app_closed_to_the_users_role_offers_no_request(app, hal_at_lakeside):
    admins_only = protect_app(app, "Payroll", "payroll.riverside.example", roles=["Owner", "Admin"])
    page = hal_at_lakeside.get(gate_url(admins_only, "https://payroll.riverside.example/"))
    assert "Payroll is not open to your role (Hygienist)." in page.text
    assert 'id="request-form"' not in page.text and "An access request cannot change this" in page.text
    forged = hal_at_lakeside.post(gate_url(admins_only), {"practice": str(practice_id(app, RIVERSIDE))})
    assert forged.status_code == 422
    with app.app_context():
        assert AccessRequest.select().count() == 0


def test_an_app_of_a_practice_the_user_is_not_in(app, signed_in):
    lakeside_app = protect_app(app, "Lake Wiki", "wiki.lakeside.example", practices=[LAKESIDE])
    page = signed_in("fay").get(gate_url(lakeside_app, "https://wiki.lakeside.example/"))
    assert "Lake Wiki belongs to Lakeside Dental; you are not a member of it." in page.text


def test_another_practices_app_is_not_shown_by_its_number_alone(app, signed_in, charts):
    """Only a browser the app itself sent (its own URL as next) learns what a practice's app is called and whose
    it is: counting through the numbers tells an outsider nothing."""
    lakeside_app = protect_app(app, "Lake Payroll", "payroll.lakeside.example", practices=[LAKESIDE])
    fay = signed_in("fay")
    for url in (f"/gate/blocked?app={lakeside_app}", gate_url(lakeside_app, CHARTS)):
        page = fay.get(url)
        assert page.status_code == 404
        assert "Lake Payroll" not in page.text and LAKESIDE not in page.text
    assert fay.post(f"/gate/blocked?app={lakeside_app}", {"practice": str(practice_id(app, LAKESIDE))}
                    ).status_code == 404
    assert fay.get(f"/gate/blocked?app={charts}").status_code == 200  # her own practice's app, as always


def test_an_unknown_app_is_not_found(signed_in, charts):
    assert signed_in("ann").get(gate_url(charts + 1000)).status_code == 404
    assert signed_in("ann").get("/gate/blocked?app=x").status_code == 404


def test_a_user_blocked_everywhere_is_signed_out_and_sent_to_sign_in_then_the_app(app, signed_in, charts):
    hal = signed_in("hal", ip=AWAY)
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    restrict(app, LAKESIDE, "127.0.0.1/32")
    assert sent_to_sign_in(hal.get(gate_url(charts))) == CHARTS


def test_asking_from_the_blocked_page_needs_the_csrf_token(app, hal_at_lakeside, charts):
    refused = hal_at_lakeside.post(gate_url(charts), {"practice": str(practice_id(app, RIVERSIDE))}, csrf=False)
    assert refused.status_code == 400
    with app.app_context():
        assert AccessRequest.select().count() == 0


# --- the shared cookie ---

SECURITY = "http://security.riverside.example"


def test_the_session_cookie_is_scoped_to_the_cookie_domain_and_csrf_and_flashes_work(tmp_path, app):
    from conftest import Visitor, make_app

    shared = make_app(tmp_path, COOKIE_DOMAIN="riverside.example", SESSION_COOKIE_DOMAIN="riverside.example")
    v = Visitor(shared)
    v.get(SECURITY + "/login")
    response = v.post(SECURITY + "/login", {"email": "ann@example.com", "password": PASSWORD})
    assert response.status_code == 303  # the CSRF token, kept in the session, came back through the cookie
    assert "Domain=riverside.example" in response.headers["Set-Cookie"]
    cookie = v.client.get_cookie("pbnsec_session", domain="riverside.example")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    v.get(SECURITY + "/")
    out = v.post(SECURITY + "/logout")
    assert out.status_code == 303
    assert "You have signed out." in flashes(v.get(SECURITY + "/login"))  # the flash, in the session, too
    # The sign-out replaces the shared cookie, for every host under the domain.
    assert "Domain=riverside.example" in out.headers["Set-Cookie"]


def test_a_sign_in_from_before_the_cookie_domain_is_moved_to_it_once(tmp_path, app):
    from conftest import Visitor, make_app

    protect_app(app, "Charts", "charts.riverside.example")
    before = Visitor(app)  # signed in while the cookie was still kept for pbnsec's host alone
    before.get(SECURITY + "/login")
    assert before.post(SECURITY + "/login", {"email": "ann@example.com", "password": PASSWORD}).status_code == 303
    old = before.client.get_cookie("pbnsec_session", domain="security.riverside.example")
    assert old is not None and "Domain=" not in before.client.get(SECURITY + "/").headers.get("Set-Cookie", "")

    shared = Visitor(make_app(tmp_path, COOKIE_DOMAIN="riverside.example", SESSION_COOKIE_DOMAIN="riverside.example"))
    shared.client.set_cookie("pbnsec_session", old.value, domain="security.riverside.example")
    # Charts saw no cookie and sent Ann to sign in: she is signed in, so the session is written for the whole
    # domain, the host's own cookie expired, and back she goes.
    back = shared.get(SECURITY + "/login?next=" + quote(CHARTS, safe=""))
    assert back.status_code == 303 and back.headers["Location"] == CHARTS
    cookies = back.headers.getlist("Set-Cookie")
    assert any("Domain=riverside.example" in c for c in cookies)
    assert any(c.startswith("pbnsec_session=;") and "Domain=" not in c for c in cookies)
    assert shared.client.get_cookie("pbnsec_session", domain="security.riverside.example") is None
    assert shared.client.get_cookie("pbnsec_session", domain="riverside.example") is not None
    assert shared.get(SECURITY + "/").status_code == 200  # still signed in, on the shared cookie
    # Only once: if the cookie still does not reach the app, pbnsec says so instead of going round in circles.
    again = shared.get(SECURITY + "/login?next=" + quote(CHARTS, safe=""))
    assert again.status_code == 302 and again.headers["Location"] == "/"
    assert any("Charts does not receive your sign-in" in m for m in flashes(shared.get(SECURITY + "/")))


def test_without_a_cookie_domain_the_cookie_stays_with_its_host(visitor):
    response = visitor().login("ann@example.com")
    assert "Domain=" not in response.headers["Set-Cookie"]


def test_signing_out_ends_the_sign_in_on_the_server_for_every_app(app, signed_in):
    ann = signed_in("ann")
    with app.app_context():
        assert SignIn.select().join(User).where(User.email == "ann@example.com").count() == 1
    ann.post("/logout")
    with app.app_context():
        # What the gate looks the cookie up in is gone: a copy of the cookie signs in nowhere any more.
        assert SignIn.select().join(User).where(User.email == "ann@example.com").count() == 0


def test_after_sign_out_a_copy_of_the_cookie_gets_no_app_request_through(app, signed_in, visitor, charts):
    ann = signed_in("ann")
    verify = {"X-Original-URL": CHARTS}
    assert ann.get("/gate/verify", headers=verify).status_code == 200
    copied = ann.client.get_cookie("pbnsec_session").value
    ann.post("/logout")
    elsewhere = visitor()
    elsewhere.client.set_cookie("pbnsec_session", copied)
    answer = elsewhere.get("/gate/verify", headers=verify)
    assert answer.status_code == 401 and "X-Pbnsec-User" not in answer.headers


def test_a_console_password_is_replaced_on_the_way_and_the_browser_goes_on_to_the_app(app, visitor, charts):
    """Sent to sign in by an app with a password shown on a console: sign in, choose a password, back at the app
    (not on pbnsec's home page, as it was)."""
    with app.app_context():
        User.update(must_change_password=True).where(User.email == "fay@example.com").execute()
    fay = visitor()
    signed = login_with_next(fay, CHARTS, "fay@example.com")
    assert signed.status_code == 303 and signed.headers["Location"] == "/account/password"
    page = fay.get("/account/password")
    assert "form-action 'self' https://charts.riverside.example" in page.headers["Content-Security-Policy"]
    changed = fay.post("/account/password", {"current": PASSWORD, "new": "a new horse battery",
                                             "repeat": "a new horse battery"})
    assert changed.status_code == 303 and changed.headers["Location"] == CHARTS
    # Once only: a later password change lands on the home page as always.
    again = fay.post("/account/password", {"current": "a new horse battery", "new": "another horse battery",
                                           "repeat": "another horse battery"})
    assert again.status_code == 303 and again.headers["Location"] == "/"

"""Sign-in and sign-out: one message for any wrong credential, rate limits, CSRF, safe redirects."""
import re

import pytest
from conftest import PASSWORD

from pbnsec.models import AuditEvent, RateLimitHit

HIDDEN = ["\x00", "\x1b", "\u202e"]  # NUL, ESC, a right-to-left override


def test_owner_signs_in_and_lands_on_the_practice_home(visitor):
    v = visitor()
    response = v.login("owner@example.com")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    home = v.get("/")
    assert home.status_code == 200
    assert "Lakeside Dental" in home.text and "Olive Owner" in home.text


@pytest.mark.parametrize("email,password", [
    ("ann@example.com", "wrong password here"),
    ("nobody@example.com", PASSWORD),
    ("", ""),
])
def test_wrong_email_or_password_give_the_same_message(visitor, email, password):
    v = visitor()
    response = v.login(email, password)
    assert response.status_code == 401
    assert "Wrong email or password." in response.text
    assert v.get("/").headers.get("Location", "").startswith("/login")  # still signed out


def test_sign_in_page_keeps_the_typed_email_but_never_the_password(visitor):
    response = visitor().login("ann@example.com", "not the password")
    assert 'value="ann@example.com"' in response.text
    assert "not the password" not in response.text


def test_failures_are_rate_limited_per_account_even_with_the_right_password(visitor):
    v = visitor()
    for _ in range(5):
        assert v.login("ann@example.com", "wrong password here").status_code == 401
    response = v.login("ann@example.com")
    assert response.status_code == 429
    assert "Too many sign-in attempts. Try again in 15 minutes." in response.text
    # another account from the same IP is not held up by Ann's failures
    assert visitor().login("bob@example.com").status_code == 303


def test_failures_are_rate_limited_per_client_ip(visitor):
    attacker = visitor(ip="127.0.0.9")
    for n in range(20):
        assert attacker.login(f"guess{n}@example.com", "whatever password").status_code == 401
    assert attacker.login("ann@example.com").status_code == 429
    assert visitor(ip="127.0.0.1").login("ann@example.com").status_code == 303


def test_sign_in_without_csrf_token_is_refused(visitor):
    v = visitor()
    response = v.post("/login", {"email": "ann@example.com", "password": PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert "CSRF" in response.text
    assert v.get("/").headers.get("Location", "").startswith("/login")


@pytest.mark.parametrize("target,expected", [
    ("/security/allowlist", "/security/allowlist"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\\evil.example", "/"),
])
def test_next_only_goes_to_this_site(visitor, target, expected):
    v = visitor()
    v.get(f"/login?next={target}")
    response = v.post("/login", {"email": "ann@example.com", "password": PASSWORD, "next": target})
    assert response.headers["Location"] == expected


def test_a_protected_page_sends_a_signed_out_visitor_to_sign_in(visitor):
    response = visitor().get("/security/allowlist")
    assert response.status_code == 303
    assert response.headers["Location"] == "/login?next=/security/allowlist"


def test_htmx_request_from_a_signed_out_visitor_gets_hx_redirect(visitor):
    response = visitor().get("/security/allowlist/status", htmx=True)
    assert response.headers["HX-Redirect"] == "/login"
    assert response.text == ""


def test_sign_out_is_a_post_with_csrf_and_ends_the_session(app, signed_in):
    v = signed_in("ann")
    assert v.get("/logout").status_code == 405
    assert v.post("/logout", csrf=False).status_code == 400
    assert v.get("/").status_code == 200
    response = v.post("/logout")
    assert response.status_code == 303
    assert v.get("/").headers.get("Location", "").startswith("/login")
    with app.app_context():
        assert [e.action for e in AuditEvent.select().order_by(AuditEvent.id)][-2:] == ["login_allowed", "logout"]


def test_inactive_user_cannot_sign_in_and_is_signed_out(app, signed_in, visitor):
    from pbnsec.models import User
    v = signed_in("ann")
    with app.app_context():
        User.update(active=False).where(User.email == "ann@example.com").execute()
    assert v.get("/").headers.get("Location", "").startswith("/login")
    assert visitor().login("ann@example.com").status_code == 401


def test_session_cookie_is_httponly_and_samesite(visitor):
    v = visitor()
    v.login("ann@example.com")
    cookie = v.client.get_cookie("pbnsec_session")
    assert cookie.http_only and cookie.same_site == "Lax"


def test_every_page_has_a_strict_content_security_policy(signed_in):
    response = signed_in("ann").get("/security/allowlist")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "HX-Request" in response.headers["Vary"]


def test_oversized_request_is_refused(visitor):
    response = visitor().post("/login", {"email": "a" * 100_000, "password": "x"})
    assert response.status_code == 413


def test_a_copied_session_cookie_stops_working_after_sign_out(app, signed_in):
    v = signed_in("ann")
    stolen = v.client.get_cookie("pbnsec_session").value
    v.post("/logout")
    thief = app.test_client()
    thief.set_cookie("pbnsec_session", stolen)
    response = thief.get("/security/allowlist", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")


def test_a_sign_in_ends_after_twelve_hours(app, signed_in):
    from datetime import timedelta

    from pbnsec.models import SignIn, utcnow
    v = signed_in("ann")
    with app.app_context():
        sign_in = SignIn.get()
        assert sign_in.expires_at - sign_in.created_at == timedelta(hours=12)
        SignIn.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    assert v.get("/").headers["Location"].startswith("/login")


def test_a_strangers_wrong_guesses_elsewhere_do_not_lock_the_owner_out_at_the_office(visitor):
    stranger = visitor(ip="127.0.0.50")
    for _ in range(5):
        stranger.login("owner@example.com", "a wrong guess here")
    assert stranger.login("owner@example.com").status_code == 429
    assert visitor(ip="127.0.0.1").login("owner@example.com").status_code == 303


def test_the_sign_in_audit_tells_each_practice_only_about_itself(app, visitor):
    from conftest import restrict
    restrict(app, "Riverside Dental", "192.0.2.0/24")
    visitor(ip="127.0.0.1").login("hal@example.com")  # blocked at Riverside, allowed at Lakeside
    with app.app_context():
        events = {(e.action, e.practice.name): e.detail for e in AuditEvent.select()
                  .where(AuditEvent.action.startswith("login_"))}
    assert events == {("login_allowed", "Lakeside Dental"): "allowed by IP restrictions are off",
                      ("login_blocked", "Riverside Dental"): "ip_not_approved: IP 127.0.0.1 is not approved"}


def test_double_slashes_never_redirect_to_the_host_the_client_named(signed_in):
    ann = signed_in("ann")
    assert ann.get("/security//allowlist").status_code == 404  # was a 308 to http://<Host>/security/allowlist
    response = ann.get("/security//allowlist", headers={"Host": "evil.example"})
    assert "evil.example" not in response.headers.get("Location", "")


def test_hosts_outside_pbnsec_hosts_are_refused(tmp_path, seeded_database):
    import shutil

    from conftest import make_app
    shutil.copyfile(seeded_database, tmp_path / "pbnsec.db")
    from pbnsec.config import load_config
    app = make_app(tmp_path, TRUSTED_HOSTS=load_config({"PBNSEC_HOSTS": "pbnsec.example.org"}, tmp_path)["TRUSTED_HOSTS"])
    client = app.test_client()
    assert client.get("/login", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/login", headers={"Host": "pbnsec.example.org"}).status_code == 200
    # Health checks and the proxy on this machine connect by its own names.
    for host in ("127.0.0.1:8000", "localhost", "localhost:8000"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host


def _nothing_recorded(app):
    with app.app_context():
        return AuditEvent.select().count() == 0 and RateLimitHit.select().count() == 0


@pytest.mark.parametrize("hidden", HIDDEN)
def test_an_email_with_a_control_character_is_refused_and_the_form_shown_again(app, visitor, hidden):
    v = visitor()
    response = v.login(f"ann@exa{hidden}mple.com")
    assert response.status_code == 422
    assert "The email address contains a control character." in response.text
    assert 'name="email"' in response.text and 'value="ann@example.com"' in response.text
    assert hidden not in response.text
    assert v.get("/").headers["Location"].startswith("/login")  # not signed in
    assert _nothing_recorded(app)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_a_password_with_a_control_character_is_refused_without_being_checked(app, visitor, monkeypatch, hidden):
    def must_not_run(*args):
        raise AssertionError("a refused password was hashed")

    monkeypatch.setattr("pbnsec.domain.sign_in.authenticate", must_not_run)
    v = visitor()
    response = v.login("ann@example.com", PASSWORD + hidden)
    assert response.status_code == 422
    assert "The password contains a control character." in response.text
    assert 'value="ann@example.com"' in response.text
    assert v.get("/").headers["Location"].startswith("/login")
    assert _nothing_recorded(app)


@pytest.mark.parametrize("url, tab", [
    ("/security/allowlist", "IP Allowlist"), ("/security/settings", "General Settings"),
    ("/security/requests", "IP Access Requests"), ("/security/audit", "Audit log"),
])
def test_each_security_page_marks_its_own_tab(signed_in, url, tab):
    page = signed_in("ann").get(url).text
    current = re.findall(r'<a href="[^"]+" aria-current="page">([^<{]+)', page)
    assert [c.strip() for c in current] == [tab]

"""/gate/verify over HTTP: what a reverse proxy is told about a request to a protected app, with the browser's pbnsec
cookie and the client's IP (the proxy's hop counted like every request's)."""
import re
from urllib.parse import quote

import pytest
from conftest import PASSWORD, PEOPLE, protect_app, restrict

from pbnsec.models import AuditEvent, SignIn, User

BASE = "https://security.riverside.example"
CHARTS = "https://charts.riverside.example/patients?id=7"
NGINX = {"X-Original-URL": CHARTS, "X-Original-Method": "GET"}
CADDY = {"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "charts.riverside.example",
         "X-Forwarded-Uri": "/patients?id=7"}
NEXT = quote(CHARTS, safe="")


@pytest.fixture
def charts(app):
    """The Charts app of Riverside Dental behind nginx, and pbnsec's address set; the app's id."""
    app.config["BASE_URL"] = BASE
    return protect_app(app, "Charts", "charts.riverside.example")


def verify(v, headers=NGINX, query=""):
    return v.get(f"/gate/verify{query}", headers=headers)


def test_a_signed_in_user_from_an_allowed_ip_passes_with_who_they_are_for_the_upstream(app, charts, signed_in):
    restrict(app, "Riverside Dental", "127.0.0.1")
    response = verify(signed_in("fay"))
    assert response.status_code == 200
    assert response.headers["X-Pbnsec-User"] == "fay@example.com"
    assert response.headers["X-Pbnsec-Name"] == "Fay Desk"
    assert response.headers["X-Pbnsec-Role"] == "Front Desk"
    assert response.headers["X-Pbnsec-Practice"] == "Riverside Dental"
    assert "Set-Cookie" not in response.headers  # the gate never touches the browser's sign-in
    assert response.text == ""
    assert "Cookie" in response.headers["Vary"] and response.headers["Cache-Control"] == "no-store"


def test_nobody_signed_in_gets_401_with_the_sign_in_url_carrying_the_original_url(app, charts, visitor):
    response = verify(visitor())
    assert response.status_code == 401
    assert response.headers["Location"] == f"{BASE}/login?next={NEXT}"
    assert not any(name.startswith("X-Pbnsec") for name in response.headers.keys())


def test_caddy_and_traefik_apps_get_a_302_and_the_query_flag_overrides_the_app_either_way(app, visitor):
    app.config["BASE_URL"] = BASE
    protect_app(app, "Charts", "charts.riverside.example", proxy="caddy")
    v = visitor()
    assert verify(v, CADDY).status_code == 302
    assert verify(v, CADDY).headers["Location"] == f"{BASE}/login?next={NEXT}"
    assert verify(v, CADDY, "?redirect=0").status_code == 401
    assert verify(v, CADDY, "?redirect=0").headers["Location"] == f"{BASE}/login?next={NEXT}"
    assert verify(v, NGINX, "?redirect=1").status_code == 302


def test_a_redirect_flag_that_is_neither_0_nor_1_is_refused_with_the_reason(app, charts, visitor):
    response = verify(visitor(), NGINX, "?redirect=yes")
    assert response.status_code == 403
    assert "redirect=1" in response.text and "Location" not in response.headers


def test_without_pbnsec_base_url_the_answer_has_no_location_and_no_redirect(app, visitor):
    protect_app(app, "Charts", "charts.riverside.example", proxy="traefik")
    response = verify(visitor(), CADDY)
    assert response.status_code == 401 and "Location" not in response.headers


def test_an_unknown_host_is_refused_without_a_location_even_for_a_signed_in_user(app, charts, signed_in):
    response = verify(signed_in("fay"), {"X-Original-URL": "https://payroll.riverside.example/"}, "?redirect=1")
    assert response.status_code == 403
    assert "Location" not in response.headers
    assert "payroll.riverside.example is not an app pbnsec protects" in response.text


def test_an_unreadable_original_request_is_refused_naming_the_problem(app, charts, signed_in):
    v = signed_in("fay")
    response = verify(v, {**NGINX, "X-Forwarded-Host": "charts.riverside.example"})
    assert response.status_code == 403 and "both X-Original-URL and X-Forwarded-Host" in response.text
    assert verify(v, {}).status_code == 403


def test_a_blocked_ip_gets_403_with_the_blocked_page_and_keeps_its_pbnsec_sign_in(app, charts, signed_in):
    restrict(app, "Riverside Dental", "127.0.0.1")
    v = signed_in("fay")
    v.ip = "127.0.0.9"  # the same browser, now elsewhere
    response = verify(v)
    assert response.status_code == 403 and "Set-Cookie" not in response.headers
    assert response.headers["Location"] == f"{BASE}/gate/blocked?app={charts}&next={NEXT}"
    assert verify(v, NGINX, "?redirect=1").status_code == 302
    v.ip = "127.0.0.1"
    assert verify(v).status_code == 200  # the gate ended nothing: back at the office she passes
    with app.app_context():
        assert SignIn.select().where(~SignIn.blocked).count() == 1


def test_a_page_and_its_assets_refused_make_one_audit_row_counting_them(app, charts, signed_in):
    restrict(app, "Riverside Dental", "127.0.0.1")
    v = signed_in("fay")
    v.ip = "127.0.0.9"
    for n in range(40):
        assert verify(v, {"X-Original-URL": f"https://charts.riverside.example/asset/{n}.png"}).status_code == 403
    with app.app_context():
        rows = [(e.action, e.actor_label, e.actor_ip, e.practice.name, e.target, e.detail, e.count)
                for e in AuditEvent.select().where(AuditEvent.action == "gate_blocked")]
    assert rows == [("gate_blocked", "fay@example.com", "127.0.0.9", "Riverside Dental",
                     "Charts (charts.riverside.example)", "IP 127.0.0.9 is not approved", 40)]


def test_signing_out_of_pbnsec_makes_the_next_verify_401(app, charts, signed_in):
    v = signed_in("fay")
    assert verify(v).status_code == 200
    v.post("/logout")
    assert verify(v).status_code == 401


def test_a_role_the_app_does_not_take_and_a_non_member_are_refused(app, signed_in):
    app.config["BASE_URL"] = BASE
    imaging = protect_app(app, "Imaging", "imaging.riverside.example", roles=["Hygienist", "Admin"])
    assert verify(signed_in("fay"), {"X-Original-URL": "https://imaging.riverside.example/"}).status_code == 403
    hal = verify(signed_in("hal"), {"X-Original-URL": "https://imaging.riverside.example/"})
    assert hal.status_code == 200 and hal.headers["X-Pbnsec-Role"] == "Hygienist"
    bob = verify(signed_in("bob"), {"X-Original-URL": "https://imaging.riverside.example/"})  # Lakeside only
    assert bob.status_code == 403
    assert bob.headers["Location"].startswith(f"{BASE}/gate/blocked?app={imaging}&next=")


def test_verify_answers_get_and_head_only(app, charts, signed_in):
    v = signed_in("fay")
    assert v.request("HEAD", "/gate/verify", headers=NGINX).status_code == 200
    for method in ("OPTIONS", "POST", "PUT"):  # never a 200 that a proxy could take for "let it through"
        assert v.request(method, "/gate/verify", headers=NGINX).status_code in (400, 405), method


def test_a_blocked_sign_in_alone_is_not_signed_in(app, charts, visitor):
    restrict(app, "Riverside Dental", "127.0.0.1")
    v = visitor(ip="127.0.0.9")
    assert v.login(PEOPLE["fay"][0]).headers["Location"] == "/blocked"
    assert verify(v).status_code == 401


# --- the live decision: what changed at pbnsec answers on the very next request ---

def test_deactivating_the_user_makes_the_next_verify_401(app, charts, signed_in):
    from pbnsec.models import User

    v = signed_in("fay")
    assert verify(v).status_code == 200
    with app.app_context():
        User.update(active=False).where(User.email == "fay@example.com").execute()
    assert verify(v).status_code == 401


def test_revoking_the_grant_that_let_a_user_in_makes_the_next_verify_403(app, charts, signed_in, visitor):
    from pbnsec.models import AccessRequest, Grant

    restrict(app, "Riverside Dental", "127.0.0.1")
    fay = visitor(ip="127.0.0.9")
    assert fay.login("fay@example.com").headers["Location"] == "/blocked"
    fay.post("/access-requests", {"practice": str(practice_id_of(app)), "note": "charts from home"})
    ann = signed_in("ann")
    with app.app_context():
        request_id = AccessRequest.get().id
    assert ann.post(f"/security/requests/{request_id}/approve").status_code in (200, 303)
    assert fay.login("fay@example.com").headers["Location"] == "/"
    assert verify(fay).status_code == 200
    with app.app_context():
        grant_id = Grant.get().id
    assert ann.post(f"/security/grants/{grant_id}/revoke").status_code in (200, 303)
    refused = verify(fay)
    assert refused.status_code == 403 and "/gate/blocked?" in refused.headers["Location"]


def practice_id_of(app, name="Riverside Dental"):
    from conftest import practice_id
    return practice_id(app, name)


# --- what a verify costs ---

def test_a_verify_costs_the_same_few_statements_for_one_practice_or_five(app, signed_in, count_statements):
    from test_query_budgets import join_practices

    app.config["BASE_URL"] = BASE
    restrict(app, "Riverside Dental", "127.0.0.0/24")
    protect_app(app, "Charts", "charts.riverside.example")
    fay = signed_in("fay")

    def cost():
        assert verify(fay).status_code == 200  # compiles this process's policies
        seen = count_statements()
        assert verify(fay).status_code == 200
        return len(seen.all), repr(seen)

    one, one_log = cost()
    join_practices(app, "fay@example.com", 4)
    five, five_log = cost()
    assert five == one, f"one practice: {one_log}\nfive practices: {five_log}"
    assert one <= 3, one_log  # the sign-in, the app, the practices with their policy generations


def test_an_expired_sign_in_is_signed_out_at_the_gate(app, charts, signed_in):
    from datetime import timedelta

    from pbnsec.models import utcnow

    v = signed_in("fay")
    assert verify(v).status_code == 200
    with app.app_context():
        SignIn.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    assert verify(v).status_code == 401


def test_the_audit_log_shows_refused_gate_requests_counted_on_one_row(app, charts, signed_in):
    restrict(app, "Riverside Dental", "127.0.0.1")
    fay = signed_in("fay")
    fay.ip = "127.0.0.9"
    for n in range(3):
        verify(fay, {"X-Original-URL": f"https://charts.riverside.example/{n}.js"})
    page = signed_in("ann").get("/security/audit?action=gate_blocked").text
    assert "gate blocked" in page and "×3" in page and "Charts (charts.riverside.example)" in page
    assert "IP 127.0.0.9 is not approved" in page


def test_counts_reach_the_table_after_a_response_once_they_are_due(app, charts, signed_in, visitor):
    from pbnsec.domain.gate import Counts, gate_counts
    from pbnsec.models import utcnow

    since = utcnow()
    fay = signed_in("fay")
    for _ in range(3):
        verify(fay)
    verify(visitor())  # sent to sign in
    with app.app_context():
        assert gate_counts([charts], since)[charts] == Counts(0, 0)  # not yet due: kept in memory
    app.extensions["pbnsec.gate"].flush_seconds = 0
    verify(fay)  # the request that finds them due adds them, after its answer
    with app.app_context():
        assert gate_counts([charts], since)[charts] == Counts(4, 1)


def test_a_console_password_not_yet_replaced_does_not_open_an_app(app, charts, signed_in):
    """pbnsec asks for a new password before anything else when the one signed in with was shown on a console:
    whoever saw that console cannot use the account at the apps either, unnoticed, in the meantime."""
    with app.app_context():
        User.update(must_change_password=True).where(User.email == "fay@example.com").execute()
    fay = signed_in("fay")
    response = verify(fay)
    assert response.status_code == 401
    assert response.headers["Location"] == f"{BASE}/login?next={NEXT}"
    assert not any(name.startswith("X-Pbnsec") for name in response.headers.keys())
    # pbnsec's sign-in page, already signed in, goes on to the new password (not round again to the app).
    landing = fay.get(f"/login?next={NEXT}")
    assert landing.status_code == 303 and landing.headers["Location"] == "/account/password"
    fay.get("/account/password")
    changed = fay.post("/account/password", {"current": PASSWORD, "new": "a new horse battery",
                                             "repeat": "a new horse battery"})
    assert changed.status_code == 303
    assert verify(fay).status_code == 200


# --- answered in front of Flask (web/gate.VerifyFront): what it reads of the browser and what it writes ---

def test_a_session_cookie_signed_with_another_key_is_nobody(app, charts, signed_in):
    from itsdangerous import URLSafeTimedSerializer

    fay = signed_in("fay")
    assert verify(fay).status_code == 200
    real = fay.client.get_cookie("pbnsec_session").value
    data = app.session_interface.get_signing_serializer(app).loads(real)
    forged = URLSafeTimedSerializer("another key", salt="cookie-session",
                                    signer_kwargs={"key_derivation": "hmac", "digest_method": "sha1"}).dumps(data)
    fay.client.set_cookie("pbnsec_session", forged)
    assert verify(fay).status_code == 401
    fay.client.set_cookie("pbnsec_session", real[:-2] + ("AA" if not real.endswith("AA") else "BB"))
    assert verify(fay).status_code == 401
    fay.client.set_cookie("pbnsec_session", real)
    assert verify(fay).status_code == 200


def test_a_session_cookie_older_than_a_session_lives_is_nobody_even_after_it_passed(app, charts, signed_in,
                                                                                    monkeypatch):
    import itsdangerous.timed

    fay = signed_in("fay")
    cookie = fay.client.get_cookie("pbnsec_session").value
    assert verify(fay).status_code == 200  # its signature is checked (and remembered) now
    lifetime = app.permanent_session_lifetime.total_seconds()
    later = itsdangerous.timed.time.time() + lifetime + 5
    monkeypatch.setattr("pbnsec.web.gate.time.time", lambda: later)
    assert fay.client.get_cookie("pbnsec_session").value == cookie
    assert verify(fay).status_code == 401  # as Flask would refuse it on a page


def test_each_verify_writes_one_access_line_naming_the_user_and_the_client_ip(app, charts, signed_in, log_lines):
    fay = signed_in("fay", ip="127.0.0.6")
    log_lines.clear()
    verify(fay, query="?redirect=0")
    [line] = [line for line in log_lines if " pbnsec.access " in line]
    assert re.search(r'method=GET path="/gate/verify\?redirect=0" status=200 bytes=0 ms=\d+\.\d user_id=\d+ '
                     r'email="fay@example\.com" ip=127\.0\.0\.6$', line), line
    log_lines.clear()
    fay.request("POST", "/gate/verify", headers=NGINX)
    [line] = [line for line in log_lines if " pbnsec.access " in line]
    assert 'method=POST path="/gate/verify" status=405' in line and line.endswith("ip=127.0.0.6")


def test_a_failure_inside_the_gate_is_a_500_that_lets_nothing_through_and_is_logged(app, charts, signed_in,
                                                                                   monkeypatch, log_lines):
    from pbnsec.domain import gate

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(gate, "verify", broken)
    response = verify(signed_in("fay"))
    assert response.status_code == 500 and "X-Pbnsec-User" not in response.headers
    assert any("/gate/verify failed" in line for line in log_lines)


def test_forged_cookies_take_no_place_in_the_gate_s_memory(app, charts, signed_in):
    """The gate remembers the signatures it checked (a browser sends the same cookie every request), but only of
    cookies that pass: a stream of forged or overlong ones, however large, is not kept."""
    fay = signed_in("fay")
    real = fay.client.get_cookie("pbnsec_session").value
    front = app.extensions["pbnsec.gate_front"]
    for n in range(20):
        fay.client.set_cookie("pbnsec_session", f"forged-{n}-" + "A" * 5000)
        assert verify(fay).status_code == 401
        fay.client.set_cookie("pbnsec_session", f"forged.{n}.cookie")
        assert verify(fay).status_code == 401
    fay.client.set_cookie("pbnsec_session", real)
    assert verify(fay).status_code == 200
    assert front.checked_cookies.cache_info().currsize == 1  # the real one alone

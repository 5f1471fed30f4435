"""IP restrictions at sign-in and on every request: one hook for every endpoint and method."""
import re
from ipaddress import ip_network

import pytest
from conftest import Visitor, make_app, practice_id, restrict

from pbnsec.models import (
    AccessRequest,
    AllowlistEntry,
    AuditEvent,
    IPRestriction,
    Practice,
    SignIn,
    User,
)
from pbnsec.web.gate import VERIFY_PATH
from pbnsec.web.hook import EXEMPT_ENDPOINTS

ALLOWED_IP, BLOCKED_IP = "127.0.0.1", "127.0.0.2"


def audit_actions(app, action):
    with app.app_context():
        return [(e.practice.name if e.practice_id else None, e.detail)
                for e in AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)]


# --- at sign-in ---

def test_sign_in_from_an_approved_ip_is_allowed(app, visitor):
    restrict(app, "Riverside Dental", "127.0.0.0/30")
    assert visitor(ip=ALLOWED_IP).login("fay@example.com").headers["Location"] == "/"


def test_sign_in_from_an_unapproved_ip_shows_the_blocked_page_and_does_not_sign_in(app, visitor):
    restrict(app, "Riverside Dental", "127.0.0.1")
    v = visitor(ip=BLOCKED_IP)
    response = v.login("fay@example.com")
    assert response.headers["Location"] == "/blocked"
    page = v.get("/blocked")
    assert "Your IP address 127.0.0.2 requires approval" in page.text
    assert "Riverside Dental" in page.text and "Not Requested" in page.text
    assert v.get("/").headers["Location"].startswith("/login")  # not signed in
    assert audit_actions(app, "login_blocked") == [
        ("Riverside Dental", "ip_not_approved: IP 127.0.0.2 is not approved")]


def test_a_wrong_password_reveals_nothing_about_ips(app, visitor):
    restrict(app, "Riverside Dental", "127.0.0.1")
    response = visitor(ip=BLOCKED_IP).login("fay@example.com", "not the right password")
    assert response.status_code == 401
    assert "Wrong email or password." in response.text and "127.0.0.2" not in response.text
    assert audit_actions(app, "login_blocked") == []


def test_multi_practice_user_is_signed_in_to_an_allowed_practice_and_sees_the_blocked_one_marked(app, visitor):
    restrict(app, "Riverside Dental", "127.0.0.1")  # Hal is in Riverside (blocked here) and Lakeside (open)
    v = visitor(ip=BLOCKED_IP)
    assert v.login("hal@example.com").headers["Location"] == "/"
    home = v.get("/")
    assert "<h1>Lakeside Dental</h1>" in home.text
    assert re.search(r"Riverside Dental — blocked \(Not Requested\)", home.text)
    riverside = practice_id(app, "Riverside Dental")
    refused = v.post("/practice", {"practice": str(riverside)})
    assert refused.status_code == 303
    assert "Your IP 127.0.0.2 is not approved for Riverside Dental" in v.get("/").text
    assert "<h1>Lakeside Dental</h1>" in v.get("/").text


def test_practice_switcher_moves_between_allowed_practices_only_of_ones_own(app, signed_in):
    v = signed_in("hal")
    lakeside = practice_id(app, "Lakeside Dental")
    assert v.post("/practice", {"practice": str(lakeside)}).status_code == 303
    assert "<h1>Lakeside Dental</h1>" in v.get("/").text
    ann = signed_in("ann")
    assert ann.post("/practice", {"practice": str(lakeside)}).status_code == 404
    assert ann.post("/practice", {"practice": "nonsense"}).status_code == 404


def test_restrictions_for_selected_roles_leave_other_roles_alone(app, visitor):
    restrict(app, "Riverside Dental", "127.0.0.1", everyone=False, roles=["Front Desk"], users=["ann"])
    assert visitor(ip=BLOCKED_IP).login("fay@example.com").headers["Location"] == "/blocked"
    assert visitor(ip=BLOCKED_IP).login("ann@example.com").headers["Location"] == "/blocked"
    assert visitor(ip=BLOCKED_IP).login("owner@example.com").headers["Location"] == "/"


def test_ipv4_mapped_client_address_matches_the_ipv4_entry(app, visitor):
    restrict(app, "Riverside Dental", "127.0.0.1")
    assert visitor(ip="::ffff:127.0.0.1").login("fay@example.com").headers["Location"] == "/"


# --- on every request ---

def test_session_that_moves_to_an_unapproved_ip_is_stopped_on_its_next_request(app, signed_in):
    restrict(app, "Riverside Dental", "127.0.0.1")
    v = signed_in("fay", ip=ALLOWED_IP)
    assert v.get("/").status_code == 200
    v.ip = BLOCKED_IP
    response = v.get("/")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert "your IP address 127.0.0.2 is not approved for your practices" in v.get("/login").text
    assert v.get("/blocked").headers["Location"] == "/login"  # no blocked identity without the password
    v.ip = ALLOWED_IP  # going back does not revive the session: it was signed out
    assert v.get("/").headers["Location"].startswith("/login")
    assert [a for a, _ in audit_actions(app, "session_blocked")] == ["Riverside Dental"]


def test_removing_the_covering_entry_stops_the_session(app, signed_in):
    restrict(app, "Riverside Dental", "127.0.0.1")
    v = signed_in("fay")
    with app.app_context():
        AllowlistEntry.delete().execute()
    assert v.get("/").headers["Location"] == "/login"


def test_role_falling_into_scope_stops_the_session(app, signed_in):
    restrict(app, "Riverside Dental", "192.0.2.0/24", everyone=False, roles=["Hygienist"])
    fay = signed_in("fay")
    assert fay.get("/").status_code == 200
    restrict(app, "Riverside Dental", everyone=False, roles=["Front Desk"])
    assert fay.get("/").headers["Location"] == "/login"


def test_htmx_request_of_a_stopped_session_gets_hx_redirect_not_a_page(app, signed_in):
    restrict(app, "Riverside Dental", "127.0.0.1")
    v = signed_in("ann")
    v.ip = BLOCKED_IP
    response = v.get("/security/allowlist/status", htmx=True)
    assert response.headers["HX-Redirect"] == "/login"
    assert response.text == ""


def test_blocked_in_the_active_practice_but_allowed_in_another_moves_there(app, signed_in):
    v = signed_in("hal")  # lands in Lakeside (first by name)
    riverside = practice_id(app, "Riverside Dental")
    v.post("/practice", {"practice": str(riverside)})
    assert "<h1>Riverside Dental</h1>" in v.get("/").text
    restrict(app, "Riverside Dental", "192.0.2.0/24")
    response = v.get("/security/allowlist")
    assert response.headers["Location"] == "/"
    home = v.get("/")
    assert "<h1>Lakeside Dental</h1>" in home.text
    assert "you are now working in Lakeside Dental" in home.text


# --- the client's IP: no header is trusted unless a proxy is configured ---

SPOOFS = [{"X-Forwarded-For": ALLOWED_IP}, {"Forwarded": f"for={ALLOWED_IP}"}, {"X-Real-IP": ALLOWED_IP},
          {"CF-Connecting-IP": ALLOWED_IP}, {"True-Client-IP": ALLOWED_IP}]


@pytest.mark.parametrize("headers", SPOOFS)
def test_with_no_trusted_proxy_forwarding_headers_are_ignored(app, headers):
    restrict(app, "Riverside Dental", "127.0.0.1")
    v = Visitor(app, ip=BLOCKED_IP, headers=headers)
    assert v.login("fay@example.com").headers["Location"] == "/blocked"


@pytest.fixture
def proxied_app(tmp_path, seeded_database):
    import shutil
    shutil.copyfile(seeded_database, tmp_path / "pbnsec.db")
    return make_app(tmp_path, TRUSTED_PROXIES=1)


@pytest.mark.parametrize("xff,expected", [
    ("127.0.0.1", "/"),                          # the proxy saw the office
    ("127.0.0.1, 127.0.0.2", "/blocked"),        # a client-written value before the proxy's own
    ("127.0.0.2", "/blocked"),
])
def test_behind_one_proxy_only_the_address_it_appended_counts(proxied_app, xff, expected):
    restrict(proxied_app, "Riverside Dental", "127.0.0.1")
    v = Visitor(proxied_app, ip="127.0.0.200", headers={"X-Forwarded-For": xff, "X-Real-IP": ALLOWED_IP,
                                                         "Forwarded": f"for={ALLOWED_IP}"})
    assert v.login("fay@example.com").headers["Location"] == expected


def test_behind_a_proxy_a_request_without_forwarded_for_fails_closed(proxied_app):
    restrict(proxied_app, "Riverside Dental", "127.0.0.1")
    v = Visitor(proxied_app, ip=ALLOWED_IP)  # straight to the app, around the proxy
    assert v.login("fay@example.com").headers["Location"] == "/blocked"
    assert "Your IP address (unknown) requires approval" in v.get("/blocked").text


def test_with_two_proxies_the_second_address_from_the_right_counts(tmp_path, seeded_database):
    import shutil
    shutil.copyfile(seeded_database, tmp_path / "pbnsec.db")
    app = make_app(tmp_path, TRUSTED_PROXIES=2)
    restrict(app, "Riverside Dental", "127.0.0.1")
    ok = Visitor(app, ip="127.0.0.250", headers={"X-Forwarded-For": "127.0.0.2, 127.0.0.1, 127.0.0.249"})
    assert ok.login("fay@example.com").headers["Location"] == "/"
    spoofed = Visitor(app, ip="127.0.0.250", headers={"X-Forwarded-For": "127.0.0.1, 127.0.0.2, 127.0.0.249"})
    assert spoofed.login("fay@example.com").headers["Location"] == "/blocked"


# --- the sweep: every rule, every method, from a blocked IP with a valid session ---

GATE_VERIFY = "gate.verify"


def _url_for_rule(app, rule, ids):
    values = {arg: ids.get(arg, 1) for arg in rule.arguments}
    with app.test_request_context():
        from flask import url_for
        return url_for(rule.endpoint, **values)


def test_nothing_but_the_exempt_list_answers_a_blocked_session(app, signed_in):
    owner = signed_in("owner", ip=ALLOWED_IP)  # a security administrator: the widest view there is
    owner.post("/security/allowlist", {"address": "192.0.2.0/24", "label": "Sweep Marker Entry",
                                       "practice": str(practice_id(app, "Riverside Dental"))})
    owner.get("/security/allowlist")  # shows (and so clears) the flashed "Added …" message
    with app.app_context():
        for practice in Practice.select():
            IPRestriction.create(practice=practice, enforced=True)
        entry_id = AllowlistEntry.get().id
        AllowlistEntry.create(**AllowlistEntry.stored(ip_network("127.0.0.1/32"), label="office"))
    cookie = owner.client.get_cookie("pbnsec_session").value
    token = owner.token
    with app.app_context():
        sign_in = SignIn.get()  # each blocked request ends it on the server; put it back before the next
        live = {k: getattr(sign_in, k) for k in ("token", "user", "blocked", "created_at", "expires_at")}
    ids = {"entry_id": entry_id, "practice_id": practice_id(app, "Riverside Dental"),
           "request_id": 1, "grant_id": 1}
    checked = 0
    # Flask's rules, and /gate/verify, which is answered in front of Flask (web/gate.VerifyFront) for every method.
    targets = [(rule.endpoint, _url_for_rule(app, rule, ids), sorted(rule.methods))
               for rule in app.url_map.iter_rules()]
    targets.append((GATE_VERIFY, VERIFY_PATH, ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]))
    for endpoint, url, methods in targets:
        for method in methods:
            for htmx in (False, True):
                with app.app_context():
                    SignIn.insert(**live).on_conflict_ignore().execute()
                client = app.test_client()
                client.set_cookie("pbnsec_session", cookie)
                headers = {"X-CSRFToken": token}
                if htmx:
                    headers["HX-Request"] = "true"
                response = client.open(url, method=method, headers=headers, data={"csrf_token": token},
                                       environ_base={"REMOTE_ADDR": BLOCKED_IP})
                body = response.get_data(as_text=True)
                where = f"{method} {url} htmx={htmx} -> {response.status_code}"
                if endpoint in EXEMPT_ENDPOINTS:
                    assert "Sweep Marker Entry" not in body, where
                    if endpoint.startswith("health."):  # the word alone, and the session left untouched
                        assert body in ("", "ok", "ready") and "Set-Cookie" not in response.headers, where
                    continue
                if endpoint == GATE_VERIFY:
                    # It answers a proxy about another app (refused here: no original request), shows nothing of
                    # pbnsec's and leaves the browser's sign-in to pbnsec itself.
                    assert response.status_code in (401, 403, 405) and "Set-Cookie" not in response.headers, where
                    assert "Sweep Marker Entry" not in body and "Riverside" not in body, where
                    continue
                checked += 1
                assert "Sweep Marker Entry" not in body and "Riverside" not in body, where
                # The sign-in ends and the password is asked for again (a stolen cookie gets no further).
                if htmx:
                    assert response.headers.get("HX-Redirect") == "/login", where
                else:
                    assert response.status_code == 303 and response.headers["Location"] == "/login", where
    assert checked > 40  # every security screen and action was tried
    with app.app_context():
        assert AllowlistEntry.select().count() == 2  # and nothing was changed
        assert AccessRequest.select().count() == 0  # not even an access request filed with the cookie alone


def test_the_exempt_list_is_exactly_the_pages_a_blocked_person_needs():
    assert EXEMPT_ENDPOINTS == {"static", "health.healthz", "health.readyz",
                                "auth.login", "auth.logout", "auth.blocked", "auth.access_requests",
                                "auth.request_statuses", "auth.continue_sign_in",
                                "people.invite",  # an invite link is used before its person can sign in
                                "gate.blocked"}  # signed out: to sign in and back to the app; else the hook's rules




@pytest.mark.parametrize("htmx", [False, True])
def test_a_cookie_replayed_from_a_blocked_ip_cannot_file_access_requests(app, signed_in, htmx):
    """Whoever holds a signed-in cookie elsewhere is signed out, not handed the owner's blocked page."""
    restrict(app, "Riverside Dental", "127.0.0.1")
    fay = signed_in("fay", ip=ALLOWED_IP)
    thief = Visitor(app, ip=BLOCKED_IP)
    thief.client.set_cookie("pbnsec_session", fay.client.get_cookie("pbnsec_session").value)
    thief.token = fay.token
    response = thief.post("/access-requests", {"practice": str(practice_id(app, "Riverside Dental")),
                                               "note": "let me in"}, htmx=htmx)
    assert (response.headers.get("HX-Redirect") if htmx else response.headers["Location"]) == "/login"
    assert thief.get("/blocked").headers["Location"] == "/login"
    with app.app_context():
        assert AccessRequest.select().count() == 0
    assert fay.get("/").headers["Location"].startswith("/login")  # and the real sign-in ended too


def test_the_audit_says_which_entry_or_grant_let_someone_in(app, visitor):
    from pbnsec.models import Grant, User

    restrict(app, "Riverside Dental", "127.0.0.0/30")
    with app.app_context():
        entry = AllowlistEntry.get()
        fay = User.get(User.email == "fay@example.com")
        grant = Grant.create(user=fay, practice=entry.practice_id, ip="127.0.0.9")
    visitor(ip=ALLOWED_IP).login("fay@example.com")
    visitor(ip="127.0.0.9").login("fay@example.com")
    assert [d for _, d in audit_actions(app, "login_allowed")] == [
        f'allowed by allowlist entry #{entry.id} 127.0.0.0/30 "test 127.0.0.0/30"',
        f"allowed by user grant #{grant.id} for 127.0.0.9",
    ]


def test_a_blocked_sign_in_replayed_from_another_ip_files_nothing(app, visitor):
    restrict(app, "Riverside Dental", "127.0.0.1")
    fay = visitor(ip="127.0.0.50")
    assert fay.login("fay@example.com").headers["Location"] == "/blocked"
    assert fay.get("/blocked").status_code == 200
    thief = Visitor(app, ip="127.0.0.66")
    thief.client.set_cookie("pbnsec_session", fay.client.get_cookie("pbnsec_session").value)
    thief.token = fay.token
    assert thief.get("/blocked").headers["Location"] == "/login"
    response = thief.post("/access-requests", {"practice": str(practice_id(app, "Riverside Dental")), "note": "me"})
    assert response.headers["Location"] == "/login"
    with app.app_context():
        assert AccessRequest.select().count() == 0
    assert fay.get("/blocked").headers["Location"] == "/login"  # it ended for good: the password again


def test_a_request_without_csrf_token_from_a_blocked_ip_still_ends_the_session(app, signed_in):
    restrict(app, "Riverside Dental", "127.0.0.1")
    fay = signed_in("fay")
    fay.ip = BLOCKED_IP
    assert fay.post("/account/password", {"current": "x"}, csrf=False).headers["Location"] == "/login"
    fay.ip = ALLOWED_IP
    assert fay.get("/").headers["Location"].startswith("/login")


def test_a_console_password_not_yet_replaced_reaches_no_request_page_before_it_is_replaced(app, signed_in):
    """Whoever saw the one-time password on a console must not file access requests (or read their statuses) in
    the person's name before the person has chosen their own: every page but signing out and in asks for it."""
    from conftest import protect_app

    with app.app_context():
        User.update(must_change_password=True).where(User.email == "fay@example.com").execute()
    charts = protect_app(app, "Charts", "charts.riverside.example")
    fay = signed_in("fay")
    for method, path in (("GET", f"/gate/blocked?app={charts}"), ("POST", f"/gate/blocked?app={charts}"),
                         ("GET", "/access-requests"), ("POST", "/access-requests"), ("GET", "/blocked"),
                         ("GET", "/access-requests/status"), ("POST", "/blocked/continue")):
        response = fay.request(method, path, data={"note": "let me in", "csrf_token": fay.token})
        assert response.status_code == 303 and response.headers["Location"] == "/account/password", (method, path)
    with app.app_context():
        assert AccessRequest.select().count() == 0
    assert fay.post("/logout", {}).status_code == 303  # signing out is still possible


def test_a_console_password_from_a_blocked_address_opens_no_blocked_sign_in_and_files_no_request(app, visitor):
    """From an address no practice allows, the right console password gets no blocked sign-in: the blocked page
    and its access-request form would let whoever saw the console ask for access in the person's name."""
    restrict(app, "Riverside Dental", "127.0.0.1")
    with app.app_context():
        User.update(must_change_password=True).where(User.email == "fay@example.com").execute()
    away = visitor(ip="127.0.0.71")
    response = away.login("fay@example.com")
    assert response.status_code == 403
    assert "Your IP address 127.0.0.71 is not approved" in response.text and "Sign in from an approved place" in (
        response.text)
    assert away.get("/blocked").status_code == 303  # no blocked sign-in to show
    away.post("/access-requests", {"note": "let me in"})
    with app.app_context():
        assert AccessRequest.select().count() == 0
        assert SignIn.select().count() == 0

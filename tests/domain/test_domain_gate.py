"""The gate's answer (domain.gate.verify) for every way the three proxies describe a request, times every answer:
called as a function with a Visit, no HTTP."""
from dataclasses import replace
from datetime import datetime, timedelta
from ipaddress import ip_address
from urllib.parse import quote

import pytest
from conftest import person, practice_named, protect_app, restrict, visit_of

from pbnsec.domain import gate
from pbnsec.domain.gate import GateOptions, GateState
from pbnsec.domain.policy import PolicyCache
from pbnsec.domain.visit import Visit
from pbnsec.models import AuditEvent, GateCount, Grant, Membership, ProtectedApp, TimeRule, TimeWindow

BASE = "https://security.riverside.example"
HOST = "charts.riverside.example"
URL = f"https://{HOST}/patients/7?tab=x-rays"
TUESDAY_22 = datetime(2026, 12, 1, 22, 0)  # outside a Monday-Friday 07:00-18:00 window (UTC practice)
TUESDAY_10 = datetime(2026, 12, 1, 10, 0)


def nginx(url=URL, method="GET"):
    """proxy_set_header X-Original-URL $scheme://$http_host$request_uri; X-Original-Method $request_method."""
    return {"X-Original-URL": url, "X-Original-Method": method}


def nginx_without_method(url=URL, method=None):
    return {"X-Original-URL": url}


def caddy(url=URL, method="GET"):
    """forward_auth: X-Forwarded-Method, -Proto, -Host, -Uri (and -For, which is the client IP's business)."""
    scheme, _, rest = url.partition("://")
    host, _, uri = rest.partition("/")
    return {"X-Forwarded-Method": method, "X-Forwarded-Proto": scheme, "X-Forwarded-Host": host,
            "X-Forwarded-Uri": "/" + uri, "X-Forwarded-For": "127.0.0.1"}


def traefik(url=URL, method="GET"):
    """ForwardAuth: Caddy's four, plus -Port, -Server and X-Real-Ip, which the gate never reads."""
    headers = caddy(url, method)
    headers.update({"X-Forwarded-Port": "443", "X-Forwarded-Server": "traefik-1", "X-Real-Ip": "203.0.113.9"})
    return headers


STYLES = {"nginx": nginx, "nginx without method": nginx_without_method, "caddy": caddy, "traefik": traefik}
# The app's proxy kind, the ?redirect= flag, and whether a refusal is then a 302.
MODES = [("nginx", None, False), ("nginx", True, True), ("nginx", False, False),
         ("caddy", None, True), ("caddy", False, False), ("traefik", None, True), ("traefik", True, True),
         ("traefik", False, False)]


def ask(headers, visit, options=GateOptions(BASE), state=None, active=None):
    return gate.verify(headers, visit, options, state or GateState(), PolicyCache(), active)


def set_proxy(app_id, proxy):
    ProtectedApp.update(proxy=proxy).where(ProtectedApp.id == app_id).execute()


def location_of(verdict):
    return verdict.header("Location")


@pytest.fixture
def charts(app):
    return protect_app(app, "Charts", HOST)


# --- what cannot be answered: the same for every proxy ---

@pytest.mark.parametrize("style", STYLES)
def test_an_unknown_host_is_403_without_location_for_everyone(db, charts, style):
    for visit in (visit_of("fay"), Visit(None, ip_address("127.0.0.1"))):
        for redirect in (None, True, False):
            verdict = ask(STYLES[style]("https://payroll.riverside.example/"), visit, GateOptions(BASE, redirect))
            assert (verdict.status, verdict.outcome, verdict.headers) == (403, "unknown_host", ())


@pytest.mark.parametrize("style", STYLES)
def test_another_port_or_a_look_alike_host_is_unknown(db, charts, style):
    for url in (f"https://{HOST}:8443/", f"http://{HOST}:8080/", "https://charts.riverside.example.evil/",
                "https://xn--charts-riverside-example.example/", "https://charts-riverside.example/"):
        assert ask(STYLES[style](url), visit_of("fay")).outcome == "unknown_host", url


@pytest.mark.parametrize("style", STYLES)
def test_the_default_ports_written_out_and_plain_http_are_the_same_app(db, charts, style):
    for url in (f"https://{HOST}:443/x", f"http://{HOST}/x", f"http://{HOST}:80/x", f"https://{HOST.upper()}/x"):
        assert ask(STYLES[style](url), visit_of("fay")).status == 200, url


@pytest.mark.parametrize("headers, problem", [
    ({}, "did not say which request"),
    ({"X-Original-URL": "charts.riverside.example/"}, "absolute http:// or https:// URL"),
    ({"X-Original-URL": "https://user@charts.riverside.example/"}, "names a user"),
    ({"X-Original-URL": URL, "X-Original-Method": "G E T"}, "not an HTTP method"),
    ({**nginx(), "X-Forwarded-Host": HOST}, "both X-Original-URL and X-Forwarded-Host"),
    ({**nginx(), "X-Forwarded-Uri": "/"}, "both X-Original-URL and X-Forwarded-Uri"),
    ({**nginx(), "X-Forwarded-Method": "GET"}, "both X-Original-Method and X-Forwarded-Method"),
    ({k: v for k, v in caddy().items() if k != "X-Forwarded-Uri"}, "did not send X-Forwarded-Uri"),
    ({**caddy(), "X-Forwarded-Proto": "ftp"}, "http or https"),
    ({**caddy(), "X-Forwarded-Host": f"{HOST}, evil.example"}, "one value each"),
    ({**traefik(), "X-Forwarded-Uri": "//evil.example/"}, "single /"),
])
def test_an_unreadable_request_is_403_naming_the_problem_whoever_asks(db, charts, headers, problem):
    for visit in (visit_of("fay"), Visit(None, ip_address("127.0.0.1"))):
        verdict = ask(headers, visit, GateOptions(BASE, True))
        assert (verdict.status, verdict.outcome, verdict.headers) == (403, "unreadable", ())
        assert problem in verdict.body


def test_the_redirect_flag_reads_only_0_and_1():
    assert [gate.parse_redirect_flag(t) for t in (None, "0", "1")] == [None, False, True]
    for text in ("", "true", "yes", "2", " 1"):
        with pytest.raises(gate.GateInputError, match="redirect=1"):
            gate.parse_redirect_flag(text)


# --- not signed in: 401 (nginx) or 302 (Caddy, Traefik, ?redirect=1) to the sign-in page with the return URL ---

@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("proxy, redirect, moved", MODES)
def test_nobody_signed_in_is_sent_to_sign_in_with_the_original_url(db, charts, style, proxy, redirect, moved):
    set_proxy(charts, proxy)
    verdict = ask(STYLES[style](), Visit(None, ip_address("127.0.0.1")), GateOptions(BASE, redirect))
    assert verdict.status == (302 if moved else 401) and verdict.outcome == "signed_out"
    assert location_of(verdict) == f"{BASE}/login?next={quote(URL, safe='')}"
    assert not [name for name, _ in verdict.headers if name.startswith("X-Pbnsec")]


def test_without_a_base_url_sign_in_is_401_without_location_whatever_the_proxy(db, charts):
    for proxy, redirect, _ in MODES:
        set_proxy(charts, proxy)
        verdict = ask(caddy(), Visit(None, ip_address("127.0.0.1")), GateOptions(None, redirect))
        assert (verdict.status, verdict.headers) == (401, ())


# --- signed in but refused: 403 (or 302) to the blocked page of this app ---

def refusals():
    """(what refuses, how to set it up, who asks, outcome, the practice named)"""
    def by_ip():
        restrict_db("Riverside Dental", "127.0.0.1")
        return replace(visit_of("fay"), ip=ip_address("127.0.0.9"))

    def ip_unknown():
        restrict_db("Riverside Dental", "127.0.0.1")
        return replace(visit_of("fay"), ip=None)

    def by_time_window():
        practice = practice_named("Riverside Dental")
        TimeRule.create(practice=practice, enabled=True, everyone=True)
        for day in range(5):
            TimeWindow.create(practice=practice, day=day, start_minute=7 * 60, end_minute=18 * 60)
        return replace(visit_of("fay"), now=TUESDAY_22)

    def by_role():
        ProtectedApp.update(all_roles=False).execute()  # no role chosen: no one
        return visit_of("fay")

    def not_a_member():
        return visit_of("bob")  # Lakeside Dental only

    return {"ip": (by_ip, "ip_not_approved", "Riverside Dental", "IP 127.0.0.9 is not approved"),
            "ip unknown": (ip_unknown, "ip_unknown", "Riverside Dental", "IP unknown is not approved"),
            "time window": (by_time_window, "outside_hours", "Riverside Dental", "outside your working hours"),
            "role": (by_role, "role_not_allowed", "Riverside Dental", "the role Front Desk may not use Charts"),
            "not a member": (not_a_member, "not_member", None, "not a member of the practices of Charts")}


REFUSALS = refusals()


def restrict_db(practice, *networks):
    from flask import current_app
    restrict(current_app, practice, *networks)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_signed_in_user_refused_is_sent_to_the_blocked_page_of_the_app(db, charts, style, refusal):
    setup, outcome, practice, reason = REFUSALS[refusal]
    visit = setup()
    for proxy, redirect, moved in MODES:
        set_proxy(charts, proxy)
        verdict = ask(STYLES[style](), visit, GateOptions(BASE, redirect))
        assert verdict.status == (302 if moved else 403), (proxy, redirect)
        assert verdict.outcome == outcome and reason in verdict.reason
        assert (verdict.practice.name if verdict.practice else None) == practice
        assert location_of(verdict) == f"{BASE}/gate/blocked?app={charts}&next={quote(URL, safe='')}"
        assert not [name for name, _ in verdict.headers if name.startswith("X-Pbnsec")]
    # Without a base URL: the plain 403, whatever the proxy (a redirect needs somewhere to go).
    assert ask(STYLES[style](), visit, GateOptions(None, True)).headers == ()


# --- allowed: 200 and who it is ---

@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("proxy, redirect, moved", MODES)
def test_an_allowed_request_gets_200_with_the_four_headers(db, charts, style, proxy, redirect, moved):
    restrict_db("Riverside Dental", "127.0.0.1")
    set_proxy(charts, proxy)
    verdict = ask(STYLES[style](method="POST"), visit_of("fay"), GateOptions(BASE, redirect))
    assert verdict.status == 200 and verdict.outcome == "allowed"
    assert dict(verdict.headers) == {"X-Pbnsec-User": "fay@example.com", "X-Pbnsec-Name": "Fay Desk",
                                     "X-Pbnsec-Role": "Front Desk", "X-Pbnsec-Practice": "Riverside Dental"}


def test_the_practice_named_is_the_active_one_when_the_app_has_it_else_the_first_allowing_by_name(db, app):
    protect_app(app, "Charts", HOST, practices=("Riverside Dental", "Lakeside Dental"))
    hal = visit_of("hal")  # a member of both
    lakeside, riverside = practice_named("Lakeside Dental"), practice_named("Riverside Dental")
    assert dict(ask(nginx(), hal).headers)["X-Pbnsec-Practice"] == "Lakeside Dental"  # first by name
    assert dict(ask(nginx(), hal, active=riverside.id).headers)["X-Pbnsec-Practice"] == "Riverside Dental"
    restrict_db("Riverside Dental", "127.0.0.2")  # the active practice refuses: the other one lets her in
    assert dict(ask(nginx(), hal, active=riverside.id).headers)["X-Pbnsec-Practice"] == "Lakeside Dental"
    restrict_db("Lakeside Dental", "127.0.0.2")
    refused = ask(nginx(), hal, active=riverside.id)
    assert refused.status == 403 and refused.practice == riverside  # the practice she works in is named
    assert ask(nginx(), hal, active=lakeside.id).practice == lakeside


def test_a_practice_the_app_does_not_have_never_lets_anyone_in(db, app):
    protect_app(app, "Charts", HOST, practices=("Riverside Dental",))
    restrict_db("Riverside Dental", "127.0.0.2")  # Hal is blocked there, and Lakeside (open) is not the app's
    assert ask(nginx(), visit_of("hal"), active=practice_named("Lakeside Dental").id).status == 403


def test_a_role_the_app_takes_passes_and_others_do_not(db, app):
    protect_app(app, "Imaging", HOST, roles=["Hygienist"])
    assert ask(nginx(), visit_of("hal")).status == 200
    assert ask(nginx(), visit_of("ann")).outcome == "role_not_allowed"  # an Admin is not let in by default


def test_non_ascii_names_go_to_the_upstream_as_utf8_bytes_and_control_characters_never(db, charts):
    fay = person("fay")
    fay.name = "Zoë Ñúñez\r\nX-Pbnsec-User: owner@example.com"
    verdict = ask(nginx(), Visit(fay, ip_address("127.0.0.1")))
    name = dict(verdict.headers)["X-Pbnsec-Name"]
    assert "\r" not in name and "\n" not in name
    assert name.encode("latin-1").decode("utf-8") == "Zoë ÑúñezX-Pbnsec-User: owner@example.com"


# --- the decision is the live one: revocation and expiry answer on the next request ---

def test_revoking_a_grant_or_an_entry_refuses_the_next_request(db, charts):
    restrict_db("Riverside Dental", "127.0.0.1")
    state, policies = GateState(), PolicyCache()
    fay = replace(visit_of("fay"), ip=ip_address("127.0.0.9"))
    grant = Grant.create(user=fay.user, practice=practice_named("Riverside Dental"), ip="127.0.0.9")

    def status(visit):
        return gate.verify(nginx(), visit, GateOptions(BASE), state, policies).status

    assert status(fay) == 200
    grant.delete_instance()
    assert status(fay) == 403
    assert status(visit_of("fay")) == 200  # from the office entry
    from pbnsec.models import AllowlistEntry
    AllowlistEntry.update(active=False).execute()  # the same process's compiled policy is not used after a write
    assert status(visit_of("fay")) == 403


def test_an_expired_grant_lets_nobody_in(db, charts):
    restrict_db("Riverside Dental", "127.0.0.1")
    fay = replace(visit_of("fay"), ip=ip_address("127.0.0.9"))
    Grant.create(user=fay.user, practice=practice_named("Riverside Dental"), ip="127.0.0.9",
                 expires_at=fay.now + timedelta(hours=1))
    assert ask(nginx(), fay).status == 200
    assert ask(nginx(), replace(fay, now=fay.now + timedelta(hours=2))).status == 403


def test_leaving_the_apps_practice_refuses_the_next_request(db, charts):
    assert ask(nginx(), visit_of("fay")).status == 200
    Membership.delete().where(Membership.user == person("fay")).execute()
    assert ask(nginx(), visit_of("fay")).outcome == "not_member"


# --- audit and counts ---

def test_refusals_are_audited_once_per_user_app_ip_and_reason_with_a_count(db, charts):
    restrict_db("Riverside Dental", "127.0.0.1")
    state = GateState()
    for ip in ("127.0.0.9", "127.0.0.9", "127.0.0.8", "127.0.0.9"):
        for n in range(5):
            ask(nginx(f"https://{HOST}/asset/{n}.css"), replace(visit_of("fay"), ip=ip_address(ip)), state=state)
    ask(nginx(), visit_of("bob"), state=state)
    rows = [(e.actor_label, e.actor_ip, e.practice.name, e.target, e.detail, e.count)
            for e in AuditEvent.select().where(AuditEvent.action == "gate_blocked").order_by(AuditEvent.id)]
    assert rows == [
        ("fay@example.com", "127.0.0.9", "Riverside Dental", f"Charts ({HOST})", "IP 127.0.0.9 is not approved", 15),
        ("fay@example.com", "127.0.0.8", "Riverside Dental", f"Charts ({HOST})", "IP 127.0.0.8 is not approved", 5),
        ("bob@example.com", "127.0.0.1", "Riverside Dental", f"Charts ({HOST})",
         "not a member of the practices of Charts", 1)]


def test_allowed_requests_are_counted_not_audited_and_land_in_the_table_when_flushed(db, app, charts):
    restrict_db("Riverside Dental", "127.0.0.1")
    other = protect_app(app, "Imaging", "imaging.riverside.example")
    state = GateState()
    audited = AuditEvent.select().count()
    hour = datetime(2026, 12, 1, 9, 0)
    for n in range(7):
        ask(nginx(), replace(visit_of("fay"), now=hour + timedelta(minutes=n)), state=state)
    ask(nginx(), replace(visit_of("fay"), now=hour + timedelta(minutes=70)), state=state)  # the next hour
    ask(nginx(), Visit(None, ip_address("127.0.0.1"), now=hour), state=state)  # sent to sign in
    ask(nginx(), replace(visit_of("fay"), ip=ip_address("127.0.0.9"), now=hour), state=state)  # refused
    assert AuditEvent.select().count() == audited + 1  # the refusal only
    assert GateCount.select().count() == 0  # nothing written per request
    assert gate.gate_counts([charts, other], hour) == {charts: gate.Counts(0, 0), other: gate.Counts(0, 0)}

    assert state.flush() == 2  # two hours of one app
    assert gate.gate_counts([charts, other], hour) == {charts: gate.Counts(8, 2), other: gate.Counts(0, 0)}
    assert gate.gate_counts([charts], hour + timedelta(minutes=61)) == {charts: gate.Counts(1, 0)}
    assert state.flush() == 0

    ask(nginx(), replace(visit_of("fay"), now=hour), state=state)  # a second flush adds to the same row
    GateState().flush()  # another process with nothing counted changes nothing
    state.flush()
    assert gate.gate_counts([charts], hour)[charts] == gate.Counts(9, 2)


def test_counts_of_an_app_deleted_before_the_flush_are_dropped(db, charts):
    state = GateState()
    ask(nginx(), visit_of("fay"), state=state)
    ProtectedApp.delete().execute()
    assert state.flush() == 0 and GateCount.select().count() == 0
    assert gate.gate_counts([], TUESDAY_10) == {}


def test_the_gates_sign_in_lookup_answers_as_sessions_find_does(db):
    from pbnsec.domain import sessions
    from pbnsec.models import SignIn, User, utcnow

    now, fay = utcnow(), person("fay")
    full, blocked = sessions.start(fay), sessions.start(fay, blocked=True, ip=ip_address("127.0.0.9"))
    found, stale = sessions.lookup(full, now)
    assert not stale
    assert (found.id, found.email, found.role.name, found.sign_in_token) == (fay.id, fay.email, "Front Desk", full)
    assert found.role_id == fay.role_id and not found.is_dirty()
    for token in (blocked, "", None, "no such token"):
        assert sessions.lookup(token, now) == (None, False) and sessions.find(token) is None
    assert sessions.lookup(full, now + sessions.FULL_LIFETIME) == (None, False)  # expired
    User.update(active=False).where(User.id == fay.id).execute()
    assert sessions.lookup(full, now) == (None, False) and sessions.find(full) is None
    assert SignIn.select().count() == 2


def test_a_sign_in_made_with_a_password_reset_since_gets_nothing_through_the_gate(db):
    from pbnsec.domain import sessions
    from pbnsec.models import SignIn, User, utcnow

    now, fay = utcnow(), person("fay")
    token = sessions.start(fay)  # the password checked, then an administrator's reset lands
    User.update(password_hash="scrypt:reset-meanwhile").where(User.id == fay.id).execute()
    assert sessions.lookup(token, now) == (None, True)  # the gate refuses it and leaves it for pbnsec to end
    assert SignIn.select().where(SignIn.token == token).count() == 1
    assert sessions.find(token) is None  # a pbnsec page ends it
    assert SignIn.select().where(SignIn.token == token).count() == 0

"""Security Management › Protected apps in the browser: the list with each app's proxy snippets, adding, changing and
removing, as a page and as htmx fragments; who may see what (403/404), CSRF, and every refusal under its field."""
import html
import re
import threading

import pytest
from conftest import field_error, practice_id, restrict

from pbnsec.domain import protected_apps as domain
from pbnsec.models import AuditEvent, ProtectedApp, ProtectedAppPractice, Role

GATED = {"BASE_URL": "https://security.riverside.example", "COOKIE_DOMAIN": "riverside.example"}


def gated(app):
    """The deployment set up for the gate (read by the screen on each request)."""
    app.config.update(GATED)


def form(app, **fields):
    data = {"name": "Patient charts", "host": "charts.riverside.example", "proxy": "nginx",
            "practice": [str(practice_id(app))], "roles": "all"}
    data.update(fields)
    return data


def add(v, htmx=False, **fields):
    v.get("/security/apps")
    return v.post("/security/apps", form(v.app, **fields), htmx=htmx)


def app_id(app, name="Patient charts") -> int:
    with app.app_context():
        return ProtectedApp.get(ProtectedApp.name == name).id


def stored(app):
    with app.app_context():
        return [(a.name, a.host, a.proxy, a.all_roles) for a in ProtectedApp.select().order_by(ProtectedApp.id)]



def owner_adds(app, signed_in, name, host, *practices):
    owner = signed_in("owner")
    response = add(owner, name=name, host=host, practice=[str(practice_id(app, p)) for p in practices])
    assert response.status_code == 303, response.text
    return app_id(app, name)


# --- who gets in ---

def test_administrators_find_protected_apps_among_the_security_tabs(ann):
    page = ann.get("/security/allowlist").text
    assert '<a href="/security/apps" >Protected apps</a>' in page
    here = ann.get("/security/apps").text
    assert '<a href="/security/apps" aria-current="page">Protected apps</a>' in here


def test_staff_get_403_on_every_url_and_method(app, signed_in):
    ann = signed_in("ann")
    add(ann)
    target = app_id(app)
    fay = signed_in("fay")
    fay.get("/")
    for url in ("/security/apps", f"/security/apps/{target}", f"/security/apps/{target}/delete"):
        assert fay.get(url).status_code == 403, url
        assert fay.post(url, form(app, name="Mine")).status_code == 403, url
    assert stored(app) == [("Patient charts", "charts.riverside.example", "nginx", True)]


def test_another_practice_s_admin_finds_no_app_of_it(app, signed_in):
    lake = owner_adds(app, signed_in, "Lake tool", "lake.riverside.example", "Lakeside Dental")
    shared = owner_adds(app, signed_in, "Shared", "shared.riverside.example", "Lakeside Dental", "Riverside Dental")
    ann = signed_in("ann")
    listing = ann.get("/security/apps").text
    assert "Lake tool" not in listing and "Shared" not in listing and "0 protected apps" in listing
    for target in (lake, shared, 987654):
        assert ann.get(f"/security/apps/{target}").status_code == 404
        assert ann.get(f"/security/apps/{target}/delete").status_code == 404
        assert ann.post(f"/security/apps/{target}", form(app, name="Taken over")).status_code == 404
        assert ann.post(f"/security/apps/{target}/delete", {}).status_code == 404
    assert [row[0] for row in stored(app)] == ["Lake tool", "Shared"]
    with app.app_context():
        assert not AuditEvent.select().where(AuditEvent.action.in_(["app_changed", "app_removed"])).exists()


def test_an_app_of_a_practice_that_blocks_this_ip_is_forbidden_not_hidden(app, signed_in):
    lake = owner_adds(app, signed_in, "Lake tool", "lake.riverside.example", "Lakeside Dental")
    restrict(app, "Lakeside Dental", "10.0.0.0/8")  # the Owner is at 127.0.0.1: blocked at Lakeside, not Riverside
    owner = signed_in("owner")
    assert "Lake tool" not in owner.get("/security/apps").text
    response = owner.get(f"/security/apps/{lake}")
    assert response.status_code == 403 and "not approved for Lakeside Dental" in response.text
    assert owner.post(f"/security/apps/{lake}/delete", {}).status_code == 403
    assert [row[0] for row in stored(app)] == ["Lake tool"]


# --- the list: a page and a fragment ---

def test_the_list_is_a_page_and_a_fragment(app, ann):
    add(ann)
    page = ann.get("/security/apps")
    assert page.status_code == 200 and "<html" in page.text and 'id="app-form"' in page.text
    assert "HX-Request" in page.headers["Vary"]
    fragment = ann.get("/security/apps", htmx=True)
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    assert fragment.text.startswith('<div id="apps-list"') and "<html" not in fragment.text
    assert 'hx-trigger="apps-changed from:body"' in fragment.text  # it follows removals
    assert "1 protected app<" in fragment.text and "<code>charts.riverside.example</code>" in fragment.text


def test_each_app_shows_its_snippet_for_each_proxy_filled_in_its_own_open(app, ann):
    gated(app)
    add(ann, proxy="caddy", host="Charts.Riverside.Example:8443")
    page = ann.get("/security/apps").text
    snippets = re.findall(r'<details class="snippet" (open)?>\s*<summary>([^<]+)</summary>', page)
    assert [(bool(opened), summary) for opened, summary in snippets] == [
        (False, "nginx snippet"), (True, "Caddy snippet (this app's proxy)"), (False, "Traefik snippet")]
    nginx = page[page.index('aria-label="nginx snippet for Patient charts"'):]
    nginx = html.unescape(nginx[:nginx.index("</pre>")])
    # nginx matches server_name against the Host header without its port: the name alone, the port on the listen
    # lines, the port kept in the URL pbnsec decides about
    assert "server_name charts.riverside.example;" in nginx
    assert "listen 8443;" in nginx and "listen [::]:8443;" in nginx
    assert "X-Original-URL $scheme://charts.riverside.example:8443$request_uri;" in nginx
    traefik = page[page.index('aria-label="Traefik snippet for Patient charts"'):]
    traefik = html.unescape(traefik[:traefik.index("</pre>")])
    assert 'rule: "Host(`charts.riverside.example`)"' in traefik  # Traefik's Host() compares names without ports
    # The gate's own port (PBNSEC_GATE_PORT: by default the one after PBNSEC_PORT), over kept-alive connections, in
    # an upstream named for this app (nginx refuses two of one name, and each app has its own file)
    assert ("upstream pbnsec_gate_charts_riverside_example__8443 {\n    server 127.0.0.1:8001;\n    keepalive 16;"
            in nginx)
    assert "proxy_pass http://pbnsec_gate_charts_riverside_example__8443/gate/verify;" in nginx
    assert 'address: "http://127.0.0.1:8001/gate/verify?redirect=1"' in traefik
    assert "pbnsec-gate-charts_riverside_example__8443:" in traefik
    app.config["GATE_PORT"] = None  # PBNSEC_GATE_PORT=off: the main port answers /gate/verify
    assert "server 127.0.0.1:8000;" in html.unescape(ann.get("/security/apps").text)
    assert "https://security.riverside.example/login" in nginx
    assert "{{" not in nginx
    assert "<the app's own address, e.g. http://127.0.0.1:3000>" in nginx  # pbnsec never knows it
    assert "Replace each part in &lt;angle brackets&gt; before pasting." in page


def test_without_the_gate_settings_the_screen_warns_and_the_snippet_says_what_to_set(app, ann):
    add(ann)
    page = ann.get("/security/apps").text
    warnings = page[page.index('id="gate-warnings"'):page.index('id="apps-message"')]
    assert "PBNSEC_BASE_URL is not set: the gate cannot send people to pbnsec&#39;s sign-in page" in warnings
    assert "PBNSEC_COOKIE_DOMAIN is not set" in warnings
    assert "&lt;set PBNSEC_BASE_URL&gt;/login" in page
    app.config["BASE_URL"] = GATED["BASE_URL"]
    page = ann.get("/security/apps").text
    assert "PBNSEC_BASE_URL is not set" not in page and "PBNSEC_COOKIE_DOMAIN is not set" in page
    gated(app)
    assert 'id="gate-warnings"' not in ann.get("/security/apps").text


def test_what_people_typed_is_escaped_in_the_list_and_the_snippets(app, ann):
    app.config["BASE_URL"] = "https://security.riverside.example/<b>pbnsec</b>"
    add(ann, name='<script>alert("x")</script> charts')
    page = ann.get("/security/apps").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; charts" in page
    assert "<b>pbnsec</b>" not in page and "https://security.riverside.example/&lt;b&gt;pbnsec&lt;/b&gt;/login" in page


def test_an_app_the_settings_now_rule_out_is_flagged_in_the_list(app, ann):
    add(ann, host="charts.lakeside.example")  # saved before PBNSEC_COOKIE_DOMAIN was set
    gated(app)
    page = ann.get("/security/apps").text
    flagged = page[page.index(f'id="app-{app_id(app)}-problem"'):]
    assert "charts.lakeside.example is not under riverside.example (PBNSEC_COOKIE_DOMAIN)" in flagged[:400]


# --- adding ---

def test_a_plain_post_adds_the_app_and_redirects_to_the_list(app, ann):
    response = add(ann, name="Imaging", host="IMAGES.riverside.example", proxy="traefik", roles="chosen",
                   role=[str(r) for r in role_ids(app, "Provider", "Hygienist")])
    assert response.status_code == 303 and response.headers["Location"] == "/security/apps"
    page = ann.get("/security/apps").text
    assert "Added Imaging (images.riverside.example)." in page
    card = page[page.index(f'id="app-{app_id(app, "Imaging")}"'):]
    assert "<dt>Roles</dt><dd>Provider, Hygienist</dd>" in card and "<dt>Proxy</dt><dd>Traefik</dd>" in card
    assert "by\n      Ann Lee</dd>" in card
    assert stored(app) == [("Imaging", "images.riverside.example", "traefik", False)]


def role_ids(app, *names):
    with app.app_context():
        return [Role.get(Role.name == n).id for n in names]


def test_an_htmx_add_swaps_the_form_and_the_list_out_of_band(app, ann):
    add(ann, name="Zebra", host="zebra.riverside.example")
    response = add(ann, htmx=True, name="Alpha", host="alpha.riverside.example")
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    body = response.text
    assert body.startswith('<form id="app-form"') and "<html" not in body
    assert 'value="Alpha"' not in body  # the form is empty again
    assert '<div id="apps-message" hx-swap-oob="true"><p class="flash flash-success" role="status">Added Alpha' in body
    assert '<div id="apps-list" hx-swap-oob="true"' in body
    listed = re.findall(r'<h3 id="app-\d+-name">([^<]+)</h3>', body)
    assert listed == ["Alpha", "Zebra"]  # by name, the new one in its place


REFUSALS = [
    ({"name": ""}, "name", "Enter a name"),
    ({"name": "x" * 101}, "name", "at most 100 characters"),
    ({"name": "Charts\u202e"}, "name", "control or invisible characters"),
    ({"host": "https://charts.riverside.example/"}, "host", "must be a host name only"),
    ({"host": "chärts.riverside.example"}, "host", "xn-- (punycode)"),
    ({"host": "charts.riverside.example:99999"}, "host", "port that is not a number from 1 to 65535"),
    ({"host": "security.riverside.example"}, "host", "pbnsec's own address (PBNSEC_BASE_URL)"),
    ({"host": "charts.lakeside.example"}, "host", "is not under riverside.example (PBNSEC_COOKIE_DOMAIN)"),
    ({"proxy": "apache"}, "proxy", "nginx, Caddy or Traefik"),
    ({"practice": []}, "practices", "Choose at least one practice"),
    ({"practice": ["lakeside"]}, "practices", "Choose among the practices you administer from here"),
    ({"roles": "chosen"}, "roles", "Choose at least one role, or All roles"),
    ({"roles": "chosen", "role": ["0"]}, "roles", "Choose among the roles listed"),
]


@pytest.mark.parametrize("fields,field,words", REFUSALS)
def test_bad_input_is_refused_under_its_field_as_a_page_and_as_a_fragment(app, ann, fields, field, words):
    gated(app)
    for htmx in (False, True):
        response = add(ann, htmx=htmx, **fields)
        assert response.status_code == 422, response.text
        assert words in field_error(response.text, f"{field}-error")
        assert ("<html" in response.text) is not htmx
        if htmx:
            assert response.text.startswith('<form id="app-form"') and "HX-Request" in response.headers["Vary"]
        if field in ("name", "host"):
            assert 'aria-invalid="true" aria-describedby="%s-error"' % field in response.text
    assert stored(app) == []
    with app.app_context():
        assert not AuditEvent.select().where(AuditEvent.action == "app_added").exists()


def test_a_refused_form_keeps_what_was_typed(app, ann):
    response = add(ann, name="Imaging", host="bad host", proxy="caddy", roles="chosen",
                   role=[str(r) for r in role_ids(app, "Billing")])
    assert response.status_code == 422
    assert 'id="name" name="name" value="Imaging"' in response.text and 'value="bad host"' in response.text
    assert '<option value="caddy" selected>' in response.text
    assert 'id="roles-chosen" checked' in response.text
    assert re.search(r'name="role" value="%d" checked> Billing' % role_ids(app, "Billing")[0], response.text)


@pytest.mark.parametrize("host", ["charts.riverside.example", "charts.riverside.example:443"])
def test_a_host_another_app_answers_for_is_refused(app, ann, host):
    add(ann)
    response = add(ann, name="Second", host=host)
    assert response.status_code == 422
    assert "Patient charts (charts.riverside.example)" in field_error(response.text, "host-error")
    assert len(stored(app)) == 1


def test_every_change_needs_the_csrf_token(app, ann):
    assert ann.post("/security/apps", form(app), csrf=False).status_code == 400
    assert stored(app) == []
    add(ann)
    target = app_id(app)
    assert ann.post(f"/security/apps/{target}", form(app, name="Renamed"), csrf=False).status_code == 400
    assert ann.post(f"/security/apps/{target}/delete", {}, csrf=False).status_code == 400
    assert stored(app) == [("Patient charts", "charts.riverside.example", "nginx", True)]


@pytest.mark.parametrize("second_host,words", [("charts.riverside.example", "is already protected by"),
                                               ("charts.riverside.example:443", "answers the same requests as")])
def test_two_admins_adding_one_host_at_once_leave_one_app_and_a_form_error(app, signed_in, monkeypatch, second_host,
                                                                          words):
    """Two spellings of one host (no unique index can tell) as well as one: the change lock decides."""
    ann, owner = signed_in("ann"), signed_in("owner")
    for v in (ann, owner):
        v.get("/security/apps")
    meeting = threading.Barrier(2, timeout=2)
    original = domain._clashes

    def check_then_meet(*args):
        found = original(*args)
        try:
            meeting.wait()  # with the change lock held the other cannot get here: it times out
        except threading.BrokenBarrierError:
            pass
        return found

    monkeypatch.setattr(domain, "_clashes", check_then_meet)
    responses = [None, None]

    def run(i, v, name, host):
        responses[i] = v.post("/security/apps", form(app, name=name, host=host))

    threads = [threading.Thread(target=run, args=(0, ann, "Charts A", "charts.riverside.example")),
               threading.Thread(target=run, args=(1, owner, "Charts B", second_host))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in responses) == [303, 422]
    loser = next(r for r in responses if r.status_code == 422)
    assert words in field_error(loser.text, "host-error")
    assert len(stored(app)) == 1


def test_a_clash_the_checks_missed_is_still_a_form_error(app, ann, monkeypatch):
    add(ann)
    monkeypatch.setattr(domain, "_clashes", lambda *args: {})  # a writer that did not see the first app
    response = add(ann, name="Second")
    assert response.status_code == 422
    assert field_error(response.text, "host-error") == "charts.riverside.example is already protected by another app."
    assert len(stored(app)) == 1


# --- changing ---

def test_the_edit_view_is_a_page_and_a_fragment_with_the_app_s_values(app, ann):
    add(ann, roles="chosen", role=[str(r) for r in role_ids(app, "Hygienist")])
    target = app_id(app)
    page = ann.get(f"/security/apps/{target}")
    assert page.status_code == 200 and "<html" in page.text and "Change Patient charts" in page.text
    assert 'value="Patient charts"' in page.text and 'value="charts.riverside.example"' in page.text
    assert re.search(r'name="role" value="%d" checked> Hygienist' % role_ids(app, "Hygienist")[0], page.text)
    assert f'action="/security/apps/{target}"' in page.text
    fragment = ann.get(f"/security/apps/{target}", htmx=True)
    assert fragment.text.startswith('<form id="app-form"') and "HX-Request" in fragment.headers["Vary"]


def test_a_change_saves_and_is_audited(app, ann):
    add(ann)
    target = app_id(app)
    ann.get(f"/security/apps/{target}")
    response = ann.post(f"/security/apps/{target}", form(app, name="Charts", proxy="caddy"))
    assert response.status_code == 303 and response.headers["Location"] == "/security/apps"
    assert "Saved Charts." in ann.get("/security/apps").text
    fragment = ann.post(f"/security/apps/{target}", form(app, name="Charts 2"), htmx=True)
    assert fragment.status_code == 200 and fragment.text.startswith('<form id="app-form"')
    assert "Saved Charts 2." in fragment.text and 'value="Charts 2"' in fragment.text
    assert stored(app) == [("Charts 2", "charts.riverside.example", "nginx", True)]
    with app.app_context():
        details = [e.detail for e in AuditEvent.select().where(AuditEvent.action == "app_changed")
                   .order_by(AuditEvent.id)]
    assert details == ["name: Patient charts → Charts; proxy: nginx → caddy",
                       "name: Charts → Charts 2; proxy: caddy → nginx"]


def test_a_refused_change_shows_the_error_and_changes_nothing(app, ann):
    add(ann)
    target = app_id(app)
    page = ann.post(f"/security/apps/{target}", form(app, host="not a host"))
    assert page.status_code == 422 and "<html" in page.text and "Change Patient charts" in page.text
    assert "spaces or control characters" in field_error(page.text, "host-error")
    fragment = ann.post(f"/security/apps/{target}", form(app, name=""), htmx=True)
    assert fragment.status_code == 422 and fragment.text.startswith('<form id="app-form"')
    assert stored(app) == [("Patient charts", "charts.riverside.example", "nginx", True)]


# --- removing ---

def test_removing_asks_first_then_removes_and_audits(app, ann, signed_in):
    add(ann)
    target = app_id(app)
    confirm = ann.get(f"/security/apps/{target}/delete")
    assert confirm.status_code == 200 and "Remove Patient charts?" in confirm.text
    response = ann.post(f"/security/apps/{target}/delete", {})
    assert response.status_code == 303 and response.headers["Location"] == "/security/apps"
    assert "Removed Patient charts (charts.riverside.example)" in ann.get("/security/apps").text
    assert stored(app) == []
    with app.app_context():
        assert ProtectedAppPractice.select().count() == 0
        event = AuditEvent.get(AuditEvent.action == "app_removed")
        assert (event.actor_label, event.practice.name, event.target) == ("ann@example.com", "Riverside Dental",
                                                                          "Patient charts")


def test_an_htmx_remove_answers_an_empty_body_for_the_card(app, ann):
    add(ann)
    response = ann.post(f"/security/apps/{app_id(app)}/delete", {}, htmx=True)
    assert response.status_code == 200 and response.text == "" and "HX-Request" in response.headers["Vary"]
    assert response.headers["HX-Trigger"] == "apps-changed"  # the list (its count) fetches itself again
    assert stored(app) == []


# --- each practice's audit log ---

def test_each_practice_s_audit_log_shows_what_happened_to_its_apps(app, signed_in):
    owner_adds(app, signed_in, "Shared", "shared.riverside.example", "Lakeside Dental", "Riverside Dental")
    bob = signed_in("bob")
    log = bob.get(f"/security/audit?practice={practice_id(app, 'Lakeside Dental')}&action=app_added").text
    assert "app added" in log and "Shared" in log and "owner@example.com" in log


# --- cost ---

def test_the_list_costs_the_same_for_one_app_or_twenty(app, signed_in, count_statements):
    from conftest import page_cost

    owner = signed_in("owner")
    add(owner, practice=[str(practice_id(app)), str(practice_id(app, "Lakeside Dental"))], roles="chosen",
        role=[str(r) for r in role_ids(app, "Provider")])
    one, one_log = page_cost(owner, count_statements, "/security/apps")
    for n in range(19):
        add(owner, name=f"App {n}", host=f"app-{n}.riverside.example", roles="chosen",
            role=[str(r) for r in role_ids(app, "Provider", "Billing")])
    twenty, twenty_log = page_cost(owner, count_statements, "/security/apps")
    assert "20 protected apps" in owner.get("/security/apps").text
    assert twenty == one, f"one app: {one_log}\ntwenty apps: {twenty_log}"


def test_each_app_shows_how_many_requests_the_gate_let_through_or_refused_in_the_last_7_days(app, signed_in):
    """What the gate counted (not one audit row per request) is what an administrator sees on the app's card."""
    from datetime import timedelta

    from conftest import protect_app

    from pbnsec.models import GateCount, utcnow
    gated(app)
    charts = protect_app(app, "Patient charts", "charts.riverside.example")
    with app.app_context():
        hour = utcnow().replace(minute=0, second=0)
        GateCount.create(app=charts, hour=hour, allowed=1200, refused=3)
        GateCount.create(app=charts, hour=hour - timedelta(days=2), allowed=34, refused=1)
        GateCount.create(app=charts, hour=hour - timedelta(days=9), allowed=99999, refused=99)  # too long ago
    page = signed_in("owner").get("/security/apps").text
    counts = re.search(rf'id="app-{charts}-counts">([^<]+)</dd>', page).group(1)
    assert " ".join(counts.split()) == "1,234 let through, 4 sent to sign in or refused"


def test_what_follows_a_long_name_or_host_is_checked_too_not_cut_off(app, ann):
    """A NUL or a path after the 300th character is refused like any other, never silently dropped."""
    gated(app)
    response = add(ann, name="Charts" + " " * 300 + "\x00 junk",
                   host="charts.riverside.example" + " " * 300 + "/evil path")
    assert response.status_code == 422
    assert field_error(response.text, "name-error") and field_error(response.text, "host-error")
    with app.app_context():
        assert ProtectedApp.select().count() == 0


def test_an_app_whose_stored_host_no_longer_reads_is_listed_with_the_problem_and_can_be_removed(app, ann):
    """A row changed outside pbnsec: the list still shows (500 before), says what is wrong, offers no snippet."""
    gated(app)
    add(ann)
    with app.app_context():
        ProtectedApp.update(host="not a host!!", proxy="apache").execute()
        app_id = ProtectedApp.get().id
    page = ann.get("/security/apps")
    assert page.status_code == 200
    assert "not a host!! is not a host pbnsec can read" in html.unescape(page.text)
    assert 'class="snippet"' not in page.text
    assert ann.post(f"/security/apps/{app_id}/delete", {}).status_code == 303
    with app.app_context():
        assert ProtectedApp.select().count() == 0

"""Protected apps: what may be added (names, hosts, proxies, practices, roles), whose apps an administrator sees and
changes, and the audit each change leaves in each practice's log."""
import pytest
from conftest import practice_named, visit_of

from pbnsec.core.gate import parse_host
from pbnsec.domain import protected_apps as domain
from pbnsec.domain.access import Refusal
from pbnsec.domain.protected_apps import AppInput, AppRefused, AppRow, GateSettings
from pbnsec.models import AuditEvent, ProtectedApp, ProtectedAppPractice, ProtectedAppRole, Role

RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
GATE = GateSettings(cookie_domain=".riverside.example", base_url="https://security.riverside.example")


def mine(*names):
    return [practice_named(n) for n in names]


def typed(name="Patient charts", host="charts.riverside.example", proxy="nginx", practices=(RIVERSIDE,), roles=None):
    return AppInput(name, host, proxy, tuple(str(practice_named(p).id) for p in practices), roles is None,
                    tuple(str(Role.get(Role.name == r).id) for r in roles or ()))


def add(who="ann", gate=GATE, administered=None, **fields):
    visit = visit_of(who)
    return domain.add_app(visit, administered if administered is not None else list(visit.user.practices()),
                          typed(**fields), gate)


def refused(result, field):
    assert isinstance(result, AppRefused), result
    assert field in result.errors, result.errors
    return result.errors[field]


def stored():
    return [(a.name, a.host, a.proxy, a.all_roles) for a in ProtectedApp.select().order_by(ProtectedApp.id)]


# --- adding ---

def test_an_app_is_stored_with_its_host_in_stored_form_its_practices_and_its_roles(db):
    row = add("owner", name="  Patient   charts ", host="CHARTS.Riverside.Example.", proxy="caddy",
              practices=(RIVERSIDE, LAKESIDE), roles=["Hygienist", "Provider"])
    assert isinstance(row, AppRow), row
    assert stored() == [("Patient charts", "charts.riverside.example", "caddy", False)]
    assert [p.name for p in row.practices] == [LAKESIDE, RIVERSIDE]
    assert [r.name for r in row.roles] == ["Provider", "Hygienist"]  # by rank
    assert row.app.created_by.email == "owner@example.com"


def test_each_practice_s_audit_log_shows_the_new_app(db):
    add("owner", practices=(RIVERSIDE, LAKESIDE), roles=["Hygienist"])
    events = list(AuditEvent.select().where(AuditEvent.action == "app_added").order_by(AuditEvent.practice))
    assert sorted(e.practice.name for e in events) == [LAKESIDE, RIVERSIDE]
    assert {(e.actor_label, e.actor_ip, e.target) for e in events} == {
        ("owner@example.com", "127.0.0.1", "Patient charts")}
    assert events[0].detail == ("host: charts.riverside.example; proxy: nginx; practices: Lakeside Dental, "
                                "Riverside Dental; roles: Hygienist")


@pytest.mark.parametrize("name,code", [
    ("", "blank"), ("   ", "blank"), ("x" * 101, "too_long"), ("Charts\x00", "control_characters"),
    ("Charts\u202e", "control_characters"), ("Char\u200bts", "control_characters"),
])
def test_a_bad_name_is_refused_under_the_name_and_nothing_is_stored(db, name, code):
    error = refused(add(name=name), "name")
    assert error.code == code
    assert stored() == [] and not AuditEvent.select().where(AuditEvent.action == "app_added").exists()


def test_a_name_of_100_characters_is_taken(db):
    assert isinstance(add(name="x" * 100), AppRow)


def test_a_name_is_unique_whatever_its_case(db):
    add()
    error = refused(add(name="PATIENT CHARTS", host="other.riverside.example"), "name")
    assert error.code == "duplicate" and "already called PATIENT CHARTS" in error.message
    assert len(stored()) == 1


@pytest.mark.parametrize("host,words", [
    ("", "empty"), ("https://charts.riverside.example", "host name only"), ("charts.riverside.example/x", "host name only"),
    ("user@charts.riverside.example", "host name only"), ("chärts.riverside.example", "punycode"),
    ("charts.riverside.example:0", "port"), ("charts.riverside.example:70000", "port"), ("-x.riverside.example", "letters"),
    ("charts riverside.example", "spaces"),
])
def test_a_host_that_is_not_one_is_refused_with_what_is_wrong(db, host, words):
    error = refused(add(host=host, gate=GateSettings()), "host")
    assert error.code == "invalid" and words in error.message
    assert stored() == []


def test_an_ip_literal_is_a_host_when_no_cookie_domain_is_set(db):
    row = add(host="[2001:DB8::5]:8443", gate=GateSettings())
    assert row.app.host == "[2001:db8::5]:8443"


@pytest.mark.parametrize("first,second,code", [
    ("charts.riverside.example", "Charts.riverside.example.", "duplicate"),
    ("charts.riverside.example", "charts.riverside.example:443", "overlaps"),
    ("charts.riverside.example", "charts.riverside.example:80", "overlaps"),
    ("charts.riverside.example:443", "charts.riverside.example", "overlaps"),
    ("charts.riverside.example:8443", "charts.riverside.example:8443", "duplicate"),
])
def test_a_host_answering_the_same_requests_as_another_app_is_refused(db, first, second, code):
    add(host=first)
    error = refused(add(name="Second", host=second), "host")
    assert error.code == code and "Patient charts" in error.message
    assert len(stored()) == 1


@pytest.mark.parametrize("first,second", [
    ("charts.riverside.example", "charts.riverside.example:8443"),
    ("charts.riverside.example:80", "charts.riverside.example:443"),
    ("charts.riverside.example", "images.riverside.example"),
])
def test_hosts_that_never_answer_the_same_request_are_two_apps(db, first, second):
    add(host=first)
    assert isinstance(add(name="Second", host=second), AppRow)


def test_a_clash_with_an_app_the_admin_cannot_see_does_not_name_it(db):
    add("bob", practices=(LAKESIDE,), name="Lakeside secret tool")
    error = refused(add("ann", name="Mine"), "host")
    assert "Lakeside secret tool" not in error.message
    assert "a practice you do not administer from here" in error.message


@pytest.mark.parametrize("host", ["security.riverside.example", "security.riverside.example:443",
                                  "SECURITY.riverside.example."])
def test_pbnsec_s_own_host_is_refused(db, host):
    error = refused(add(host=host), "host")
    assert error.code == "pbnsec_itself" and "PBNSEC_BASE_URL" in error.message


def test_pbnsec_s_own_name_on_another_port_is_another_app(db):
    assert isinstance(add(host="security.riverside.example:8443"), AppRow)


@pytest.mark.parametrize("host,allowed", [
    ("charts.riverside.example", True), ("riverside.example", True), ("a.b.riverside.example:8443", True),
    ("charts.lakeside.example", False), ("evilriverside.example", False), ("riverside.example.evil.example", False),
    ("10.0.0.5", False),
])
def test_with_a_cookie_domain_the_host_must_be_under_it(db, host, allowed):
    result = add(host=host)
    if allowed:
        assert isinstance(result, AppRow), result
    else:
        error = refused(result, "host")
        assert error.code == "outside_cookie_domain"
        assert "not under riverside.example (PBNSEC_COOKIE_DOMAIN)" in error.message
        assert "ending in .riverside.example" in error.message


def test_without_a_cookie_domain_any_host_is_taken(db):
    assert isinstance(add(host="charts.lakeside.example", gate=GateSettings()), AppRow)


def test_an_unknown_proxy_is_refused(db):
    assert refused(add(proxy="apache"), "proxy").message.startswith("Choose the proxy in front of the app")


def test_practices_must_be_chosen_and_administered_from_here(db):
    assert refused(add(practices=()), "practices").code == "none_chosen"
    assert refused(add("ann", practices=(RIVERSIDE, LAKESIDE)), "practices").code == "not_yours"
    # An Owner of both who is blocked at Lakeside (the web passes only the practices allowed from here).
    assert refused(add("owner", administered=mine(RIVERSIDE), practices=(LAKESIDE,)), "practices").code == "not_yours"
    bogus = domain.add_app(visit_of("ann"), mine(RIVERSIDE), AppInput("X", "x.riverside.example", "nginx", ("abc",)),
                           GATE)
    assert refused(bogus, "practices").code == "not_yours"
    assert stored() == []


def test_roles_are_all_or_at_least_one_known(db):
    none = domain.add_app(visit_of("ann"), mine(RIVERSIDE),
                          AppInput("X", "x.riverside.example", "nginx", (str(practice_named(RIVERSIDE).id),), False),
                          GATE)
    assert refused(none, "roles").code == "none_chosen"
    unknown = domain.add_app(visit_of("ann"), mine(RIVERSIDE),
                             AppInput("X", "x.riverside.example", "nginx", (str(practice_named(RIVERSIDE).id),), False,
                                      ("999", "x")), GATE)
    assert refused(unknown, "roles").code == "invalid_choice"
    assert stored() == []


def test_every_field_s_error_is_given_at_once(db):
    result = domain.add_app(visit_of("ann"), mine(RIVERSIDE), AppInput("", "http://x", "iis", (), False), GATE)
    assert result.codes == {"name": "blank", "host": "invalid", "proxy": "invalid_choice", "practices": "none_chosen",
                            "roles": "none_chosen"}


def test_a_writer_that_slips_past_the_checks_gets_a_form_error_not_a_crash(db, monkeypatch):
    add()
    monkeypatch.setattr(domain, "_clashes", lambda *args: {})  # as if the other app were saved after the check
    error = refused(add(name="Second"), "host")
    assert error.code == "duplicate"
    assert len(stored()) == 1


# --- whose apps ---

def test_an_administrator_sees_only_apps_whose_every_practice_they_administer(db):
    add("owner", name="Shared", host="shared.riverside.example", practices=(RIVERSIDE, LAKESIDE))
    add("ann", name="River", host="river.riverside.example")
    add("bob", name="Lake", host="lake.riverside.example", practices=(LAKESIDE,))

    def names(*practices):
        return [row.app.name for row in domain.list_apps(mine(*practices))]

    assert names(RIVERSIDE) == ["River"]
    assert names(LAKESIDE) == ["Lake"]
    assert names(RIVERSIDE, LAKESIDE) == ["Lake", "River", "Shared"]
    assert names() == []
    shared = ProtectedApp.get(ProtectedApp.name == "Shared").id
    assert domain.find_app(mine(RIVERSIDE), shared) is None
    assert domain.find_app(mine(RIVERSIDE, LAKESIDE), shared).app.name == "Shared"
    assert domain.find_app(mine(RIVERSIDE), "not an id") is None


def test_an_app_left_without_practices_is_the_console_s_alone(db):
    row = add("owner")
    ProtectedAppPractice.delete().execute()
    assert domain.find_app(mine(RIVERSIDE), row.app.id) is None
    assert domain.find_app(domain.every_practice(), row.app.id) is not None


# --- changing ---

def change(who, app_id, administered=None, gate=GATE, **fields):
    visit = visit_of(who)
    return domain.change_app(visit, administered if administered is not None else list(visit.user.practices()),
                             app_id, typed(**fields), gate)


def test_a_change_is_saved_and_audited_in_the_practices_before_and_after(db):
    row = add("owner", practices=(RIVERSIDE,))
    changed = change("owner", row.app.id, name="Charts", host="charts2.riverside.example", proxy="traefik",
                     practices=(LAKESIDE,), roles=["Billing"])
    assert isinstance(changed, AppRow), changed
    assert stored() == [("Charts", "charts2.riverside.example", "traefik", False)]
    assert [p.name for p in changed.practices] == [LAKESIDE] and [r.name for r in changed.roles] == ["Billing"]
    events = list(AuditEvent.select().where(AuditEvent.action == "app_changed"))
    assert sorted(e.practice.name for e in events) == [LAKESIDE, RIVERSIDE]  # Riverside sees it leave
    assert events[0].detail == ("name: Patient charts → Charts; host: charts.riverside.example → "
                                "charts2.riverside.example; proxy: nginx → traefik; practices: added to Lakeside Dental; "
                                "removed from Riverside Dental; roles: all → Billing")


def test_saving_an_app_unchanged_writes_no_audit_event(db):
    row = add()
    assert isinstance(change("ann", row.app.id), AppRow)
    assert not AuditEvent.select().where(AuditEvent.action == "app_changed").exists()


def test_an_app_keeps_its_own_name_and_host_when_changed_but_not_another_s(db):
    first = add()
    add(name="Images", host="images.riverside.example")
    assert isinstance(change("ann", first.app.id, host="charts.riverside.example:443", roles=["Owner"]), AppRow)
    assert refused(change("ann", first.app.id, name="images"), "name").code == "duplicate"
    assert refused(change("ann", first.app.id, host="images.riverside.example:443"), "host").code == "overlaps"


def test_an_app_of_a_practice_the_admin_does_not_administer_cannot_be_changed_or_removed(db):
    shared = add("owner", practices=(RIVERSIDE, LAKESIDE))
    result = change("ann", shared.app.id)
    assert isinstance(result, Refusal) and result.code == "not_yours"
    result = domain.remove_app(visit_of("ann"), mine(RIVERSIDE), shared.app.id)
    assert isinstance(result, Refusal) and result.code == "not_yours"
    # Not even to move it into their practice alone.
    assert isinstance(change("ann", shared.app.id, practices=(RIVERSIDE,)), Refusal)
    assert [p.name for p in domain.find_app(mine(RIVERSIDE, LAKESIDE), shared.app.id).practices] == [LAKESIDE, RIVERSIDE]
    assert ProtectedApp.select().count() == 1


def test_a_refused_change_changes_nothing(db):
    row = add(roles=["Hygienist"])
    assert refused(change("ann", row.app.id, name="", host="charts.lakeside.example"), "host")
    assert stored() == [("Patient charts", "charts.riverside.example", "nginx", False)]
    assert [r.role.name for r in ProtectedAppRole.select()] == ["Hygienist"]


# --- removing ---

def test_removing_an_app_takes_its_practices_and_roles_and_is_audited_in_each_practice(db):
    row = add("owner", practices=(RIVERSIDE, LAKESIDE), roles=["Hygienist"])
    removed = domain.remove_app(visit_of("owner"), mine(RIVERSIDE, LAKESIDE), row.app.id)
    assert removed.app.name == "Patient charts"
    assert ProtectedApp.select().count() == ProtectedAppPractice.select().count() == ProtectedAppRole.select().count() == 0
    events = AuditEvent.select().where(AuditEvent.action == "app_removed")
    assert sorted((e.practice.name, e.detail) for e in events) == [
        (LAKESIDE, "host: charts.riverside.example"), (RIVERSIDE, "host: charts.riverside.example")]
    again = domain.remove_app(visit_of("owner"), mine(RIVERSIDE, LAKESIDE), row.app.id)
    assert isinstance(again, Refusal) and again.code == "not_yours"


# --- the console ---

def test_the_console_adds_for_any_practice_and_is_recorded_as_cli(db):
    row = domain.add_app(domain.console_visit(), domain.every_practice(), typed(practices=(LAKESIDE,)), GATE)
    assert row.app.created_by is None
    event = AuditEvent.get(AuditEvent.action == "app_added")
    assert (event.actor_label, event.actor_ip, event.practice.name) == ("cli", "local", LAKESIDE)
    assert domain.find_by_name_or_host("Patient charts").id == row.app.id
    assert domain.find_by_name_or_host("CHARTS.riverside.example:443") is None  # hosts are looked up as stored
    assert domain.find_by_name_or_host("Charts.Riverside.Example.").id == row.app.id
    assert domain.find_by_name_or_host("no such://") is None


# --- pure helpers ---

@pytest.mark.parametrize("a,b,same", [
    ("a.example", "a.example:443", True), ("a.example", "a.example:80", True), ("a.example", "a.example:8443", False),
    ("a.example:80", "a.example:443", False), ("a.example", "b.example", False), ("[::1]", "[::1]:443", True),
])
def test_same_requests_compares_names_and_the_ports_each_answers_on(a, b, same):
    assert domain.same_requests(parse_host(a), parse_host(b)) is same
    assert domain.same_requests(parse_host(b), parse_host(a)) is same


def test_the_cookie_domain_is_read_as_browsers_do():
    assert GateSettings(cookie_domain=".Riverside.Example").domain == "riverside.example"
    assert GateSettings(cookie_domain="").domain is None
    assert GateSettings(base_url="https://pbnsec.example.org:8443/pbnsec").own_host == parse_host("pbnsec.example.org:8443")
    assert GateSettings(base_url=None).own_host is None

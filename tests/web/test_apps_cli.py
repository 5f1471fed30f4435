"""Protected apps on the command line: `flask --app app apps list|add|remove`, the same domain operations as the
screen, audited as "cli", with clear errors and exit code 1."""
import pytest

from pbnsec.models import AuditEvent, ProtectedApp


def stored(app):
    with app.app_context():
        return [(a.name, a.host, a.proxy, a.all_roles) for a in ProtectedApp.select().order_by(ProtectedApp.id)]


def add(runner, *extra):
    return runner.invoke(args=["apps", "add", "--name", "Patient charts", "--host", "Charts.Riverside.example",
                               "--practice", "Riverside Dental", *extra])


def test_add_then_list_then_remove(runner, app):
    result = add(runner, "--proxy", "Caddy", "--practice", "lakeside dental", "--role", "hygienist", "--role",
                 "Provider")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == ("Added Patient charts (charts.riverside.example, caddy) for Lakeside "
                                             "Dental, Riverside Dental; Provider, Hygienist.")
    assert stored(app) == [("Patient charts", "charts.riverside.example", "caddy", False)]
    assert runner.invoke(args=["apps", "add", "--name", "Images", "--host", "images.example", "--practice",
                               "Riverside Dental"]).exit_code == 0
    listed = runner.invoke(args=["apps", "list"])
    assert listed.exit_code == 0
    assert listed.output.splitlines() == [
        "Images\timages.example\tnginx\tRiverside Dental\tall roles",
        "Patient charts\tcharts.riverside.example\tcaddy\tLakeside Dental, Riverside Dental\tProvider, Hygienist"]
    by_host = runner.invoke(args=["apps", "remove", "CHARTS.riverside.example."])
    assert by_host.exit_code == 0 and by_host.output.startswith("Removed Patient charts (charts.riverside.example).")
    assert runner.invoke(args=["apps", "remove", "IMAGES"]).exit_code == 0  # names are unique in any case
    assert stored(app) == []


def test_every_change_is_audited_as_the_console_in_each_practice(runner, app):
    add(runner, "--practice", "Lakeside Dental")
    runner.invoke(args=["apps", "remove", "Patient charts"])
    with app.app_context():
        events = [(e.action, e.practice.name, e.actor_label, e.actor_ip, e.target)
                  for e in AuditEvent.select().where(AuditEvent.action.startswith("app_")).order_by(AuditEvent.id)]
    assert sorted(events) == sorted([
        ("app_added", "Lakeside Dental", "cli", "local", "Patient charts"),
        ("app_added", "Riverside Dental", "cli", "local", "Patient charts"),
        ("app_removed", "Lakeside Dental", "cli", "local", "Patient charts"),
        ("app_removed", "Riverside Dental", "cli", "local", "Patient charts")])


@pytest.mark.parametrize("args,words", [
    (["--name", "X", "--host", "https://x.example/", "--practice", "Riverside Dental"],
     "host: The host must be a host name only"),
    (["--name", "", "--host", "x.example", "--practice", "Riverside Dental"], "name: Enter a name"),
    (["--name", "X", "--host", "x.example"], "practices: Choose at least one practice"),
    (["--name", "X", "--host", "x.example", "--practice", "Nowhere"], "No practice named 'Nowhere'"),
    (["--name", "X", "--host", "x.example", "--practice", "Riverside Dental", "--role", "Janitor"],
     "No role named 'Janitor'"),
    (["--name", "X", "--host", "x.example", "--practice", "Riverside Dental", "--proxy", "apache"],
     "proxy: Choose the proxy in front of the app"),
])
def test_bad_input_is_a_clear_error_with_exit_code_1_and_nothing_stored(runner, app, args, words):
    result = runner.invoke(args=["apps", "add", *args])
    assert result.exit_code == 1, result.output
    assert words in result.output
    assert stored(app) == []


def test_the_console_obeys_the_same_host_rules_as_the_screen(runner, app):
    app.config.update(BASE_URL="https://security.riverside.example", COOKIE_DOMAIN="riverside.example")
    outside = runner.invoke(args=["apps", "add", "--name", "X", "--host", "x.lakeside.example", "--practice",
                                  "Riverside Dental"])
    assert outside.exit_code == 1 and "not under riverside.example (PBNSEC_COOKIE_DOMAIN)" in outside.output
    itself = runner.invoke(args=["apps", "add", "--name", "X", "--host", "security.riverside.example", "--practice",
                                 "Riverside Dental"])
    assert itself.exit_code == 1 and "pbnsec's own address" in itself.output
    assert add(runner).exit_code == 0
    again = runner.invoke(args=["apps", "add", "--name", "Y", "--host", "charts.riverside.example:443",
                                "--practice", "Lakeside Dental"])
    assert again.exit_code == 1 and "answers the same requests as Patient charts" in again.output
    assert len(stored(app)) == 1


def test_removing_an_unknown_app_says_so(runner, app):
    result = runner.invoke(args=["apps", "remove", "Nothing"])
    assert result.exit_code == 1
    assert "No protected app is called or has the host 'Nothing'" in result.output

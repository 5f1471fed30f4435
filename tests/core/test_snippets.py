"""The proxy snippets filled in per app: placeholders, the markers for what pbnsec does not know, and the snippet
files in deploy/gate/ (which may use only placeholders the filler knows)."""
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbnsec.core.gate import parse_host
from pbnsec.core.snippets import (
    MISSING,
    PLACEHOLDERS,
    fill,
    host_values,
    placeholders,
    app_key,
    gate_address_of,
    scheme_of,
    snippets_for,
    upstream_of,
)

GATE_FILES = Path(__file__).resolve().parents[2] / "deploy" / "gate"
VALUES = {"app_host": "charts.riverside.example", "app_scheme": "https", "pbnsec_url": "https://security.example",
          "pbnsec_upstream": "http://127.0.0.1:8000", "app_upstream": "http://127.0.0.1:3000"}


def test_every_placeholder_is_filled_in_with_or_without_spaces_inside_the_braces():
    text, missing = fill("server_name {{app_host}};\nproxy_pass {{ pbnsec_upstream }}/gate/verify;", VALUES)
    assert text == "server_name charts.riverside.example;\nproxy_pass http://127.0.0.1:8000/gate/verify;"
    assert missing == ()


@pytest.mark.parametrize("value", [None, ""])
def test_a_value_pbnsec_does_not_know_becomes_a_marker_saying_what_to_put_there(value):
    text, missing = fill("return 302 {{pbnsec_url}}/login; # {{pbnsec_url}}\n{{app_upstream}}",
                         {**VALUES, "pbnsec_url": value, "app_upstream": None})
    assert text == "return 302 <set PBNSEC_BASE_URL>/login; # <set PBNSEC_BASE_URL>\n" + MISSING["app_upstream"]
    assert missing == ("pbnsec_url", "app_upstream")


def test_an_unknown_placeholder_is_left_for_the_reader_to_see():
    assert fill("{{app_name}} {{app_host}}", VALUES)[0] == "{{app_name}} charts.riverside.example"


@given(st.dictionaries(st.sampled_from(PLACEHOLDERS), st.text(max_size=30)))
def test_a_value_is_never_filled_in_again(values):
    template = " ".join("{{%s}}" % name for name in PLACEHOLDERS)
    values = {name: f"{{{{{name}}}}}{text}" for name, text in values.items()}  # values that look like placeholders
    text, missing = fill(template, values)
    expected = [values.get(name) or MISSING[name] for name in PLACEHOLDERS]
    assert text == " ".join(expected)
    assert set(missing) == {name for name in PLACEHOLDERS if not values.get(name)}


@pytest.mark.parametrize("hosts,port,url", [
    ("127.0.0.1", 8000, "http://127.0.0.1:8000"), ("0.0.0.0", 8080, "http://127.0.0.1:8080"),
    ("::1,127.0.0.1", 8000, "http://[::1]:8000"), ("::", 8000, "http://[::1]:8000"), ("", 8000, "http://127.0.0.1:8000"),
    (" 10.0.0.2 , ::1", 9000, "http://10.0.0.2:9000"),
])
def test_the_proxy_reaches_pbnsec_where_it_listens(hosts, port, url):
    assert upstream_of(hosts, port) == url
    assert gate_address_of(hosts, port) == url.removeprefix("http://")  # nginx's upstream names no scheme


KEYED = ["charts.riverside.example", "charts.riverside.example:8443", "charts-riverside.example",
         "charts.riverside-example", "charts.riverside.example.port8443", "charts.riverside.example.8443",
         "10.0.0.5", "10.0.0.5:8080", "10.0.0.5.example", "[2001:db8::5]", "[2001:db8::5]:8443", "[2001:db8::5:8443]",
         "ipv6-2001-db8--5", "ipv6.2001-db8--5", "2001-db8--5", "xn--bcher-kva.example"]


def test_every_app_gets_a_name_of_its_own_in_the_proxy_s_configuration():
    """nginx refuses two upstreams of one name and Traefik merges two routers of one name: two apps' keys never
    meet, however alike their hosts look, and a key holds only what both accept."""
    keys = [app_key(parse_host(typed)) for typed in KEYED]
    assert len(set(keys)) == len(keys), keys
    assert all(re.fullmatch(r"[a-z0-9_-]+", key) for key in keys), keys
    assert app_key(parse_host("Charts.Riverside.Example:8443")) == "charts_riverside_example__8443"


@pytest.mark.parametrize("typed, name, port", [
    ("charts.riverside.example", "charts.riverside.example", "80"),
    ("Charts.Riverside.Example:8443", "charts.riverside.example", "8443"),
])
def test_the_proxy_names_the_app_without_its_port_and_listens_on_the_port(typed, name, port):
    host = parse_host(typed)
    # what pbnsec decides about keeps the port; nginx's server_name and Traefik's Host() never see one
    assert {k: v for k, v in host_values(host).items() if k != "app_key"} == {
        "app_host": str(host), "app_server_name": name, "app_port": port}
    text, missing = fill("listen {{app_port}}; server_name {{app_server_name}}; # {{app_host}}", host_values(host))
    assert text == f"listen {port}; server_name {name}; # {host}" and missing == ()


def test_apps_are_reached_with_pbnsec_s_own_scheme_else_https():
    assert scheme_of("http://office-server:8000") == "http"
    assert scheme_of("https://security.example") == scheme_of(None) == "https"


def test_a_missing_snippet_file_is_said_not_guessed():
    found = snippets_for({"nginx": None, "caddy": "{{app_host}} {}"}, VALUES)
    assert found[0].text == "# The nginx snippet file is missing from deploy/gate/."
    assert (found[1].proxy, found[1].text) == ("caddy", "charts.riverside.example {}")


@pytest.mark.parametrize("name", ["nginx.conf", "Caddyfile", "traefik.yml"])
def test_the_snippet_files_use_only_placeholders_the_filler_knows(name):
    used = placeholders((GATE_FILES / name).read_text(encoding="utf-8"))
    assert "app_host" in used
    assert set(used) <= set(PLACEHOLDERS), set(used) - set(PLACEHOLDERS)

"""The gate's pure parts: app hosts, the original request of each proxy, return URLs."""
import pytest
from hypothesis import given, strategies as st

from pbnsec.core.gate import GateInputError, Host, Original, parse_host, parse_original, parse_return_url


@pytest.mark.parametrize("text, host", [
    ("charts.riverside.example", Host("charts.riverside.example")),
    ("  CHARTS.Riverside.Example.  ", Host("charts.riverside.example")),
    ("charts.example:8443", Host("charts.example", 8443)),
    ("10.0.0.5", Host("10.0.0.5")),
    ("[2001:DB8::0:5]:9000", Host("[2001:db8::5]", 9000)),
    ("xn--chrts-3ve.example", Host("xn--chrts-3ve.example")),
    ("localhost", Host("localhost")),
])
def test_hosts_are_read_in_one_form(text, host):
    assert parse_host(text) == host


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("https://charts.example", "host name only"),
    ("charts.example/path", "host name only"),
    ("user@charts.example", "host name only"),
    ("chаrts.example", "punycode"),  # a Cyrillic а
    ("charts..example", "not a host name"),
    ("-charts.example", "not a host name"),
    ("charts_x.example", "not a host name"),
    ("charts.example:0", "port"),
    ("charts.example:65536", "port"),
    ("charts.example:80x", "port"),
    ("charts.example:", "port"),
    ("999.1.1.1", "not one"),
    ("[2001:db8::5", "never closes"),
    ("[nonsense]", "not an IPv6"),
    ("char ts.example", "spaces"),
    ("charts.example\x00", "control"),
    ("a" * 300, "1 to 253"),
])
def test_bad_hosts_are_refused_saying_why(text, words):
    with pytest.raises(GateInputError, match=words):
        parse_host(text)


@pytest.mark.parametrize("stored, asked, scheme, serves", [
    (Host("a.example"), Host("a.example"), "https", True),
    (Host("a.example"), Host("a.example", 443), "https", True),
    (Host("a.example"), Host("a.example", 80), "http", True),
    (Host("a.example"), Host("a.example", 8443), "https", False),
    (Host("a.example", 8443), Host("a.example", 8443), "https", True),
    (Host("a.example", 8443), Host("a.example"), "https", False),
    (Host("a.example"), Host("b.example"), "https", False),
    (Host("a.example"), Host("a.example.evil"), "https", False),
])
def test_a_host_serves_its_own_name_and_port_only(stored, asked, scheme, serves):
    assert stored.serves(asked, scheme) is serves


def test_nginx_sends_the_whole_url():
    original = parse_original({"X-Original-URL": "https://Charts.Example/films?id=7", "X-Original-Method": "post"})
    assert original == Original("POST", "https", Host("charts.example"), "/films?id=7")
    assert original.url == "https://charts.example/films?id=7"


def test_nginx_without_a_method_is_a_get_and_a_bare_host_is_its_root():
    assert parse_original({"X-Original-URL": "http://charts.example:8080"}) == \
        Original("GET", "http", Host("charts.example", 8080), "/")


@pytest.mark.parametrize("proxy_headers", [
    # Caddy forward_auth and Traefik ForwardAuth send the same four headers.
    {"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "charts.example",
     "X-Forwarded-Uri": "/films?id=7", "X-Forwarded-For": "127.0.0.8"},
    {"X-Forwarded-Proto": "HTTPS", "X-Forwarded-Host": "charts.example:443", "X-Forwarded-Uri": "/films?id=7"},
])
def test_caddy_and_traefik_send_the_request_in_parts(proxy_headers):
    original = parse_original(proxy_headers)
    assert (original.scheme, original.host.name, original.uri, original.method) == \
        ("https", "charts.example", "/films?id=7", "GET")
    assert original.url == "https://charts.example/films?id=7"


@pytest.mark.parametrize("headers, words", [
    ({}, "did not say which request"),
    ({"X-Forwarded-Host": "charts.example"}, "did not send X-Forwarded-Proto, X-Forwarded-Uri"),
    ({"X-Original-URL": "https://a.example/", "X-Forwarded-Host": "b.example"}, "both"),
    ({"X-Original-URL": "https://a.example/", "X-Forwarded-Uri": "/x"}, "both"),
    ({"X-Original-URL": "https://a.example/", "X-Original-Method": "GET", "X-Forwarded-Method": "POST"}, "both"),
    ({"X-Original-URL": "/relative"}, "absolute"),
    ({"X-Original-URL": "ftp://a.example/"}, "absolute"),
    ({"X-Original-URL": "https://user@a.example/"}, "user"),
    ({"X-Original-URL": "https://a.example\\@evil.example/"}, "backslash"),
    ({"X-Original-URL": "https://a.example//evil.example"}, "single /"),
    ({"X-Original-URL": "https://a.example/x", "X-Original-Method": "G T"}, "method"),
    ({"X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "a.example", "X-Forwarded-Uri": "/"}, "http or https"),
    ({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "a.example, b.example", "X-Forwarded-Uri": "/"}, "one value"),
    ({"X-Forwarded-Proto": "https,http", "X-Forwarded-Host": "a.example", "X-Forwarded-Uri": "/"}, "one value"),
    ({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "a.example", "X-Forwarded-Uri": "relative"}, "single /"),
    ({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "a.example", "X-Forwarded-Uri": "/" + "a" * 9000}, "longer"),
    ({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "a.example", "X-Forwarded-Uri": "/\x7f"}, "control"),
])
def test_what_cannot_be_read_exactly_is_refused(headers, words):
    with pytest.raises(GateInputError, match=words):
        parse_original(headers)


@pytest.mark.parametrize("url", [
    "//evil.example/", "/\\evil.example", "https:evil.example", "javascript:alert(1)",
    "https://charts.example@evil.example/", "https://evil.example\\.charts.example/",
    "https://chаrts.example/", "https://charts.example:99999/", "https://charts.example /", "data:text/html,x",
    "https://charts.example%2eevil.example/",
])
def test_return_urls_are_read_strictly(url):
    with pytest.raises(GateInputError):
        parse_return_url(url)


def test_a_return_url_keeps_its_path_and_query_and_drops_the_fragment():
    original = parse_return_url("https://charts.example:8443/a/b?c=d#top")
    assert (original.host, original.uri, original.url) == \
        (Host("charts.example", 8443), "/a/b?c=d", "https://charts.example:8443/a/b?c=d")


@given(st.text(max_size=40))
def test_any_text_is_a_host_or_a_clear_refusal(text):
    try:
        host = parse_host(text)
    except GateInputError as exc:
        assert str(exc)
    else:
        assert str(host) == str(host).strip().lower() and host.name.isascii()
        assert parse_host(str(host)) == host  # what is stored reads back the same


# A header a client sent beside the proxy's own reaches pbnsec joined to it with ", " (waitress, like most servers):
# never read as either of the two.
@pytest.mark.parametrize("headers", [
    {"X-Original-URL": "https://charts.riverside.example/, https://payroll.riverside.example/"},
    {"X-Original-URL": "https://charts.riverside.example/", "X-Original-Method": "GET, POST"},
    {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "charts.riverside.example, payroll.riverside.example",
     "X-Forwarded-Uri": "/"},
    {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "charts.riverside.example", "X-Forwarded-Uri": "/"},
    {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "charts.riverside.example", "X-Forwarded-Uri": "/a, /b"},
])
def test_a_header_sent_twice_is_refused(headers):
    with pytest.raises(GateInputError):
        parse_original(headers)

"""Tests for pbnsec.clientip: which IP made a request, and how many proxies to trust."""

from ipaddress import ip_address

import pytest

from pbnsec.clientip import parse_trusted_proxies, resolve_client_ip

SPOOFED = {
    "HTTP_X_FORWARDED_FOR": "198.51.100.66",
    "HTTP_FORWARDED": "for=198.51.100.66",
    "HTTP_X_REAL_IP": "198.51.100.66",
    "HTTP_CF_CONNECTING_IP": "198.51.100.66",
    "HTTP_TRUE_CLIENT_IP": "198.51.100.66",
    "HTTP_X_CLIENT_IP": "198.51.100.66",
}


def resolve(trusted, remote="127.0.0.1", **headers):
    environ = {"REMOTE_ADDR": remote} if remote is not None else {}
    environ.update(headers)
    return resolve_client_ip(environ, trusted)


def test_no_proxy_uses_remote_addr():
    assert resolve(0, "203.0.113.7") == ip_address("203.0.113.7")
    assert resolve(0, "2001:db8::7") == ip_address("2001:db8::7")


def test_no_proxy_ignores_every_forwarding_header():
    assert resolve(0, "203.0.113.7", **SPOOFED) == ip_address("203.0.113.7")


def test_no_proxy_maps_ipv4_mapped_remote_addr():
    assert resolve(0, "::ffff:203.0.113.7") == ip_address("203.0.113.7")


@pytest.mark.parametrize("remote", [None, "", "unknown", "127.1", "203.0.113.7:5000"])
def test_no_proxy_bad_remote_addr_is_none(remote):
    assert resolve(0, remote) is None


@pytest.mark.parametrize("trusted, header, expected", [
    (1, "203.0.113.7", "203.0.113.7"),
    (1, "198.51.100.66, 203.0.113.7", "203.0.113.7"),  # the client wrote the left part itself
    (1, "198.51.100.66,203.0.113.7", "203.0.113.7"),
    (1, "[2001:db8::7]", "2001:db8::7"),
    (1, "::ffff:203.0.113.7", "203.0.113.7"),
    (2, "203.0.113.7, 127.0.0.2", "203.0.113.7"),
    (2, "198.51.100.66, 203.0.113.7, 127.0.0.2", "203.0.113.7"),
])
def test_trusted_proxies_take_nth_from_the_right(trusted, header, expected):
    assert resolve(trusted, HTTP_X_FORWARDED_FOR=header) == ip_address(expected)


def test_trusted_proxy_ignores_remote_addr_and_other_headers():
    headers = dict(SPOOFED, HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert resolve(1, "127.0.0.1", **headers) == ip_address("203.0.113.7")


@pytest.mark.parametrize("trusted, headers", [
    (1, {}),
    (1, {"HTTP_X_FORWARDED_FOR": ""}),
    (1, {"HTTP_X_REAL_IP": "203.0.113.7", "HTTP_FORWARDED": "for=203.0.113.7"}),
    (2, {"HTTP_X_FORWARDED_FOR": "203.0.113.7"}),
    (3, {"HTTP_X_FORWARDED_FOR": "203.0.113.7, 127.0.0.2"}),
])
def test_missing_or_short_header_fails_closed(trusted, headers):
    assert resolve(trusted, **headers) is None


@pytest.mark.parametrize("value", [
    "unknown", "203.0.113.7:5678", "[2001:db8::7]:443", "127.1", "0x7f.0.0.1", "203.0.113.0/24", "_hidden", "",
])
def test_garbage_forwarded_value_is_none(value):
    assert resolve(1, HTTP_X_FORWARDED_FOR=f"198.51.100.66, {value}") is None


def test_negative_proxy_count_is_an_error():
    with pytest.raises(ValueError):
        resolve_client_ip({"REMOTE_ADDR": "127.0.0.1"}, -1)


@pytest.mark.parametrize("text, expected", [(None, 0), ("", 0), ("  ", 0), ("0", 0), ("1", 1), (" 2 ", 2), ("10", 10)])
def test_parse_trusted_proxies(text, expected):
    assert parse_trusted_proxies(text) == expected


@pytest.mark.parametrize("text", ["abc", "-1", "11", "1.5", "01", "+1", "1e1", "２", "0x1", "1 2"])
def test_parse_trusted_proxies_rejects(text):
    with pytest.raises(ValueError) as info:
        parse_trusted_proxies(text)
    assert str(info.value) == f"PBNSEC_TRUSTED_PROXIES must be a whole number from 0 to 10, got {text!r}"

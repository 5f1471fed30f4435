"""Tests for pbnsec.clientip: which IP made a request, and how many proxies to trust."""

from ipaddress import ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbnsec.core.clientip import (
    Proxies,
    parse_proxy_addrs,
    parse_trusted_proxies,
    resolve_client_ip,
    trace_client_ip,
)

SPOOFED = {
    "HTTP_X_FORWARDED_FOR": "198.51.100.66",
    "HTTP_FORWARDED": "for=198.51.100.66",
    "HTTP_X_REAL_IP": "198.51.100.66",
    "HTTP_CF_CONNECTING_IP": "198.51.100.66",
    "HTTP_TRUE_CLIENT_IP": "198.51.100.66",
    "HTTP_X_CLIENT_IP": "198.51.100.66",
}


def environ_of(remote="127.0.0.1", **headers):
    environ = {"REMOTE_ADDR": remote} if remote is not None else {}
    environ.update(headers)
    return environ


def resolve(trusted, remote="127.0.0.1", proxies=None, **headers):
    if proxies is not None:
        proxies = Proxies(trusted, tuple(ip_network(n) for n in proxies))
    return resolve_client_ip(environ_of(remote, **headers), proxies or Proxies(trusted))


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
    (2, {"HTTP_X_FORWARDED_FOR": "127.0.0.2"}),  # the second proxy's value is itself a proxy, then nothing
    (3, {"HTTP_X_FORWARDED_FOR": "127.0.0.3, 127.0.0.2"}),
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
        Proxies(-1)


@pytest.mark.parametrize("remote", ["198.51.100.9", "2001:db8::9", "192.168.1.20"])
def test_a_peer_that_is_not_a_known_proxy_is_the_client(remote):
    # A forged header sent straight to the app port says nothing: the socket peer is who connected.
    assert resolve(1, remote, HTTP_X_FORWARDED_FOR="203.0.113.7") == ip_address(remote)
    assert resolve(2, remote, HTTP_X_FORWARDED_FOR="203.0.113.7, 127.0.0.1") == ip_address(remote)


def test_the_walk_stops_at_the_first_address_that_is_not_a_proxy():
    # Count 3, but only one proxy (loopback) stands in front: its value is the client, not the forged ones.
    assert resolve(3, HTTP_X_FORWARDED_FOR="198.51.100.66, 127.0.0.9, 203.0.113.7") == ip_address("203.0.113.7")


def test_the_walk_takes_at_most_n_hops_even_through_proxy_addresses():
    # A loopback client behind one loopback proxy is the client, not another proxy to walk past.
    assert resolve(1, HTTP_X_FORWARDED_FOR="198.51.100.66, 127.0.0.5") == ip_address("127.0.0.5")


def test_configured_proxy_addresses_replace_loopback():
    lan_proxy = ["192.0.2.10/32"]
    assert resolve(1, "192.0.2.10", proxies=lan_proxy, HTTP_X_FORWARDED_FOR="203.0.113.7") == ip_address("203.0.113.7")
    # Loopback is no longer a proxy once the addresses are configured.
    assert resolve(1, "127.0.0.1", proxies=lan_proxy, HTTP_X_FORWARDED_FOR="203.0.113.7") == ip_address("127.0.0.1")


def test_ipv6_proxy_and_client():
    assert resolve(1, "::1", HTTP_X_FORWARDED_FOR="2001:db8::7") == ip_address("2001:db8::7")


@given(st.ip_addresses(), st.text(max_size=60))
def test_without_proxies_the_peer_is_always_the_client(peer, header):
    found = resolve_client_ip({"REMOTE_ADDR": str(peer), "HTTP_X_FORWARDED_FOR": header}, Proxies(0))
    expected = peer.ipv4_mapped if peer.version == 6 and peer.ipv4_mapped else peer
    assert found == expected


@given(st.ip_addresses(v=4).filter(lambda ip: not ip.is_loopback), st.text(max_size=60), st.integers(1, 10))
def test_a_header_from_a_peer_that_is_not_a_proxy_never_counts(peer, header, count):
    assert resolve_client_ip({"REMOTE_ADDR": str(peer), "HTTP_X_FORWARDED_FOR": header}, Proxies(count)) == peer


@given(st.lists(st.ip_addresses(v=4), min_size=1, max_size=4), st.integers(1, 3))
def test_behind_loopback_proxies_the_walk_matches_the_rule(chain, count):
    """Step left from the proxy while the address in hand is a proxy, at most count steps; missing -> unknown."""
    found = resolve_client_ip({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": ", ".join(map(str, chain))},
                              Proxies(count))
    expected = None
    for step in range(1, count + 1):
        if step > len(chain):
            break
        if step == count or not chain[-step].is_loopback:
            expected = chain[-step]
            break
    assert found == expected


@pytest.mark.parametrize("count, remote, headers, problem, hint", [
    (1, "127.0.0.1", {}, "no_header", "--no-clear-untrusted-proxy-headers"),
    (2, "127.0.0.1", {"HTTP_X_FORWARDED_FOR": "127.0.0.2"}, "short_header", "PBNSEC_TRUSTED_PROXIES=2"),
    (1, "127.0.0.1", {"HTTP_X_FORWARDED_FOR": "unknown"}, "bad_value", "'unknown'"),
    (1, None, {}, "no_peer", "socket address"),
])
def test_trace_says_why_the_ip_is_unknown(count, remote, headers, problem, hint):
    trace = trace_client_ip(environ_of(remote, **headers), Proxies(count))
    assert (trace.client_ip, trace.problem) == (None, problem)
    assert hint in trace.hint


def test_trace_hints_at_a_missing_proxy_setting():
    trace = trace_client_ip(environ_of("127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7"), Proxies(0))
    assert trace.client_ip == ip_address("127.0.0.1")
    assert "set PBNSEC_TRUSTED_PROXIES=1" in trace.hint.replace("Set", "set")


def test_trace_hints_at_a_direct_connection_past_the_proxy():
    trace = trace_client_ip(environ_of("198.51.100.9", HTTP_X_FORWARDED_FOR="203.0.113.7"), Proxies(1))
    assert trace.client_ip == ip_address("198.51.100.9")
    assert "not a known proxy" in trace.hint


def test_trace_of_a_good_setup_has_no_hint():
    trace = trace_client_ip(environ_of("127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7"), Proxies(1))
    assert (trace.client_ip, trace.hint, trace.steps) == (ip_address("203.0.113.7"), None, ("127.0.0.1", "203.0.113.7"))
    direct = trace_client_ip(environ_of("203.0.113.7"), Proxies(0))
    assert (direct.client_ip, direct.hint) == (ip_address("203.0.113.7"), None)


@pytest.mark.parametrize("text, expected", [
    (None, None), ("", None), ("127.0.0.1", ("127.0.0.1/32",)), ("10.0.0.0/8, ::1", ("10.0.0.0/8", "::1/128")),
])
def test_parse_proxy_addrs(text, expected):
    parsed = parse_proxy_addrs(text)
    assert (None if parsed is None else tuple(map(str, parsed))) == expected


@pytest.mark.parametrize("text, message", [
    ("10.0.0.5/8", "did you mean 10.0.0.0/8"), ("127.1", "ambiguous"), ("127.0.0.1,", "empty item"),
    ("proxy.local", "not a valid IP"),
])
def test_parse_proxy_addrs_rejects(text, message):
    with pytest.raises(ValueError, match="PBNSEC_TRUSTED_PROXY_ADDRS") as info:
        parse_proxy_addrs(text)
    assert message in str(info.value)


@pytest.mark.parametrize("text, expected", [(None, 0), ("", 0), ("  ", 0), ("0", 0), ("1", 1), (" 2 ", 2), ("10", 10)])
def test_parse_trusted_proxies(text, expected):
    assert parse_trusted_proxies(text) == expected


@pytest.mark.parametrize("text", ["abc", "-1", "11", "1.5", "01", "+1", "1e1", "２", "0x1", "1 2"])
def test_parse_trusted_proxies_rejects(text):
    with pytest.raises(ValueError) as info:
        parse_trusted_proxies(text)
    assert str(info.value) == f"PBNSEC_TRUSTED_PROXIES must be a whole number from 0 to 10, got {text!r}"


def test_a_walk_that_stops_short_of_the_proxy_count_is_pointed_out():
    # Two proxies configured, but the load balancer (10.0.5.2) was never listed: everyone would look like it.
    trace = trace_client_ip(environ_of("127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.99, 10.0.5.2"), Proxies(2))
    assert str(trace.client_ip) == "10.0.5.2"
    assert "only 1 proxy was walked: 10.0.5.2 is not in PBNSEC_TRUSTED_PROXY_ADDRS" in trace.hint


@pytest.mark.parametrize("text", ["0.0.0.0/1", "10.0.0.0/7", "2000::/3"])
def test_proxy_addresses_cannot_be_half_the_internet(text):
    with pytest.raises(ValueError, match="too broad for proxy addresses"):
        parse_proxy_addrs(f"127.0.0.1,{text}")

"""Tests for pbnsec.iprules: parsing, normalising and matching allowlist entries."""

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbnsec.core.iprules import (
    MAX_ENTRY_LENGTH,
    EntryError,
    NetworkMatcher,
    client_address,
    ipv6_privacy_network,
    parse_address,
    parse_entry,
)

AMBIGUOUS = ["010.0.0.1", "192.0.2.01", "0x7f.1", "0x7f.0.0.1", "127.1", "127.0.1", "2130706433", "1.2.3.4.5",
             "::ffff:010.0.0.1", "64:ff9b::0x7f.0.0.1"]


def rejection(text, parse=parse_entry):
    with pytest.raises(EntryError) as info:
        parse(text)
    assert str(info.value) == info.value.message
    return info.value


def normalised(network):
    """Independent restatement of the normalisation rule: /96 and longer inside ::ffff:0:0/96 become IPv4."""
    if network.version == 6 and network.prefixlen >= 96 and network.network_address.ipv4_mapped:
        return IPv4Network((network.network_address.ipv4_mapped, network.prefixlen - 96))
    return network


def plain(ip):
    return ip.ipv4_mapped or ip if ip.version == 6 else ip


@pytest.mark.parametrize("text, canonical", [
    ("192.0.2.1", "192.0.2.1/32"),
    ("  192.0.2.0/24\n", "192.0.2.0/24"),
    ("\u00a0198.51.100.7\u3000", "198.51.100.7/32"),  # pasted non-breaking spaces around the entry are fine
    ("203.0.113.0/32", "203.0.113.0/32"),
    ("10.0.0.0/8", "10.0.0.0/8"),
    ("0.0.0.0", "0.0.0.0/32"),
    ("255.255.255.255", "255.255.255.255/32"),
    ("2001:DB8::1", "2001:db8::1/128"),
    ("2001:0DB8:0000:0000::/64", "2001:db8::/64"),
    ("2001:db8:0:0:0:0:0:1/128", "2001:db8::1/128"),
    ("::1", "::1/128"),
    ("fe80::/10", "fe80::/10"),
    ("::ffff:10.0.0.1", "10.0.0.1/32"),
    ("::FFFF:c000:0201", "192.0.2.1/32"),
    ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ("::ffff:192.0.2.128/121", "192.0.2.128/25"),
    ("64:ff9b::192.0.2.1", "64:ff9b::c000:201/128"),
])
def test_accepts_and_normalises(text, canonical):
    network = parse_entry(text)
    assert str(network) == canonical
    assert parse_entry(canonical) == network


@pytest.mark.parametrize("text, fragment", [
    ("", "Enter an IP address or a network such as 192.0.2.0/24."),
    (" \t\n", "Enter an IP address or a network such as 192.0.2.0/24."),
    ("1" * (MAX_ENTRY_LENGTH + 1), "That is too long to be an IP address or network."),
    ("１２７.0.0.1", "not plain ASCII"),
    ("192.0.2.1\u200b", "not plain ASCII"),
    ("192.0.2.1 192.0.2.2", "spaces"),
    ("192.0.2.0/ 24", "spaces"),
    ("192.0.2.1\x00", "control characters"),
    ("192.0.2.0/024", "prefix length"),
    ("192.0.2.0/+24", "prefix length"),
    ("192.0.2.0/", "prefix length"),
    ("192.0.2.0/24/24", "prefix length"),
    ("192.0.2.0/33", "0-32"),
    ("2001:db8::/129", "0-128"),
    ("192.0.2.0/255.255.255.0", "netmask"),
    ("2001:db8::/ffff:ffff::", "netmask"),
    ("256.1.1.1", "each part must be 0-255"),
    ("192.0.2.999/24", "each part must be 0-255"),
    ("::ffff:192.0.2.256", "each part must be 0-255"),
    ("fe80::1%eth0", "zone id (the %eth0 part)"),
    ("fe80::1%eth0/64", "zone id"),
    ("0.0.0.0/0", "every address"),
    ("192.0.2.1/0", "every address"),
    ("::/0", "every address"),
    ("2001:db8::/0", "every address"),
    ("::ffff:0:0/96", "every address"),
    ("::ffff:0.0.0.0/96", "every address"),
    ("example.com", "not a valid IP address"),
    ("[2001:db8::1]", "not a valid IP address"),
    ("192.0.2.1:443", "not a valid IP address"),
    ("2001:db8:::1", "not a valid IP address"),
    ("192.0.2.", "not a valid IP address"),
    ("/24", "not a valid IP address"),
] + [(text, "ambiguous") for text in AMBIGUOUS])
def test_rejects_with_specific_message(text, fragment):
    error = rejection(text)
    assert fragment in error.message
    assert error.suggestion is None
    shown = text.strip()
    if shown and len(shown) <= MAX_ENTRY_LENGTH:
        assert (shown if shown.isprintable() else repr(shown)) in error.message


@pytest.mark.parametrize("text", AMBIGUOUS)
def test_ambiguous_message_says_how_to_write_it(text):
    assert "four decimal numbers" in rejection(text).message


@pytest.mark.parametrize("text, suggestion", [
    ("10.0.0.5/24", "10.0.0.0/24"),
    ("192.0.2.255/25", "192.0.2.128/25"),
    ("2001:DB8::1/32", "2001:db8::/32"),
    ("::ffff:10.0.0.5/104", "10.0.0.0/8"),
    ("::ffff:10.0.0.0/64", "::/64"),  # shorter than /96 is plain IPv6, not IPv4-mapped
    ("::ffff:0:0/95", "::fffe:0:0/95"),
])
def test_host_bits_suggest_the_network(text, suggestion):
    error = rejection(text)
    assert error.message == f"{text} has host bits set: did you mean {suggestion}?"
    assert error.suggestion == suggestion
    assert str(parse_entry(suggestion)) == suggestion


def test_entry_error_is_a_value_error():
    assert issubclass(EntryError, ValueError)


@pytest.mark.parametrize("text, expected", [
    ("192.0.2.1", "192.0.2.1"),
    (" 2001:DB8::1 ", "2001:db8::1"),
    ("::ffff:192.0.2.1", "192.0.2.1"),
])
def test_parse_address(text, expected):
    assert parse_address(text) == ip_address(expected)


@pytest.mark.parametrize("text, fragment", [
    ("192.0.2.0/24", "Enter a single address, not a network"),
    ("192.0.2.1/32", "Enter a single address, not a network"),
    ("127.1", "ambiguous"),
    ("fe80::1%eth0", "zone id"),
    ("", "Enter an IP address"),
])
def test_parse_address_rejects(text, fragment):
    assert fragment in rejection(text, parse_address).message


@pytest.mark.parametrize("text, expected", [
    ("192.0.2.1", "192.0.2.1"),
    (" 203.0.113.9\t", "203.0.113.9"),
    ("::1", "::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("fe80::1%eth0", "fe80::1"),
    ("[fe80::1%25eth0]", "fe80::1"),
    ("::ffff:192.0.2.1", "192.0.2.1"),
    ("2001:DB8::A", "2001:db8::a"),
])
def test_client_address_accepts(text, expected):
    assert client_address(text) == ip_address(expected)


@pytest.mark.parametrize("text", [
    None, "", "  ", "unknown", "127.1", "010.0.0.1", "2130706433", "192.0.2.1:8080", "[192.0.2.1]",
    "[2001:db8::1]:443", "192.0.2.0/24", "::1/128", "１２７.0.0.1", "192.0.2.1\x00", "_hidden", "::ffff:010.0.0.1",
])
def test_client_address_rejects(text):
    assert client_address(text) is None


def test_ipv6_privacy_network():
    assert ipv6_privacy_network(ip_address("2001:db8:1:2:3:4:5:6")) == IPv6Network("2001:db8:1:2::/64")
    assert ipv6_privacy_network(ip_address("192.0.2.1")) is None
    assert ipv6_privacy_network(ip_address("::ffff:192.0.2.1")) is None


def matcher(*entries):
    return NetworkMatcher((parse_entry(entry), entry) for entry in entries)


def test_matcher_ipv4_and_ipv6():
    m = matcher("192.0.2.0/24", "192.0.2.7", "2001:db8::/32", "2001:db8:1::/48")
    assert m.match(ip_address("192.0.2.7")) == ["192.0.2.7", "192.0.2.0/24"]
    assert m.match(ip_address("192.0.2.8")) == ["192.0.2.0/24"]
    assert m.match(ip_address("198.51.100.1")) == []
    assert m.match(ip_address("2001:db8:1::5")) == ["2001:db8:1::/48", "2001:db8::/32"]
    assert m.match(ip_address("2001:db9::1")) == []
    assert m.match(None) == []
    assert m.covers(ip_address("192.0.2.200"))
    assert not m.covers(ip_address("203.0.113.1"))
    assert not m.covers(None)
    assert len(m) == 4


def test_matcher_ipv4_mapped_addresses_match_as_ipv4():
    m = matcher("192.0.2.0/24")
    assert m.match(ip_address("::ffff:192.0.2.1")) == ["192.0.2.0/24"]
    assert not m.covers(ip_address("::ffff:198.51.100.1"))


def test_matcher_unmaps_networks_it_is_given():
    m = NetworkMatcher([(IPv6Network("::ffff:192.0.2.0/120"), "mapped")])
    assert m.match(ip_address("192.0.2.9")) == ["mapped"]


def test_matcher_never_crosses_ipv4_and_ipv6():
    # Same low 32 bits in both families: the integer index must still keep them apart.
    m = matcher("192.0.2.0/24", "::c000:200/120", "2001:db8::/32")
    assert m.match(ip_address("192.0.2.1")) == ["192.0.2.0/24"]
    assert m.match(ip_address("::c000:201")) == ["::c000:200/120"]
    assert m.match(ip_address("::ffff:192.0.2.1")) == ["192.0.2.0/24"]


def test_matcher_keeps_every_value_for_a_network():
    m = NetworkMatcher([(parse_entry("192.0.2.0/24"), "a")])
    m.add(parse_entry("192.0.2.0/24"), "b")
    assert m.match(ip_address("192.0.2.1")) == ["a", "b"]
    assert len(m) == 2
    assert len(NetworkMatcher()) == 0


@st.composite
def networks(draw):
    ip = draw(st.ip_addresses() | st.ip_addresses(network="::ffff:0:0/96"))
    prefix = draw(st.integers(0, ip.max_prefixlen))
    return ip_network((ip, prefix), strict=False)


@given(networks())
def test_property_real_networks_round_trip(network):
    try:
        parsed = parse_entry(str(network))
    except EntryError as error:
        assert "every address" in error.message
        assert normalised(network).prefixlen == 0
    else:
        assert parsed == normalised(network)
        assert parse_entry(str(parsed)) == parsed


@given(st.ip_addresses() | st.ip_addresses(network="::ffff:0:0/96"))
def test_property_every_address_matches_its_own_entry(ip):
    entry = parse_entry(str(ip))
    assert entry.num_addresses == 1
    assert NetworkMatcher([(entry, "me")]).match(ip) == ["me"]
    assert parse_address(str(ip)) in entry
    assert client_address(str(ip)) in entry


@given(st.text() | st.text(alphabet="0123456789abcdefxX.:/%[] \t", max_size=40))
def test_property_any_text_parses_or_raises_entry_error(text):
    try:
        network = parse_entry(text)
    except EntryError as error:
        assert error.message
    else:
        assert isinstance(network, (IPv4Network, IPv6Network))
        assert parse_entry(str(network)) == network
    address = client_address(text)
    assert address is None or parse_address(str(address)) == address


@given(st.lists(networks(), max_size=30), st.lists(st.ip_addresses(), max_size=10))
def test_property_matcher_agrees_with_linear_scan(nets, extra_ips):
    m = NetworkMatcher((net, i) for i, net in enumerate(nets))
    # Query the network addresses themselves too, so that hits are common.
    for ip in [net.network_address for net in nets] + extra_ips + [None]:
        expected = [] if ip is None else [
            i for i, net in enumerate(nets)
            if normalised(net).version == plain(ip).version and plain(ip) in normalised(net)
        ]
        assert sorted(m.match(ip)) == expected
        assert m.covers(ip) == bool(expected)
    assert len(m) == len(nets)


@pytest.mark.parametrize("text, broad", [
    ("10.0.0.0/8", False), ("8.0.0.0/7", True), ("0.0.0.0/1", True), ("2001:db8::/32", False),
    ("2000::/3", True), ("2001:db8::/31", True), ("192.0.2.1/32", False),
])
def test_broad_entries_are_those_shorter_than_the_limit(text, broad):
    from pbnsec.core.iprules import is_broad
    assert is_broad(ip_network(text)) is broad
    assert is_broad(ip_network(text), {4: 0, 6: 0}) is False


@pytest.mark.parametrize("texts, version", [
    (["0.0.0.0/1", "128.0.0.0/1"], 4),
    (["::/1", "8000::/1"], 6),
    (["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1", "192.0.2.0/24"], 4),
    (["0.0.0.0/1", "128.0.0.0/2"], None),
    (["0.0.0.0/1", "8000::/1"], None),
    ([], None),
])
def test_sets_of_entries_that_together_cover_everything(texts, version):
    from pbnsec.core.iprules import covered_version
    assert covered_version([ip_network(t) for t in texts]) == version


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=30))
def test_merged_size_counts_what_the_networks_cover_together(starts):
    """The integer union the allowlist checks use agrees with the standard library's collapse_addresses."""
    from ipaddress import IPv4Network

    from pbnsec.core.iprules import address_range, merged_size, union_size

    networks = [IPv4Network((start >> (32 - prefix) << (32 - prefix), prefix)) for start, prefix in starts]
    assert merged_size(address_range(n) for n in networks) == union_size(networks, 4)

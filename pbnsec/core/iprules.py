"""Parse, normalise and match IP allowlist entries (standard library only)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    collapse_addresses,
    ip_network,
)
from typing import Generic, TypeVar

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
T = TypeVar("T")

MAX_ENTRY_LENGTH = 64

_BLANK = "Enter an IP address or a network such as 192.0.2.0/24."
_TOO_LONG = "That is too long to be an IP address or network."
_DECIMAL = re.compile(r"[0-9]+")
_PREFIX = re.compile(r"0|[1-9][0-9]*")
# Forms that inet_aton() and browsers read as IPv4 (hex, octal, 1-3 or 5+ parts) but people misread.
_NUMERIC = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]*|[0-9]+))*")


class EntryError(ValueError):
    """An allowlist entry that cannot be accepted, with a message fit to show the user."""

    def __init__(self, message: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.suggestion = suggestion


def parse_entry(text: str) -> IPNetwork:
    """Parse an address or CIDR network strictly and return it in canonical form."""
    shown = _clean(text)
    addr_text, slash, prefix_text = shown.partition("/")
    ip = _parse_ip(addr_text, shown)
    prefix = _parse_prefix(prefix_text, ip, shown) if slash else ip.max_prefixlen
    raw = ip_network((ip, prefix), strict=False)
    network = _unmap_network(raw)
    if network.prefixlen == 0:
        # A /0 (or ::ffff:0:0/96, all of IPv4) would make the allowlist pointless.
        scope = " (all of IPv4)" if raw.version != network.version else ""
        raise EntryError(f"{shown} would allow every address{scope}: enter a single address or a smaller network.")
    if raw.network_address != ip:
        suggestion = str(network)
        raise EntryError(f"{shown} has host bits set: did you mean {suggestion}?", suggestion)
    return network


# Entries broader than these prefix lengths need an explicit confirmation (PBNSEC_BROAD_IPV4_PREFIX / _IPV6_).
DEFAULT_BROADEST = {4: 8, 6: 32}


def is_broad(network: IPNetwork, broadest: dict[int, int] = DEFAULT_BROADEST) -> bool:
    """Whether a network is broader than the limit for its IP version (and so needs a confirmation)."""
    return network.prefixlen < broadest[network.version]


def union_size(networks: Iterable[IPNetwork], version: int) -> int:
    """How many addresses of one IP version the networks cover together (overlaps counted once)."""
    return sum(n.num_addresses for n in collapse_addresses(n for n in networks if n.version == version))


def merged_size(ranges: Iterable[tuple[int, int]]) -> int:
    """How many addresses (first, last) ranges of one IP version cover together, overlaps counted once: a sort and
    one pass over plain integers (an allowlist of 100,000 entries takes milliseconds)."""
    total, current = 0, None
    for first, last in sorted(ranges):
        if current is not None and first <= current[1] + 1:
            current = (current[0], max(current[1], last))
            continue
        if current is not None:
            total += current[1] - current[0] + 1
        current = (first, last)
    return total + (current[1] - current[0] + 1 if current is not None else 0)


def address_range(network: IPNetwork) -> tuple[int, int]:
    """A network as the (first, last) addresses it covers, as integers."""
    first = int(network.network_address)
    return first, first + network.num_addresses - 1


def covered_version(networks: Iterable[IPNetwork]) -> int | None:
    """4 or 6 when the networks together cover every address of that IP version, else None."""
    for version in (4, 6):
        merged = list(collapse_addresses(n for n in networks if n.version == version))
        if merged and merged[0].prefixlen == 0:
            return version
    return None


def parse_address(text: str) -> IPAddress:
    """Parse a single address with the same strict rules as parse_entry."""
    shown = _clean(text)
    if "/" in shown:
        raise EntryError(f"Enter a single address, not a network ({shown} contains a /).")
    return unmap(_parse_ip(shown, shown))


def client_address(text: str | None) -> IPAddress | None:
    """Parse an address as a server sees it, returning None for anything unusable."""
    if not isinstance(text, str):
        return None
    return _client_address(text)


@lru_cache(maxsize=4096)  # a server sees the same few addresses (its proxy's, its clients') on every request
def _client_address(text: str) -> IPAddress | None:
    s = text.strip()
    bracketed = s.startswith("[") and s.endswith("]")
    if bracketed:
        s = s[1:-1]
    if ":" in s:
        # The zone says which local interface saw the packet; it is not part of who sent it.
        s = s.partition("%")[0]
    elif bracketed:
        return None
    try:
        return unmap(_parse_ip(_clean(s), s))
    except EntryError:
        return None


def ipv6_privacy_network(ip: IPAddress) -> IPv6Network | None:
    """Return the /64 holding an IPv6 address, or None for IPv4 (including IPv4-mapped)."""
    ip = unmap(ip)
    if ip.version == 4:
        return None
    return IPv6Network((ip, 64), strict=False)


class NetworkMatcher(Generic[T]):
    """Find every value whose network contains an address, one dict probe per prefix length in use.

    Every request decides on it: each practice's compiled policy (domain.policy) holds its allowlist in one. The
    indexed database probe (domain.access.entries_holding) answers where a decision is worked out afresh: sign-in,
    lockout checks, why, impact.
    """

    def __init__(self, items: Iterable[tuple[IPNetwork, T]] = ()) -> None:
        # (version, prefixlen) -> {network address >> host bit count: values}
        self._tables: dict[tuple[int, int], dict[int, list[T]]] = {}
        # Longest first, so match() lists the most specific networks first.
        self._prefixes: dict[int, list[int]] = {4: [], 6: []}
        self._size = 0
        for network, value in items:
            self.add(network, value)

    def add(self, network: IPNetwork, value: T) -> None:
        """Add a value for a network."""
        network = _unmap_network(network)
        key = (network.version, network.prefixlen)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = {}
            self._prefixes[network.version].append(network.prefixlen)
            self._prefixes[network.version].sort(reverse=True)
        bits = int(network.network_address) >> (network.max_prefixlen - network.prefixlen)
        table.setdefault(bits, []).append(value)
        self._size += 1

    def match(self, ip: IPAddress | None) -> list[T]:
        """Return every value whose network contains ip, most specific network first."""
        if ip is None:
            return []
        return [value for values in self._probe(ip) for value in values]

    def covers(self, ip: IPAddress | None) -> bool:
        """Return whether any network contains ip."""
        return ip is not None and next(self._probe(ip), None) is not None

    def __len__(self) -> int:
        return self._size

    def _probe(self, ip: IPAddress) -> Iterator[list[T]]:
        ip = unmap(ip)
        bits, width = int(ip), ip.max_prefixlen
        for prefix in self._prefixes[ip.version]:
            values = self._tables[(ip.version, prefix)].get(bits >> (width - prefix))
            if values:
                yield values


def _clean(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    s = text.strip()
    if not s:
        raise EntryError(_BLANK)
    if len(s) > MAX_ENTRY_LENGTH:
        raise EntryError(_TOO_LONG)
    # int() and ipaddress accept non-ASCII digits such as full-width ones, so refuse them up front.
    if not s.isascii():
        raise EntryError(
            f"{_show(s)} contains characters that are not plain ASCII, such as full-width digits: "
            "type it using ordinary characters."
        )
    if any(not "!" <= c <= "~" for c in s):
        raise EntryError(
            f"{_show(s)} contains spaces or control characters: enter one address or network at a time."
        )
    return s


def _show(s: str) -> str:
    return s if s.isprintable() else repr(s)


def _parse_ip(text: str, shown: str) -> IPAddress:
    if ":" in text:
        return _parse_ipv6(text, shown)
    return _parse_ipv4(text, shown)


def _parse_ipv4(text: str, shown: str) -> IPv4Address:
    parts = text.split(".")
    ambiguous = EntryError(
        f"{shown} is ambiguous: write the IPv4 address as four decimal numbers separated by dots, "
        "without leading zeros, such as 192.0.2.1."
    )
    if len(parts) == 4 and all(_DECIMAL.fullmatch(p) for p in parts):
        if any(len(p) > 1 and p[0] == "0" for p in parts):
            raise ambiguous
        if any(int(p) > 255 for p in parts):
            raise EntryError(f"{shown} is not a valid IPv4 address: each part must be 0-255.")
        return IPv4Address(text)
    if _NUMERIC.fullmatch(text):
        raise ambiguous
    raise EntryError(f"{shown} is not a valid IP address or network.")


def _parse_ipv6(text: str, shown: str) -> IPv6Address:
    if "%" in text:
        zone = text[text.index("%"):]
        raise EntryError(f"{shown} has a zone id (the {zone} part), which is not allowed here: remove it.")
    last = text.rpartition(":")[2]
    if "." in last:
        # ipaddress is stricter than inet_aton here already, but this gives the same clear messages.
        _parse_ipv4(last, shown)
    try:
        return IPv6Address(text)
    except ValueError:
        raise EntryError(f"{shown} is not a valid IP address or network.") from None


def _parse_prefix(text: str, ip: IPAddress, shown: str) -> int:
    if "." in text or ":" in text:
        raise EntryError(f"{shown} uses a netmask after the /: write a prefix length instead, such as /24.")
    if not _PREFIX.fullmatch(text):
        raise EntryError(f"{shown} needs a prefix length after the / written as a plain number, such as /24.")
    prefix = int(text)
    if prefix > ip.max_prefixlen:
        raise EntryError(
            f"{shown} has a prefix length of {prefix}, but an IPv{ip.version} prefix length must be "
            f"0-{ip.max_prefixlen}."
        )
    return prefix


def unmap(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it is; any other address as is."""
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _unmap_network(network: IPNetwork) -> IPNetwork:
    # From /96 on, every address in the network is IPv4-mapped, so it is really an IPv4 network.
    if network.version == 6 and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return IPv4Network((mapped, network.prefixlen - 96))
    return network

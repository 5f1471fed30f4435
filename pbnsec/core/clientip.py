"""Work out which IP address made a request, trusting only the configured proxies (pure code, no Flask)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_network

from pbnsec.core.iprules import (
    DEFAULT_BROADEST,
    EntryError,
    IPAddress,
    IPNetwork,
    client_address,
    is_broad,
    parse_entry,
)

MAX_TRUSTED_PROXIES = 10
# Where a reverse proxy usually runs: on this machine (gunicorn, uvicorn and Gitea default to the same).
LOOPBACK = (ip_network("127.0.0.0/8"), ip_network("::1/128"))

_COUNT = re.compile(r"0|[1-9][0-9]?")


@dataclass(frozen=True)
class Proxies:
    """How many reverse proxies stand in front of the app, and the addresses they connect from."""

    count: int = 0
    networks: tuple[IPNetwork, ...] = LOOPBACK

    def __post_init__(self):
        if self.count < 0:
            raise ValueError(f"the proxy count must not be negative, got {self.count}")

    def is_proxy(self, ip: IPAddress | None) -> bool:
        return ip is not None and any(ip.version == net.version and ip in net for net in self.networks)


@dataclass(frozen=True)
class Trace:
    """How the client IP of one request was worked out: what arrived, each step, and what went wrong."""

    peer: str | None  # the socket peer as the server reported it
    forwarded_for: str | None  # X-Forwarded-For exactly as received
    proxies: Proxies
    client_ip: IPAddress | None
    steps: tuple[str, ...] = field(default=())  # the addresses walked, the socket peer first
    problem: str | None = None  # why the IP is unknown: no_peer | no_header | short_header | bad_value

    @property
    def hint(self) -> str | None:
        """What to change when the setup looks wrong; None when it looks right."""
        return _hint(self)


def trace_client_ip(environ: Mapping[str, str], proxies: Proxies) -> Trace:
    """Walk X-Forwarded-For leftwards from the socket peer, only through known proxies and at most N hops.

    A peer that is not a known proxy is the client, so a header sent straight to the app port is ignored.
    Anything missing or unreadable gives an unknown IP (fail closed), never the proxy's own address.
    """
    peer_text = environ.get("REMOTE_ADDR")
    header = environ.get("HTTP_X_FORWARDED_FOR")
    current = client_address(peer_text)

    def done(client, steps, problem=None):
        return Trace(peer_text, header, proxies, client, tuple(steps), problem)

    if current is None:
        return done(None, [], "no_peer")
    steps = [str(current)]
    values = [value.strip() for value in header.split(",")] if header else []
    hops = 0
    while hops < proxies.count and proxies.is_proxy(current):
        if not values:
            return done(None, steps, "no_header" if hops == 0 else "short_header")
        value = values.pop()
        current = client_address(value)
        if current is None:
            steps.append(value)
            return done(None, steps, "bad_value")
        steps.append(str(current))
        hops += 1
    return done(current, steps)


def resolve_client_ip(environ: Mapping[str, str], proxies: Proxies) -> IPAddress | None:
    """The client IP of a request, or None when it cannot be determined."""
    return trace_client_ip(environ, proxies).client_ip


def local_reason(network: IPNetwork, proxies: Proxies) -> str | None:
    """Why allowlisting this network could let in everyone who comes through a proxy, else None."""
    if any(network.version == net.version and network.overlaps(net) for net in LOOPBACK):
        own = "127.0.0.1" if network.version == 4 else "::1"
        return (f"{network} includes this machine's own address ({own}). If people reach pbnsec through a proxy "
                f"on this machine, they all look like {own}, and this entry would let every one of them in.")
    if proxies.count and any(network.version == net.version and network.overlaps(net) for net in proxies.networks):
        return (f"{network} includes the address of your proxy (PBNSEC_TRUSTED_PROXY_ADDRS). Whoever the app "
                "cannot see past the proxy looks like it, so this entry could let everyone in.")
    return None


def parse_trusted_proxies(text: str | None) -> int:
    """Turn the PBNSEC_TRUSTED_PROXIES setting into a proxy count."""
    s = (text or "").strip()
    if not s:
        return 0
    if not _COUNT.fullmatch(s) or int(s) > MAX_TRUSTED_PROXIES:
        raise ValueError(
            f"PBNSEC_TRUSTED_PROXIES must be a whole number from 0 to {MAX_TRUSTED_PROXIES}, got {text!r}"
        )
    return int(s)


def parse_proxy_addrs(text: str | None) -> tuple[IPNetwork, ...] | None:
    """Turn PBNSEC_TRUSTED_PROXY_ADDRS into networks; None when it is not set (loopback then)."""
    s = (text or "").strip()
    if not s:
        return None
    networks = []
    for part in s.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"PBNSEC_TRUSTED_PROXY_ADDRS has an empty item: {text!r}")
        try:
            network = parse_entry(part)
        except EntryError as exc:
            raise ValueError(f"PBNSEC_TRUSTED_PROXY_ADDRS: {exc.message}") from None
        if is_broad(network):
            # A proxy is a machine or a small network of them; trusting half the Internet to forward is no setting.
            raise ValueError(f"PBNSEC_TRUSTED_PROXY_ADDRS: {network} is too broad for proxy addresses (more than a "
                             f"/{DEFAULT_BROADEST[network.version]}): list the proxies' own addresses.")
        networks.append(network)
    return tuple(networks)


def _hint(t: Trace) -> str | None:
    p = t.proxies
    settings = f"PBNSEC_TRUSTED_PROXIES={p.count}"
    if t.problem == "no_peer":
        return f"The server reported no usable socket address ({t.peer!r}): every visitor's IP is unknown."
    if t.problem == "no_header":
        return (f"The request came from the proxy {t.steps[0]} without an X-Forwarded-For header, so your IP is "
                "unknown and blocked wherever IP restrictions apply. Make the proxy set it (nginx: "
                "proxy_set_header X-Forwarded-For $remote_addr;). Behind waitress-serve, add "
                "--no-clear-untrusted-proxy-headers: without it waitress removes the header.")
    if t.problem == "short_header":
        return (f"{settings}, but X-Forwarded-For names only {len(t.steps) - 1} address(es) after the proxies: "
                "set PBNSEC_TRUSTED_PROXIES to the number of proxies really in front of pbnsec.")
    if t.problem == "bad_value":
        return (f"X-Forwarded-For holds {t.steps[-1]!r}, which is not an IP address: the proxy must send the "
                "client's address ($remote_addr in nginx).")
    peer = client_address(t.peer)
    if p.count == 0 and t.forwarded_for and peer is not None and (peer.is_loopback or peer.is_private):
        return (f"You are behind a proxy: the request came from {peer} with an X-Forwarded-For header, and with "
                "PBNSEC_TRUSTED_PROXIES=0 everyone looks like the proxy. Set PBNSEC_TRUSTED_PROXIES=1 "
                "(and PBNSEC_TRUSTED_PROXY_ADDRS if the proxy is not on this machine).")
    walked = len(t.steps) - 1
    if 0 < walked < p.count:
        return (f"{settings}, but only {walked} proxy was walked: {t.steps[-1]} is not in PBNSEC_TRUSTED_PROXY_ADDRS, "
                f"so pbnsec takes it for the client. If {t.steps[-1]} is a proxy of yours (a load balancer), add it "
                f"there; if only {walked} proxy stands in front of pbnsec, set PBNSEC_TRUSTED_PROXIES={walked}.")
    if p.count > 0 and not p.is_proxy(peer):
        listed = ", ".join(map(str, p.networks))
        return (f"{settings}, but this request came straight from {peer}, which is not a known proxy ({listed}): "
                "its X-Forwarded-For, if any, was ignored. If it is your proxy, add it to "
                "PBNSEC_TRUSTED_PROXY_ADDRS; otherwise make the app port reachable only through the proxy.")
    return None

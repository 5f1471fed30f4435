"""The proxy snippets the Protected apps screen shows, filled in for one app (pure: no Flask, no database, no files).

The templates are `deploy/gate/nginx.conf`, `deploy/gate/Caddyfile` and `deploy/gate/traefik.yml`; they name what
differs per app and per deployment with placeholders in double braces, `{{app_host}}`. A value pbnsec does not know
(PBNSEC_BASE_URL unset, the app's own address, which pbnsec never stores) becomes a marker in angle brackets that
says what to put there, so a pasted snippet fails loudly in the proxy instead of pointing at a guess.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pbnsec.core.gate import Host

# The proxies a protected app can stand behind: the name people know it by, and its snippet in deploy/gate/.
PROXY_FILES = {"nginx": ("nginx", "nginx.conf"), "caddy": ("Caddy", "Caddyfile"),
               "traefik": ("Traefik", "traefik.yml")}

# Every placeholder a snippet may hold, and the marker shown when its value is not known.
MISSING = {
    "app_host": "<the app's host>",
    "app_key": "<a name for the app: letters, digits, _ and - only>",
    "app_server_name": "<the app's host name, without its port>",
    "app_port": "<the port the app is opened at, 80 for none>",
    "app_scheme": "<https or http>",
    "pbnsec_url": "<set PBNSEC_BASE_URL>",
    "pbnsec_upstream": "<where the proxy reaches pbnsec's gate, e.g. http://127.0.0.1:8001>",
    "pbnsec_gate_address": "<the address and port of pbnsec's gate, e.g. 127.0.0.1:8001>",
    "app_upstream": "<the app's own address, e.g. http://127.0.0.1:3000>",
}
PLACEHOLDERS = tuple(MISSING)
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


@dataclass(frozen=True)
class Snippet:
    """One proxy's snippet for one app: which proxy, its text filled in, and the placeholders left as markers."""

    proxy: str
    text: str
    missing: tuple[str, ...]


def placeholders(template: str) -> list[str]:
    """The placeholder names a template uses, in order of first use."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(template)))


def fill(template: str, values: Mapping[str, str | None]) -> tuple[str, tuple[str, ...]]:
    """The template with each known placeholder replaced by its value, or by its marker when the value is None or
    empty; and the names that got a marker. One pass: a value holding `{{…}}` is never filled in again. An unknown
    name is left as it is (test_snippets checks the deploy files use known ones only)."""
    missing: list[str] = []

    def value_of(match: re.Match) -> str:
        name = match.group(1)
        if name not in MISSING:
            return match.group(0)
        value = values.get(name)
        if not value:
            missing.append(name)
            return MISSING[name]
        return value

    return _PLACEHOLDER.sub(value_of, template), tuple(dict.fromkeys(missing))


def host_values(host: Host) -> dict[str, str]:
    """An app's host as the snippets need it: `app_host` as people type it (`charts.riverside.example:8443`, what
    pbnsec decides about), `app_server_name` the name alone (nginx's server_name and Traefik's Host() compare the
    name without the port: with it they never match) and `app_port` its own port, else 80 (the port nginx listens
    on until TLS is added, when the snippet's comment says to use 443); `app_key` names the app in the proxy's
    configuration (nginx's upstream, Traefik's router), where every app needs a name of its own."""
    return {"app_host": str(host), "app_server_name": host.name, "app_port": str(host.port or 80),
            "app_key": app_key(host)}


def app_key(host: Host) -> str:
    """The app's name in proxy configuration: letters, digits, `-` and `_` only, and different for every host. A
    host name's dots become `_`; it has no empty part, so `__` never comes of one: an IPv6 literal starts `ipv6__`
    and a port ends `__8443`."""
    if host.name.startswith("["):
        key = "ipv6__" + host.name.strip("[]").replace(":", "-")
    else:
        key = host.name.replace(".", "_")
    return key if host.port is None else f"{key}__{host.port}"


def gate_address_of(listen_hosts: str, port: int) -> str:
    """Where a proxy on this machine reaches pbnsec's gate, as `host:port`: the first address PBNSEC_HOST listens
    on (a wildcard address becomes loopback) and the gate's port (PBNSEC_GATE_PORT, else PBNSEC_PORT)."""
    host = next((h.strip() for h in (listen_hosts or "").split(",") if h.strip()), "127.0.0.1")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def upstream_of(listen_hosts: str, port: int) -> str:
    """The same as a URL: http://host:port."""
    return f"http://{gate_address_of(listen_hosts, port)}"


def scheme_of(base_url: str | None) -> str:
    """The scheme apps are reached with: pbnsec's own (its sign-in cookie must reach them), else https."""
    if base_url and base_url.lower().startswith("http://"):
        return "http"
    return "https"


def snippets_for(templates: Mapping[str, str | None], values: Mapping[str, str | None]) -> list[Snippet]:
    """Each proxy's snippet filled in with `values`; a proxy whose template could not be read (None) gets a line
    saying so."""
    found = []
    for proxy, template in templates.items():
        if template is None:
            found.append(Snippet(proxy, f"# The {proxy} snippet file is missing from deploy/gate/.", ()))
            continue
        text, missing = fill(template, values)
        found.append(Snippet(proxy, text, missing))
    return found

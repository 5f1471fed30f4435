"""The gate's pure parts (no Flask, no database): the app host names pbnsec protects, the original request a
reverse proxy asks about (nginx `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`), and the return URLs a
sign-in may send a browser back to.

Everything here fails closed: what cannot be read exactly is an error, never a guess.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

MAX_HOST_LENGTH = 253
MAX_URI_LENGTH = 8192
DEFAULT_PORTS = {"http": 80, "https": 443}

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_METHOD = re.compile(r"[A-Z]{1,20}")
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]")  # spaces and ASCII control characters
_SCHEME_URL = re.compile(r"(https?)://([^/?#]*)(.*)", re.DOTALL | re.IGNORECASE)

# nginx (auth_request): the whole original URL and its method.
NGINX_HEADERS = ("X-Original-URL", "X-Original-Method")
# Caddy (forward_auth) and Traefik (ForwardAuth): the original request in parts.
FORWARDED_HEADERS = ("X-Forwarded-Method", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Uri")


class GateInputError(ValueError):
    """A host, original request or return URL that cannot be read exactly, with a message fit to show."""


@dataclass(frozen=True, order=True)
class Host:
    """An app's external host: a lower-case ASCII name (or IP literal) and a port (None: the scheme's default)."""

    name: str
    port: int | None = None

    def __str__(self) -> str:
        return self.name if self.port is None else f"{self.name}:{self.port}"

    def serves(self, other: Host, scheme: str) -> bool:
        """True when a request for `other` over `scheme` is a request for this host (ports compared after the
        scheme's default is filled in; a host stored without a port answers on the default ports)."""
        if self.name != other.name:
            return False
        port = other.port if other.port is not None else DEFAULT_PORTS[scheme]
        if self.port is None:
            return port in DEFAULT_PORTS.values()
        return self.port == port


def _visible_ascii(text: str, what: str) -> None:
    if not text.isascii():
        raise GateInputError(f"{what} holds characters outside ASCII: write an international name in its "
                             "xn-- (punycode) form.")
    if _INVISIBLE.search(text):
        raise GateInputError(f"{what} holds spaces or control characters.")


def parse_host(text: str, what: str = "The host") -> Host:
    """`charts.riverside.example`, `CHARTS.riverside.example.`, `charts.example:8443`, `10.0.0.5`, `[2001:db8::5]`
    → a Host; anything else (userinfo, paths, empty labels, Unicode, a bad port) → GateInputError."""
    text = (text or "").strip()
    if not text:
        raise GateInputError(f"{what} is empty: enter a name such as charts.example.com.")
    _visible_ascii(text, what)
    if any(c in text for c in "/\\@?#%,;"):
        raise GateInputError(f"{what} must be a host name only, such as charts.example.com (no scheme, path, user "
                             "or other characters).")
    text = text.lower()
    port = None
    if text.startswith("["):
        literal, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise GateInputError(f"{what} opens an IPv6 address with [ but never closes it.")
        try:
            name = f"[{IPv6Address(literal).compressed}]"
        except ValueError:
            raise GateInputError(f"{what} holds [{literal}], which is not an IPv6 address.") from None
        if rest:
            if not rest.startswith(":"):
                raise GateInputError(f"{what} has something after the IPv6 address that is not a port.")
            port = _port(rest[1:], what)
    else:
        name, colon, port_text = text.partition(":")
        if colon:
            port = _port(port_text, what)
        name = name[:-1] if name.endswith(".") else name
        if not name or len(name) > MAX_HOST_LENGTH:
            raise GateInputError(f"{what} is not a host name (1 to {MAX_HOST_LENGTH} characters).")
        labels = name.split(".")
        if all(label.isdigit() for label in labels):
            try:
                name = str(IPv4Address(name))
            except ValueError:
                raise GateInputError(f"{what} looks like an IPv4 address but is not one: {name}.") from None
        elif not all(_LABEL.fullmatch(label) for label in labels):
            raise GateInputError(f"{what} is not a host name: use letters, digits and hyphens between dots "
                                 "(each part 1 to 63 characters, not starting or ending with a hyphen).")
    return Host(name, port)


def _port(text: str, what: str) -> int:
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise GateInputError(f"{what} has a port that is not a number from 1 to 65535.")
    return int(text)


@dataclass(frozen=True)
class Original:
    """The request a proxy asks the gate about."""

    method: str
    scheme: str  # "http" or "https"
    host: Host
    uri: str  # path and query, from "/"

    @property
    def url(self) -> str:
        port = "" if self.host.port in (None, DEFAULT_PORTS[self.scheme]) else f":{self.host.port}"
        return f"{self.scheme}://{self.host.name}{port}{self.uri}"


def _uri(text: str) -> str:
    if not text.startswith("/") or text.startswith("//"):
        raise GateInputError("The original path must start with a single /.")
    if len(text) > MAX_URI_LENGTH:
        raise GateInputError(f"The original path is longer than {MAX_URI_LENGTH} characters.")
    _visible_ascii(text, "The original path")
    return text


def _method(text: str | None) -> str:
    method = (text or "GET").strip().upper()
    if not _METHOD.fullmatch(method):
        raise GateInputError("The original method is not an HTTP method name.")
    return method


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else value.strip()


def parse_original(headers: Mapping[str, str]) -> Original:
    """The original request from the headers the proxy sets: nginx's X-Original-URL (+ X-Original-Method), or
    X-Forwarded-Proto/-Host/-Uri (+ -Method) from Caddy and Traefik. Both kinds at once are refused: proxies pass a
    client's own headers on, and a client must not choose which of two descriptions of its request is read."""
    nginx = _header(headers, "X-Original-URL")
    forwarded = {name: _header(headers, name) for name in FORWARDED_HEADERS}
    named = [name for name in ("X-Forwarded-Host", "X-Forwarded-Uri") if forwarded[name] is not None]
    if nginx is not None and named:
        raise GateInputError(f"The proxy sent both X-Original-URL and {named[0]}: clear one kind in the proxy's "
                             "configuration (see the README, Protect your other web tools).")
    if nginx is not None:
        if _header(headers, "X-Forwarded-Method") is not None and _header(headers, "X-Original-Method") is not None:
            raise GateInputError("The proxy sent both X-Original-Method and X-Forwarded-Method.")
        scheme, host, uri = _absolute(nginx, "X-Original-URL")
        return Original(_method(_header(headers, "X-Original-Method")), scheme, host, uri)
    missing = [name for name in ("X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Uri") if not forwarded[name]]
    if len(missing) == 3:
        raise GateInputError("The proxy did not say which request it asks about: send X-Original-URL (nginx) or "
                             "X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Uri (Caddy, Traefik).")
    if missing:
        raise GateInputError(f"The proxy did not send {', '.join(missing)}.")
    scheme = forwarded["X-Forwarded-Proto"].lower()
    if "," in scheme or "," in forwarded["X-Forwarded-Host"]:
        raise GateInputError("X-Forwarded-Proto and X-Forwarded-Host must hold one value each.")
    if scheme not in DEFAULT_PORTS:
        raise GateInputError("X-Forwarded-Proto must be http or https.")
    host = parse_host(forwarded["X-Forwarded-Host"], "X-Forwarded-Host")
    return Original(_method(forwarded["X-Forwarded-Method"]), scheme, host, _uri(forwarded["X-Forwarded-Uri"]))


def _absolute(text: str, what: str) -> tuple[str, Host, str]:
    _visible_ascii(text, what)
    if "\\" in text:
        raise GateInputError(f"{what} holds a backslash.")
    match = _SCHEME_URL.fullmatch(text)
    if match is None:
        raise GateInputError(f"{what} must be an absolute http:// or https:// URL.")
    scheme, authority, rest = match.groups()
    scheme = scheme.lower()
    if "@" in authority:
        raise GateInputError(f"{what} names a user before its host; that is not accepted.")
    host = parse_host(authority, f"The host of {what}")
    if rest.startswith("#"):
        rest = ""
    if not rest or rest.startswith("?"):
        rest = "/" + rest
    rest = rest.partition("#")[0]
    return scheme, host, _uri(rest)


def parse_return_url(text: str) -> Original:
    """A URL sign-in may send the browser back to, read strictly (absolute http/https, no user part, no
    backslash, ASCII only); whether its host is a protected app is the caller's question. Method is GET."""
    scheme, host, uri = _absolute((text or "").strip(), "The return URL")
    return Original("GET", scheme, host, uri)

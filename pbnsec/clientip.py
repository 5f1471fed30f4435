"""Work out which IP address made a request, trusting only the configured proxies."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .iprules import IPAddress, client_address

MAX_TRUSTED_PROXIES = 10

_COUNT = re.compile(r"0|[1-9][0-9]?")


def resolve_client_ip(environ: Mapping[str, str], trusted_proxies: int) -> IPAddress | None:
    """Return the client address from REMOTE_ADDR or, behind N proxies, the Nth X-Forwarded-For value from the right."""
    if trusted_proxies < 0:
        raise ValueError(f"trusted_proxies must not be negative, got {trusted_proxies}")
    if trusted_proxies == 0:
        # Without a proxy every forwarding header is written by the client, so none can be believed.
        return client_address(environ.get("REMOTE_ADDR"))
    header = environ.get("HTTP_X_FORWARDED_FOR")
    if not header:
        return None
    # Each trusted proxy appends one value; anything further left was supplied by the client.
    values = [value.strip() for value in header.split(",")]
    if len(values) < trusted_proxies:
        # Fail closed: the request did not pass through the proxies we were told about.
        return None
    return client_address(values[-trusted_proxies])


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

"""How many password guesses an account, an address and the two together may make (sign-in and password change).

Failures from addresses an account's practices let in (its offices, its approved grants) are counted apart from
failures elsewhere, so strangers guessing from outside cannot lock the real user out at the office.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import IPv6Network

from pbnsec.domain import ratelimit
from pbnsec.models import AuditEvent, utcnow

WINDOW = timedelta(minutes=15)
PER_ACCOUNT_AND_IP = 5
PER_IP = 20
PER_ACCOUNT = 50  # per account from its offices, and again per account from everywhere else


def ip_key(ip) -> str:
    """The address a limit counts under: IPv6 clients by their /64, since one host holds a whole /64."""
    if ip is None:
        return "unknown"
    if ip.version == 6:
        return str(IPv6Network((ip, 64), strict=False))
    return str(ip)


def limits(email: str, ip, office: bool) -> list[tuple[str, int]]:
    where = "office" if office else "elsewhere"
    return [(f"login-account-ip:{email}:{ip_key(ip)}", PER_ACCOUNT_AND_IP),
            (f"login-ip:{ip_key(ip)}", PER_IP),
            (f"login-account-{where}:{email}", PER_ACCOUNT)]


@dataclass
class Attempt:
    """One counted password check: refused (wait > 0), or counted until it turns out right."""

    email: str
    ip: object
    wait: int = 0
    hits: list[int] = field(default_factory=list)

    def succeeded(self) -> None:
        """The password was right: this attempt does not count, and the account's guesses from here start over."""
        ratelimit.release(self.hits)
        ratelimit.clear(f"login-account-ip:{self.email}:{ip_key(self.ip)}")

    def not_checked(self) -> None:
        """No password was checked after all (the input was refused first): take the count back, nothing more."""
        ratelimit.release(self.hits)

    @property
    def wait_text(self) -> str:
        minutes = max(1, round(self.wait / 60))
        return f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."


FAMILIAR_FOR = timedelta(days=30)


def familiar(email: str, ip) -> bool:
    """Whether the account signed in successfully from this very address lately (an indexed audit lookup)."""
    if not email or ip is None:
        return False
    return AuditEvent.select().where(
        (AuditEvent.action == "login_allowed") & (AuditEvent.actor_label == email)
        & (AuditEvent.actor_ip == str(ip)) & (AuditEvent.at > utcnow() - FAMILIAR_FOR)).exists()


def begin(email: str, ip, from_office: bool) -> Attempt:
    """Count a password check before it is made (so parallel guesses cannot exceed the limit), or refuse it.

    Guesses from the account's own places are counted apart from guesses elsewhere: `from_office` (an allowlist
    entry or grant of one of its practices lets this IP in, AccessOverview.from_office) or an address it signed
    in from lately, which covers practices without IP restrictions too.
    """
    own_place = from_office or familiar(email, ip)
    wait, hits = ratelimit.acquire(limits(email, ip, own_place), WINDOW)
    return Attempt(email, ip, wait, hits)

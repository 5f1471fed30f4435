"""The access decision: may this user work in this practice from this IP? Pure code, no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, NamedTuple

from pbnsec.core.iprules import IPAddress, IPNetwork, unmap
from pbnsec.core.windows import Hours

NOT_REQUESTED = "not_requested"


class Subject(NamedTuple):
    """Who is being decided about (a tuple: made on every request)."""

    user_id: int
    role_id: int


@dataclass(frozen=True)
class Settings:
    """A practice's IP restrictions, and its Time Windows (`hours`, independent of them)."""

    enforced: bool = False
    everyone: bool = True
    role_ids: frozenset[int] = frozenset()
    user_ids: frozenset[int] = frozenset()
    hours: Hours = Hours()

    def applies_to(self, user: Subject) -> bool:
        return self.everyone or user.role_id in self.role_ids or user.user_id in self.user_ids


@dataclass(frozen=True)
class Rule:
    """An allowlist entry or a user grant, reduced to what the decision needs."""

    network: IPNetwork
    active: bool = True
    expires_at: datetime | None = None
    ref: object = None  # the entry or grant it came from, for the caller's messages


@dataclass(frozen=True)
class Allowed:
    reason: str  # restrictions_off | not_in_scope | allowlist_entry | user_grant
    rule: Rule | None = None
    allowed = True


@dataclass(frozen=True)
class Blocked:
    reason: str  # ip_not_approved | ip_unknown | outside_hours
    request_status: str = NOT_REQUESTED
    lapsed: Rule | None = None  # a grant that held this IP but has expired (the user may ask again)
    hours: Hours | None = None  # outside_hours: the Time Windows rule that blocked
    allowed = False


Decision = Allowed | Blocked
RESTRICTIONS_OFF, NOT_IN_SCOPE = Allowed("restrictions_off"), Allowed("not_in_scope")  # the same for everyone


def _covering(ip: IPAddress, rules: Iterable[Rule], now: datetime) -> Rule | None:
    for rule in rules:
        live = rule.active and (rule.expires_at is None or rule.expires_at > now)
        if live and ip in rule.network:  # (an address of the other IP version is in no network of this one)
            return rule
    return None


def decide(
    user: Subject,
    ip: IPAddress | None,
    settings: Settings,
    entries: Iterable[Rule],
    grants: Iterable[Rule] | Callable[[], Iterable[Rule]],
    now: datetime,
    request_status: str | Callable[[], str] = NOT_REQUESTED,
) -> Decision:
    """Allowed or Blocked for one user, practice and IP.

    `entries` and `grants` need only be the candidates for this IP (the database narrows them with an
    index), so the cost does not grow with the length of the allowlist. `grants` and `request_status` may be
    given as functions: they are called only when the steps before did not already decide, so a caller
    loads them only when they matter.

    Time Windows come first and are independent of IP restrictions: when both apply, both must pass. An access
    request does not extend working hours, so a user outside them is blocked whatever their IP.
    """
    if settings.hours.enabled and settings.hours.applies_to(user) and not settings.hours.open_at(now):
        return Blocked("outside_hours", hours=settings.hours)
    if not settings.enforced:
        return RESTRICTIONS_OFF
    if not settings.applies_to(user):
        return NOT_IN_SCOPE
    if ip is None:
        return Blocked("ip_unknown", _value(request_status))
    ip = unmap(ip)
    if (rule := _covering(ip, entries, now)) is not None:
        return Allowed("allowlist_entry", rule)
    grants = list(_value(grants))
    if (rule := _covering(ip, grants, now)) is not None:
        return Allowed("user_grant", rule)
    lapsed = next((g for g in grants if g.active and g.expires_at is not None and g.expires_at <= now
                   and g.network.version == ip.version and ip in g.network), None)
    return Blocked("ip_not_approved", _value(request_status), lapsed)


def _value(given):
    return given() if callable(given) else given


# The words a person sees for a practice's status (the brief's four, and Allowed where no request is needed).
STATUS_LABELS = {
    "not_requested": "Not Requested", "pending": "Pending", "approved": "Approved", "rejected": "Rejected",
    "allowed": "Allowed", "expired": "Expired", "outside_hours": "Outside working hours",
}


def status_of(decision: Decision) -> str:
    """The status word of a practice for one user and IP: allowed | approved | pending | rejected | expired |
    not_requested | outside_hours."""
    if decision.allowed:
        return "approved" if decision.reason == "user_grant" else "allowed"
    if decision.reason == "outside_hours":
        return "outside_hours"
    if decision.request_status == "approved":
        # The approval no longer lets them in: its grant expired (kept for the record), or was revoked (gone).
        return "expired" if decision.lapsed is not None else NOT_REQUESTED
    return decision.request_status

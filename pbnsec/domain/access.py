"""The imperative shell around decide(): load one practice's rules for one IP and ask."""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_network

from pbnsec.core.decision import (
    NOT_REQUESTED,
    Decision,
    Rule,
    Settings,
    Subject,
    decide,
)
from pbnsec.models import (
    ALL_PRACTICES,
    AccessRequest,
    AllowlistEntry,
    Grant,
    IPRestriction,
    Practice,
    RestrictedRole,
    RestrictedUser,
    User,
    utcnow,
)


def network_start(network) -> str:
    """The indexed form of a network's first address: 32 hex digits, IPv4 and IPv6 alike."""
    return f"{int(network.network_address):032x}"


def probe_starts(ip) -> list[str]:
    """The ip masked to every prefix length: the starts of all networks that could hold it."""
    bits = ip.max_prefixlen
    value = int(ip)
    return [f"{value >> (bits - n) << (bits - n):032x}" for n in range(bits + 1)]


def entry_rule(entry: AllowlistEntry) -> Rule:
    return Rule(ip_network(entry.network), active=entry.active, ref=entry)


def candidate_entries(practice_id: int, ip) -> list[Rule]:
    """Entries of the practice or of all practices whose network holds ip: indexed probes, no scan."""
    if ip is None:
        return []
    rows = AllowlistEntry.select().where(
        AllowlistEntry.scope.in_([practice_id, ALL_PRACTICES])
        & AllowlistEntry.start.in_(probe_starts(ip))
    )
    return [rule for rule in map(entry_rule, rows) if ip.version == rule.network.version and ip in rule.network]


def grant_rules(user_id: int, practice_id: int, ip) -> list[Rule]:
    if ip is None:
        return []
    grants = Grant.select().where(
        (Grant.user == user_id) & (Grant.practice == practice_id) & (Grant.ip == str(ip))
    )
    return [Rule(ip_network(g.ip), ref=g) for g in grants]


def settings_for(practice_id: int) -> Settings:
    row = IPRestriction.get_or_none(IPRestriction.practice == practice_id)
    if row is None:
        return Settings()
    if row.everyone:
        return Settings(enforced=row.enforced)
    roles = RestrictedRole.select(RestrictedRole.role).where(RestrictedRole.practice == practice_id)
    users = RestrictedUser.select(RestrictedUser.user).where(RestrictedUser.practice == practice_id)
    return Settings(
        enforced=row.enforced,
        everyone=False,
        role_ids=frozenset(r.role_id for r in roles),
        user_ids=frozenset(u.user_id for u in users),
    )


def request_status(user_id: int, practice_id: int, ip) -> str:
    """The status of this user's latest access request for this practice and IP."""
    if ip is None:
        return NOT_REQUESTED
    latest = (
        AccessRequest.select(AccessRequest.status)
        .where(
            (AccessRequest.user == user_id)
            & (AccessRequest.practice == practice_id)
            & (AccessRequest.ip == str(ip))
        )
        .order_by(AccessRequest.created_at.desc(), AccessRequest.id.desc())
        .first()
    )
    return latest.status if latest else NOT_REQUESTED


def decide_for(user: User, practice_id: int, ip, settings: Settings | None = None,
               without_entry: int | None = None, without_grant: int | None = None) -> Decision:
    """The decision as things stand, or as they would be with other settings or one rule gone."""
    settings = settings_for(practice_id) if settings is None else settings
    subject = Subject(user.id, user.role_id)
    if not settings.enforced or not settings.applies_to(subject):
        return decide(subject, ip, settings, [], [], utcnow())
    now = utcnow()
    entries = [r for r in candidate_entries(practice_id, ip) if r.ref.id != without_entry]
    # Load the grants, then the request status, only when the step before did not already allow.
    decision = decide(subject, ip, settings, entries, [], now)
    if decision.allowed:
        return decision
    grants = [r for r in grant_rules(user.id, practice_id, ip) if r.ref.id != without_grant]
    decision = decide(subject, ip, settings, entries, grants, now)
    if decision.allowed:
        return decision
    return decide(subject, ip, settings, entries, grants, now, request_status(user.id, practice_id, ip))


def why_allowed(decision: Decision) -> str:
    """Which rule let a user in, for the audit log: the entry or grant by id and label, or why none was needed."""
    ref = decision.rule.ref if decision.rule is not None else None
    if decision.reason == "allowlist_entry" and ref is not None:
        scope = " (All practices)" if ref.scope == ALL_PRACTICES else ""
        return f"allowlist entry #{ref.id} {ref.network} \"{ref.label}\"{scope}"
    if decision.reason == "user_grant" and ref is not None:
        origin = f" approved in request #{ref.request_id}" if ref.request_id else ""
        return f"user grant #{ref.id} for {ref.ip}{origin}"
    return {"restrictions_off": "IP restrictions are off", "not_in_scope": "IP restrictions do not apply to them"}.get(
        decision.reason, decision.reason)


@dataclass(frozen=True)
class Refusal:
    """A refused security change: it would block the admin making it, or empty an enforced allowlist."""

    message: str
    practice_id: int  # where adding the admin's IP would let the change through
    can_add_ip: bool  # False when that IP is already an entry there (it is the one being removed)
    advice: str = "Add another entry that covers your IP first, or switch IP restrictions off in General Settings."


def lockout_for(user: User, practice_ids, ip, without: str = "", **change) -> Refusal | None:
    """The Refusal a change would cause (other settings, or an entry or grant gone), else None."""
    for practice_id in practice_ids:
        if decide_for(user, practice_id, ip).allowed and not decide_for(user, practice_id, ip, **change).allowed:
            prefix = f"without {without}, " if without else ""
            can_add_ip = ip is not None and not AllowlistEntry.select().where(
                (AllowlistEntry.scope == practice_id) & (AllowlistEntry.network == str(ip_network(ip)))
            ).exists()
            return Refusal(f"This would block you: {prefix}your IP {ip or '(unknown)'} is not on the allowlist.",
                           practice_id, can_add_ip)
    return None


def last_entry_refusal(entry: AllowlistEntry) -> Refusal | None:
    """Refuse to take away the last active entry of a practice whose IP restrictions are on."""
    practice_ids = ([p.id for p in Practice.select(Practice.id)] if entry.scope == ALL_PRACTICES
                    else [entry.practice_id])
    for practice_id in practice_ids:
        others = AllowlistEntry.select().where(
            AllowlistEntry.scope.in_([practice_id, ALL_PRACTICES]) & AllowlistEntry.active
            & (AllowlistEntry.id != entry.id))
        if settings_for(practice_id).enforced and not others.exists():
            name = Practice.get_by_id(practice_id).name
            return Refusal(f"{entry.network} is the last active entry for {name}, where IP restrictions are on: "
                           "without it everyone they apply to is blocked.", practice_id, False,
                           "Add another entry first, or switch IP restrictions off in General Settings.")
    return None


@dataclass(frozen=True)
class PracticeAccess:
    """A practice as one user sees it from one IP: the status word and whether they may ask."""

    practice: Practice
    decision: Decision
    status: str  # allowed | approved | pending | rejected | not_requested
    can_request: bool

    @classmethod
    def of(cls, practice, decision: Decision, requests_allowed: bool, ip_known: bool) -> "PracticeAccess":
        if decision.allowed:
            status = "approved" if decision.reason == "user_grant" else "allowed"
        else:
            # An approval whose grant was revoked no longer counts: the user may ask again.
            status = NOT_REQUESTED if decision.request_status == "approved" else decision.request_status
        can_request = not decision.allowed and status != "pending" and requests_allowed and ip_known
        return cls(practice, decision, status, can_request)


def decisions_for(user: User, ip) -> list[tuple[Practice, Decision]]:
    """Each of the user's practices with the decision for this IP, in name order."""
    return [(p, decide_for(user, p.id, ip)) for p in user.practices()]


def practice_access(user: User, ip) -> list[PracticeAccess]:
    """Each of the user's practices as seen from this IP, with what the user may do there."""
    requests_off = {r.practice_id for r in IPRestriction.select(IPRestriction.practice)
                    .where(~IPRestriction.requests_allowed)}
    return [PracticeAccess.of(p, d, p.id not in requests_off, ip is not None) for p, d in decisions_for(user, ip)]

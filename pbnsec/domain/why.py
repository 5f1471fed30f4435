"""Why blocked, and what if: the decision for a user, an IP and a time, with the chain of reasons in words.

The decision is the one sign-in and every request use (`access._decisions`, with `now` = the time asked about);
this module only looks up what the words need (the entries and grants holding the IP, switched off and expired
ones included) and refuses questions it may not answer.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Collection

from pbnsec.core.decision import (
    STATUS_LABELS,
    Decision,
    Rule,
    Settings,
    Subject,
    status_of,
)
from pbnsec.core.iprules import EntryError, IPAddress, parse_address
from pbnsec.core.text import has_control_characters, parse_id
from pbnsec.core.timezones import to_utc
from pbnsec.core.windows import Hours, describe, local_time
from pbnsec.domain.access import _decisions, _grants, _settings, entries_holding
from pbnsec.domain.visit import Visit
from pbnsec.models import ALL_PRACTICES, Membership, Practice, Role, User

AT_EXAMPLE = "2026-12-01T08:30 or 2026-12-01T15:30:00Z"
NOBODY = 0  # the id of the someone a role is tested with: no grants, no requests, selected by role only

# The reasons of the decision in words; a reason not listed here (a newer kind of block) is shown as it is named.
REASON_WORDS = {
    "restrictions_off": "Allowed: IP restrictions are off.",
    "not_in_scope": "Allowed: IP restrictions do not apply to this user.",
    "allowlist_entry": "Allowed by an allowlist entry.",
    "user_grant": "Allowed by a user grant (an approved access request).",
    "ip_not_approved": "Blocked: the IP is not approved.",
    "ip_unknown": "Blocked: the IP cannot be determined.",
    "outside_hours": "Blocked: outside the working hours (Time Windows).",
}
# What every decision carries; anything else a decision carries (a newer kind of block) is listed as it is.
_KNOWN_FIELDS = {"reason", "rule", "request_status", "lapsed", "hours"}


@dataclass(frozen=True)
class WhyRefused:
    """A question the tester does not answer: which field, and why."""

    field: str  # user | ip | at | practice
    message: str


@dataclass(frozen=True)
class PracticeWhy:
    """One practice's decision for the user, IP and time, and the reasons leading to it."""

    practice: Practice
    decision: Decision
    status: str  # the status word the user would see (see core.decision.status_of)
    reasons: tuple[str, ...]
    verdict: str  # the decision in words
    extra: tuple[tuple[str, str], ...] = ()  # anything else the decision carries, by name

    @property
    def allowed(self) -> bool:
        return self.decision.allowed


@dataclass(frozen=True)
class Explanation:
    user: User  # for a role: an unsaved someone with that role (id NOBODY)
    ip: IPAddress
    at: datetime  # UTC, naive like every stored time
    practices: tuple[PracticeWhy, ...]
    zone: str = "UTC"  # where a time typed without an offset was read

    @property
    def for_role(self) -> bool:
        return self.user.id == NOBODY


def parse_at(text: str | None, now: datetime, zone: str = "UTC") -> datetime:
    """An ISO 8601 time (local to `zone` unless it names an offset) as naive UTC; `now` when blank. ValueError
    otherwise. A local time that a clock change skips or repeats is read as the clocks showed it first (fold 0)."""
    text = (text or "").strip()
    if not text:
        return now
    if len(text) > 40:
        raise ValueError(f"Enter the time as ISO 8601, such as {AT_EXAMPLE} (the practice's time unless an offset "
                         "is given).")
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"“{text}” is not a time: enter it as ISO 8601, such as {AT_EXAMPLE} "
                         "(the practice's time unless an offset is given).") from None
    try:
        if at.tzinfo is None:
            return to_utc(at, zone)
        return at.astimezone(timezone.utc).replace(tzinfo=None)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable instant
        raise ValueError(f"“{text}” is out of range: enter a time between the years 1 and 9999.") from None


def _find_user(text: str) -> User | None:
    user_id = parse_id(text)
    if user_id is not None:
        return User.get_or_none(User.id == user_id)
    return User.get_or_none(User.email == text.strip().lower())


def _find_role(text: str) -> Role | None:
    role_id = parse_id(text)
    if role_id is not None:
        return Role.get_or_none(Role.id == role_id)
    return Role.get_or_none(Role.name == " ".join(text.split()))


def explain(admin_visit: Visit, user: str, ip: str, at: str | None, practice_ids: Collection[int],
            practice: str | None = None, role: str | None = None) -> Explanation | WhyRefused:
    """Why `user` (email or id) is allowed or blocked from `ip` at `at` (ISO 8601; blank: now) in each of their
    practices among `practice_ids` (those the admin administers from here), or only in `practice` (an id).

    Without a user, `role` (a name or id) asks for someone with that role in each of those practices: selected by
    their role only, with no grant and no request. A time without an offset is read in the zone of the practice
    asked about, else of the practice the admin works in.
    Someone outside those practices is refused exactly like an unknown user: the answer reveals nothing else.
    """
    user_text, ip_text, role_text = (user or "").strip(), (ip or "").strip(), (role or "").strip()
    for field, text in (("user", user_text), ("role", role_text)):
        if has_control_characters(text):  # no email, id or role has one (and PostgreSQL refuses NUL)
            return WhyRefused(field, f"The {field} contains a control character.")
    if not user_text and not role_text:
        return WhyRefused("user", "Enter the user's email address or id, or choose a role.")
    if user_text:
        person = _find_user(user_text)
        theirs = set()
        if person is not None:
            theirs = {m.practice_id for m in Membership.select(Membership.practice).where(
                (Membership.user == person) & Membership.practice.in_(list(practice_ids)))}
        if not theirs:
            return WhyRefused("user", f"No one with the email or id “{user_text[:254]}” works in a practice you "
                                      "administer from here.")
    else:
        found = _find_role(role_text)
        if found is None:
            return WhyRefused("role", f"“{role_text[:40]}” is not a role.")
        person = User(id=NOBODY, name=f"Someone with the role {found.name}", email="", role=found)
        theirs = set(practice_ids)
    practice_text = (practice or "").strip()
    if practice_text:
        asked = parse_id(practice_text)
        if asked is None or asked not in practice_ids:
            return WhyRefused("practice", f"“{practice_text[:40]}” is not a practice you administer from here.")
        if asked not in theirs:
            name = Practice.get_by_id(asked).name
            return WhyRefused("practice", f"{person.name} is not a member of {name}.")
        theirs = {asked}
    if not ip_text:
        return WhyRefused("ip", "Enter the IP address to test, such as 192.0.2.10 or 2001:db8::1.")
    try:
        address = parse_address(ip_text)
    except EntryError as exc:
        return WhyRefused("ip", exc.message)
    zone_practice = next(iter(theirs)) if len(theirs) == 1 else getattr(admin_visit.practice, "id", None)
    zone = (Practice.get_by_id(zone_practice).time_zone if zone_practice is not None else None) or "UTC"
    try:
        when = parse_at(at, admin_visit.now, zone)
    except ValueError as exc:
        return WhyRefused("at", str(exc))
    return replace(_explanation(person, address, when, sorted(theirs)), zone=zone)


def _explanation(user: User, ip: IPAddress, at: datetime, practice_ids: list[int]) -> Explanation:
    practices = {p.id: p for p in Practice.select().where(Practice.id.in_(practice_ids))}
    settings, _ = _settings(practice_ids)
    decisions = _decisions(user, practice_ids, ip, at, settings)  # the very decision sign-in and requests use
    subject = Subject(user.id, user.role_id)
    applies = [pid for pid in practice_ids if settings[pid].enforced and settings[pid].applies_to(subject)]
    entries = entries_holding(applies, ip)  # switched off and expired ones too: they explain a block
    grants = _grants(user.id, applies, ip)
    rows = []
    for pid in sorted(practice_ids, key=lambda pid: practices[pid].name):
        decision = decisions[pid]
        reasons = [*_hours_words(user, settings[pid].hours, practices[pid], at),
                   _scope_words(user, settings[pid], practices[pid])]
        if pid in applies:
            reasons += _rule_words(decision, ip, at, entries[pid], grants[pid])
        if not decision.allowed:
            status = decision.request_status
            reasons.append(f"Access request from {ip} at {practices[pid].name}: "
                           f"{STATUS_LABELS.get(status, status)}.")
        rows.append(PracticeWhy(practices[pid], decision, status_of(decision), tuple(reasons),
                                REASON_WORDS.get(decision.reason, _generic(decision)), _extra(decision)))
    return Explanation(user, ip, at, tuple(rows))


def _generic(decision: Decision) -> str:
    verdict = "Allowed" if decision.allowed else "Blocked"
    return f"{verdict}: {decision.reason.replace('_', ' ')}."


def _extra(decision: Decision) -> tuple[tuple[str, str], ...]:
    """What else the decision carries (a newer kind of block brings its own details), by name."""
    return tuple((f.name.replace("_", " "), str(getattr(decision, f.name)))
                 for f in dataclasses.fields(decision)
                 if f.name not in _KNOWN_FIELDS and getattr(decision, f.name) not in (None, "", (), frozenset()))


def _whom(user: User, role_ids, user_ids) -> str:
    if user.role_id in role_ids:
        return f"their role, {user.role.name}"
    return f"{user.name} by name" if user.id in user_ids else ""


def _hours_words(user: User, hours: Hours, practice: Practice, at: datetime) -> list[str]:
    """Time Windows: off, not for this user, or the windows and whether the time asked about falls in them."""
    if not hours.enabled:
        return [f"Time Windows are off at {practice.name}: any time of day is allowed."]
    local = local_time(at, hours.zone)
    shown = f"{local:%a %Y-%m-%d %H:%M} {local.tzname()}"
    whom = "everyone" if hours.everyone else _whom(user, hours.role_ids, hours.user_ids)
    if not whom:
        return [f"Time Windows are on at {practice.name} but apply only to selected roles and users, not to "
                f"{'this role' if user.id == NOBODY else user.name}: any time of day is allowed."]
    inside = "inside" if hours.open_at(at) else "outside"
    return [f"Time Windows are on at {practice.name} and apply to {whom}: {describe(hours.windows)} "
            f"({hours.zone}).", f"{shown} is {inside} them."]


def _scope_words(user: User, settings: Settings, practice: Practice) -> str:
    if not settings.enforced:
        return f"IP restrictions are off at {practice.name}: every IP is allowed."
    if settings.everyone:
        return f"IP restrictions are on at {practice.name} and apply to everyone."
    if user.role_id in settings.role_ids:
        return f"IP restrictions are on at {practice.name} and apply to their role, {user.role.name}."
    if user.id in settings.user_ids:
        return f"IP restrictions are on at {practice.name} and apply to {user.name} by name."
    if user.id == NOBODY:
        return (f"IP restrictions are on at {practice.name} but apply only to selected roles and users, and the "
                f"role {user.role.name} is not selected: not in scope.")
    return (f"IP restrictions are on at {practice.name} but apply only to selected roles and users, and neither "
            f"{user.name} nor their role ({user.role.name}) is selected: not in scope.")


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at is not None else ""


def _entry_words(entry) -> str:
    """An allowlist entry as the tester names it: id, network, label and scope."""
    scope = "All practices" if entry.scope == ALL_PRACTICES else "this practice only"
    return f"entry #{entry.id} {entry.network} “{entry.label}” ({scope})"


def _rule_words(decision: Decision, ip: IPAddress, at: datetime, entries: list[Rule],
                grants: list[Rule]) -> list[str]:
    rule = getattr(decision, "rule", None)
    matched = (type(rule.ref), rule.ref.id) if rule is not None else None
    words = []
    if not entries:
        words.append(f"No allowlist entry of this practice or of All practices holds {ip}.")
    for rule in entries:
        entry = rule.ref
        if (type(entry), entry.id) == matched:
            until = f", until {_when(entry.expires_at)}" if entry.expires_at else ""
            words.append(f"Matched: allowlist {_entry_words(entry)} holds {ip}{until}.")
        elif not entry.active:
            words.append(f"Allowlist {_entry_words(entry)} would match but is switched off.")
        elif entry.expires_at is not None and entry.expires_at <= at:
            words.append(f"Allowlist {_entry_words(entry)} would match but expired {_when(entry.expires_at)}.")
        else:
            words.append(f"Allowlist {_entry_words(entry)} holds {ip}.")
    if decision.reason == "allowlist_entry":
        return words  # an entry let them in: grants are not looked at
    if not grants:
        words.append(f"No user grant for {ip}.")
    for rule in grants:
        grant = rule.ref
        if (type(grant), grant.id) == matched:
            until = f"expires {_when(grant.expires_at)}" if grant.expires_at else "until revoked"
            words.append(f"Matched: user grant #{grant.id} for {grant.ip} ({until}).")
        elif grant.expires_at is not None and grant.expires_at <= at:
            words.append(f"User grant #{grant.id} for {grant.ip} would match but expired {_when(grant.expires_at)}.")
        else:
            words.append(f"User grant #{grant.id} for {grant.ip}.")
    return words

"""Impact preview: what a change of IP restrictions or Time Windows would do to the people of a practice, judged
from their recent successful sign-ins into it (the practice's `login_allowed` audit events).

Each sign-in is decided twice with the one decide(): as the practice stands and as it would be after the change.
A person is affected when a sign-in that is let in now would be blocked after. The address part is decided as of
now (entries and grants that have expired since no longer count), the working-hours part at the time of the
sign-in (a Time Window is about when people work, not when the administrator looks).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from ipaddress import ip_address, ip_network

from pbnsec.core.decision import Decision, Rule, Settings, Subject, decide
from pbnsec.core.iprules import unmap
from pbnsec.core.windows import Hours
from pbnsec.domain.access import Refusal, entries_holding
from pbnsec.models import AuditEvent, Grant, Membership, Practice, Role, User

DAYS = 30  # how far back sign-ins are looked at
PER_PERSON = 50  # at most this many of one person's latest sign-ins (a shared login must not flood the preview)

# Why a sign-in would be blocked after the change, in words for the administrator.
REASON_WORDS = {"ip_not_approved": "that address would not be approved", "ip_unknown": "the address was unknown",
                "outside_hours": "that time would be outside the windows"}


@dataclass(frozen=True)
class Affected:
    """One person a change would block: how many of their recent sign-ins, and the latest of those."""

    user: User
    sign_ins: int  # their sign-ins looked at
    blocked: int  # of those, how many the change would block
    ip: str  # the latest one it would block: from where ("" when the address was unknown)
    at: datetime  # and when (UTC)
    reason: str  # ip_not_approved | ip_unknown | outside_hours

    @property
    def reason_words(self) -> str:
        return REASON_WORDS.get(self.reason, self.reason)


@dataclass(frozen=True)
class Impact:
    """Who of a practice's people a change would block, from their sign-ins over the last `days` days."""

    practice: Practice
    days: int
    people: int  # members of the practice
    seen: int  # of them, those who signed in over the last `days` days
    affected: tuple[Affected, ...]  # by name

    @property
    def summary(self) -> str:
        """"From their sign-ins over the last 30 days, 3 of 14 people would be blocked.\""""
        return (f"From their sign-ins over the last {self.days} days, {len(self.affected)} of {self.seen} "
                f"{'person' if self.seen == 1 else 'people'} would be blocked.")

    @property
    def unseen(self) -> int:
        """Members with no sign-in to judge by (not counted either way)."""
        return self.people - self.seen


def impact(practice: Practice, before: Settings, after: Settings, now: datetime, days: int = DAYS) -> Impact:
    """Who would be blocked by going from `before` to `after` (both with their Time Windows), judged from each
    member's sign-ins in the `days` days before `now`.

    A fixed number of queries for the members, their sign-ins and their grants, plus one indexed probe per distinct
    address signed in from (entries are found as every request finds them: never a scan of the allowlist).
    """
    members = {u.id: u for u in User.select(User, Role).join(Role).switch(User).join(Membership)
               .where(Membership.practice == practice)}
    sign_ins: dict[int, list[tuple[str, datetime]]] = {}
    # Only sign-ins into this practice: where and when its people signed in elsewhere is another practice's data.
    events = (AuditEvent.select(AuditEvent.actor, AuditEvent.actor_ip, AuditEvent.at)
              .where((AuditEvent.action == "login_allowed") & (AuditEvent.practice == practice)
                     & (AuditEvent.at > now - timedelta(days=days)) & (AuditEvent.at <= now)
                     & AuditEvent.actor.in_(Membership.select(Membership.user).where(Membership.practice == practice)))
              .order_by(AuditEvent.at.desc(), AuditEvent.id.desc()))
    for event in events:
        mine = sign_ins.setdefault(event.actor_id, [])
        if len(mine) < PER_PERSON:
            mine.append((event.actor_ip, event.at))
    grants: dict[tuple[int, str], list[Rule]] = {}
    for grant in Grant.select().where((Grant.practice == practice) & Grant.user.in_(list(sign_ins))):
        grants.setdefault((grant.user_id, grant.ip), []).append(
            Rule(ip_network(grant.ip), expires_at=grant.expires_at, ref=grant))
    entries: dict[object, list[Rule]] = {}

    def decision(user: User, ip, at: datetime, settings: Settings) -> Decision:
        # Where the address is judged, now, then when: the first that blocks is the answer.
        if ip is not None and ip not in entries:
            entries[ip] = entries_holding([practice.id], ip)[practice.id]
        subject = Subject(user.id, user.role_id)
        by_ip = decide(subject, ip, replace(settings, hours=Hours()), entries.get(ip, ()),
                       lambda: grants.get((user.id, str(ip)), ()), now)
        if not by_ip.allowed:
            return by_ip
        return decide(subject, ip, replace(settings, enforced=False), (), (), at)

    affected = []
    for user_id, seen in sign_ins.items():
        user, blocked = members[user_id], []
        for ip_text, at in seen:
            ip = _parsed(ip_text)
            if decision(user, ip, at, before).allowed:
                after_decision = decision(user, ip, at, after)
                if not after_decision.allowed:
                    blocked.append((ip_text if ip is not None else "", at, after_decision.reason))
        if blocked:
            ip_text, at, reason = blocked[0]
            affected.append(Affected(user, len(seen), len(blocked), ip_text, at, reason))
    affected.sort(key=lambda a: (a.user.name.casefold(), a.user.id))
    return Impact(practice, days, len(members), len(sign_ins), tuple(affected))


def _parsed(text: str):
    try:
        return unmap(ip_address(text))
    except ValueError:
        return None  # a sign-in whose address was unknown: blocked wherever IP restrictions apply


def in_words(found: Impact) -> str:
    """For the audit log: who the change was saved against, by email."""
    names = ", ".join(a.user.email for a in found.affected)
    return f"{len(found.affected)} of {found.seen} people signed in over the last {found.days} days: {names}"


def confirmation(practice: Practice, before: Settings, after: Settings, now: datetime,
                 confirmed: bool) -> tuple[Refusal | None, str]:
    """Whether a change may be saved as asked: a Refusal (code impact, with the Impact) when it would block people
    who signed in recently and the administrator has not confirmed it; else None and the words the audit event
    adds when they confirmed it anyway ("" when no one is affected)."""
    found = impact(practice, before, after, now)
    if not found.affected:
        return None, ""
    if not confirmed:
        return Refusal(found.summary, practice.id, False, advice="", code="impact", impact=found), ""
    return None, f"; saved although it blocks {in_words(found)}"

"""IP restrictions of a practice, as General Settings changes them: enforced or not, whom they apply to, and
whether blocked users may ask for access.

The caller has checked that the visit's user administers the practice from where they are. Each change runs
under change_lock(), so what it checked (is the allowlist empty? would the admin be locked out?) still holds when
it commits, and each change is audited. A refused change changes nothing and returns a Refusal whose code says why:

- ``empty_allowlist``: restrictions would be on with no active entry for the practice;
- ``lockout``: the visit's user would be blocked from the IP they are using now;
- ``invalid_choice``: neither everyone nor selected, or a role or member that was not offered;
- ``nothing_selected``: "selected" with nothing ticked, which waits for the first tick (not an error).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from pbnsec.core.decision import Settings
from pbnsec.core.durations import DurationError, duration_words, parse_duration
from pbnsec.core.timezones import TimeZoneError, parse_time_zone
from pbnsec.db import change_lock
from pbnsec.domain import audit
from pbnsec.domain.access import Refusal, lockout_for, practice_settings, settings_for
from pbnsec.domain.impact import confirmation
from pbnsec.domain.visit import Visit
from pbnsec.models import (
    ALL_PRACTICES,
    AllowlistEntry,
    IPRestriction,
    Membership,
    Practice,
    RestrictedRole,
    RestrictedUser,
    Role,
    User,
    utcnow,
)

EVERYONE, SELECTED = "everyone", "selected"  # whom IP restrictions apply to, as the scope control offers it

EMPTY_ALLOWLIST = "The allowlist is empty: add at least one entry before switching IP restrictions on."
NOT_A_SCOPE = "Choose everyone or selected roles and users."
NOT_OFFERED = "Choose only the roles and members listed."
NOTHING_SELECTED = "Tick the roles and users that IP restrictions apply to. Nothing is saved until you tick one."


@dataclass(frozen=True)
class GeneralSettings:
    """A practice's IP restrictions as General Settings shows them, with the roles and members its pickers offer."""

    practice: Practice
    settings: Settings  # enforced, and whom they apply to
    requests_allowed: bool
    default_duration: str  # how long a one-click approval lasts (a core.durations key)
    show_admin_emails: bool  # the blocked page shows the administrators' emails beside their names
    roles: tuple[Role, ...]  # in their listed order
    members: tuple[User, ...]  # the practice's people by name, each with their role


def general_settings(practice: Practice) -> GeneralSettings:
    """One practice's IP restrictions and what its pickers offer."""
    row = IPRestriction.get_or_none(IPRestriction.practice == practice)
    members = (User.select(User, Role).join(Role).switch(User).join(Membership)
               .where(Membership.practice == practice).order_by(User.name))
    return GeneralSettings(practice, settings_for(practice.id), row.requests_allowed if row else True,
                           row.default_duration if row else "forever", row.show_admin_emails if row else False,
                           tuple(Role.select().order_by(Role.position)), tuple(members))


def set_enforced(visit: Visit, practice: Practice, on: bool, confirmed: bool = False) -> Refusal | None:
    """Switch IP restrictions on or off; None when saved, else the Refusal (empty allowlist, lockout, and impact
    until `confirmed`: switching on would block people who signed in recently)."""
    with change_lock():
        before = practice_settings(practice.id)
        refusal, note = _refusal(visit, practice, replace(settings_for(practice.id), enforced=on)), ""
        if refusal is None and on and not before.enforced:
            refusal, note = confirmation(practice, before, replace(before, enforced=True), visit.now, confirmed)
        if refusal is None:
            _save(visit, practice, enforced=on)
            audit.record_by(visit, "settings_changed", practice=practice, target="IP restrictions",
                            detail="enforced: " + ("on" if on else "off") + note)
    return refusal


def set_scope(visit: Visit, practice: Practice, applies_to: str, role_ids: Iterable[int | None],
              user_ids: Iterable[int | None], confirmed: bool = False) -> Refusal | None:
    """Apply IP restrictions to everyone or to the selected roles and members; None when saved, else the Refusal.

    The ids are those the admin ticked; one not offered (a member of another practice, a number that is no role,
    None for what was not a number at all) refuses the whole change, even with everyone chosen.
    """
    return save_scope(visit, practice, applies_to, role_ids, user_ids, target="IP restrictions",
                      nothing_selected=NOTHING_SELECTED, role_model=RestrictedRole, user_model=RestrictedUser,
                      refusal=lambda chosen: _refusal(visit, practice, replace(settings_for(practice.id), **chosen)),
                      save=lambda everyone: _save(visit, practice, everyone=everyone),
                      after=lambda before, chosen: replace(before, **chosen), confirmed=confirmed)


def save_scope(visit: Visit, practice: Practice, applies_to: str, role_ids: Iterable[int | None],
               user_ids: Iterable[int | None], *, target: str, nothing_selected: str, role_model, user_model,
               refusal, save, after, confirmed: bool) -> Refusal | None:
    """Whom a rule applies to (IP restrictions, Time Windows): check the choice, ask `refusal(chosen)` under the
    change lock, then what the change would do to the people who signed in recently (`after(settings, chosen)`:
    the practice's settings with the choice made; refused until `confirmed` when it would block some of them),
    then save the selection (role_model and user_model rows) and audit it."""
    role_ids, user_ids = frozenset(role_ids), frozenset(user_ids)
    if applies_to not in (EVERYONE, SELECTED):
        return Refusal.bad_input(practice, "invalid_choice", NOT_A_SCOPE)
    with change_lock():
        members = {m.user_id for m in Membership.select(Membership.user).where(Membership.practice == practice)}
        if not role_ids <= {r.id for r in Role.select(Role.id)} or not user_ids <= members:
            return Refusal.bad_input(practice, "invalid_choice", NOT_OFFERED)
        everyone = applies_to == EVERYONE
        if everyone:
            role_ids = user_ids = frozenset()
        elif not role_ids and not user_ids:
            # Saving it would restrict nobody, which no admin who chose "selected" means.
            return Refusal.bad_input(practice, "nothing_selected", nothing_selected)
        chosen = {"everyone": everyone, "role_ids": role_ids, "user_ids": user_ids}
        refused, note = refusal(chosen), ""
        if refused is None:
            before = practice_settings(practice.id)
            refused, note = confirmation(practice, before, after(before, chosen), visit.now, confirmed)
        if refused is None:
            save(everyone)
            role_model.delete().where(role_model.practice == practice).execute()
            user_model.delete().where(user_model.practice == practice).execute()
            if role_ids:
                role_model.insert_many([{"practice": practice, "role": r} for r in sorted(role_ids)]).execute()
            if user_ids:
                user_model.insert_many([{"practice": practice, "user": u} for u in sorted(user_ids)]).execute()
            names = [r.name for r in Role.select().where(Role.id.in_(role_ids))]
            names += [u.email for u in User.select().where(User.id.in_(user_ids))]
            audit.record_by(visit, "settings_changed", practice=practice, target=target,
                            detail="applies to: " + (EVERYONE if everyone else ", ".join(names)) + note)
    return refused


def set_requests_allowed(visit: Visit, practice: Practice, on: bool) -> None:
    """Let blocked users ask for access to the practice, or not (never refused)."""
    with change_lock():
        _save(visit, practice, requests_allowed=on)
        audit.record_by(visit, "settings_changed", practice=practice, target="IP restrictions",
                        detail="access requests: " + ("allowed" if on else "not allowed"))


def set_show_admin_emails(visit: Visit, practice: Practice, on: bool) -> None:
    """Show the practice's administrators' email addresses on the blocked page, or only their names (never
    refused)."""
    with change_lock():
        _save(visit, practice, show_admin_emails=on)
        audit.record_by(visit, "settings_changed", practice=practice, target="IP restrictions",
                        detail="administrators' email addresses on the blocked page: " + ("shown" if on else "hidden"))


def set_default_duration(visit: Visit, practice: Practice, text: str) -> Refusal | None:
    """How long a one-click approval lasts at the practice; None when saved, else the Refusal (invalid_choice)."""
    try:
        duration = parse_duration(text)
    except DurationError as exc:
        return Refusal.bad_input(practice, "invalid_choice", exc.message)
    with change_lock():
        _save(visit, practice, default_duration=duration)
        audit.record_by(visit, "settings_changed", practice=practice, target="IP restrictions",
                        detail=f"approvals last: {duration_words(duration)}")
    return None


def set_time_zone(visit: Visit, practice: Practice, text: str) -> Refusal | None:
    """The practice's time zone (an IANA name); None when saved, else the Refusal (invalid_choice), nothing saved."""
    try:
        name = parse_time_zone(text)
    except TimeZoneError as exc:
        return Refusal.bad_input(practice, "invalid_choice", exc.message)
    with change_lock():
        old = Practice.get_by_id(practice.id).time_zone
        Practice.update(time_zone=name).where(Practice.id == practice.id).execute()
        practice.time_zone = name
        audit.record_by(visit, "settings_changed", practice=practice, target="Time zone", detail=f"{old} -> {name}")
    return None


def _refusal(visit: Visit, practice: Practice, new: Settings) -> Refusal | None:
    """Why the practice may not have these settings (empty allowlist, lockout), else None."""
    if new.enforced and not AllowlistEntry.select().where(
        AllowlistEntry.scope.in_([practice.id, ALL_PRACTICES]) & AllowlistEntry.live(visit.now)
    ).exists():
        return Refusal.bad_input(practice, "empty_allowlist", EMPTY_ALLOWLIST)
    return lockout_for(visit.user, [practice.id], visit.ip, settings=new, now=visit.now)



def _save(visit: Visit, practice: Practice, **fields) -> None:
    """Write fields of the practice's IP restrictions, whose row is made (with the defaults) on its first change."""
    row, _ = IPRestriction.get_or_create(practice=practice)
    IPRestriction.update(updated_at=visit.now, **fields).where(IPRestriction.id == row.id).execute()


def unlock(practice: Practice) -> bool:
    """Break glass from the command line: switch IP restrictions off, audited; True when they were on."""
    with change_lock():
        row, _ = IPRestriction.get_or_create(practice=practice)
        IPRestriction.update(enforced=False, updated_at=utcnow()).where(IPRestriction.id == row.id).execute()
        audit.record("security_unlock", actor_label="cli", actor_ip="local", practice=practice,
                     target="IP restrictions", detail="enforced: " + ("on -> off" if row.enforced else "already off"))
    return row.enforced

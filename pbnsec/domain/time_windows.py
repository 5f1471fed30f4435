"""Time Windows of a practice, as Security Management › Time Windows changes them: on or off, whom they apply
to, and the weekly windows themselves.

The caller has checked that the visit's user administers the practice from where they are. Each change runs under
change_lock() and is audited. A refused change changes nothing and returns a Refusal whose code says why:

- ``invalid_window``: a day or time that cannot be, or a window the practice already has;
- ``no_windows``: switching on (or keeping on) a practice with no window, which would block everyone it applies to;
- ``lockout_time``: the visit's user would be blocked by the windows right now;
- ``invalid_choice`` / ``nothing_selected``: as for IP restrictions' applies-to control.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from pbnsec.core.windows import Hours, Window, WindowError, describe, parse_clock
from pbnsec.db import change_lock
from pbnsec.domain import audit
from pbnsec.domain.access import Refusal, lockout_for, practice_settings
from pbnsec.domain.impact import confirmation
from pbnsec.domain.restrictions import EVERYONE, save_scope  # noqa: F401  (EVERYONE: the views use it from here)
from pbnsec.domain.visit import Visit
from pbnsec.models import (
    Membership,
    Practice,
    Role,
    TimeRule,
    TimeRuleRole,
    TimeRuleUser,
    TimeWindow,
    User,
)

NO_WINDOWS = "Add at least one window before switching Time Windows on: with none, everyone they apply to is blocked."
NOTHING_SELECTED = "Tick the roles and users that Time Windows apply to. Nothing is saved until you tick one."


@dataclass(frozen=True)
class TimeWindowsView:
    """A practice's Time Windows as the screen shows them, with the roles and members its pickers offer."""

    practice: Practice
    hours: Hours  # enabled, whom they apply to, the windows and the zone they are read in
    rows: tuple[TimeWindow, ...]  # the stored windows, by day and time (for their delete buttons)
    roles: tuple[Role, ...]
    members: tuple[User, ...]


def zone_of(practice: Practice) -> str:
    # Until practices have a time zone of their own, their windows are read in UTC.
    return getattr(practice, "time_zone", None) or "UTC"


def hours_of(practice: Practice) -> Hours:
    """The practice's Time Windows as stored, switched on or not."""
    rule = TimeRule.get_or_none(TimeRule.practice == practice)
    windows = tuple(sorted(Window(w.day, w.start_minute, w.end_minute) for w in _rows(practice)))
    if rule is None:
        return Hours(windows=windows, zone=zone_of(practice))
    roles = frozenset(r.role_id for r in TimeRuleRole.select().where(TimeRuleRole.practice == practice))
    users = frozenset(r.user_id for r in TimeRuleUser.select().where(TimeRuleUser.practice == practice))
    return Hours(rule.enabled, rule.everyone, roles, users, windows, zone_of(practice))


def _rows(practice: Practice) -> list[TimeWindow]:
    return list(TimeWindow.select().where(TimeWindow.practice == practice)
                .order_by(TimeWindow.day, TimeWindow.start_minute, TimeWindow.end_minute))


def time_windows(practice: Practice) -> TimeWindowsView:
    """One practice's Time Windows and what its pickers offer."""
    members = (User.select(User, Role).join(Role).switch(User).join(Membership)
               .where(Membership.practice == practice).order_by(User.name))
    return TimeWindowsView(practice, hours_of(practice), tuple(_rows(practice)),
                           tuple(Role.select().order_by(Role.position)), tuple(members))


def set_enabled(visit: Visit, practice: Practice, on: bool, confirmed: bool = False) -> Refusal | None:
    """Switch Time Windows on or off; None when saved, else the Refusal (no windows, lockout, and impact until
    `confirmed`: switching on would block people who signed in recently)."""
    with change_lock():
        hours = hours_of(practice)
        refusal, note = _refusal(visit, practice, replace(hours, enabled=on)), ""
        if refusal is None and on and not hours.enabled:
            refusal, note = _confirmation(visit, practice, replace(hours, enabled=True), confirmed)
        if refusal is None:
            _save(visit, practice, enabled=on)
            audit.record_by(visit, "settings_changed", practice=practice, target="Time Windows",
                            detail="enabled: " + ("on" if on else "off") + note)
    return refusal


def set_scope(visit: Visit, practice: Practice, applies_to: str, role_ids: Iterable[int | None],
              user_ids: Iterable[int | None], confirmed: bool = False) -> Refusal | None:
    """Apply Time Windows to everyone or to the selected roles and members; None when saved, else the Refusal."""
    return save_scope(visit, practice, applies_to, role_ids, user_ids, target="Time Windows",
                      nothing_selected=NOTHING_SELECTED, role_model=TimeRuleRole, user_model=TimeRuleUser,
                      refusal=lambda chosen: _refusal(visit, practice, replace(hours_of(practice), **chosen)),
                      save=lambda everyone: _save(visit, practice, everyone=everyone),
                      after=lambda before, chosen: replace(before, hours=replace(before.hours, **chosen)),
                      confirmed=confirmed)


def parse_windows(days: Iterable[str | int | None], start: str, end: str) -> list[Window]:
    """One window per ticked day from the form's fields; raises WindowError with a message for people."""
    try:
        numbers = sorted({int(d) for d in days})
    except (TypeError, ValueError):
        raise WindowError("Choose days from the list.") from None
    if not numbers:
        raise WindowError("Tick at least one day.")
    start_minute, end_minute = parse_clock(start), parse_clock(end)
    if start_minute == 24 * 60:
        raise WindowError("A window cannot start at 24:00: use 00:00.")
    if start_minute == end_minute:
        raise WindowError("A window must end at another time than it starts (an end before the start runs "
                          "overnight into the next day).")
    return [Window(day, start_minute, end_minute) for day in numbers]


def add_windows(visit: Visit, practice: Practice, days: Iterable[str | int | None], start: str,
                end: str) -> Refusal | None:
    """Add a window on each ticked day (only widens who may work when: never a lockout); else the Refusal."""
    try:
        windows = parse_windows(days, start, end)
    except WindowError as exc:
        return Refusal.bad_input(practice, "invalid_window", str(exc))
    with change_lock():
        have = set(hours_of(practice).windows)
        if all(w in have for w in windows):
            return Refusal.bad_input(practice, "invalid_window", f"{describe(windows)} is already a window.")
        new = [w for w in windows if w not in have]
        TimeWindow.insert_many([{"practice": practice, "day": w.day, "start_minute": w.start, "end_minute": w.end}
                                for w in new]).execute()
        audit.record_by(visit, "settings_changed", practice=practice, target="Time Windows",
                        detail=f"window added: {describe(new)}")
    return None


def delete_window(visit: Visit, practice: Practice, window_id: int | None, confirmed: bool = False) -> Refusal | None:
    """Delete one of the practice's windows; None when deleted (or already gone), else the Refusal (lockout, and
    impact until `confirmed` while Time Windows are on: it would block people who signed in recently)."""
    with change_lock():
        row = TimeWindow.get_or_none((TimeWindow.id == window_id) & (TimeWindow.practice == practice))
        if row is None:
            return None
        gone = Window(row.day, row.start_minute, row.end_minute)
        hours = hours_of(practice)
        fewer = replace(hours, windows=tuple(w for w in hours.windows if w != gone))
        refusal, note = _refusal(visit, practice, fewer), ""
        if refusal is None and hours.enabled:
            refusal, note = _confirmation(visit, practice, fewer, confirmed)
        if refusal is None:
            row.delete_instance()
            audit.record_by(visit, "settings_changed", practice=practice, target="Time Windows",
                            detail=f"window deleted: {gone}{note}")
    return refusal


def _refusal(visit: Visit, practice: Practice, new: Hours) -> Refusal | None:
    """Why the practice may not have these Time Windows (none while on, lockout), else None."""
    if new.enabled and not new.windows:
        return Refusal.bad_input(practice, "no_windows", NO_WINDOWS)
    return lockout_for(visit.user, [practice.id], visit.ip, hours=new, now=visit.now)



def _confirmation(visit: Visit, practice: Practice, new: Hours, confirmed: bool) -> tuple[Refusal | None, str]:
    """What going to these Time Windows would do to the people who signed in recently (see impact.confirmation)."""
    before = practice_settings(practice.id)
    return confirmation(practice, before, replace(before, hours=new), visit.now, confirmed)


def _save(visit: Visit, practice: Practice, **fields) -> None:
    row, _ = TimeRule.get_or_create(practice=practice)
    TimeRule.update(updated_at=visit.now, **fields).where(TimeRule.id == row.id).execute()

"""Time Windows called as functions with a Visit whose `now` is frozen: no HTTP, no sign-in, no clock patch."""
from dataclasses import replace
from datetime import datetime

import pytest
from conftest import person, practice_named, visit_of

from pbnsec.domain import time_windows
from pbnsec.domain.access import overview
from pbnsec.models import AuditEvent, Role, TimeRule, TimeWindow

RIVERSIDE = "Riverside Dental"
TUESDAY_10 = datetime(2026, 12, 1, 10, 0)  # UTC, the zone of a practice without one
TUESDAY_22 = datetime(2026, 12, 1, 22, 0)
WEEKDAYS = ["0", "1", "2", "3", "4"]


def at(who: str, now: datetime):
    return replace(visit_of(who, practice=RIVERSIDE), now=now)


def windows() -> list[str]:
    return [str(w) for w in time_windows.hours_of(practice_named(RIVERSIDE)).windows]


def audited() -> list[str]:
    return [e.detail for e in AuditEvent.select().where(AuditEvent.target == "Time Windows").order_by(AuditEvent.id)]


def test_add_a_window_on_several_days_and_switch_on(db):
    ann, riverside = at("ann", TUESDAY_10), practice_named(RIVERSIDE)
    assert time_windows.add_windows(ann, riverside, WEEKDAYS, "07:00", "18:00") is None
    assert time_windows.set_enabled(ann, riverside, True) is None
    assert time_windows.hours_of(riverside).enabled
    assert windows() == ["Mon 07:00–18:00", "Tue 07:00–18:00", "Wed 07:00–18:00", "Thu 07:00–18:00",
                         "Fri 07:00–18:00"]
    assert audited() == ["window added: Mon–Fri 07:00–18:00", "enabled: on"]


def test_an_overnight_window_is_kept_as_typed(db):
    assert time_windows.add_windows(at("ann", TUESDAY_10), practice_named(RIVERSIDE), ["4"], "22:00", "02:00") is None
    assert windows() == ["Fri 22:00–02:00"]


@pytest.mark.parametrize("days, start, end, message", [
    ([], "07:00", "18:00", "Tick at least one day"),
    (["7"], "07:00", "18:00", "Monday to Sunday"),
    (["x"], "07:00", "18:00", "Choose days"),
    (["0"], "7am", "18:00", "not a time"),
    (["0"], "07:00", "25:00", "not a time of day"),
    (["0"], "09:00", "09:00", "another time"),
    (["0"], "24:00", "02:00", "cannot start at 24:00"),
])
def test_bad_windows_are_refused_with_a_reason_and_nothing_is_saved(db, days, start, end, message):
    refusal = time_windows.add_windows(at("ann", TUESDAY_10), practice_named(RIVERSIDE), days, start, end)
    assert refusal.code == "invalid_window" and message in refusal.message
    assert TimeWindow.select().count() == 0 and audited() == []


def test_the_same_window_twice_is_refused(db):
    ann, riverside = at("ann", TUESDAY_10), practice_named(RIVERSIDE)
    time_windows.add_windows(ann, riverside, ["0"], "07:00", "18:00")
    assert time_windows.add_windows(ann, riverside, ["0"], "07:00", "18:00").code == "invalid_window"
    assert time_windows.add_windows(ann, riverside, ["0", "1"], "07:00", "18:00") is None  # Tuesday is new
    assert windows() == ["Mon 07:00–18:00", "Tue 07:00–18:00"]


def test_switching_on_without_windows_is_refused(db):
    refusal = time_windows.set_enabled(at("ann", TUESDAY_10), practice_named(RIVERSIDE), True)
    assert refusal.code == "no_windows"
    assert TimeRule.select().count() == 0


def test_switching_on_outside_the_windows_is_refused_as_a_lockout(db):
    ann, riverside = at("ann", TUESDAY_22), practice_named(RIVERSIDE)
    time_windows.add_windows(ann, riverside, WEEKDAYS, "07:00", "18:00")
    refusal = time_windows.set_enabled(ann, riverside, True)
    assert refusal.code == "lockout_time"
    assert "would block you" in refusal.message and "Tue 22:00" in refusal.message
    assert "Mon–Fri 07:00–18:00" in refusal.message
    assert not time_windows.hours_of(riverside).enabled


def test_switching_on_for_other_roles_outside_the_windows_is_fine(db):
    ann, riverside = at("ann", TUESDAY_22), practice_named(RIVERSIDE)
    time_windows.add_windows(ann, riverside, WEEKDAYS, "07:00", "18:00")
    front_desk = Role.get(Role.name == "Front Desk").id
    assert time_windows.set_scope(ann, riverside, "selected", [front_desk], []) is None
    assert time_windows.set_enabled(ann, riverside, True) is None
    # ... and Fay, Front Desk, is now blocked at night but not by day; Ann is not.
    assert overview(person("fay"), visit_of("fay").ip, TUESDAY_22).allowed == []
    assert overview(person("fay"), visit_of("fay").ip, TUESDAY_22).rows[0].decision.reason == "outside_hours"
    assert overview(person("fay"), visit_of("fay").ip, TUESDAY_22).rows[0].can_request is False
    assert [p.name for p in overview(person("fay"), visit_of("fay").ip, TUESDAY_10).allowed] == [RIVERSIDE]
    assert overview(person("ann"), visit_of("ann").ip, TUESDAY_22).allowed
    # Widening the scope to Ann's role now, outside her hours, would lock her out.
    admin = Role.get(Role.name == "Admin").id
    assert time_windows.set_scope(ann, riverside, "selected", [front_desk, admin], []).code == "lockout_time"
    assert time_windows.set_scope(ann, riverside, "everyone", [], []).code == "lockout_time"


def test_deleting_the_window_the_admin_works_in_is_refused_others_are_not(db):
    ann, riverside = at("ann", TUESDAY_10), practice_named(RIVERSIDE)
    time_windows.add_windows(ann, riverside, ["1"], "07:00", "18:00")
    time_windows.add_windows(ann, riverside, ["1"], "06:00", "12:00")
    time_windows.add_windows(ann, riverside, ["5"], "08:00", "12:00")
    time_windows.set_enabled(ann, riverside, True)
    ids = {str(time_windows.Window(w.day, w.start_minute, w.end_minute)): w.id for w in TimeWindow.select()}
    assert time_windows.delete_window(ann, riverside, ids["Sat 08:00–12:00"]) is None
    assert time_windows.delete_window(ann, riverside, ids["Tue 07:00–18:00"]) is None  # 06–12 still holds 10:00
    refusal = time_windows.delete_window(ann, riverside, ids["Tue 06:00–12:00"])
    assert refusal is not None and refusal.code == "no_windows"  # the last one, while on
    assert windows() == ["Tue 06:00–12:00"]


def test_deleting_a_window_that_would_block_the_admin_now_is_refused(db):
    ann, riverside = at("ann", TUESDAY_10), practice_named(RIVERSIDE)
    time_windows.add_windows(ann, riverside, ["1"], "07:00", "18:00")
    time_windows.add_windows(ann, riverside, ["5"], "08:00", "12:00")
    time_windows.set_enabled(ann, riverside, True)
    tuesday = TimeWindow.get(TimeWindow.day == 1).id
    assert time_windows.delete_window(ann, riverside, tuesday).code == "lockout_time"
    assert len(windows()) == 2


def test_switching_off_is_never_refused(db):
    ann, riverside = at("ann", TUESDAY_10), practice_named(RIVERSIDE)
    time_windows.add_windows(ann, riverside, ["1"], "07:00", "18:00")
    time_windows.set_enabled(ann, riverside, True)
    assert time_windows.set_enabled(replace(ann, now=TUESDAY_10), riverside, False) is None


def test_selected_with_nothing_ticked_waits_and_unknown_choices_are_refused(db):
    ann, riverside = at("ann", TUESDAY_10), practice_named(RIVERSIDE)
    assert time_windows.set_scope(ann, riverside, "selected", [], []).code == "nothing_selected"
    assert time_windows.set_scope(ann, riverside, "some", [], []).code == "invalid_choice"
    assert time_windows.set_scope(ann, riverside, "selected", [], [person("bob").id]).code == "invalid_choice"
    assert TimeRule.select().count() == 0

"""Impact preview: who a change of IP restrictions or Time Windows would block, judged from recent sign-ins.

Called as functions with a Visit whose `now` is frozen; the sign-ins are audit events written at chosen times.
"""
from dataclasses import replace
from datetime import datetime, timedelta
from ipaddress import ip_network

from conftest import person, practice_named, signed_in_earlier, visit_of

from pbnsec.domain import restrictions, time_windows
from pbnsec.domain.impact import impact
from pbnsec.domain.access import practice_settings
from pbnsec.models import AllowlistEntry, AuditEvent, Grant, IPRestriction, TimeRule

RIVERSIDE = "Riverside Dental"
NOW = datetime(2026, 12, 1, 10, 0)  # a Tuesday, 10:00 UTC (the seeded practices' zone)
OFFICE, HOME = "127.0.0.1", "127.0.0.9"


def ann_now():
    return replace(visit_of("ann", OFFICE, RIVERSIDE), now=NOW)


def office_entry() -> None:
    AllowlistEntry.create(**AllowlistEntry.stored(ip_network(OFFICE), practice_named(RIVERSIDE), label="Office"))


def enforced() -> bool:
    row = IPRestriction.get_or_none(IPRestriction.practice == practice_named(RIVERSIDE))
    return bool(row and row.enforced)


def settings_audit() -> list[str]:
    return [e.detail for e in AuditEvent.select().where(AuditEvent.action == "settings_changed").order_by(AuditEvent.id)]


def names(refusal) -> list[str]:
    return [a.user.name for a in refusal.impact.affected]


def test_switching_on_names_who_signed_in_from_elsewhere_and_saves_nothing(db):
    office_entry()
    signed_in_earlier("ann", OFFICE, NOW - timedelta(hours=1))
    signed_in_earlier("hal", OFFICE, NOW - timedelta(days=1))
    signed_in_earlier("fay", OFFICE, NOW - timedelta(days=3))
    signed_in_earlier("fay", HOME, NOW - timedelta(days=2, hours=4))
    signed_in_earlier("fay", HOME, NOW - timedelta(days=2))

    refusal = restrictions.set_enforced(ann_now(), practice_named(RIVERSIDE), True)

    assert refusal.code == "impact"
    assert refusal.message == "From their sign-ins over the last 30 days, 1 of 3 people would be blocked."
    (fay,) = refusal.impact.affected
    assert (fay.user.name, fay.sign_ins, fay.blocked, fay.ip, fay.at) == ("Fay Desk", 3, 2, HOME, NOW - timedelta(days=2))
    assert fay.reason_words == "that address would not be approved"
    assert refusal.impact.people == 4 and refusal.impact.unseen == 1  # Olive Owner has not signed in
    assert not enforced() and settings_audit() == []


def test_confirmed_it_is_saved_and_the_audit_names_them(db):
    office_entry()
    signed_in_earlier("fay", HOME, NOW - timedelta(days=2))
    assert restrictions.set_enforced(ann_now(), practice_named(RIVERSIDE), True, confirmed=True) is None
    assert enforced()
    assert settings_audit() == ["enforced: on; saved although it blocks 1 of 1 people signed in over the last 30 days: "
                                "fay@example.com"]


def test_nobody_affected_saves_at_once(db):
    office_entry()
    signed_in_earlier("fay", OFFICE, NOW - timedelta(days=2))
    assert restrictions.set_enforced(ann_now(), practice_named(RIVERSIDE), True) is None
    assert enforced() and settings_audit() == ["enforced: on"]


def test_only_the_last_30_days_count_and_not_other_practices_people(db):
    office_entry()
    signed_in_earlier("fay", HOME, NOW - timedelta(days=30, minutes=1))
    signed_in_earlier("bob", HOME, NOW - timedelta(days=1))  # Lakeside only
    signed_in_earlier("hal", HOME, NOW + timedelta(minutes=5))  # after the visit's now: not yet
    assert restrictions.set_enforced(ann_now(), practice_named(RIVERSIDE), True) is None


def test_sign_ins_into_another_practice_are_not_this_practice_s_to_show(db):
    """Hal works at both; where and when he signed in to Lakeside is Lakeside's audit data, not Riverside's."""
    office_entry()
    signed_in_earlier("hal", HOME, NOW - timedelta(days=1), practice="Lakeside Dental")
    assert restrictions.set_enforced(ann_now(), practice_named(RIVERSIDE), True) is None


def test_a_live_grant_lets_them_in_and_an_expired_one_does_not(db):
    office_entry()
    riverside = practice_named(RIVERSIDE)
    signed_in_earlier("fay", HOME, NOW - timedelta(days=1))
    signed_in_earlier("hal", HOME, NOW - timedelta(days=1))
    Grant.create(user=person("fay"), practice=riverside, ip=HOME)
    Grant.create(user=person("hal"), practice=riverside, ip=HOME, expires_at=NOW)  # expired this second
    refusal = restrictions.set_enforced(ann_now(), riverside, True)
    assert names(refusal) == ["Hal Hygienist"]


def test_an_unknown_address_counts_as_blocked(db):
    office_entry()
    signed_in_earlier("fay", "", NOW - timedelta(days=1))
    (fay,) = restrictions.set_enforced(ann_now(), practice_named(RIVERSIDE), True).impact.affected
    assert fay.ip == "" and fay.reason == "ip_unknown"


def test_widening_the_scope_names_who_it_reaches_and_narrowing_it_saves(db):
    office_entry()
    riverside = practice_named(RIVERSIDE)
    assert restrictions.set_scope(ann_now(), riverside, "selected", [person("fay").role_id], []) is None
    assert restrictions.set_enforced(ann_now(), riverside, True) is None  # nobody has signed in yet
    signed_in_earlier("fay", OFFICE, NOW - timedelta(days=1))
    signed_in_earlier("hal", HOME, NOW - timedelta(days=1))

    refusal = restrictions.set_scope(ann_now(), riverside, "everyone", [], [])
    assert refusal.code == "impact" and names(refusal) == ["Hal Hygienist"]
    assert not practice_settings(riverside.id).everyone

    assert restrictions.set_scope(ann_now(), riverside, "everyone", [], [], confirmed=True) is None
    assert practice_settings(riverside.id).everyone
    assert "saved although it blocks 1 of 2 people" in settings_audit()[-1]


def test_someone_already_blocked_is_not_the_change_s_doing(db):
    office_entry()
    riverside = practice_named(RIVERSIDE)
    before = replace(practice_settings(riverside.id), enforced=True)
    signed_in_earlier("fay", HOME, NOW - timedelta(days=1))
    assert impact(riverside, before, replace(before, everyone=True), NOW).affected == ()


def test_time_windows_judge_the_time_of_each_sign_in(db):
    riverside = practice_named(RIVERSIDE)
    assert time_windows.add_windows(ann_now(), riverside, ["0", "1", "2", "3", "4"], "07:00", "18:00") is None
    signed_in_earlier("fay", OFFICE, datetime(2026, 11, 30, 9, 0))  # Monday 09:00: inside
    signed_in_earlier("hal", OFFICE, datetime(2026, 11, 28, 11, 0))  # Saturday 11:00: outside

    refusal = time_windows.set_enabled(ann_now(), riverside, True)
    assert refusal.code == "impact"
    (hal,) = refusal.impact.affected
    assert hal.user.name == "Hal Hygienist" and hal.reason == "outside_hours"
    assert hal.reason_words == "that time would be outside the windows"
    assert not TimeRule.get_or_none(TimeRule.practice == riverside)

    assert time_windows.set_enabled(ann_now(), riverside, True, confirmed=True) is None
    assert time_windows.hours_of(riverside).enabled


def test_deleting_a_window_while_on_names_who_worked_in_it(db):
    riverside = practice_named(RIVERSIDE)
    assert time_windows.add_windows(ann_now(), riverside, ["0", "1", "2", "3", "4"], "07:00", "18:00") is None
    assert time_windows.add_windows(ann_now(), riverside, ["5"], "08:00", "12:00") is None
    assert time_windows.set_enabled(ann_now(), riverside, True) is None
    signed_in_earlier("hal", OFFICE, datetime(2026, 11, 28, 11, 0))  # Saturday 11:00
    saturday = next(w for w in time_windows.time_windows(riverside).rows if w.day == 5)

    refusal = time_windows.delete_window(ann_now(), riverside, saturday.id)
    assert refusal.code == "impact" and names(refusal) == ["Hal Hygienist"]
    assert len(time_windows.hours_of(riverside).windows) == 6

    assert time_windows.delete_window(ann_now(), riverside, saturday.id, confirmed=True) is None
    assert len(time_windows.hours_of(riverside).windows) == 5


def test_time_windows_scope_widened_to_everyone(db):
    riverside = practice_named(RIVERSIDE)
    ann = ann_now()
    assert time_windows.add_windows(ann, riverside, ["0", "1", "2", "3", "4"], "07:00", "18:00") is None
    assert time_windows.set_scope(ann, riverside, "selected", [person("fay").role_id], []) is None
    assert time_windows.set_enabled(ann, riverside, True) is None
    signed_in_earlier("hal", OFFICE, datetime(2026, 11, 28, 11, 0))  # Saturday
    refusal = time_windows.set_scope(ann, riverside, "everyone", [], [])
    assert refusal.code == "impact" and names(refusal) == ["Hal Hygienist"]


def test_a_refusal_before_the_preview_wins(db):
    """An empty allowlist is refused as before: the preview is only for changes that may be saved."""
    signed_in_earlier("fay", HOME, NOW - timedelta(days=1))
    assert restrictions.set_enforced(ann_now(), practice_named(RIVERSIDE), True).code == "empty_allowlist"

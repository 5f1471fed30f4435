"""Time Windows on their own, and in the decision: no Flask, no database, no clock but the one passed in."""
from datetime import datetime, timedelta, timezone
from ipaddress import ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbnsec.core.decision import Allowed, Blocked, Rule, Settings, Subject, decide, status_of
from pbnsec.core.windows import (
    Hours,
    Window,
    WindowError,
    describe,
    inside,
    local_time,
    parse_clock,
)

ANN = Subject(user_id=1, role_id=2)
OFFICE_IP = ip_address("192.0.2.10")
OFFICE = [Rule(ip_network("192.0.2.0/24"))]
WEEKDAYS_7_TO_18 = tuple(Window(day, 7 * 60, 18 * 60) for day in range(5))


def reference_minutes(windows):
    """Brute force: every minute of the week (0 = Monday 00:00) some window covers, walked minute by minute."""
    covered = set()
    for w in windows:
        length = (w.end - w.start) % 1440 or 1440
        for offset in range(length):
            covered.add((w.day * 1440 + w.start + offset) % (7 * 1440))
    return covered


windows_st = st.tuples(
    st.integers(0, 6), st.integers(0, 1439), st.integers(0, 1440)).filter(lambda t: t[1] != t[2]).map(
    lambda t: Window(*t))


@given(st.lists(windows_st, max_size=5), st.datetimes(min_value=datetime(2000, 1, 1),
                                                        max_value=datetime(2100, 1, 1)))
def test_inside_agrees_with_the_minute_by_minute_reference(windows, local):
    week_minute = local.weekday() * 1440 + local.hour * 60 + local.minute
    assert inside(windows, local) == (week_minute in reference_minutes(windows))


def test_an_overnight_window_runs_into_the_next_day_and_wraps_sunday_to_monday():
    friday_night = [Window(4, 22 * 60, 2 * 60)]
    assert inside(friday_night, datetime(2026, 12, 4, 23, 30))  # Friday
    assert inside(friday_night, datetime(2026, 12, 5, 1, 59))  # Saturday
    assert not inside(friday_night, datetime(2026, 12, 5, 2, 0))
    assert not inside(friday_night, datetime(2026, 12, 4, 21, 59))
    sunday_night = [Window(6, 23 * 60, 60)]
    assert inside(sunday_night, datetime(2026, 12, 7, 0, 30))  # Monday


@pytest.mark.parametrize("day, start, end", [(7, 0, 60), (-1, 0, 60), (0, 600, 600), (0, 1440, 60), (0, 0, 1441)])
def test_impossible_windows_are_refused(day, start, end):
    with pytest.raises(WindowError):
        Window(day, start, end)


@pytest.mark.parametrize("text, minute", [("07:00", 420), ("7:30", 450), ("00:00", 0), ("24:00", 1440)])
def test_clock_times_parse(text, minute):
    assert parse_clock(text) == minute


@pytest.mark.parametrize("text", ["", "7", "07:60", "24:01", "ab:cd", "07:5", "-1:00", "100:00"])
def test_bad_clock_times_are_refused_with_a_message(text):
    with pytest.raises(WindowError, match="time"):
        parse_clock(text)


def test_describe_groups_days_with_the_same_hours():
    assert describe(WEEKDAYS_7_TO_18) == "Mon–Fri 07:00–18:00"
    assert describe([Window(0, 420, 1080), Window(2, 420, 1080), Window(5, 480, 720)]) == (
        "Mon, Wed 07:00–18:00, Sat 08:00–12:00")
    assert describe([Window(4, 1320, 120)]) == "Fri 22:00–02:00"


# America/Denver in 2026: spring forward Sun 8 March at 02:00 MST (09:00 UTC), fall back Sun 1 November at
# 02:00 MDT (08:00 UTC). The reference offsets are written out here, not asked of zoneinfo.
SPRING = datetime(2026, 3, 8, 9, 0)
FALL = datetime(2026, 11, 1, 8, 0)


def denver_reference(utc: datetime) -> datetime:
    summer = SPRING <= utc < FALL
    return utc - timedelta(hours=6 if summer else 7)


@given(st.datetimes(min_value=datetime(2026, 3, 7), max_value=datetime(2026, 3, 10))
       | st.datetimes(min_value=datetime(2026, 10, 31), max_value=datetime(2026, 11, 3)),
       st.lists(windows_st, max_size=4))
def test_across_denver_dst_days_the_wall_clock_decides(utc, windows):
    local = local_time(utc, "America/Denver")
    expected = denver_reference(utc)
    assert local.replace(tzinfo=None) == expected
    hours = Hours(enabled=True, windows=tuple(windows), zone="America/Denver")
    assert hours.open_at(utc) == inside(windows, expected)


def test_a_window_from_7_follows_the_clock_change():
    early = Hours(enabled=True, windows=(Window(6, 7 * 60, 12 * 60),), zone="America/Denver")  # Sundays
    assert early.open_at(datetime(2026, 3, 8, 13, 0))  # 07:00 MDT: the day after the change
    assert not early.open_at(datetime(2026, 3, 8, 12, 59))
    assert early.open_at(datetime(2026, 11, 1, 14, 0))  # 07:00 MST
    assert not early.open_at(datetime(2026, 11, 1, 13, 59))
    # An aware instant means the same as the naive UTC one.
    assert early.open_at(datetime(2026, 11, 1, 14, 0, tzinfo=timezone.utc))


def test_an_unknown_zone_is_read_as_utc():
    assert local_time(datetime(2026, 12, 1, 9), "Not/AZone").hour == 9


# The decision.
WORKDAY = datetime(2026, 12, 1, 10, 0)  # Tuesday 10:00 UTC
NIGHT = datetime(2026, 12, 1, 22, 0)
HOURS = Hours(enabled=True, windows=WEEKDAYS_7_TO_18)


def test_time_windows_off_change_nothing():
    off = Settings(enforced=True, hours=Hours(enabled=False, windows=WEEKDAYS_7_TO_18))
    assert decide(ANN, OFFICE_IP, off, OFFICE, [], NIGHT) == Allowed("allowlist_entry", OFFICE[0])


def test_outside_the_windows_is_blocked_even_with_ip_restrictions_off_and_offers_no_request():
    decision = decide(ANN, OFFICE_IP, Settings(hours=HOURS), [], [], NIGHT)
    assert decision == Blocked("outside_hours", hours=HOURS)
    assert status_of(decision) == "outside_hours"
    assert decide(ANN, OFFICE_IP, Settings(hours=HOURS), [], [], WORKDAY) == Allowed("restrictions_off")


def test_when_both_apply_both_must_pass():
    both = Settings(enforced=True, hours=HOURS)
    assert decide(ANN, OFFICE_IP, both, OFFICE, [], WORKDAY).allowed
    assert decide(ANN, OFFICE_IP, both, OFFICE, [], NIGHT).reason == "outside_hours"
    assert decide(ANN, ip_address("203.0.113.7"), both, OFFICE, [], WORKDAY).reason == "ip_not_approved"


@pytest.mark.parametrize("hours, applies", [
    (Hours(enabled=True, everyone=False, role_ids=frozenset({2}), windows=WEEKDAYS_7_TO_18), True),
    (Hours(enabled=True, everyone=False, user_ids=frozenset({1}), windows=WEEKDAYS_7_TO_18), True),
    (Hours(enabled=True, everyone=False, role_ids=frozenset({5}), user_ids=frozenset({9}),
           windows=WEEKDAYS_7_TO_18), False),
])
def test_time_windows_for_selected_roles_and_users(hours, applies):
    assert decide(ANN, OFFICE_IP, Settings(hours=hours), [], [], NIGHT).allowed is not applies


def test_the_practice_zone_decides_which_hour_it_is():
    denver = Hours(enabled=True, windows=WEEKDAYS_7_TO_18, zone="America/Denver")
    # Tuesday 16:00 UTC is 09:00 MST (inside); Tuesday 02:00 UTC is Monday 19:00 MST (outside).
    assert decide(ANN, None, Settings(hours=denver), [], [], datetime(2026, 12, 1, 16)).allowed
    assert not decide(ANN, None, Settings(hours=denver), [], [], datetime(2026, 12, 1, 2)).allowed


@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)),
       st.lists(windows_st, max_size=4), st.booleans(), st.booleans())
def test_the_decision_is_the_and_of_ip_and_time(now, windows, ip_on, hours_on):
    hours = Hours(enabled=hours_on, windows=tuple(windows))
    settings = Settings(enforced=ip_on, hours=hours)
    for ip in (OFFICE_IP, ip_address("203.0.113.7")):
        ip_ok = not ip_on or ip in OFFICE[0].network
        time_ok = not hours_on or inside(windows, now)
        assert decide(ANN, ip, settings, OFFICE, [], now).allowed == (ip_ok and time_ok)

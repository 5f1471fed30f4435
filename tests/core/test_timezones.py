"""Time zone names and local time: pure, no app."""
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbnsec.core.timezones import TimeZoneError, abbreviation, parse_time_zone, to_local, zone, zone_names


@pytest.mark.parametrize("typed, name", [
    ("America/Denver", "America/Denver"),
    ("  america/denver ", "America/Denver"),  # case and spaces forgiven, the IANA spelling kept
    ("UTC", "UTC"),
    ("Europe/London", "Europe/London"),
])
def test_an_iana_name_is_accepted_in_its_own_spelling(typed, name):
    assert parse_time_zone(typed) == name


@pytest.mark.parametrize("typed, message", [
    ("", "Choose a time zone"),
    ("   ", "Choose a time zone"),
    ("Mars/Olympus_Mons", "'Mars/Olympus_Mons' is not a time zone this server knows"),
    ("MST7MDT; DROP TABLE practice", "is not a time zone"),
    ("../../etc/passwd", "is not a time zone"),
    ("America/" + "x" * 300, "is not a time zone"),
])
def test_anything_else_is_refused_with_a_clear_message(typed, message):
    with pytest.raises(TimeZoneError) as refused:
        parse_time_zone(typed)
    assert message in refused.value.message
    assert len(refused.value.message) < 200


@given(st.sampled_from(zone_names()))
def test_every_known_zone_parses_to_itself(name):
    assert parse_time_zone(name) == name
    assert parse_time_zone(name.upper()) == name


@pytest.mark.parametrize("utc, shown", [
    (datetime(2026, 1, 15, 18, 12), "2026-01-15 11:12 MST"),
    (datetime(2026, 7, 15, 17, 12), "2026-07-15 11:12 MDT"),  # daylight saving time: UTC-6
    (datetime(2026, 3, 8, 8, 59), "2026-03-08 01:59 MST"),  # the minute before spring-forward
    (datetime(2026, 3, 8, 9, 0), "2026-03-08 03:00 MDT"),  # 02:00 local never happens
    (datetime(2026, 11, 1, 7, 30), "2026-11-01 01:30 MDT"),  # 01:30 happens twice on the fall-back day
    (datetime(2026, 11, 1, 8, 30), "2026-11-01 01:30 MST"),
])
def test_a_utc_time_in_denver_has_the_abbreviation_in_force_then(utc, shown):
    local = to_local(utc, "America/Denver")
    assert f"{local:%Y-%m-%d %H:%M} {abbreviation(local)}" == shown
    assert local.astimezone(timezone.utc).replace(tzinfo=None) == utc


def test_no_zone_or_an_unknown_one_is_utc_never_an_error():
    at = datetime(2026, 1, 15, 18, 12)
    for name in (None, "", "Nowhere/Special", "../etc"):
        assert zone(name) == timezone.utc
        assert abbreviation(to_local(at, name)) == "UTC"


@pytest.mark.parametrize("typed, stored", [
    ("2027-01-15T11:12", datetime(2027, 1, 15, 18, 12)),  # MST, UTC-7
    ("2027-07-15 11:12", datetime(2027, 7, 15, 17, 12)),  # MDT, UTC-6
    ("2027-07-15", datetime(2027, 7, 16, 6, 0)),  # a date alone: the end of that day in Denver
    ("2027-03-14 02:30", datetime(2027, 3, 14, 9, 30)),  # skipped by spring-forward: read with the offset before
])
def test_an_until_is_typed_on_the_practices_clock_and_stored_in_utc(typed, stored):
    from pbnsec.core.durations import parse_until

    assert parse_until(typed, "America/Denver") == stored
    assert parse_until(typed) == parse_until(typed, "UTC")  # no zone: as typed, UTC

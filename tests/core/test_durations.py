"""Approval durations, "until" times and how soon or long ago an expiry is: pure."""
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbnsec.core.durations import (
    DURATIONS,
    DurationError,
    UntilError,
    expires_after,
    is_expired,
    parse_duration,
    parse_until,
    relative_expiry,
)

NOW = datetime(2026, 11, 29, 12, 0)


@pytest.mark.parametrize("text, delta", [
    ("8h", timedelta(hours=8)), ("1d", timedelta(days=1)), ("7d", timedelta(days=7)), ("30d", timedelta(days=30)),
    (" 7d ", timedelta(days=7)),
])
def test_each_duration_expires_that_long_after_now(text, delta):
    assert expires_after(NOW, parse_duration(text)) == NOW + delta


def test_forever_never_expires():
    assert expires_after(NOW, parse_duration("forever")) is None
    assert list(DURATIONS) == ["8h", "1d", "7d", "30d", "forever"]


@pytest.mark.parametrize("text", ["", "8", "8H", "2h", "-1d", "forever!", "1d\x00", "x" * 1000])
def test_anything_else_is_refused_with_the_choices(text):
    with pytest.raises(DurationError) as refused:
        parse_duration(text)
    assert "8h, 1d, 7d, 30d or forever" in refused.value.message


@pytest.mark.parametrize("expires_at, words", [
    (NOW + timedelta(hours=6), "expires in 6 h"),
    (NOW + timedelta(minutes=42), "expires in 42 min"),
    (NOW + timedelta(seconds=20), "expires in under a minute"),
    (NOW + timedelta(days=7), "expires in 7 days"),
    (NOW, "expired under a minute ago"),
    (NOW - timedelta(days=2), "expired 2 days ago"),
    (NOW - timedelta(hours=3), "expired 3 h ago"),
    (None, "until revoked"),
])
def test_relative_expiry_words(expires_at, words):
    assert relative_expiry(expires_at, NOW) == words


@given(st.integers(min_value=-10**8, max_value=10**8))
def test_expired_exactly_when_the_decision_stops_matching(seconds):
    expires_at = NOW + timedelta(seconds=seconds)
    assert is_expired(expires_at, NOW) == (seconds <= 0)
    assert relative_expiry(expires_at, NOW).startswith("expired" if seconds <= 0 else "expires in")


@pytest.mark.parametrize("text, until", [
    ("", None), ("  ", None),
    ("2026-12-01T17:30", datetime(2026, 12, 1, 17, 30)),
    ("2026-12-01 17:30", datetime(2026, 12, 1, 17, 30)),
    ("2026-12-01", datetime(2026, 12, 2, 0, 0)),  # a date alone: to the end of that day
])
def test_until_is_a_date_with_an_optional_time(text, until):
    assert parse_until(text) == until


@pytest.mark.parametrize("text", ["tomorrow", "2026-13-01", "2026-12-01T25:00", "01/12/2026", "2026-12-01T17:30Z",
                                  "9999-12-31"])
def test_an_until_that_is_no_date_is_refused(text):
    with pytest.raises(UntilError) as refused:
        parse_until(text)
    assert "YYYY-MM-DD" in refused.value.message

"""How often a waiting page asks again: every 5 s for a minute, every 15 s for nine more, then every minute."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbnsec.core.polling import SLOWEST, next_poll_seconds


@pytest.mark.parametrize("polls,seconds", [
    (0, 5), (1, 5), (11, 5),  # the first minute: 12 polls 5 s apart
    (12, 15), (47, 15),  # the next nine minutes: 36 polls 15 s apart
    (48, 60), (10_000, 60),
    (-3, 5), (None, 5), ("7", 5),  # a count the page cannot have sent starts over
])
def test_the_page_asks_again_less_and_less_often(polls, seconds):
    assert next_poll_seconds(polls) == seconds


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=10**9))
def test_it_never_speeds_up(a, b):
    low, high = sorted((a, b))
    assert 5 <= next_poll_seconds(low) <= next_poll_seconds(high) <= SLOWEST

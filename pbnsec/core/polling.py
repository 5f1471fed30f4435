"""How often a page asks again while something is pending: soon at first, then less and less often."""
from __future__ import annotations

# (polls so far, seconds until the next): every 5 s for the first minute, every 15 s for the next nine, then every
# minute. A decision usually comes while the person watches, or much later, when asking often helps nobody.
SCHEDULE = ((12, 5), (48, 15))
SLOWEST = 60


def next_poll_seconds(polls: int) -> int:
    """Seconds to wait before the next poll, after `polls` polls (a count from the page; anything odd: the start)."""
    polls = polls if isinstance(polls, int) and polls > 0 else 0
    return next((seconds for until, seconds in SCHEDULE if polls < until), SLOWEST)

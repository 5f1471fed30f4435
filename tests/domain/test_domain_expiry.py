"""Expiring approvals and allowlist entries, with a frozen now: no HTTP, no sign-in."""
from dataclasses import replace
from datetime import datetime, timedelta
from ipaddress import ip_address, ip_network

import pytest
from conftest import person, practice_named, restrict, visit_of

from pbnsec.core.clientip import Proxies
from pbnsec.core.durations import DurationError
from pbnsec.core.iprules import DEFAULT_BROADEST
from pbnsec.domain import access_requests, allowlist, restrictions
from pbnsec.domain.access import Refusal, overview
from pbnsec.domain.allowlist import EntryInput, EntryRefused, UntilRefused
from pbnsec.models import AccessRequest, AllowlistEntry, AuditEvent, Grant, IPRestriction

RIVERSIDE = "Riverside Dental"
AWAY = "127.0.0.7"
NOW = datetime(2026, 11, 29, 12, 0)


def at(visit, when):
    return replace(visit, now=when)


def ann(ip="127.0.0.1", now=NOW):
    return at(visit_of("ann", ip, RIVERSIDE), now)


def status(who, ip, now):
    """The status word and decision of Riverside for this person from this IP at this time."""
    row = overview(person(who), ip_address(ip), now).row(practice_named(RIVERSIDE).id)
    return row.status, row.decision.allowed, row.can_request


def events(action):
    return [e.detail for e in AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)]


@pytest.fixture
def enforced(db, app):
    """Riverside enforced with only the office (127.0.0.1) on its allowlist; Hal asked from home."""
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    return AccessRequest.create(user=person("hal"), practice=practice_named(RIVERSIDE), ip=AWAY).id


def approve(rid, duration=None, now=NOW):
    return access_requests.decide(ann(now=now), rid, "approved", {practice_named(RIVERSIDE).id}, duration)


# --- Part 3: expiring approvals ---

@pytest.mark.parametrize("duration, expires_at, words", [
    ("8h", NOW + timedelta(hours=8), "8 hours"), ("1d", NOW + timedelta(days=1), "1 day"),
    ("7d", NOW + timedelta(days=7), "7 days"), ("30d", NOW + timedelta(days=30), "30 days"),
    ("forever", None, "until revoked"),
])
def test_an_approval_lasts_the_chosen_duration_and_the_audit_says_so(enforced, duration, expires_at, words):
    assert approve(enforced, duration).won
    assert Grant.get().expires_at == expires_at
    until = f" (expires {expires_at:%Y-%m-%d %H:%M} UTC)" if expires_at else ""
    assert events("request_approved") == [f"request #{enforced}; duration: {words}{until}"]


def test_without_a_duration_the_practice_default_applies(enforced):
    restrictions.set_default_duration(ann(), practice_named(RIVERSIDE), "8h")
    approve(enforced)
    assert Grant.get().expires_at == NOW + timedelta(hours=8)


def test_a_practice_that_never_chose_approves_until_revoked(enforced):
    IPRestriction.update(default_duration="forever").execute()  # as migration 7 leaves existing practices
    approve(enforced)
    assert Grant.get().expires_at is None


@pytest.mark.parametrize("bad", ["", "2h", "8H", "forever ever", "1d; DROP TABLE grant"])
def test_a_bad_duration_decides_nothing(enforced, bad):
    with pytest.raises(DurationError, match="8h, 1d, 7d, 30d or forever"):
        approve(enforced, bad)
    assert AccessRequest.get_by_id(enforced).status == "pending"
    assert Grant.select().count() == 0 and events("request_approved") == []


def test_a_grant_works_up_to_its_last_second_then_shows_expired_and_may_be_asked_again(enforced):
    approve(enforced, "8h")
    end = NOW + timedelta(hours=8)
    assert status("hal", AWAY, end - timedelta(seconds=1)) == ("approved", True, False)
    assert status("hal", AWAY, end) == ("expired", False, True)
    assert Grant.select().count() == 1  # kept for the record
    # Asked again and approved again: the same grant row is renewed, with the new duration.
    hal = at(visit_of("hal", AWAY), end + timedelta(days=2))
    access = overview(hal.user, hal.ip, hal.now)
    again = access_requests.request_access(hal, access, [practice_named(RIVERSIDE).id], "still at home")
    assert again.created and status("hal", AWAY, hal.now) == ("pending", False, False)
    rid = AccessRequest.select().order_by(AccessRequest.id.desc()).first().id
    approve(rid, "1d", now=hal.now)
    grant = Grant.get()
    assert (grant.request_id, grant.expires_at) == (rid, hal.now + timedelta(days=1))
    assert status("hal", AWAY, hal.now) == ("approved", True, False)


def test_a_revoked_grant_is_not_expired(enforced):
    approve(enforced, "8h")
    Grant.delete().execute()
    assert status("hal", AWAY, NOW + timedelta(days=1))[0] == "not_requested"


def test_the_default_duration_is_saved_audited_and_a_bad_one_refused(db):
    riverside = practice_named(RIVERSIDE)
    assert restrictions.general_settings(riverside).default_duration == "forever"
    assert restrictions.set_default_duration(ann(), riverside, "7d") is None
    assert restrictions.general_settings(riverside).default_duration == "7d"
    assert events("settings_changed") == ["approvals last: 7 days"]
    refusal = restrictions.set_default_duration(ann(), riverside, "a fortnight")
    assert refusal.code == "invalid_choice" and "8h, 1d, 7d, 30d or forever" in refusal.message
    assert restrictions.general_settings(riverside).default_duration == "7d"
    assert len(events("settings_changed")) == 1


# --- Part 4: expiring allowlist entries ---

def add(visit, address, until, practice=RIVERSIDE):
    return allowlist.add_entry(visit, EntryInput(address, "Contractor", practice_named(practice).id,
                                                 confirm_local=address, until=until),
                               {practice_named(practice).id}, broadest=DEFAULT_BROADEST, proxies=Proxies())


def test_an_entry_with_an_until_stops_matching_at_that_second(db, app):
    restrict(app, RIVERSIDE, "192.0.2.0/24")
    added = add(ann(), "127.0.0.7", "2026-11-30 09:00")
    assert added.expires_at == datetime(2026, 11, 30, 9, 0)
    assert status("hal", AWAY, datetime(2026, 11, 30, 8, 59, 59))[:2] == ("allowed", True)
    assert status("hal", AWAY, datetime(2026, 11, 30, 9, 0))[:2] == ("not_requested", False)
    assert AllowlistEntry.get_by_id(added.id).expires_at  # kept for the record
    assert AuditEvent.get(AuditEvent.action == "entry_added").detail == "label: Contractor; until 2026-11-30 09:00 UTC"


def test_a_date_alone_lasts_to_the_end_of_that_day(db):
    assert add(ann(), "127.0.0.7", "2026-11-30").expires_at == datetime(2026, 12, 1)


@pytest.mark.parametrize("until, code, message", [
    ("2026-11-29 11:59", "past", "2026-11-29 11:59 UTC has passed"),
    ("2026-11-29 12:00", "past", "has passed"),
    ("next friday", "invalid", "YYYY-MM-DD"),
])
def test_an_until_that_has_passed_or_is_no_date_is_refused(db, until, code, message):
    refused = add(ann(), "127.0.0.7", until)
    assert isinstance(refused, EntryRefused)
    assert refused.codes == {"until": code} and message in refused.errors["until"].message
    assert AllowlistEntry.select().count() == 0


def test_adding_your_own_ip_to_expire_within_15_minutes_with_nothing_else_is_refused(db):
    refused = add(ann(), "127.0.0.1", "2026-11-29 12:10")
    assert refused.codes == {"until": "lockout"}
    assert "would expire within 15 minutes" in refused.errors["until"].message
    assert AllowlistEntry.select().count() == 0
    # Later than that, or someone else's address, or with another entry covering you: fine.
    assert add(ann(), "127.0.0.1", "2026-11-29 12:16").expires_at == datetime(2026, 11, 29, 12, 16)
    assert add(ann(), "127.0.0.9", "2026-11-29 12:05").network == "127.0.0.9/32"
    assert add(ann(), "127.0.0.0/24", "2026-11-29 12:05").network == "127.0.0.0/24"


@pytest.fixture
def office(db, app):
    """Riverside enforced; Ann (127.0.0.1) is let in by 127.0.0.0/24 alone; 192.0.2.0/24 is someone else's."""
    restrict(app, RIVERSIDE, "127.0.0.0/24", "192.0.2.0/24")
    return {e.network: e for e in AllowlistEntry.select()}


def set_until(entry, text, visit=None):
    return allowlist.set_until(visit or ann(), allowlist.find_entry(entry.id), text, {practice_named(RIVERSIDE).id})


def test_letting_your_own_way_in_expire_within_15_minutes_is_refused(office):
    mine = office["127.0.0.0/24"]
    refusal = set_until(mine, "2026-11-29 12:14")
    assert isinstance(refusal, Refusal) and refusal.code == "lockout"
    assert refusal.message == ("This would block you within the next 15 minutes: once this entry expires at "
                               "2026-11-29 12:14 UTC, nothing else lets your IP 127.0.0.1 in.")
    assert AllowlistEntry.get_by_id(mine.id).expires_at is None and events("entry_edited") == []


def test_an_until_further_off_or_on_an_entry_you_do_not_need_is_saved_and_audited(office):
    assert set_until(office["127.0.0.0/24"], "2026-11-29 12:30").expires_at == datetime(2026, 11, 29, 12, 30)
    assert set_until(office["192.0.2.0/24"], "2026-11-29 12:05").expires_at == datetime(2026, 11, 29, 12, 5)
    assert set_until(office["127.0.0.0/24"], "").expires_at is None
    assert events("entry_edited") == ["until: none -> 2026-11-29 12:30 UTC", "until: none -> 2026-11-29 12:05 UTC",
                                      "until: 2026-11-29 12:30 UTC -> none"]


def test_with_another_entry_covering_you_your_entry_may_expire_soon(office, app):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    assert set_until(office["127.0.0.0/24"], "2026-11-29 12:05").expires_at == datetime(2026, 11, 29, 12, 5)


def test_a_bad_or_past_until_on_an_entry_changes_nothing(office):
    for text, code in (("2026-11-28", "past"), ("soon", "invalid")):
        refused = set_until(office["192.0.2.0/24"], text)
        assert isinstance(refused, UntilRefused) and refused.error.code == code
    assert AllowlistEntry.get(AllowlistEntry.network == "192.0.2.0/24").expires_at is None


def test_switching_restrictions_on_relying_on_an_entry_about_to_expire_is_refused(db, app):
    riverside = practice_named(RIVERSIDE)
    AllowlistEntry.create(**AllowlistEntry.stored(ip_network("127.0.0.0/24"), riverside, label="Soon gone",
                                                  expires_at=NOW + timedelta(minutes=5)))
    refusal = restrictions.set_enforced(ann(), riverside, True)
    assert refusal.code == "lockout" and "within the next 15 minutes" in refusal.message
    assert not IPRestriction.select().where(IPRestriction.enforced).exists()


def test_expired_entries_leave_the_banner(office, app):
    AllowlistEntry.update(expires_at=NOW).where(AllowlistEntry.network == "127.0.0.0/24").execute()
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    shown = allowlist.ip_status(ann(), Proxies())
    assert [e.network for e in shown.covered_by] == ["127.0.0.1/32"]


"""Why blocked, and what if: the tester's decision and reasons for a user, an IP and a time (no HTTP)."""
from dataclasses import replace
from datetime import datetime, timedelta
from ipaddress import ip_network

import pytest
from conftest import person, practice_named, restrict, visit_of

from pbnsec.domain.why import Explanation, WhyRefused, explain
from pbnsec.models import AccessRequest, AllowlistEntry, Grant

RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
NOW = datetime(2026, 11, 29, 12, 0)


def ask(user="fay@example.com", ip="192.0.2.10", at="", practice="", ids=None, role=""):
    """The tester as Ann (Admin of Riverside) uses it from the office."""
    visit = replace(visit_of("ann", "127.0.0.1", RIVERSIDE), now=NOW)
    return explain(visit, user, ip, at, ids if ids is not None else {practice_named(RIVERSIDE).id}, practice, role)


def only(answer):
    assert isinstance(answer, Explanation), answer
    (row,) = answer.practices
    return row


def said(row):
    return " | ".join(row.reasons)


def test_restrictions_off_allows_and_says_so(db):
    row = only(ask())
    assert row.allowed and row.decision.reason == "restrictions_off"
    assert "IP restrictions are off at Riverside Dental" in said(row)


def test_entry_matched_by_id_network_label_and_scope(db, app):
    restrict(app, RIVERSIDE, "192.0.2.0/24")
    row = only(ask())
    entry = AllowlistEntry.get(AllowlistEntry.network == "192.0.2.0/24")
    assert row.allowed and row.decision.reason == "allowlist_entry"
    assert "apply to everyone" in said(row)
    assert f"Matched: allowlist entry #{entry.id} 192.0.2.0/24 “test 192.0.2.0/24” (this practice only)" in said(row)


def test_all_practices_entry_is_named_so(db, app):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    AllowlistEntry.create(**AllowlistEntry.stored(ip_network("192.0.2.0/24"), None, label="Head office"))
    row = only(ask())
    assert row.allowed and "“Head office” (All practices)" in said(row)


def test_switched_off_entry_would_match(db, app):
    restrict(app, RIVERSIDE, "127.0.0.1/32", "192.0.2.0/24")
    AllowlistEntry.update(active=False, label="Office").where(AllowlistEntry.network == "192.0.2.0/24").execute()
    row = only(ask())
    assert not row.allowed and row.decision.reason == "ip_not_approved"
    assert "192.0.2.0/24 “Office” (this practice only) would match but is switched off" in said(row)
    assert "No user grant for 192.0.2.10" in said(row)
    assert "Access request from 192.0.2.10 at Riverside Dental: Not Requested" in said(row)


def test_no_entry_holds_the_ip(db, app):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    row = only(ask())
    assert not row.allowed
    assert "No allowlist entry of this practice or of All practices holds 192.0.2.10" in said(row)


def test_what_if_a_time_before_and_after_an_entry_expires(db, app):
    restrict(app, RIVERSIDE, "127.0.0.1/32", "192.0.2.0/24")
    AllowlistEntry.update(expires_at=NOW + timedelta(days=1)).where(
        AllowlistEntry.network == "192.0.2.0/24").execute()
    assert only(ask(at="2026-11-29T13:00")).allowed
    row = only(ask(at="2026-12-01T00:00:00Z"))
    assert not row.allowed and "would match but expired 2026-11-30 12:00 UTC" in said(row)


def test_grant_matches_then_expired_grant_and_request_status(db, app):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    fay, riverside = person("fay"), practice_named(RIVERSIDE)
    request = AccessRequest.create(user=fay, practice=riverside, ip="192.0.2.10", status="approved")
    grant = Grant.create(user=fay, practice=riverside, ip="192.0.2.10", request=request,
                         expires_at=NOW + timedelta(hours=8))
    row = only(ask())
    assert row.allowed and row.decision.reason == "user_grant"
    assert f"Matched: user grant #{grant.id} for 192.0.2.10 (expires 2026-11-29 20:00 UTC)" in said(row)
    later = only(ask(at="2026-11-29T21:00:00+00:00"))
    assert not later.allowed and later.status == "expired"
    assert f"User grant #{grant.id} for 192.0.2.10 would match but expired 2026-11-29 20:00 UTC" in said(later)
    assert "Access request from 192.0.2.10 at Riverside Dental: Approved" in said(later)


def test_pending_request_status(db, app):
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    AccessRequest.create(user=person("fay"), practice=practice_named(RIVERSIDE), ip="192.0.2.10")
    row = only(ask())
    assert row.status == "pending" and "Access request from 192.0.2.10 at Riverside Dental: Pending" in said(row)


@pytest.mark.parametrize("roles, users, words", [
    (("Front Desk",), (), "apply to their role, Front Desk"),
    ((), ("fay",), "apply to Fay Desk by name"),
])
def test_scope_by_role_or_by_name(db, app, roles, users, words):
    restrict(app, RIVERSIDE, "127.0.0.1/32", everyone=False, roles=roles, users=users)
    row = only(ask())
    assert not row.allowed and words in said(row)


def test_not_in_scope(db, app):
    restrict(app, RIVERSIDE, "127.0.0.1/32", everyone=False, roles=("Hygienist",))
    row = only(ask())
    assert row.allowed and row.decision.reason == "not_in_scope"
    assert "neither Fay Desk nor their role (Front Desk) is selected: not in scope" in said(row)


def test_user_by_id_and_ipv4_mapped_address(db, app):
    restrict(app, RIVERSIDE, "192.0.2.0/24")
    answer = ask(user=str(person("fay").id), ip="::ffff:192.0.2.10")
    assert only(answer).allowed and str(answer.ip) == "192.0.2.10"


def test_only_the_admins_practices_from_here(db, app):
    # Hal works at both; Ann administers only Riverside: Lakeside is neither explained nor named.
    answer = ask(user="hal@example.com")
    assert [row.practice.name for row in answer.practices] == [RIVERSIDE]
    both = ask(user="hal@example.com", ids={practice_named(RIVERSIDE).id, practice_named(LAKESIDE).id})
    assert [row.practice.name for row in both.practices] == [LAKESIDE, RIVERSIDE]
    one = ask(user="hal@example.com", practice=str(practice_named(LAKESIDE).id),
              ids={practice_named(RIVERSIDE).id, practice_named(LAKESIDE).id})
    assert [row.practice.name for row in one.practices] == [LAKESIDE]


@pytest.mark.parametrize("fields, field, message", [
    (dict(user=""), "user", "Enter the user's email address or id, or choose a role."),
    (dict(user="nobody@example.com"), "user", "No one with the email or id “nobody@example.com”"),
    (dict(user="99999"), "user", "No one with the email or id “99999”"),
    (dict(ip=""), "ip", "Enter the IP address to test"),
    (dict(ip="010.0.0.1"), "ip", "010.0.0.1"),
    (dict(ip="192.0.2.0/24"), "ip", "Enter a single address, not a network"),
    (dict(at="yesterday"), "at", "“yesterday” is not a time: enter it as ISO 8601"),
    (dict(at="2026-13-01"), "at", "is not a time"),
    (dict(at="0001-01-01T00:00+01:00"), "at", "is out of range"),
    (dict(at="2026-11-30T09:00" + "0" * 40), "at", "Enter the time as ISO 8601"),
    (dict(practice="abc"), "practice", "“abc” is not a practice you administer from here."),
])
def test_refusals(db, fields, field, message):
    refused = ask(**fields)
    assert isinstance(refused, WhyRefused) and refused.field == field and message in refused.message


def test_a_user_of_other_practices_only_is_refused_like_an_unknown_one(db):
    # Bob is Admin of Lakeside only: Ann learns nothing about him, not even that he exists.
    refused = ask(user="bob@example.com")
    assert refused == WhyRefused("user", "No one with the email or id “bob@example.com” works in a practice you "
                                         "administer from here.")
    lakeside = str(practice_named(LAKESIDE).id)
    assert ask(user="hal@example.com", practice=lakeside).message == (
        f"“{lakeside}” is not a practice you administer from here.")


def test_a_practice_of_the_admin_the_user_is_not_in(db, app):
    both = {practice_named(RIVERSIDE).id, practice_named(LAKESIDE).id}
    refused = ask(user="fay@example.com", practice=str(practice_named(LAKESIDE).id), ids=both)
    assert refused == WhyRefused("practice", "Fay Desk is not a member of Lakeside Dental.")


def test_unknown_decision_reason_is_shown_generically(db, app, monkeypatch):
    # A newer kind of block the tester has no words for yet is shown by its name and what it carries.
    from dataclasses import dataclass

    from pbnsec.core.decision import Blocked
    from pbnsec.domain import why

    @dataclass(frozen=True)
    class Later(Blocked):
        holiday: str = ""

    monkeypatch.setattr(why, "_decisions", lambda user, ids, *a, **k: {
        pid: Later("practice_closed", holiday="2026-12-25") for pid in ids})
    row = only(ask())
    assert not row.allowed and row.verdict == "Blocked: practice closed."
    assert row.extra == (("holiday", "2026-12-25"),)


def test_a_role_is_tested_as_someone_selected_by_that_role_only(db, app):
    restrict(app, RIVERSIDE, "127.0.0.1/32", everyone=False, roles=["Hygienist"])
    hygienist = only(ask(user="", role="Hygienist"))
    assert not hygienist.allowed and hygienist.decision.reason == "ip_not_approved"
    assert "apply to their role, Hygienist" in said(hygienist) and "No user grant for 192.0.2.10" in said(hygienist)
    front_desk = only(ask(user="", role=str(person("fay").role_id)))
    assert front_desk.allowed and "the role Front Desk is not selected: not in scope" in said(front_desk)
    answer = ask(user="", role="Hygienist")
    assert answer.for_role and answer.user.name == "Someone with the role Hygienist"


def test_a_role_that_is_not_one_is_refused(db):
    assert ask(user="", role="Dentist") == WhyRefused("role", "“Dentist” is not a role.")


def test_time_windows_are_part_of_the_chain(db, app):
    from pbnsec.domain import time_windows

    riverside = practice_named(RIVERSIDE)
    ann = replace(visit_of("ann", "127.0.0.1", RIVERSIDE), now=datetime(2026, 12, 1, 10, 0))  # a Tuesday
    assert time_windows.add_windows(ann, riverside, ["0", "1", "2", "3", "4"], "07:00", "18:00") is None
    assert "Time Windows are off at Riverside Dental" in said(only(ask()))
    assert time_windows.set_enabled(ann, riverside, True) is None
    evening = only(ask(at="2026-12-01T19:40"))
    assert not evening.allowed and evening.verdict == "Blocked: outside the working hours (Time Windows)."
    assert ("Time Windows are on at Riverside Dental and apply to everyone: Mon–Fri 07:00–18:00 (UTC). | "
            "Tue 2026-12-01 19:40 UTC is outside them.") in said(evening)
    assert evening.extra == ()  # the windows are said in the reasons, not listed again
    assert "is inside them" in said(only(ask(at="2026-12-01T09:00")))


def test_a_time_without_offset_is_read_in_the_practice_s_zone(db, app):
    from pbnsec.models import Practice

    Practice.update(time_zone="America/Denver").execute()
    practice = practice_named(RIVERSIDE)
    answer = ask(at="2026-12-01T08:30", practice=str(practice.id))
    assert answer.at == datetime(2026, 12, 1, 15, 30) and answer.zone == "America/Denver"
    assert ask(at="2026-12-01T08:30Z").at == datetime(2026, 12, 1, 8, 30)  # an offset says itself

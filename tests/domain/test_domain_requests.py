"""Access requests called as functions with a Visit: no HTTP, no sign-in."""
from datetime import timedelta

import pytest
from conftest import person, practice_named, restrict, visit_of

from pbnsec.domain import access_requests
from pbnsec.domain.access import overview
from pbnsec.domain.access_requests import NOTE_MAX, check_submission, request_access
from pbnsec.models import AccessRequest, AuditEvent, Grant, RateLimitHit

RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
AWAY = "127.0.0.7"  # an address no allowlist entry covers


@pytest.fixture
def blocked(app):
    """Both practices enforce IP restrictions with only the office (127.0.0.1) on their allowlists."""
    restrict(app, RIVERSIDE, "127.0.0.1/32")
    restrict(app, LAKESIDE, "127.0.0.1/32")
    with app.app_context():
        yield


def ask(who, *names, note="", ip=AWAY, check_only=False):
    """What the user's form asks for, checked (check_only) or submitted."""
    visit = visit_of(who, ip=ip)
    access = overview(visit.user, visit.ip, visit.now)
    call = check_submission if check_only else request_access
    return call(visit, access, [practice_named(n).id for n in names], note)


def make_request(who, practice, ip=AWAY, status="pending", decided_by=None, at=None):
    return AccessRequest.create(user=person(who), practice=practice_named(practice), ip=ip, status=status,
                                decided_by=person(decided_by) if decided_by else None,
                                decided_at=at if decided_by else None)


def stored():
    return sorted((r.user.email, r.practice.name, r.ip, r.status, r.note) for r in AccessRequest.select())


def events(action):
    return [(e.actor_label, e.actor_ip, e.practice.name if e.practice_id else None, e.target, e.detail)
            for e in AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)]


def ids(*practice_names):
    return {practice_named(n).id for n in practice_names}


# --- the user's side: checking and submitting ---

def test_a_request_for_the_chosen_practices_is_made_and_audited(blocked):
    asked = ask("hal", RIVERSIDE, LAKESIDE, note="  New laptop\r\nat home  ")
    assert (asked.errors, asked.code) == ({}, "")
    assert [p.name for p in asked.created] == [LAKESIDE, RIVERSIDE]  # in name order
    assert stored() == [("hal@example.com", LAKESIDE, AWAY, "pending", "New laptop\nat home"),
                        ("hal@example.com", RIVERSIDE, AWAY, "pending", "New laptop\nat home")]
    assert sorted(events("request_submitted")) == [
        ("hal@example.com", AWAY, LAKESIDE, AWAY, "New laptop\nat home"),
        ("hal@example.com", AWAY, RIVERSIDE, AWAY, "New laptop\nat home")]


def test_checking_writes_nothing(blocked):
    checked = ask("hal", RIVERSIDE, check_only=True)
    assert checked.errors == {} and [p.name for p in checked.practices] == [RIVERSIDE] and checked.created == ()
    assert stored() == [] and RateLimitHit.select().count() == 0


@pytest.mark.parametrize("chosen,message", [
    ([], "Choose at least one practice to ask for access to."),
    ([None], "Choose only practices you belong to."),  # not an id at all
    ([999], "Choose only practices you belong to."),
    (["Lakeside", "Riverside"], "Choose only practices you belong to."),  # fay belongs to Riverside only
])
def test_only_the_users_own_practices_may_be_chosen(blocked, chosen, message):
    practice_ids = [practice_named(c + " Dental").id if isinstance(c, str) else c for c in chosen]
    visit = visit_of("fay", ip=AWAY)
    asked = request_access(visit, overview(visit.user, visit.ip), practice_ids, "")
    assert (asked.errors, asked.code) == ({"practice": message}, "invalid")
    assert stored() == [] and RateLimitHit.select().count() == 0


def test_a_pending_request_is_not_asked_for_again(blocked):
    make_request("hal", RIVERSIDE)
    asked = ask("hal", LAKESIDE, RIVERSIDE)
    assert asked.errors == {"practice": "Your request for Riverside Dental from 127.0.0.7 is already pending."}
    assert len(stored()) == 1
    # from another IP it is another request
    assert ask("hal", RIVERSIDE, ip="127.0.0.8").created == (practice_named(RIVERSIDE),)


def test_a_practice_that_already_lets_the_user_in_is_refused(app):
    restrict(app, LAKESIDE, "127.0.0.1/32")  # Riverside has no restrictions: hal is let in there from anywhere
    with app.app_context():
        asked = ask("hal", RIVERSIDE)
        assert asked.errors == {"practice": "You already have access to Riverside Dental from 127.0.0.7."}
        assert stored() == []


def test_a_practice_that_takes_no_requests_refuses_them(app):
    restrict(app, RIVERSIDE, "127.0.0.1/32", requests_allowed=False)
    with app.app_context():
        asked = ask("fay", RIVERSIDE)
        assert asked.errors == {"practice": "Riverside Dental does not take access requests from you right now."}
        assert stored() == []


def test_a_user_whose_ip_cannot_be_told_cannot_ask(blocked):
    visit = visit_of("fay", ip=None)
    asked = request_access(visit, overview(visit.user, None), [practice_named(RIVERSIDE).id], "")
    assert asked.errors == {"practice": "Riverside Dental does not take access requests from you right now."}
    assert stored() == []


def test_the_first_problem_in_name_order_is_the_one_shown(blocked):
    make_request("hal", RIVERSIDE)
    make_request("hal", LAKESIDE)
    asked = ask("hal", RIVERSIDE, LAKESIDE)
    assert asked.errors == {"practice": "Your request for Lakeside Dental from 127.0.0.7 is already pending."}


@pytest.mark.parametrize("note,kept", [
    ("", ""),
    ("n" * NOTE_MAX, "n" * NOTE_MAX),
    ("  " + "n" * NOTE_MAX + "\n", "n" * NOTE_MAX),  # counted after trimming
    ("x" * 124 + ("\r\n" + "x" * 124) * 3 + "y", None),  # 500 as the text box counts a line break
    ("tab\tand\nlines", "tab\tand\nlines"),
])
def test_notes_within_the_limit_are_kept(blocked, note, kept):
    asked = ask("fay", RIVERSIDE, note=note)
    assert asked.errors == {}
    expected = note.replace("\r\n", "\n").strip() if kept is None else kept
    assert stored()[0][4] == expected and len(expected) <= NOTE_MAX


@pytest.mark.parametrize("length", [NOTE_MAX + 1, 4000])
def test_a_note_over_the_limit_is_refused(blocked, length):
    asked = ask("fay", RIVERSIDE, note="n" * length)
    assert asked.errors == {"note": f"The note can be at most 500 characters long (yours has {length})."}
    assert asked.note == "n" * length and stored() == [] and events("request_submitted") == []


@pytest.mark.parametrize("hidden", ["\x00", "\x1b", "\u202e", "\v"])
def test_a_note_with_a_control_character_is_refused_and_shown_back_without_it(blocked, hidden):
    asked = ask("fay", RIVERSIDE, note=f"New laptop{hidden}\n\tat home")
    assert asked.errors == {"note": "The note cannot contain control characters (line breaks and tabs are fine)."}
    assert asked.note == "New laptop\n\tat home" and asked.code == "invalid"
    assert stored() == []


def test_both_fields_can_be_wrong_at_once(blocked):
    asked = ask("fay", note="\x00")
    assert set(asked.errors) == {"practice", "note"}


def test_requests_are_limited_per_user_and_per_ip(blocked):
    for _ in range(access_requests.REQUEST_LIMIT_PER_USER):
        assert ask("fay", RIVERSIDE).created
        AccessRequest.update(status="rejected").execute()  # so that asking again is allowed
    asked = ask("fay", RIVERSIDE, note="one more")
    assert asked.code == "rate_limited" and asked.created == ()
    assert asked.errors["practice"].startswith("Too many access requests. Try again in ")
    assert len(stored()) == access_requests.REQUEST_LIMIT_PER_USER
    assert ask("hal", RIVERSIDE).created  # someone else from the same IP still may


def test_a_parallel_submit_keeps_the_one_pending_request(blocked):
    visit = visit_of("hal", ip=AWAY)
    riverside = practice_named(RIVERSIDE)
    assert access_requests.submit(visit, [riverside], "first") == [riverside]
    assert access_requests.submit(visit, [riverside], "second") == []
    assert stored() == [("hal@example.com", RIVERSIDE, AWAY, "pending", "first")]


# --- the administrator's side: the list, the count, deciding ---

def test_the_listing_holds_pending_first_then_the_latest_decided_of_these_practices_only(db, count_statements):
    old, new = make_request("hal", RIVERSIDE), make_request("fay", RIVERSIDE, ip="::1")
    make_request("hal", LAKESIDE)
    now = old.created_at
    earlier = make_request("fay", RIVERSIDE, ip="127.0.0.8", status="rejected", decided_by="ann", at=now)
    later = make_request("hal", RIVERSIDE, ip="127.0.0.9", status="approved", decided_by="owner",
                         at=now + timedelta(minutes=1))
    riverside = ids(RIVERSIDE)
    seen = count_statements()
    shown = access_requests.listing(riverside)
    assert [r.id for r in shown.pending] == [old.id, new.id]
    assert [r.id for r in shown.decided] == [later.id, earlier.id]
    # everything a row shows came with it: two queries whatever the number of rows
    assert [(r.user.name, r.user.role.name, r.practice.name) for r in shown.pending] == [
        ("Hal Hygienist", "Hygienist", RIVERSIDE), ("Fay Desk", "Front Desk", RIVERSIDE)]
    assert [r.decided_by.name for r in shown.decided] == ["Olive Owner", "Ann Lee"]
    assert len(seen.all) == 2, seen
    assert access_requests.listing(ids(RIVERSIDE), decided_shown=1).decided == [later]
    assert access_requests.listing(set()) == access_requests.Listing([], [])


def test_the_pending_count_is_of_these_practices(db):
    make_request("hal", RIVERSIDE)
    make_request("fay", RIVERSIDE)
    make_request("hal", LAKESIDE)
    make_request("hal", RIVERSIDE, ip="127.0.0.8", status="rejected", decided_by="ann")
    assert access_requests.pending_count(ids(RIVERSIDE)) == 2
    assert access_requests.pending_count(ids(LAKESIDE)) == 1
    assert access_requests.pending_count(ids(RIVERSIDE, LAKESIDE)) == 3
    assert access_requests.pending_count(set()) == 0


def test_a_request_is_decidable_only_within_the_practices_given(db):
    rid = make_request("hal", RIVERSIDE).id
    assert access_requests.decidable(rid, ids(RIVERSIDE)).user.email == "hal@example.com"
    assert access_requests.decidable(rid, ids(LAKESIDE)) is None
    assert access_requests.decidable(rid + 1, ids(RIVERSIDE, LAKESIDE)) is None


def test_approving_grants_that_user_that_practice_from_that_ip_and_is_audited(db):
    rid = make_request("hal", RIVERSIDE).id
    visit = visit_of("ann", practice=RIVERSIDE)
    decided = access_requests.decide(visit, rid, "approved", ids(RIVERSIDE))
    assert decided.won
    r = decided.request
    assert (r.status, r.decided_by.email, r.decided_at, r.user.name, r.practice.name) == (
        "approved", "ann@example.com", visit.now, "Hal Hygienist", RIVERSIDE)
    assert [(g.user.email, g.practice.name, g.ip, g.request_id, g.created_by.email) for g in Grant.select()] == [
        ("hal@example.com", RIVERSIDE, AWAY, rid, "ann@example.com")]
    assert events("request_approved") == [
        ("ann@example.com", "127.0.0.1", RIVERSIDE, f"hal@example.com from {AWAY}", f"request #{rid}; duration: until revoked")]


def test_rejecting_grants_nothing(db):
    rid = make_request("hal", RIVERSIDE).id
    decided = access_requests.decide(visit_of("ann"), rid, "rejected", ids(RIVERSIDE))
    assert decided.won and decided.request.status == "rejected"
    assert Grant.select().count() == 0
    assert events("request_rejected") == [
        ("ann@example.com", "127.0.0.1", RIVERSIDE, f"hal@example.com from {AWAY}", f"request #{rid}")]


def test_the_second_decision_loses_and_says_who_decided(db):
    rid = make_request("hal", RIVERSIDE).id
    assert access_requests.decide(visit_of("ann"), rid, "approved", ids(RIVERSIDE)).won
    late = access_requests.decide(visit_of("owner"), rid, "rejected", ids(RIVERSIDE, LAKESIDE))
    assert not late.won
    assert (late.request.status, late.request.decided_by.name) == ("approved", "Ann Lee")
    assert Grant.select().count() == 1
    assert len(events("request_approved")) == 1 and events("request_rejected") == []


def test_a_request_of_another_practice_is_not_decided(db):
    rid = make_request("hal", RIVERSIDE).id
    assert access_requests.decide(visit_of("bob"), rid, "approved", ids(LAKESIDE)) is None
    assert access_requests.decide(visit_of("bob"), rid + 1, "approved", ids(LAKESIDE)) is None
    assert AccessRequest.get_by_id(rid).status == "pending"
    assert Grant.select().count() == 0 and events("request_approved") == []


def test_only_approved_or_rejected_is_a_decision(db):
    rid = make_request("hal", RIVERSIDE).id
    with pytest.raises(ValueError):
        access_requests.decide(visit_of("ann"), rid, "pending", ids(RIVERSIDE))
    assert AccessRequest.get_by_id(rid).decided_by_id is None


def test_deciding_costs_four_statements_when_it_wins_and_two_when_it_loses(db, count_statements):
    rid = make_request("hal", RIVERSIDE).id
    ann, owner, riverside = visit_of("ann"), visit_of("owner"), ids(RIVERSIDE)
    won = count_statements()
    assert access_requests.decide(ann, rid, "approved", riverside).won
    assert len(won.all) == 4, won  # the UPDATE, the row with its people, the grant, the audit row
    lost = count_statements()
    assert not access_requests.decide(owner, rid, "rejected", riverside).won
    assert len(lost.all) == 2, lost  # the UPDATE that found nothing pending, the row as the winner left it

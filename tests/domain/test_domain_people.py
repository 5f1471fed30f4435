"""People: who may change whom, the role ceiling, the last Owner, people in several practices; invites."""
from datetime import timedelta

import pytest
from conftest import PASSWORD, person, practice_named, visit_of
from werkzeug.security import check_password_hash

from pbnsec.domain import people, sessions
from pbnsec.domain.access import Refusal
from pbnsec.domain.users import authenticate
from pbnsec.models import AuditEvent, Invite, Membership, Role, SignIn, User

RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"


def mine(*names):
    return [practice_named(n) for n in names]


def as_admin(who):
    """A visit of a seeded administrator and the practices they administer (all of theirs: no restrictions on)."""
    visit = visit_of(who)
    return visit, list(visit.user.practices())


def refused(result, code):
    assert isinstance(result, Refusal), result
    assert result.code == code, result.message
    return result.message


# --- who may change whom ---

# ann: Admin of Riverside; bob: Admin of Lakeside; owner: Owner of both; fay: Front Desk (Riverside);
# hal: Hygienist in both practices.
MATRIX = [
    ("ann", "fay", True),
    ("ann", "hal", False),  # Hal also works in Lakeside, which Ann does not administer
    ("ann", "owner", False),  # above her role, and in Lakeside
    ("ann", "bob", False),  # not one of hers
    ("bob", "fay", False),
    ("bob", "hal", False),  # also in Riverside
    ("owner", "hal", True),
    ("owner", "ann", True),
    ("owner", "bob", True),
]


@pytest.mark.parametrize("who,whom,allowed", MATRIX)
def test_an_administrator_changes_only_people_whose_practices_are_all_theirs(db, who, whom, allowed):
    visit, administered = as_admin(who)
    target = person(whom)
    before = practices_of(whom)
    result = people.set_role(visit, administered, target, "Billing")
    if allowed:
        assert not isinstance(result, Refusal), result
        assert person(whom).role.name == "Billing"
    else:
        assert isinstance(result, Refusal) and result.code in ("not_yours",)
        assert person(whom).role.name == target.role.name
    assert practices_of(whom) == before


def practices_of(who):
    return sorted(p.name for p in person(who).practices())


def test_an_admin_of_one_practice_never_changes_someone_s_membership_in_another(db):
    visit, administered = as_admin("ann")
    hal = person("hal")
    riverside = practice_named(RIVERSIDE)
    message = refused(people.set_practices(visit, administered, hal, [riverside.id]), "not_yours")
    assert "Lakeside Dental" in message
    assert practices_of("hal") == [LAKESIDE, RIVERSIDE]
    refused(people.set_active(visit, administered, hal, False), "not_yours")
    refused(people.reset_password(visit, administered, hal, people.ONE_TIME_PASSWORD), "not_yours")
    assert person("hal").active and authenticate("hal@example.com", PASSWORD)


def test_practices_can_be_chosen_only_among_those_administered_from_here(db):
    visit, administered = as_admin("ann")
    lakeside = practice_named(LAKESIDE)
    message = refused(people.set_practices(visit, administered, person("fay"), [lakeside.id]), "invalid_choice")
    assert "practices you administer" in message
    refused(people.set_practices(visit, administered, person("fay"), []), "invalid_choice")
    refused(people.set_practices(visit, administered, person("fay"), ["x"]), "invalid_choice")
    assert practices_of("fay") == [RIVERSIDE]


def test_the_owner_moves_someone_between_practices_and_both_practices_see_it(db):
    visit, administered = as_admin("owner")
    lakeside = practice_named(LAKESIDE)
    people.set_practices(visit, administered, person("fay"), [lakeside.id])
    assert practices_of("fay") == [LAKESIDE]
    events = AuditEvent.select().where(AuditEvent.action == "user_practices_changed")
    assert sorted(e.practice.name for e in events) == [LAKESIDE, RIVERSIDE]
    assert all("added to Lakeside Dental; removed from Riverside Dental" == e.detail for e in events)


@pytest.mark.parametrize("who,role", [("ann", "Owner"), ("bob", "Owner")])
def test_nobody_grants_a_role_above_their_own(db, who, role):
    visit, administered = as_admin(who)
    target = "fay" if who == "ann" else None
    if target is None:  # Bob adds someone instead
        result = people.add_person(visit, administered, "new@example.com", "New", role,
                                   [administered[0].id], people.ONE_TIME_PASSWORD)
        refused(result, "invalid_choice")
        assert not User.select().where(User.email == "new@example.com").exists()
    else:
        message = refused(people.set_role(visit, administered, person(target), role), "invalid_choice")
        assert message == "You cannot give the role Owner: it is above your own."
        assert person(target).role.name == "Front Desk"
    assert [r.name for r in people.grantable_roles(visit)][0] == "Admin"


def test_the_last_active_owner_is_never_deactivated_or_demoted_even_from_the_console(db):
    console = people.console_visit()
    everything = people.every_practice()
    owner = person("owner")
    assert "last active Owner" in refused(people.set_active(console, everything, owner, False), "last_owner")
    assert "last active Owner" in refused(people.set_role(console, everything, owner, "Admin"), "last_owner")
    assert person("owner").active and person("owner").role.name == "Owner"
    # With a second Owner, the first may go.
    people.set_role(console, everything, person("ann"), "Owner")
    assert people.set_active(console, everything, person("owner"), False).active is False
    refused(people.set_active(console, everything, person("ann"), False), "last_owner")


def test_an_administrator_cannot_lock_themselves_out(db):
    visit, administered = as_admin("ann")
    ann = person("ann")
    assert refused(people.set_active(visit, administered, ann, False), "yourself") == "You cannot deactivate yourself."
    refused(people.set_role(visit, administered, ann, "Front Desk"), "yourself")
    refused(people.set_practices(visit, administered, ann, [practice_named(RIVERSIDE).id]), "yourself")
    refused(people.reset_password(visit, administered, ann, people.ONE_TIME_PASSWORD), "yourself")
    assert person("ann").active and person("ann").role.name == "Admin"


def test_an_unknown_role_or_way_of_resetting_changes_nothing(db):
    visit, administered = as_admin("ann")
    assert "No role named 'Janitor'" in refused(people.set_role(visit, administered, person("fay"), "Janitor"),
                                                "invalid_choice")
    refused(people.reset_password(visit, administered, person("fay"), "carrier pigeon"), "invalid_choice")
    assert authenticate("fay@example.com", PASSWORD)


# --- deactivation ---

def test_deactivation_ends_every_sign_in_and_stops_sign_in(db):
    visit, administered = as_admin("ann")
    fay = person("fay")
    tokens = [sessions.start(fay), sessions.start(fay, blocked=True)]
    assert people.set_active(visit, administered, fay, False).active is False
    assert all(sessions.find(t) is None and sessions.find(t, blocked=True) is None for t in tokens)
    assert SignIn.select().where(SignIn.user == fay).count() == 0
    assert authenticate("fay@example.com", PASSWORD) is None
    refused(people.set_active(visit, administered, fay, False), "unchanged")
    assert people.set_active(visit, administered, fay, True).active is True
    assert authenticate("fay@example.com", PASSWORD) is not None
    actions = [e.action for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert actions == ["user_deactivated", "user_reactivated"]


# --- adding, resetting, invites ---

def test_adding_a_person_with_a_one_time_password(db):
    visit, administered = as_admin("ann")
    issued = people.add_person(visit, administered, " Nia@Example.com ", "Nia  New", "Hygienist",
                               [practice_named(RIVERSIDE).id], people.ONE_TIME_PASSWORD)
    nia = User.get(User.email == "nia@example.com")
    assert nia.name == "Nia New" and nia.must_change_password
    assert check_password_hash(nia.password_hash, issued.password)
    event = AuditEvent.get(AuditEvent.action == "user_created")
    assert (event.actor_label, event.target, event.practice.name) == ("ann@example.com", "nia@example.com", RIVERSIDE)


@pytest.mark.parametrize("email,name,message", [
    ("ann@example.com", "Ann Again", "already exists"),
    ("not-an-email", "Nia", "is not an email address"),
    ("nia@example.com", "", "1 to 100 characters"),
    ("nia@example.com", "Nia\x1b", "control characters"),
])
def test_adding_refuses_bad_input_and_stores_nothing(db, email, name, message):
    visit, administered = as_admin("ann")
    users, invites = User.select().count(), Invite.select().count()
    result = people.add_person(visit, administered, email, name, "Hygienist", [practice_named(RIVERSIDE).id],
                               people.INVITE_LINK)
    assert message in refused(result, "invalid_choice")
    assert (User.select().count(), Invite.select().count()) == (users, invites)
    assert not AuditEvent.select().exists()


def test_an_invite_link_sets_the_password_once_within_72_hours(db):
    visit, administered = as_admin("ann")
    issued = people.add_person(visit, administered, "nia@example.com", "Nia Newbury", "Hygienist",
                               [practice_named(RIVERSIDE).id], people.INVITE_LINK)
    assert issued.password is None and issued.expires_at == visit.now + timedelta(hours=72)
    stored = Invite.get()
    assert issued.invite_token not in stored.token_hash  # only a hash is kept
    assert people.check_invite(issued.invite_token, visit.now).error is None

    assert "contains your name" in people.accept_invite(visit, issued.invite_token, "NiaNewbury2026",
                                                        "NiaNewbury2026")["new"]
    assert people.accept_invite(visit, issued.invite_token, "tidy molar chart 2026", "tidy molar chart") == {
        "repeat": "The two passwords differ."}
    assert people.accept_invite(visit, issued.invite_token, "tidy molar chart 2026", "tidy molar chart 2026") == {}
    assert authenticate("nia@example.com", "tidy molar chart 2026") is not None
    again = people.accept_invite(visit, issued.invite_token, "another good passphrase", "another good passphrase")
    assert "already used" in again["link"]
    assert authenticate("nia@example.com", "tidy molar chart 2026") is not None


def test_an_expired_or_replaced_link_is_refused_clearly(db):
    visit, administered = as_admin("ann")
    fay = person("fay")
    first = people.reset_password(visit, administered, fay, people.INVITE_LINK)
    assert authenticate("fay@example.com", PASSWORD) is None  # the old password stops working at once
    later = visit.now + timedelta(hours=72)
    assert people.check_invite(first.invite_token, later).status == 410
    assert "expired" in people.check_invite(first.invite_token, later).error
    second = people.reset_password(visit, administered, fay, people.INVITE_LINK)
    assert "replaced by a newer one" in people.check_invite(first.invite_token, visit.now).error
    assert people.check_invite(second.invite_token, visit.now).error is None
    assert people.check_invite("x" * 43, visit.now).status == 404
    people.set_active(visit, administered, fay, False)
    assert people.check_invite(second.invite_token, visit.now).status == 410  # deactivation ends open links
    assert "reactivate them first" in refused(people.reset_password(visit, administered, fay, people.INVITE_LINK),
                                              "inactive")


def test_a_password_reset_ends_the_person_s_sign_ins(db):
    visit, administered = as_admin("ann")
    fay = person("fay")
    token = sessions.start(fay)
    issued = people.reset_password(visit, administered, fay, people.ONE_TIME_PASSWORD)
    assert sessions.find(token) is None
    assert authenticate("fay@example.com", issued.password).must_change_password
    assert AuditEvent.get(AuditEvent.action == "password_reset").detail == "one-time password"


# --- practices ---

def test_only_an_owner_renames_practices(db):
    visit, administered = as_admin("ann")
    refused(people.rename_practice(visit, administered, administered[0].id, "Riverside Smiles"), "not_yours")
    owner, everything = as_admin("owner")
    riverside = practice_named(RIVERSIDE)
    assert people.rename_practice(owner, everything, riverside.id, "  Riverside   Smiles ").name == "Riverside Smiles"
    assert "already exists" in refused(people.rename_practice(owner, everything, riverside.id, LAKESIDE),
                                       "invalid_choice")
    refused(people.rename_practice(owner, everything, riverside.id, ""), "invalid_choice")
    refused(people.rename_practice(owner, everything, riverside.id, "x" * 101), "invalid_choice")
    event = AuditEvent.get(AuditEvent.action == "practice_renamed")
    assert (event.target, event.detail) == ("Riverside Smiles", "was Riverside Dental")


def test_an_owner_renames_only_practices_administered_from_here(db):
    owner = visit_of("owner")
    refused(people.rename_practice(owner, mine(RIVERSIDE), practice_named(LAKESIDE).id, "Lakeside Two"), "not_yours")


# --- the list ---

def test_the_list_shows_only_people_of_the_administered_practices_with_their_last_sign_in(db):
    from datetime import datetime

    from conftest import signed_in_earlier

    signed_in_earlier("fay", "127.0.0.7", datetime(2026, 12, 1, 8, 30))
    AuditEvent.update(practice=practice_named(RIVERSIDE)).execute()
    visit, administered = as_admin("ann")
    page = people.list_people(visit, administered)
    assert [r.user.email for r in page.rows] == ["ann@example.com", "fay@example.com", "hal@example.com",
                                                 "owner@example.com"]
    fay = next(r for r in page.rows if r.user.email == "fay@example.com")
    assert (fay.last_sign_in_at, fay.last_sign_in_ip, fay.manageable) == (datetime(2026, 12, 1, 8, 30),
                                                                          "127.0.0.7", True)
    assert [r.manageable for r in page.rows] == [True, True, False, False]
    assert [r.user.name for r in people.list_people(visit, administered, "HYGIEN").rows] == ["Hal Hygienist"]
    assert [r.user.name for r in people.list_people(visit, administered, "fay@").rows] == ["Fay Desk"]
    # Bob's practice does not see Fay's sign-in at Riverside.
    bob, bobs = as_admin("bob")
    assert "fay@example.com" not in [r.user.email for r in people.list_people(bob, bobs).rows]


def test_a_long_list_comes_a_page_at_a_time(db):
    riverside = practice_named(RIVERSIDE)
    role = Role.get(Role.name == "Billing")
    for i in range(people.PAGE_SIZE + 5):
        user = User.create(email=f"p{i:03}@example.com", name=f"Person {i:03}", password_hash="x", role=role)
        Membership.create(user=user, practice=riverside)
    visit, administered = as_admin("ann")
    first, second = people.list_people(visit, administered), people.list_people(visit, administered, page=2)
    assert (first.total, first.pages, len(first.rows), len(second.rows)) == (59, 2, 50, 9)
    assert people.list_people(visit, administered, page=99).page == 2

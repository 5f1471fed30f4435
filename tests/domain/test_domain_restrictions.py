"""IP restrictions (General Settings) called as functions with a Visit: no HTTP, no sign-in."""
from ipaddress import ip_network

import pytest
from conftest import person, practice_named, visit_of

from pbnsec.domain import restrictions
from pbnsec.domain.access import settings_for
from pbnsec.models import (
    AllowlistEntry,
    AuditEvent,
    IPRestriction,
    RestrictedRole,
    RestrictedUser,
    Role,
)

RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"


def allow(practice: str | None, *networks: str, active: bool = True) -> None:
    """Put networks on a practice's allowlist (None: All practices)."""
    for text in networks:
        net = ip_network(text)
        AllowlistEntry.create(**AllowlistEntry.stored(net, practice_named(practice) if practice else None,
                                                      label=f"test {net}", active=active))


def stored(practice: str = RIVERSIDE) -> dict:
    """The practice's IP restrictions as the database holds them, in words."""
    p = practice_named(practice)
    row = IPRestriction.get_or_none(IPRestriction.practice == p)
    return {"row": row is not None,
            "enforced": row.enforced if row else False,
            "everyone": row.everyone if row else True,
            "requests": row.requests_allowed if row else True,
            "roles": sorted(r.role.name for r in RestrictedRole.select().where(RestrictedRole.practice == p)),
            "users": sorted(r.user.email for r in RestrictedUser.select().where(RestrictedUser.practice == p))}


UNTOUCHED = {"row": False, "enforced": False, "everyone": True, "requests": True, "roles": [], "users": []}


def changes() -> list[tuple]:
    return [(e.actor_label, e.actor_ip, e.practice.name, e.target, e.detail)
            for e in AuditEvent.select().where(AuditEvent.action == "settings_changed").order_by(AuditEvent.id)]


def role_ids(*names) -> list[int]:
    return [Role.get(Role.name == name).id for name in names]


def member_ids(*people) -> list[int]:
    return [person(who).id for who in people]


# --- what General Settings shows ---

def test_general_settings_of_an_untouched_practice(db, count_statements):
    riverside = practice_named(RIVERSIDE)
    seen = count_statements()
    shown = restrictions.general_settings(riverside)
    assert (shown.practice.name, shown.settings.enforced, shown.settings.everyone, shown.requests_allowed) == (
        RIVERSIDE, False, True, True)
    assert [r.name for r in shown.roles][:2] == ["Owner", "Admin"] and len(shown.roles) == 7
    assert [(m.name, m.role.name) for m in shown.members] == [
        ("Ann Lee", "Admin"), ("Fay Desk", "Front Desk"), ("Hal Hygienist", "Hygienist"), ("Olive Owner", "Owner")]
    assert len(seen.all) <= 4, seen  # each member's role came with the member, not one query each


def test_general_settings_shows_what_was_saved(db):
    allow(RIVERSIDE, "127.0.0.0/8")
    visit = visit_of("ann", practice=RIVERSIDE)
    riverside = practice_named(RIVERSIDE)
    assert restrictions.set_scope(visit, riverside, "selected", role_ids("Front Desk"), member_ids("hal")) is None
    assert restrictions.set_enforced(visit, riverside, True) is None
    restrictions.set_requests_allowed(visit, riverside, False)
    shown = restrictions.general_settings(riverside)
    assert shown.settings.enforced and not shown.settings.everyone and not shown.requests_allowed
    assert shown.settings.role_ids == set(role_ids("Front Desk")) and shown.settings.user_ids == {person("hal").id}


# --- switching restrictions on and off ---

def test_switching_on_is_saved_and_audited(db):
    allow(RIVERSIDE, "127.0.0.1/32")
    visit = visit_of("ann", practice=RIVERSIDE)
    assert restrictions.set_enforced(visit, practice_named(RIVERSIDE), True) is None
    assert stored() == {**UNTOUCHED, "row": True, "enforced": True}
    assert settings_for(practice_named(RIVERSIDE).id).enforced
    assert IPRestriction.get().updated_at == visit.now
    assert changes() == [("ann@example.com", "127.0.0.1", RIVERSIDE, "IP restrictions", "enforced: on")]


@pytest.mark.parametrize("allowlist", ["nothing", "an entry switched off", "another practice's entry"])
def test_switching_on_with_an_empty_allowlist_is_refused(db, allowlist):
    if allowlist == "an entry switched off":
        allow(RIVERSIDE, "127.0.0.1/32", active=False)
    elif allowlist == "another practice's entry":
        allow(LAKESIDE, "127.0.0.1/32")
    refusal = restrictions.set_enforced(visit_of("ann"), practice_named(RIVERSIDE), True)
    assert refusal.code == "empty_allowlist"
    assert refusal.message == "The allowlist is empty: add at least one entry before switching IP restrictions on."
    assert refusal.practice_id == practice_named(RIVERSIDE).id and not refusal.can_add_ip
    assert stored() == UNTOUCHED and changes() == []


def test_an_all_practices_entry_is_an_allowlist_for_every_practice(db):
    allow(None, "127.0.0.0/8")
    assert restrictions.set_enforced(visit_of("owner"), practice_named(LAKESIDE), True) is None
    assert stored(LAKESIDE)["enforced"]


def test_switching_on_where_it_would_block_you_is_refused(db):
    allow(RIVERSIDE, "192.0.2.0/24")
    refusal = restrictions.set_enforced(visit_of("ann", ip="127.0.0.1"), practice_named(RIVERSIDE), True)
    assert refusal.code == "lockout"
    assert refusal.message == "This would block you: your IP 127.0.0.1 is not on the allowlist."
    assert refusal.practice_id == practice_named(RIVERSIDE).id and refusal.can_add_ip
    assert stored() == UNTOUCHED and changes() == []
    # the same change from an address the allowlist covers goes through
    assert restrictions.set_enforced(visit_of("ann", ip="192.0.2.7"), practice_named(RIVERSIDE), True) is None


def test_an_ip_that_cannot_be_told_cannot_switch_restrictions_on(db):
    allow(RIVERSIDE, "127.0.0.0/8")
    refusal = restrictions.set_enforced(visit_of("ann", ip=None), practice_named(RIVERSIDE), True)
    assert refusal.code == "lockout" and not refusal.can_add_ip
    assert refusal.message == "This would block you: your IP (unknown) is not on the allowlist."
    assert stored() == UNTOUCHED


def test_switching_off_needs_no_allowlist(db):
    allow(RIVERSIDE, "127.0.0.1/32")
    riverside = practice_named(RIVERSIDE)
    assert restrictions.set_enforced(visit_of("ann"), riverside, True) is None
    AllowlistEntry.delete().execute()  # e.g. removed while restrictions were on (the CLI, the database)
    assert restrictions.set_enforced(visit_of("ann"), riverside, False) is None
    assert not stored()["enforced"]
    assert [c[4] for c in changes()] == ["enforced: on", "enforced: off"]


# --- whom restrictions apply to ---

def test_selected_roles_and_members_are_saved_and_audited(db):
    riverside = practice_named(RIVERSIDE)
    refusal = restrictions.set_scope(visit_of("ann"), riverside, "selected", role_ids("Front Desk", "Billing"),
                                     member_ids("hal"))
    assert refusal is None
    assert stored() == {**UNTOUCHED, "row": True, "everyone": False, "roles": ["Billing", "Front Desk"],
                        "users": ["hal@example.com"]}
    assert changes() == [("ann@example.com", "127.0.0.1", RIVERSIDE, "IP restrictions",
                          "applies to: Front Desk, Billing, hal@example.com")]
    # everyone again: the selection is cleared, whatever was still ticked
    assert restrictions.set_scope(visit_of("ann"), riverside, "everyone", role_ids("Admin"), []) is None
    assert stored() == {**UNTOUCHED, "row": True}
    assert changes()[-1][4] == "applies to: everyone"


@pytest.mark.parametrize("applies_to", ["nobody", "", "Everyone", None])
def test_neither_everyone_nor_selected_is_refused(db, applies_to):
    refusal = restrictions.set_scope(visit_of("ann"), practice_named(RIVERSIDE), applies_to, [], [])
    assert (refusal.code, refusal.message) == ("invalid_choice", "Choose everyone or selected roles and users.")
    assert stored() == UNTOUCHED and changes() == []


@pytest.mark.parametrize("applies_to", ["selected", "everyone"])
@pytest.mark.parametrize("roles,users", [
    ([999], []),  # no such role
    ([None], []),  # what the form sent was not a number
    ([], ["bob"]),  # a person, but not a member of Riverside
    ([], [None]),
    ([], [999]),
])
def test_a_role_or_member_that_was_not_offered_is_refused(db, applies_to, roles, users):
    user_ids = [person(u).id if isinstance(u, str) else u for u in users]
    refusal = restrictions.set_scope(visit_of("ann"), practice_named(RIVERSIDE), applies_to,
                                     role_ids("Front Desk") + roles, user_ids)
    assert (refusal.code, refusal.message) == ("invalid_choice", "Choose only the roles and members listed.")
    assert stored() == UNTOUCHED and changes() == []


def test_selected_with_nothing_ticked_waits_for_the_first_tick(db):
    riverside = practice_named(RIVERSIDE)
    restrictions.set_scope(visit_of("ann"), riverside, "selected", role_ids("Front Desk"), [])
    before = stored()
    refusal = restrictions.set_scope(visit_of("ann"), riverside, "selected", [], [])
    assert refusal.code == "nothing_selected"
    assert refusal.message == ("Tick the roles and users that IP restrictions apply to. "
                               "Nothing is saved until you tick one.")
    assert stored() == before and len(changes()) == 1


def test_narrowing_the_scope_to_include_yourself_from_an_uncovered_ip_is_refused(db):
    allow(RIVERSIDE, "127.0.0.1/32")
    riverside, away = practice_named(RIVERSIDE), visit_of("ann", ip="127.0.0.2")
    assert restrictions.set_scope(away, riverside, "selected", role_ids("Front Desk"), []) is None
    assert restrictions.set_enforced(away, riverside, True) is None  # Front Desk only: Ann is not blocked
    before = stored()
    for applies_to, roles, members in [("selected", role_ids("Admin"), []), ("selected", [], member_ids("ann")),
                                       ("selected", role_ids("Front Desk", "Admin"), []), ("everyone", [], [])]:
        refusal = restrictions.set_scope(away, riverside, applies_to, roles, members)
        assert refusal.code == "lockout", (applies_to, roles, members)
        assert refusal.message == "This would block you: your IP 127.0.0.2 is not on the allowlist."
        assert stored() == before
    # from the covered office the same change goes through
    assert restrictions.set_scope(visit_of("ann"), riverside, "everyone", [], []) is None
    assert len(changes()) == 3


def test_a_scope_change_of_an_enforced_practice_whose_allowlist_emptied_is_refused(db):
    allow(RIVERSIDE, "127.0.0.1/32")
    riverside = practice_named(RIVERSIDE)
    assert restrictions.set_enforced(visit_of("ann"), riverside, True) is None
    AllowlistEntry.update(active=False).execute()
    refusal = restrictions.set_scope(visit_of("ann"), riverside, "selected", role_ids("Front Desk"), [])
    assert refusal.code == "empty_allowlist"
    assert stored()["everyone"]


# --- access requests on and off ---

def test_access_requests_are_switched_off_and_on_and_audited(db):
    riverside = practice_named(RIVERSIDE)
    assert restrictions.set_requests_allowed(visit_of("ann"), riverside, False) is None
    assert stored() == {**UNTOUCHED, "row": True, "requests": False}
    restrictions.set_requests_allowed(visit_of("ann"), riverside, True)
    assert stored() == {**UNTOUCHED, "row": True}
    assert [c[4] for c in changes()] == ["access requests: not allowed", "access requests: allowed"]


def test_a_change_to_one_practice_leaves_the_other_alone(db):
    allow(None, "127.0.0.0/8")
    owner = visit_of("owner")
    assert restrictions.set_enforced(owner, practice_named(RIVERSIDE), True) is None
    restrictions.set_requests_allowed(owner, practice_named(RIVERSIDE), False)
    assert stored(LAKESIDE) == UNTOUCHED
    assert {c[2] for c in changes()} == {RIVERSIDE}


def test_expired_entries_do_not_make_an_allowlist_non_empty(db, app):
    from datetime import timedelta
    from ipaddress import ip_network

    from pbnsec.domain import restrictions
    from pbnsec.models import AllowlistEntry

    visit = visit_of("ann")
    riverside = practice_named("Riverside Dental")
    AllowlistEntry.create(**AllowlistEntry.stored(ip_network("127.0.0.1/32"), riverside, label="gone",
                                                  expires_at=visit.now - timedelta(days=1)))
    refusal = restrictions.set_enforced(visit, riverside, True)
    assert refusal is not None and refusal.code == "empty_allowlist"

"""The IP allowlist called as functions with a Visit: no HTTP, no sign-in."""
from ipaddress import ip_address, ip_network

import pytest
from conftest import person, practice_named, restrict, visit_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbnsec.core.clientip import Proxies
from pbnsec.core.iprules import DEFAULT_BROADEST
from pbnsec.domain import allowlist
from pbnsec.domain.access import Refusal, decide_for
from pbnsec.domain.allowlist import ALL, EntryInput, EntryRefused, LabelRefused
from pbnsec.models import (
    ALL_PRACTICES,
    AccessRequest,
    AllowlistEntry,
    AuditEvent,
    Grant,
    IPRestriction,
)

RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
LOCKOUT_ENTRY = "This would block you: without this entry, your IP {} is not on the allowlist."
LOCKOUT_GRANT = "This would block you: without this grant, your IP {} is not on the allowlist."


def administered(*names) -> set[int]:
    return {practice_named(name).id for name in names}


def try_add(visit, address, label="Office Network", practice=RIVERSIDE, administers=None, proxies=Proxies(),
            broadest=DEFAULT_BROADEST, **confirm):
    """add_entry as the add form calls it: practice is a name, ALL, or an id."""
    choice = practice_named(practice).id if practice in (RIVERSIDE, LAKESIDE) else practice
    administers = administered(visit.practice.name) if administers is None else administers
    return allowlist.add_entry(visit, EntryInput(address, label, choice, **confirm), administers,
                               broadest=broadest, proxies=proxies)


def add(visit, address, label="Office Network", practice=RIVERSIDE, **kwargs) -> AllowlistEntry:
    """An entry that must be added (loopback and broad networks confirmed)."""
    added = try_add(visit, address, label, practice, confirm_broad=address, confirm_local=address, **kwargs)
    assert isinstance(added, AllowlistEntry), added
    return added


def networks() -> list[tuple]:
    return sorted((e.network, e.label, e.scope, e.active) for e in AllowlistEntry.select())


def audit(action) -> list[tuple]:
    return [(e.actor_label, e.actor_ip, e.practice.name if e.practice_id else None, e.target, e.detail)
            for e in AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)]


def ann(ip="127.0.0.1"):
    return visit_of("ann", ip, RIVERSIDE)


# --- adding an entry ---

def test_an_entry_is_stored_normalised_and_audited(db):
    added = add(ann(), "2001:DB8::1", "Remote Provider")
    assert (added.network, added.label, added.practice.name, added.added_by_id) == (
        "2001:db8::1/128", "Remote Provider", RIVERSIDE, person("ann").id)
    assert networks() == [("2001:db8::1/128", "Remote Provider", practice_named(RIVERSIDE).id, True)]
    assert audit("entry_added") == [("ann@example.com", "127.0.0.1", RIVERSIDE, "2001:db8::1/128",
                                     "label: Remote Provider")]


@pytest.mark.parametrize("address, message", [
    ("10.0.0.5/24", "10.0.0.5/24 has host bits set: did you mean 10.0.0.0/24?"),
    ("0x7f.1", "ambiguous"),
    ("fe80::1%eth0", "zone"),
    ("0.0.0.0/0", "0.0.0.0/0 would allow every address: enter a single address or a smaller network."),
    ("", "Enter an IP address or a network such as 192.0.2.0/24."),
])
def test_an_address_that_is_no_entry_is_refused_with_what_was_typed(db, address, message):
    refused = try_add(ann(), address, "  Front \t desk ")
    assert isinstance(refused, EntryRefused) and refused.codes == {"address": "invalid"}
    assert message in refused.errors["address"].message
    assert refused.typed == EntryInput(address, "Front desk", practice_named(RIVERSIDE).id)  # the label cleaned
    assert networks() == [] and audit("entry_added") == []


@pytest.mark.parametrize("label, code, message", [
    ("   ", "blank", "Enter a label, such as Office Network or Remote Provider."),
    ("x" * 101, "too_long", "A label can be at most 100 characters long (this one has 101)."),
    ("Office\u202eeciffo", "control_characters", "A label cannot contain control or invisible characters."),
])
def test_label_rules(db, label, code, message):
    refused = try_add(ann(), "192.0.2.1", label)
    assert refused.codes == {"label": code} and refused.errors["label"].message == message
    assert networks() == []


def test_every_field_is_checked_at_once(db):
    refused = try_add(ann(), "10.0.0.5/24", "", practice=LAKESIDE)
    assert refused.codes == {"address": "invalid", "label": "blank", "practice": "not_yours"}


@pytest.mark.parametrize("practice", [LAKESIDE, None, 999999])
def test_only_an_administered_practice_may_be_chosen(db, practice):
    refused = try_add(ann(), "192.0.2.0/24", practice=practice)
    assert refused.codes == {"practice": "not_yours"}
    assert refused.errors["practice"].message == "Choose one of your practices or All practices."
    assert networks() == []


def test_all_practices_needs_an_administrator_of_every_practice_from_here(db):
    refused = try_add(ann(), "192.0.2.0/24", practice=ALL)
    assert refused.codes == {"practice": "not_every_practice"}
    assert refused.errors["practice"].message == ("Only a security administrator of every practice can add an "
                                                  "All practices entry.")
    owner = visit_of("owner", "127.0.0.9", LAKESIDE)
    # a member of both, but administering only Lakeside from where she is
    assert try_add(owner, "192.0.2.0/24", practice=ALL, administers=administered(LAKESIDE)).codes == {
        "practice": "not_every_practice"}
    added = add(owner, "192.0.2.0/24", practice=ALL, administers=administered(LAKESIDE, RIVERSIDE))
    assert (added.practice, added.scope) == (None, ALL_PRACTICES)
    assert audit("entry_added") == [("owner@example.com", "127.0.0.9", None, "192.0.2.0/24", "label: Office Network")]


def test_a_broad_network_needs_a_confirmation_of_exactly_it(db):
    refused = try_add(ann(), "10.0.0.0/7")
    assert refused.codes == {"address": "needs_confirmation"} and (refused.broad, refused.local) == ("10.0.0.0/7", "")
    assert refused.errors["address"].message == (
        "10.0.0.0/7 covers 33,554,432 addresses, more than a /8: confirm below that you mean to allow all of them, "
        "or enter a smaller network.")
    assert try_add(ann(), "10.0.0.0/7", confirm_broad="12.0.0.0/7").codes == {"address": "needs_confirmation"}
    assert networks() == []
    added = try_add(ann(), "10.0.0.0/7", confirm_broad="::ffff:10.0.0.0/103")  # any spelling of the same network
    assert added.network == "10.0.0.0/7"
    assert audit("entry_added")[0][-1] == "label: Office Network; broad network confirmed (33,554,432 addresses)"


def test_the_broad_limit_is_the_callers(db):
    assert try_add(ann(), "10.0.0.0/15", broadest={4: 16, 6: 48}).codes == {"address": "needs_confirmation"}
    assert isinstance(try_add(ann(), "10.0.0.0/16", broadest={4: 16, 6: 48}), AllowlistEntry)


def test_loopback_needs_a_confirmation_with_a_warning(db):
    refused = try_add(ann(), "127.0.0.1")
    assert refused.codes == {"address": "needs_confirmation"} and (refused.broad, refused.local) == ("",
                                                                                                   "127.0.0.1/32")
    assert "127.0.0.1/32 includes this machine's own address (127.0.0.1)." in refused.errors["address"].message
    assert refused.errors["address"].message.endswith(
        "Check the Connection check below, then confirm only if people really connect from there.")
    assert isinstance(try_add(ann(), "127.0.0.1", confirm_local="127.0.0.1/32"), AllowlistEntry)


def test_a_proxy_address_needs_the_same_confirmation(db):
    proxies = Proxies(1, (ip_network("192.0.2.10/32"),))
    refused = try_add(ann(), "192.0.2.0/24", proxies=proxies)
    assert refused.local == "192.0.2.0/24"
    assert "includes the address of your proxy" in refused.errors["address"].message
    assert isinstance(try_add(ann(), "198.51.100.0/24", proxies=proxies), AllowlistEntry)


def test_broad_and_loopback_are_asked_together(db):
    refused = try_add(ann(), "0.0.0.0/1")
    assert (refused.broad, refused.local) == ("0.0.0.0/1", "0.0.0.0/1")
    message = refused.errors["address"].message
    assert "covers 2,147,483,648 addresses, more than a /8" in message and "this machine's own address" in message
    assert try_add(ann(), "0.0.0.0/1", confirm_broad="0.0.0.0/1").local == "0.0.0.0/1"


@pytest.mark.parametrize("first, second, version", [("0.0.0.0/1", "128.0.0.0/1", 4), ("::/1", "8000::/1", 6),
                                                    ("128.0.0.0/1", "0.0.0.0/1", 4), ("8000::/1", "::/1", 6)])
def test_entries_that_together_allow_everything_are_refused(db, first, second, version):
    add(ann(), first)
    refused = try_add(ann(), second, confirm_broad=second, confirm_local=second)
    assert refused.codes == {"address": "covers_everything"}
    assert refused.errors["address"].message == (
        f"{second} would, together with the entries already there, allow every IPv{version} address for "
        f"{RIVERSIDE}: enter a smaller network.")
    assert [n[0] for n in networks()] == [first]


def test_an_all_practices_entry_completing_everything_names_the_practice(db):
    owner = visit_of("owner", "127.0.0.1", LAKESIDE)
    both = administered(LAKESIDE, RIVERSIDE)
    add(owner, "0.0.0.0/1", practice=RIVERSIDE, administers=both)
    refused = try_add(owner, "128.0.0.0/1", practice=ALL, administers=both, confirm_broad="128.0.0.0/1")
    assert refused.codes == {"address": "covers_everything"}
    assert "allow every IPv4 address for Riverside Dental" in refused.errors["address"].message
    add(owner, "128.0.0.0/1", practice=LAKESIDE, administers=both)  # Lakeside has no other half


def test_a_network_inside_an_entry_adds_nothing_and_needs_no_confirmation(db):
    """Counted entry by entry, 10.0.0.0/8 and a /16 inside it are more than a /8; together they cover the /8 alone."""
    add(ann(), "10.0.0.0/8")
    assert isinstance(try_add(ann(), "10.1.0.0/16"), AllowlistEntry)
    refused = try_add(ann(), "11.0.0.0/24")
    assert refused.codes == {"address": "needs_confirmation"} and refused.broad == "11.0.0.0/24"
    assert "would cover 16,777,472 addresses, more than a /8" in refused.errors["address"].message


def test_0_0_0_0_16_and_the_ipv6_network_of_the_same_start_are_told_apart(db):
    """0.0.0.0/16 and ::/8 are stored with the same start: neither makes the other version's adds need anything."""
    add(ann(), "0.0.0.0/16")
    assert isinstance(try_add(ann(), "2001:db8::/48"), AllowlistEntry)
    add(ann(), "::/8")
    assert isinstance(try_add(ann(), "192.0.2.0/24"), AllowlistEntry)
    assert try_add(ann(), "100::/8").codes == {"address": "needs_confirmation"}  # ::/7 together: more than a /32


# The quick count (allowlist.may_add_up) stands in for reading every entry: whatever the entries, when it says
# they cannot add up to the limit, the checks that read them all find nothing to refuse either.
_BROAD_OR_NOT = st.sampled_from(["0.0.0.0/1", "128.0.0.0/1", "0.0.0.0/8", "10.0.0.0/8", "10.0.0.0/9", "10.1.0.0/16",
                                 "11.0.0.0/24", "192.0.2.1/32", "::/1", "8000::/1", "::/8", "100::/8", "fd00::/8",
                                 "2001:db8::/32", "2001:db8::/48", "::1/128", "::a00:0/104"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.tuples(_BROAD_OR_NOT, st.booleans(), st.sampled_from([RIVERSIDE, LAKESIDE, ALL])),
                        max_size=6, unique_by=lambda t: (t[0], t[2])),
       new=_BROAD_OR_NOT, where=st.sampled_from([RIVERSIDE, ALL]), confirmed=st.booleans())
def test_the_quick_count_never_lets_through_what_the_whole_list_refuses(db, app, entries, new, where, confirmed):
    AllowlistEntry.delete().execute()
    for network, active, scope in entries:
        practice = None if scope == ALL else practice_named(scope)
        AllowlistEntry.create(**AllowlistEntry.stored(ip_network(network), practice, label=network, active=active))
    network, practice = ip_network(new), None if where == ALL else practice_named(where)
    half = 2 ** (network.max_prefixlen - 1)
    limit = half if confirmed else min(half, 2 ** (network.max_prefixlen - DEFAULT_BROADEST[network.version]))
    if not allowlist.may_add_up(network, practice, limit):
        assert allowlist.everything_refusal(network, practice) is None
        assert confirmed or allowlist.broad_union(network, practice, DEFAULT_BROADEST) is None


def test_the_quick_count_says_no_for_small_lists_and_yes_when_they_could_add_up(db):
    """The property test above checks only its "no": pinned here that it says both, so it stands in for the whole
    list on the usual add and never when the entries could reach the limit."""
    riverside, a_slash_8 = practice_named(RIVERSIDE), 2 ** 24
    add(ann(), "192.0.2.0/24")
    assert not allowlist.may_add_up(ip_network("198.51.100.0/24"), riverside, a_slash_8)
    AllowlistEntry.create(**AllowlistEntry.stored(ip_network("10.0.0.0/8"), None, label="all"))
    assert allowlist.may_add_up(ip_network("198.51.100.0/24"), riverside, a_slash_8)
    assert not allowlist.may_add_up(ip_network("2001:db8::/48"), riverside, 2 ** 96)  # the other version's


def test_a_duplicate_in_the_same_scope_is_refused(db):
    add(ann(), "::ffff:192.0.2.1")
    refused = try_add(ann(), "192.0.2.1/32")
    assert refused.codes == {"address": "duplicate"}
    assert refused.errors["address"].message == "192.0.2.1/32 is already on the allowlist for Riverside Dental."
    owner = visit_of("owner", "127.0.0.1", LAKESIDE)
    both = administered(LAKESIDE, RIVERSIDE)
    add(owner, "192.0.2.1", practice=ALL, administers=both)  # another scope: no duplicate
    refused = try_add(owner, "192.0.2.1", practice=ALL, administers=both)
    assert refused.errors["address"].message == "192.0.2.1/32 is already on the allowlist for All practices."
    assert len(networks()) == 2 and len(audit("entry_added")) == 2


# --- relabelling ---

def test_relabel_saves_and_audits_the_change(db):
    entry = add(ann(), "192.0.2.0/24", "Old label")
    assert allowlist.relabel(ann(), entry, "  Front   office ").label == "Front office"
    assert networks()[0][1] == "Front office"
    assert audit("entry_edited") == [("ann@example.com", "127.0.0.1", RIVERSIDE, "192.0.2.0/24",
                                      "label: Old label -> Front office")]


def test_a_bad_label_is_refused_cleaned_and_changes_nothing(db):
    entry = add(ann(), "192.0.2.0/24", "Old label")
    refused = allowlist.relabel(ann(), entry, " Off\u200bice ")
    assert isinstance(refused, LabelRefused) and refused.error.code == "control_characters"
    assert refused.label == "Office"
    assert allowlist.relabel(ann(), entry, "").error.code == "blank"
    assert networks()[0][1] == "Old label" and entry.label == "Old label" and audit("entry_edited") == []


# --- switching off and deleting: never the admin's own way in, never an enforced practice's last entry ---

@pytest.fixture
def enforced_for_ann(db, app):
    """Riverside enforced; Ann (127.0.0.1) covered only by 127.0.0.0/8; another entry covers someone else."""
    restrict(app, RIVERSIDE, "127.0.0.0/8", "192.0.2.0/24")
    return {e.network: e for e in AllowlistEntry.select()}


@pytest.mark.parametrize("how", ["switch off", "delete"])
def test_removing_the_entry_you_depend_on_is_refused(enforced_for_ann, how):
    entry = enforced_for_ann["127.0.0.0/8"]
    mine = administered(RIVERSIDE)
    refusal = (allowlist.set_active(ann(), entry, False, mine) if how == "switch off"
               else allowlist.delete_entry(ann(), entry, mine))
    assert refusal == Refusal(LOCKOUT_ENTRY.format("127.0.0.1"), practice_named(RIVERSIDE).id, True)
    assert refusal.code == "lockout"
    assert AllowlistEntry.get_by_id(entry.id).active is True
    assert audit("entry_disabled") == audit("entry_deleted") == []


def test_add_my_ip_is_not_offered_when_the_entry_going_is_my_ip(db, app):
    restrict(app, RIVERSIDE, "127.0.0.1/32", "192.0.2.0/24")
    entry = AllowlistEntry.get(AllowlistEntry.network == "127.0.0.1/32")
    refusal = allowlist.delete_entry(ann(), entry, administered(RIVERSIDE))
    assert (refusal.code, refusal.can_add_ip) == ("lockout", False)


@pytest.mark.parametrize("how", ["switch off", "delete"])
def test_removing_an_entry_you_do_not_depend_on_is_done_and_audited(enforced_for_ann, how):
    entry = enforced_for_ann["192.0.2.0/24"]
    mine = administered(RIVERSIDE)
    if how == "switch off":
        assert allowlist.set_active(ann(), entry, False, mine).active is False
        assert AllowlistEntry.get_by_id(entry.id).active is False
        assert audit("entry_disabled") == [("ann@example.com", "127.0.0.1", RIVERSIDE, "192.0.2.0/24",
                                            "label: test 192.0.2.0/24")]
    else:
        assert allowlist.delete_entry(ann(), entry, mine) is None
        assert AllowlistEntry.get_or_none(AllowlistEntry.id == entry.id) is None
        assert allowlist.delete_entry(ann(), entry, mine) is None  # someone else was first: nothing more to do
        assert len(audit("entry_deleted")) == 1


def test_an_unknown_ip_is_never_covered(enforced_for_ann):
    entry = enforced_for_ann["127.0.0.0/8"]
    refusal = allowlist.delete_entry(ann(ip=None), entry, administered(RIVERSIDE))
    # Blocked already, so deleting does not block them further; the last-entry rule is all that applies.
    assert refusal is None


@pytest.mark.parametrize("how", ["switch off", "delete"])
def test_the_last_entry_of_an_enforced_practice_stays(db, app, how):
    restrict(app, RIVERSIDE, "192.0.2.0/24", everyone=False, roles=["Front Desk"])  # Ann is not restricted
    entry = AllowlistEntry.get()
    mine = administered(RIVERSIDE)
    refusal = (allowlist.set_active(ann(), entry, False, mine) if how == "switch off"
               else allowlist.delete_entry(ann(), entry, mine))
    assert refusal.code == "last_entry" and refusal.can_add_ip is False
    assert refusal.message == ("192.0.2.0/24 is the last active entry for Riverside Dental, where IP restrictions "
                               "are on: without it everyone they apply to is blocked.")
    assert refusal.advice == "Add another entry first, or switch IP restrictions off in General Settings."
    assert AllowlistEntry.get_by_id(entry.id).active is True


def test_an_all_practices_entry_you_depend_on_in_any_practice_you_administer_is_kept(db, app):
    owner = visit_of("owner", "127.0.0.1", LAKESIDE)  # working in Lakeside, which is unrestricted
    both = administered(LAKESIDE, RIVERSIDE)
    entry = add(owner, "127.0.0.0/8", practice=ALL, administers=both)
    IPRestriction.create(practice=practice_named(RIVERSIDE), enforced=True)
    refusal = allowlist.delete_entry(owner, entry, both)
    assert refusal.code == "lockout" and refusal.practice_id == practice_named(RIVERSIDE).id
    assert refusal.message == LOCKOUT_ENTRY.format("127.0.0.1")


def test_switching_on_the_entry_that_completes_everything_is_refused(db):
    first = add(ann(), "0.0.0.0/1")
    mine = administered(RIVERSIDE)
    assert allowlist.set_active(ann(), first, False, mine).active is False
    add(ann(), "128.0.0.0/1")
    refusal = allowlist.set_active(ann(), first, True, mine)
    assert refusal.code == "covers_everything" and refusal.can_add_ip is False
    assert refusal.message.startswith("0.0.0.0/1 would, together with the entries already there, allow every IPv4")
    assert refusal.advice == "Keep it off, or narrow the other broad entries first."
    assert AllowlistEntry.get_by_id(first.id).active is False and audit("entry_enabled") == []


def test_switching_an_entry_back_on(db):
    entry = add(ann(), "192.0.2.0/24")
    mine = administered(RIVERSIDE)
    allowlist.set_active(ann(), entry, False, mine)
    assert allowlist.set_active(ann(), entry, True, mine).active is True
    assert AllowlistEntry.get_by_id(entry.id).active is True and len(audit("entry_enabled")) == 1


# --- user grants ---

@pytest.fixture
def granted(db, app):
    """Riverside enforced; Ann works from 127.0.0.2 on a grant of her own; Fay has one for 127.0.0.3."""
    restrict(app, RIVERSIDE, "192.0.2.0/24")
    riverside = practice_named(RIVERSIDE)
    return {who: Grant.create(user=person(who), practice=riverside, ip=ip)
            for who, ip in [("ann", "127.0.0.2"), ("fay", "127.0.0.3")]}


def test_revoking_your_own_only_way_in_is_refused(granted):
    refusal = allowlist.revoke_grant(ann("127.0.0.2"), allowlist.find_grant(granted["ann"].id))
    assert refusal == Refusal(LOCKOUT_GRANT.format("127.0.0.2"), practice_named(RIVERSIDE).id, True)
    assert Grant.select().count() == 2 and audit("grant_revoked") == []


def test_revoking_someone_elses_grant_is_done_and_audited(granted):
    assert allowlist.revoke_grant(ann("127.0.0.2"), allowlist.find_grant(granted["fay"].id)) is None
    assert [g.user_id for g in Grant.select()] == [person("ann").id]
    assert audit("grant_revoked") == [("ann@example.com", "127.0.0.2", RIVERSIDE, "fay@example.com from 127.0.0.3",
                                       "")]


# --- what the screen shows ---

def test_visible_entries_are_the_practices_and_all_practices_with_who_added_them(db, count_statements):
    owner = visit_of("owner", "127.0.0.1", LAKESIDE)
    both = administered(LAKESIDE, RIVERSIDE)
    add(owner, "198.51.100.0/24", "Head office", practice=ALL, administers=both)
    add(ann(), "192.0.2.0/24", "Riverside office")
    lakeside_entry = add(owner, "203.0.113.0/24", "Lakeside office", practice=LAKESIDE, administers=both)
    riverside = practice_named(RIVERSIDE).id
    seen = count_statements()
    shown = [(e.network, e.practice.name if e.practice else "all", e.added_by.name)
             for e in allowlist.visible_entries(riverside)]
    assert shown == [("192.0.2.0/24", RIVERSIDE, "Ann Lee"), ("198.51.100.0/24", "all", "Olive Owner")]
    assert len(seen.all) == 1, seen  # practice and adder come in the same query
    found = allowlist.find_entry(lakeside_entry.id)
    assert (found.practice.name, found.added_by.name) == (LAKESIDE, "Olive Owner") and len(seen.all) == 2, seen
    assert allowlist.find_entry(999999) is None


def test_practice_grants_come_with_their_request_and_approver(granted, count_statements):
    request = AccessRequest.create(user=person("fay"), practice=practice_named(RIVERSIDE), ip="127.0.0.3",
                                   note="Front desk PC", status="approved")
    Grant.update(request=request, created_by=person("ann")).where(Grant.id == granted["fay"].id).execute()
    riverside, lakeside = practice_named(RIVERSIDE).id, practice_named(LAKESIDE).id
    seen = count_statements()
    rows = [(g.user.name, g.ip, g.request.note if g.request_id else None,
             g.created_by.name if g.created_by_id else None) for g in allowlist.practice_grants(riverside)]
    assert rows == [("Ann Lee", "127.0.0.2", None, None), ("Fay Desk", "127.0.0.3", "Front desk PC", "Ann Lee")]
    assert allowlist.practice_grants(lakeside) == []
    assert len(seen.all) == 2, seen  # user, request and approver come in the same query
    found = allowlist.find_grant(granted["fay"].id)
    assert (found.user.email, found.request.note, found.created_by.name) == (
        "fay@example.com", "Front desk PC", "Ann Lee") and len(seen.all) == 3, seen
    assert allowlist.find_grant(999999) is None


def test_administers_every_practice(db):
    assert allowlist.administers_every_practice(administered(RIVERSIDE, LAKESIDE)) is True
    assert allowlist.administers_every_practice(administered(RIVERSIDE)) is False
    assert allowlist.administers_every_practice(set()) is False


def test_ip_status_lists_the_active_entries_holding_the_ip_most_specific_first(db):
    owner = visit_of("owner", "127.0.0.1", LAKESIDE)
    both = administered(LAKESIDE, RIVERSIDE)
    add(owner, "127.0.0.0/8", "Head office", practice=ALL, administers=both)
    add(ann(), "127.0.0.1", "Me")
    add(ann(), "127.0.0.0/16", "Switched off")
    allowlist.set_active(ann(), AllowlistEntry.get(AllowlistEntry.label == "Switched off"), False,
                         administered(RIVERSIDE))
    add(owner, "127.0.0.0/24", "Lakeside", practice=LAKESIDE, administers=both)
    status = allowlist.ip_status(ann(), Proxies())
    assert [e.label for e in status.covered_by] == ["Me", "Head office"]
    assert status.ipv6_network is None and "this machine's own address" in status.local
    assert allowlist.ip_status(ann("198.51.100.7"), Proxies()).covered_by == ()


def test_ip_status_of_ipv6_and_of_an_unknown_ip(db):
    status = allowlist.ip_status(ann("2001:db8::7"), Proxies())
    assert (status.covered_by, str(status.ipv6_network), status.local) == ((), "2001:db8::/64", None)
    assert allowlist.ip_status(ann(None), Proxies()) == allowlist.IPStatus(None, (), None, None)


# The banner and access use one probe: whatever the entries, the banner says "covered" exactly when an enforced
# practice lets the admin in by an entry, and it lists exactly the active entries whose network holds the IP.
_OCTET = st.integers(0, 3)
_ENTRIES = st.lists(st.tuples(st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32",
                                               "10.2.0.0/15", "10.0.0.0/9", "fd00::/8", "fd00:1::/32"]),
                              st.booleans(), st.booleans()),  # network, active, All practices
                    max_size=6, unique_by=lambda t: (t[0], t[2]))
_IPS = st.one_of(st.builds(lambda b, c, d: f"10.{b}.{c}.{d}", _OCTET, st.integers(0, 3), _OCTET),
                 st.sampled_from(["fd00:1::5", "fd00:2::5", "192.0.2.1"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=_ENTRIES, ip_text=_IPS)
def test_the_banner_and_access_never_disagree(db, app, entries, ip_text):
    AllowlistEntry.delete().execute()
    IPRestriction.delete().execute()
    riverside = practice_named(RIVERSIDE)
    for network, active, everywhere in entries:
        AllowlistEntry.create(**AllowlistEntry.stored(ip_network(network), None if everywhere else riverside,
                                                      label=network, active=active))
    IPRestriction.create(practice=riverside, enforced=True)
    visit = ann(ip_text)
    ip = ip_address(ip_text)
    expected = {n for n, active, _ in entries if active and ip.version == ip_network(n).version
                and ip in ip_network(n)}
    covered = {e.network for e in allowlist.ip_status(visit, Proxies()).covered_by}
    assert covered == expected
    assert bool(covered) == (decide_for(person("ann"), riverside.id, visit.ip).reason == "allowlist_entry")

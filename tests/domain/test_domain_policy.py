"""Compiled policies: every write a decision depends on raises its practices' generation, and a policy compiled
before a write is never used after it."""
import time
from datetime import timedelta
from ipaddress import ip_address, ip_network

import pytest
from conftest import person, practice_named, visit_of

from pbnsec.core.clientip import Proxies
from pbnsec.core.iprules import DEFAULT_BROADEST, NetworkMatcher
from pbnsec.domain import access_requests, allowlist, people, restrictions, time_windows
from pbnsec.domain.access import overview
from pbnsec.domain.allowlist import ALL, EntryInput
from pbnsec.domain.policy import PolicyCache
from pbnsec.models import (
    AccessRequest,
    AllowlistEntry,
    Grant,
    IPRestriction,
    Practice,
    TimeWindow,
    User,
    utcnow,
)

RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"
FAY_HOME = "198.51.100.5"


def generations() -> dict[str, int]:
    return {p.name: p.policy_generation for p in Practice.select()}


def owner(practice=RIVERSIDE):
    return visit_of("owner", practice=practice)


def both():
    return [practice_named(RIVERSIDE), practice_named(LAKESIDE)]


def entry(network="127.0.0.0/24") -> AllowlistEntry:
    return AllowlistEntry.get(AllowlistEntry.network == network)


def add(network, practice=RIVERSIDE):
    choice = ALL if practice == ALL else practice_named(practice).id
    added = allowlist.add_entry(owner(), EntryInput(network, "Office", choice, confirm_broad=network,
                                                     confirm_local=network),
                                {p.id for p in both()}, broadest=DEFAULT_BROADEST, proxies=Proxies())
    assert isinstance(added, AllowlistEntry), added
    return added


def approve_fay():
    request = AccessRequest.create(user=person("fay"), practice=practice_named(RIVERSIDE), ip=FAY_HOME)
    assert access_requests.decide(owner(), request.id, "approved", [practice_named(RIVERSIDE).id]) is not None


def revoke_fay(cache=None):
    grant = Grant.create(user=person("fay"), practice=practice_named(RIVERSIDE), ip=FAY_HOME)
    if cache is not None:
        assert fay_from_home(cache).decision.allowed
    assert allowlist.revoke_grant(owner(), grant) is None


def window():
    assert time_windows.add_windows(owner(), practice_named(RIVERSIDE), [0, 1, 2, 3, 4, 5, 6], "00:00", "23:59") is None


# Each write through the domain function a screen or the command line calls, and the practices it must reach.
WRITES = {
    "add an entry": (lambda: add("192.0.2.0/24"), {RIVERSIDE}),
    "add an All practices entry": (lambda: add("192.0.2.0/24", ALL), {RIVERSIDE, LAKESIDE}),
    "relabel an entry": (lambda: allowlist.relabel(owner(), entry(), "Front office"), {RIVERSIDE}),
    "give an entry an end": (lambda: allowlist.set_until(owner(), entry(), "2999-01-01 00:00",
                                                         {p.id for p in both()}), {RIVERSIDE}),
    "switch an entry off": (lambda: allowlist.set_active(owner(), entry("192.0.2.0/24"), False,
                                                         {p.id for p in both()}), {RIVERSIDE}),
    "delete an entry": (lambda: allowlist.delete_entry(owner(), entry("192.0.2.0/24"), {p.id for p in both()}),
                        {RIVERSIDE}),
    "switch IP restrictions on": (lambda: restrictions.set_enforced(owner(), practice_named(RIVERSIDE), True,
                                                                    confirmed=True), {RIVERSIDE}),
    "narrow IP restrictions to a role": (lambda: restrictions.set_scope(
        owner(), practice_named(RIVERSIDE), "selected", [person("fay").role_id], [], confirmed=True), {RIVERSIDE}),
    "stop access requests": (lambda: restrictions.set_requests_allowed(owner(), practice_named(RIVERSIDE), False),
                             {RIVERSIDE}),
    "unlock from the console": (lambda: restrictions.unlock(practice_named(RIVERSIDE)), {RIVERSIDE}),
    "add a Time Window": (window, {RIVERSIDE}),
    "switch Time Windows on": (lambda: (window(), time_windows.set_enabled(owner(), practice_named(RIVERSIDE),
                                                                           True, confirmed=True)), {RIVERSIDE}),
    # Grants are not in a policy: every visit reads its user's own (see the tests below), so nothing recompiles.
    "approve an access request": (approve_fay, set()),
    "change a role": (lambda: people.set_role(owner(), both(), person("hal"), "Front Desk"), {RIVERSIDE, LAKESIDE}),
    "change someone's practices": (lambda: people.set_practices(owner(), both(), person("fay"),
                                                                [practice_named(LAKESIDE).id]), {RIVERSIDE, LAKESIDE}),
    "deactivate someone": (lambda: people.set_active(owner(), both(), person("hal"), False), {RIVERSIDE, LAKESIDE}),
}


@pytest.fixture
def office(db):
    """Riverside allows the office (127.0.0.0/24): its IP restrictions can be switched on."""
    add("127.0.0.0/24")


@pytest.mark.parametrize("write", list(WRITES))
def test_every_write_a_decision_depends_on_raises_the_generation_of_the_practices_it_reaches(office, write):
    do, reached = WRITES[write]
    if write in ("switch an entry off", "delete an entry"):
        add("192.0.2.0/24")
    if write in ("stop access requests", "narrow IP restrictions to a role", "unlock from the console"):
        restrictions.set_enforced(owner(), practice_named(RIVERSIDE), True, confirmed=True)
    before = generations()
    result = do()
    assert not isinstance(result, allowlist.Refusal), result
    after = generations()
    assert {name for name in after if after[name] > before[name]} == reached


def test_an_approval_or_a_revocation_counts_on_the_very_next_visit_with_the_policy_cached(office):
    cache = PolicyCache()
    restrictions.set_enforced(owner(), practice_named(RIVERSIDE), True, confirmed=True)
    assert fay_from_home(cache).status == "not_requested"
    approve_fay()
    assert fay_from_home(cache).status == "approved"
    Grant.delete().execute()
    assert fay_from_home(cache).status == "not_requested"
    compiled = cache.compiles
    revoke_fay(cache)
    assert not fay_from_home(cache).decision.allowed and cache.compiles == compiled


def test_a_write_by_hand_raises_it_too_and_a_user_without_practices_reaches_none(db):
    """The triggers are in the database: a console UPDATE cannot leave a process on an old policy."""
    before = generations()
    IPRestriction.create(practice=practice_named(LAKESIDE), enforced=True)
    after = generations()
    assert after[RIVERSIDE] == before[RIVERSIDE] and after[LAKESIDE] > before[LAKESIDE]
    User.update(password_hash="x").where(User.email == "fay@example.com").execute()  # not a decision's business
    assert generations() == after
    TimeWindow.create(practice=practice_named(LAKESIDE), day=0, start_minute=0, end_minute=60)
    assert generations()[LAKESIDE] > after[LAKESIDE]


def test_generations_only_grow_and_a_restored_database_does_not_repeat_one(db):
    """Raised to the time in microseconds: a backup's generations are below any a process compiled since."""
    riverside = practice_named(RIVERSIDE)
    Practice.update(policy_generation=2**62).where(Practice.id == riverside.id).execute()  # far in the future
    IPRestriction.create(practice=riverside, enforced=True)
    assert practice_named(RIVERSIDE).policy_generation == 2**62 + 1
    before = practice_named(LAKESIDE).policy_generation
    IPRestriction.create(practice=practice_named(LAKESIDE), enforced=True)
    assert practice_named(LAKESIDE).policy_generation > max(before, 10**15)  # microseconds since 1970


def fay_from_home(cache, now=None):
    return overview(person("fay"), ip_address(FAY_HOME), now or utcnow(), cache).row(practice_named(RIVERSIDE).id)


def test_a_policy_compiled_before_a_write_is_not_used_after_it(office):
    cache = PolicyCache()
    add(f"{FAY_HOME}/32")
    restrictions.set_enforced(owner(), practice_named(RIVERSIDE), True, confirmed=True)
    assert fay_from_home(cache).decision.allowed
    compiled = cache.compiles
    assert fay_from_home(cache).decision.allowed and cache.compiles == compiled  # used again while current
    assert allowlist.set_active(owner(), entry(f"{FAY_HOME}/32"), False, {p.id for p in both()}).active is False
    assert not fay_from_home(cache).decision.allowed  # the very next visit
    assert cache.compiles == compiled + 1


def test_a_cached_entry_s_expiry_is_judged_against_each_visit_s_now(office):
    cache = PolicyCache()
    home = add(f"{FAY_HOME}/32")
    soon = utcnow() + timedelta(hours=1)
    AllowlistEntry.update(expires_at=soon).where(AllowlistEntry.id == home.id).execute()
    restrictions.set_enforced(owner(), practice_named(RIVERSIDE), True, confirmed=True)
    assert fay_from_home(cache, soon - timedelta(seconds=1)).decision.allowed
    compiled = cache.compiles
    assert not fay_from_home(cache, soon).decision.allowed  # nothing written: the same policy, a later now
    assert cache.compiles == compiled


def test_a_write_committed_while_a_policy_compiles_is_compiled_again_and_kept_at_its_own_generation(office,
                                                                                                   monkeypatch):
    """The visit read generation g; a write commits (g + 1) before the compile reads the allowlist: what was
    compiled is not labelled g. The generation is read again after the compile, and the compile repeated."""
    from pbnsec.domain import policy

    add(f"{FAY_HOME}/32")
    restrictions.set_enforced(owner(), practice_named(RIVERSIDE), True, confirmed=True)
    cache, compile_policies, raced = PolicyCache(), policy.compile_policies, []

    def write_then_compile(ids):
        if not raced:  # an administrator switches Fay's entry off between the visit's read and the compile
            raced.append(allowlist.set_active(owner(), entry(f"{FAY_HOME}/32"), False, {p.id for p in both()}))
        return compile_policies(ids)

    monkeypatch.setattr(policy, "compile_policies", write_then_compile)
    assert not fay_from_home(cache).decision.allowed and raced
    assert cache.compiles == 1  # the first compile, from a state the visit's generation does not name, is dropped
    assert not fay_from_home(cache).decision.allowed
    assert cache.compiles == 1  # the one kept is at the generation the next visit reads


def test_the_cached_decision_agrees_with_the_direct_one(office):
    cache = PolicyCache()
    add("127.0.0.0/25", ALL)
    restrictions.set_enforced(owner(), practice_named(RIVERSIDE), True, confirmed=True)
    restrictions.set_enforced(owner(practice=LAKESIDE), practice_named(LAKESIDE), True, confirmed=True)
    Grant.create(user=person("hal"), practice=practice_named(LAKESIDE), ip="127.0.0.200")
    for who in ("hal", "fay", "owner"):
        for ip in ("127.0.0.1", "127.0.0.130", "127.0.0.200", "::1", None):
            ip = ip_address(ip) if ip else None
            now = utcnow()
            direct = overview(person(who), ip, now)
            cached = overview(person(who), ip, now, cache)
            assert [(r.practice.id, r.decision.reason, r.status, r.can_request) for r in cached.rows] == [
                (r.practice.id, r.decision.reason, r.status, r.can_request) for r in direct.rows], (who, ip)


def test_measure_the_decision_old_and_new(office, capsys):
    """A measurement to read, not a threshold: the per-visit decision the direct way and on a compiled policy."""
    for n in range(1000):
        AllowlistEntry.create(**AllowlistEntry.stored(ip_network(f"10.{n // 256}.{n % 256}.0/24"),
                                                      practice_named(RIVERSIDE), label=f"n{n}"))
    restrictions.set_enforced(owner(), practice_named(RIVERSIDE), True, confirmed=True)
    fay, ip, cache = person("fay"), ip_address("127.0.0.1"), PolicyCache()
    overview(fay, ip, None, cache)
    matcher = NetworkMatcher((ip_network(e.network), e) for e in AllowlistEntry.select())

    def per_call(f, rounds=300):
        f()
        start = time.perf_counter()
        for _ in range(rounds):
            f()
        return (time.perf_counter() - start) / rounds * 1e6

    old = per_call(lambda: overview(fay, ip))
    new = per_call(lambda: overview(fay, ip, None, cache))
    match = per_call(lambda: matcher.match(ip), 3000)
    with capsys.disabled():
        print(f"\naccess decision, 1k entries: direct {old:.0f} µs, on a compiled policy {new:.0f} µs "
              f"({old / new:.1f}x faster); in-memory matcher alone {match:.1f} µs")
    assert overview(fay, ip, None, cache).row(practice_named(RIVERSIDE).id).decision.allowed



def test_a_practice_that_takes_a_deleted_one_s_id_never_meets_its_compiled_policy(db):
    from pbnsec.domain.users import create_practice

    cache = PolicyCache()
    AllowlistEntry.create(**AllowlistEntry.stored(ip_network("192.0.2.0/24"), None, label="Head office"))
    gone = create_practice("Gone Dental")  # written to by nothing since: its first generation
    (compiled,) = cache.for_practices([practice_named("Gone Dental")]).values()
    gone.delete_instance()
    AllowlistEntry.delete().execute()  # reaches no practice of the deleted one's
    again = Practice.create(id=gone.id, name="Again Dental")
    assert again.policy_generation != compiled.generation
    assert cache.for_practices([practice_named("Again Dental")])[gone.id].entries_holding(ip_address("192.0.2.1")) == []


def test_a_practice_with_ip_restrictions_off_compiles_no_allowlist_until_they_are_switched_on(office):
    """No decision looks at the allowlist while IP restrictions are off: its entries are not read into memory then
    (a write to a list of 10,000 would otherwise cost every next visit a compile of all of them)."""
    cache = PolicyCache()
    (off,) = cache.for_practices([practice_named(RIVERSIDE)]).values()
    assert len(off.entries) == 0
    assert fay_from_home(cache).decision.reason == "restrictions_off"
    restrictions.set_enforced(owner(), practice_named(RIVERSIDE), True, confirmed=True)
    (on,) = cache.for_practices([practice_named(RIVERSIDE)]).values()
    assert [rule.ref.network for rule in on.entries_holding(ip_address("127.0.0.1"))] == ["127.0.0.0/24"]
    assert not fay_from_home(cache).decision.allowed


def test_a_compiled_allowlist_holds_what_the_database_probe_finds(office):
    """Compiled from stored starts and prefix lengths, not parsed: the same networks, expiries and entries."""
    from pbnsec.domain.access import entries_holding

    soon = utcnow().replace(microsecond=0) + timedelta(days=1)
    for network in ("192.0.2.0/24", "192.0.2.7/32", "2001:db8:1::/64", "::/8", "fd00::1/128"):
        added = add(network)
        if network.endswith("/32"):
            AllowlistEntry.update(expires_at=soon).where(AllowlistEntry.id == added.id).execute()
    add("198.51.100.0/24", ALL)
    restrictions.set_enforced(owner(), practice_named(RIVERSIDE), True, confirmed=True)
    riverside = practice_named(RIVERSIDE)
    (policy,) = PolicyCache().for_practices([riverside]).values()
    for ip in ("192.0.2.7", "192.0.2.8", "2001:db8:1::9", "::a", "fd00::1", "198.51.100.1", "203.0.113.1"):
        probed = entries_holding([riverside.id], ip_address(ip))[riverside.id]
        expected = sorted((str(r.network), r.expires_at, r.ref.id) for r in probed if r.active)
        assert sorted((str(r.network), r.expires_at, r.ref.id) for r in policy.entries_holding(ip_address(ip))) == (
            expected), ip
    assert [r.expires_at for r in policy.entries_holding(ip_address("192.0.2.7")) if r.expires_at] == [soon]

"""The access decision, on its own: no Flask, no database."""
from datetime import datetime, timedelta
from ipaddress import ip_address, ip_network

import pytest

from pbnsec.core.decision import Allowed, Blocked, Rule, Settings, Subject, decide

NOW = datetime(2026, 11, 29, 12, 0)
ANN = Subject(user_id=1, role_id=2)
ON = Settings(enforced=True)
OFFICE = [Rule(ip_network("192.0.2.0/24"))]


def test_restrictions_off_allows_anything_even_an_unknown_ip():
    assert decide(ANN, None, Settings(), [], [], NOW) == Allowed("restrictions_off")


def test_user_outside_the_selected_roles_and_users_is_allowed():
    scoped = Settings(enforced=True, everyone=False, role_ids=frozenset({5}), user_ids=frozenset({9}))
    assert decide(ANN, ip_address("203.0.113.7"), scoped, [], [], NOW) == Allowed("not_in_scope")


@pytest.mark.parametrize("scoped", [
    Settings(enforced=True, everyone=False, role_ids=frozenset({2})),
    Settings(enforced=True, everyone=False, user_ids=frozenset({1})),
])
def test_user_selected_by_role_or_by_name_is_restricted(scoped):
    assert decide(ANN, ip_address("203.0.113.7"), scoped, [], [], NOW).allowed is False


@pytest.mark.parametrize("ip", ["192.0.2.1", "192.0.2.255", "::ffff:192.0.2.7"])
def test_ip_inside_an_active_entry_is_allowed(ip):
    decision = decide(ANN, ip_address(ip), ON, OFFICE, [], NOW)
    assert decision.allowed and decision.reason == "allowlist_entry" and decision.rule is OFFICE[0]


@pytest.mark.parametrize("ip", ["192.0.3.1", "2001:db8::1", "::ffff:192.0.3.1"])
def test_ip_outside_every_entry_is_blocked(ip):
    assert decide(ANN, ip_address(ip), ON, OFFICE, [], NOW) == Blocked("ip_not_approved")


def test_switched_off_entry_does_not_count():
    assert not decide(ANN, ip_address("192.0.2.1"), ON, [Rule(ip_network("192.0.2.0/24"), active=False)], [], NOW).allowed


def test_user_grant_allows_that_ip_only():
    grants = [Rule(ip_network("203.0.113.7/32"))]
    assert decide(ANN, ip_address("203.0.113.7"), ON, [], grants, NOW) == Allowed("user_grant", grants[0])
    assert not decide(ANN, ip_address("203.0.113.8"), ON, [], grants, NOW).allowed


def test_expired_grant_does_not_count():
    grants = [Rule(ip_network("203.0.113.7/32"), expires_at=NOW - timedelta(seconds=1))]
    assert not decide(ANN, ip_address("203.0.113.7"), ON, [], grants, NOW).allowed


def test_unknown_ip_fails_closed():
    assert decide(ANN, None, ON, OFFICE, [], NOW) == Blocked("ip_unknown")


def test_blocked_carries_the_request_status():
    assert decide(ANN, ip_address("203.0.113.7"), ON, [], [], NOW, "pending") == Blocked("ip_not_approved", "pending")


def test_ipv4_and_ipv6_never_cross_match():
    v6_everything_mapped = [Rule(ip_network("::ffff:0:0/97"))]
    assert not decide(ANN, ip_address("10.0.0.1"), ON, v6_everything_mapped, [], NOW).allowed


def test_grants_and_request_status_are_loaded_only_when_the_steps_before_did_not_decide():
    asked = []

    def grants():
        asked.append("grants")
        return []

    def status():
        asked.append("status")
        return "pending"

    office_ip = ip_address("192.0.2.9")
    assert decide(ANN, office_ip, ON, OFFICE, grants, NOW, status) == Allowed("allowlist_entry", OFFICE[0])
    assert asked == []
    assert decide(ANN, ip_address("203.0.113.7"), ON, OFFICE, grants, NOW, status) == Blocked(
        "ip_not_approved", "pending")
    assert asked == ["grants", "status"]
    assert decide(ANN, ip_address("203.0.113.7"), Settings(), [], grants, NOW, status).allowed
    assert asked == ["grants", "status"]


@pytest.mark.parametrize("decision, word", [
    (Allowed("restrictions_off"), "allowed"), (Allowed("allowlist_entry"), "allowed"),
    (Allowed("user_grant"), "approved"), (Blocked("ip_not_approved"), "not_requested"),
    (Blocked("ip_not_approved", "pending"), "pending"), (Blocked("ip_not_approved", "rejected"), "rejected"),
    (Blocked("ip_not_approved", "approved"), "not_requested"),  # approved, then the grant was revoked
])
def test_status_words(decision, word):
    from pbnsec.core.decision import STATUS_LABELS, status_of
    assert status_of(decision) == word and STATUS_LABELS[word]


# --- expiry ---

HOME = ip_address("203.0.113.7")


def _grant(expires_at):
    return Rule(ip_network("203.0.113.7/32"), expires_at=expires_at)


@pytest.mark.parametrize("expires_at, allowed", [
    (None, True), (NOW + timedelta(seconds=1), True), (NOW, False), (NOW - timedelta(days=2), False),
])
def test_a_grant_lets_in_up_to_the_second_before_it_expires(expires_at, allowed):
    assert decide(ANN, HOME, ON, OFFICE, [_grant(expires_at)], NOW, "approved").allowed is allowed


@pytest.mark.parametrize("expires_at, allowed", [(NOW + timedelta(seconds=1), True), (NOW, False)])
def test_an_entry_matches_up_to_the_second_before_it_expires(expires_at, allowed):
    entry = Rule(ip_network("203.0.113.0/24"), expires_at=expires_at)
    assert decide(ANN, HOME, ON, [entry], [], NOW).allowed is allowed


def test_an_approved_request_whose_grant_expired_is_expired_and_a_revoked_one_not_requested():
    from pbnsec.core.decision import STATUS_LABELS, status_of

    lapsed = _grant(NOW - timedelta(hours=1))
    expired = decide(ANN, HOME, ON, OFFICE, [lapsed], NOW, "approved")
    assert expired == Blocked("ip_not_approved", "approved", lapsed)
    assert status_of(expired) == "expired" and STATUS_LABELS["expired"] == "Expired"
    assert status_of(decide(ANN, HOME, ON, OFFICE, [], NOW, "approved")) == "not_requested"  # revoked
    # Asked again since: the new request's status counts, not the old grant.
    assert status_of(decide(ANN, HOME, ON, OFFICE, [lapsed], NOW, "pending")) == "pending"
    # A switched-off rule is not an expired grant.
    off = Rule(ip_network("203.0.113.7/32"), active=False)
    assert status_of(decide(ANN, HOME, ON, OFFICE, [off], NOW, "approved")) == "not_requested"

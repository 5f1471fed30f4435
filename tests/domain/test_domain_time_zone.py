"""A practice's time zone, set through the domain: saved and audited, or refused with nothing changed."""
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from conftest import practice_named, restrict, visit_of

from pbnsec.domain import allowlist, restrictions
from pbnsec.domain.allowlist import UntilRefused
from pbnsec.domain.users import create_practice
from pbnsec.models import AllowlistEntry, AuditEvent, Practice

RIVERSIDE = "Riverside Dental"


def test_a_time_zone_is_saved_in_its_iana_spelling_and_audited(db):
    refusal = restrictions.set_time_zone(visit_of("ann"), practice_named(RIVERSIDE), "america/denver")
    assert refusal is None
    assert practice_named(RIVERSIDE).time_zone == "America/Denver"
    assert practice_named("Lakeside Dental").time_zone == "UTC"  # only that practice
    event = AuditEvent.get(AuditEvent.action == "settings_changed")
    assert (event.actor_label, event.practice.name, event.target, event.detail) == (
        "ann@example.com", RIVERSIDE, "Time zone", "UTC -> America/Denver")


@pytest.mark.parametrize("bad", ["", "Denver", "Mountain Time", "America/Denver; DROP TABLE practice", "x" * 500])
def test_a_name_that_is_not_a_zone_is_refused_and_nothing_changes(db, bad):
    refusal = restrictions.set_time_zone(visit_of("ann"), practice_named(RIVERSIDE), bad)
    assert refusal is not None and refusal.code == "invalid_choice"
    assert "time zone" in refusal.message
    assert practice_named(RIVERSIDE).time_zone == "UTC"
    assert not AuditEvent.select().where(AuditEvent.action == "settings_changed").exists()


def test_a_new_practice_starts_in_the_default_zone(db, monkeypatch):
    monkeypatch.setenv("PBNSEC_DEFAULT_TIME_ZONE", "Europe/Berlin")
    create_practice("Hillside Dental")
    assert Practice.get(Practice.name == "Hillside Dental").time_zone == "Europe/Berlin"


def test_an_entrys_until_is_typed_and_refused_in_its_practices_time(db, app):
    Practice.update(time_zone="America/Denver").where(Practice.name == RIVERSIDE).execute()
    riverside = practice_named(RIVERSIDE)
    restrict(app, RIVERSIDE, "127.0.0.1/32", "192.0.2.0/24")
    entry = allowlist.find_entry(AllowlistEntry.get(AllowlistEntry.network == "192.0.2.0/24").id)
    now = datetime(2027, 1, 15, 18, 0)  # 11:00 MST
    visit = replace(visit_of("ann", practice=RIVERSIDE), now=now)

    refused = allowlist.set_until(visit, entry, "2027-01-15 10:59", {riverside.id})
    assert isinstance(refused, UntilRefused)
    assert refused.error.message == "2027-01-15 10:59 MST has passed: choose a later end, or none."
    assert AllowlistEntry.get_by_id(entry.id).expires_at is None

    saved = allowlist.set_until(visit, entry, "2027-01-15 11:30", {riverside.id})
    assert saved.expires_at == now + timedelta(minutes=30)  # 18:30 UTC
    assert AllowlistEntry.get_by_id(entry.id).expires_at == datetime(2027, 1, 15, 18, 30)

"""A practice's time zone, set through the domain: saved and audited, or refused with nothing changed."""
import pytest
from conftest import practice_named, visit_of

from pbnsec.domain import restrictions
from pbnsec.domain.users import create_practice
from pbnsec.models import AuditEvent, Practice

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

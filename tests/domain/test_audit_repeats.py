"""Repeated refusals share one audit row with a count: no event is lost, the first one keeps its time."""
import threading
from datetime import timedelta

import pytest
from peewee import SqliteDatabase
from conftest import PEOPLE, restrict, wrong_passwords

from pbnsec.db import database
from pbnsec.domain import audit
from pbnsec.models import AuditEvent, Practice, utcnow

HAL = PEOPLE["hal"][0]  # a member of both practices
ANN = PEOPLE["ann"][0]
FAY = PEOPLE["fay"][0]


def events(app, action):
    """(practice, actor, ip, count) of every row of one action, oldest first."""
    with app.app_context():
        return [(e.practice.name if e.practice_id else None, e.actor_label, e.actor_ip, e.count)
                for e in AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)]


def test_35_wrong_passwords_make_one_row_per_practice_counting_35_with_first_and_last_times(app, visitor):
    v = visitor()
    before = utcnow()
    wrong_passwords(app, v, HAL, 1)
    with app.app_context():
        first = AuditEvent.get(AuditEvent.action == "login_failed").at
    wrong_passwords(app, v, HAL, 34)
    after = utcnow()

    assert events(app, "login_failed") == [("Riverside Dental", HAL, "127.0.0.1", 35),
                                           ("Lakeside Dental", HAL, "127.0.0.1", 35)]
    with app.app_context():
        for row in AuditEvent.select().where(AuditEvent.action == "login_failed"):
            assert row.at == first  # the first attempt's time, not moved by the repeats
            assert before <= row.at <= row.last_at <= after


def test_a_different_ip_or_a_different_account_gets_its_own_rows(app, visitor):
    wrong_passwords(app, visitor("127.0.0.1"), HAL, 3)
    wrong_passwords(app, visitor("127.0.0.2"), HAL, 2)
    wrong_passwords(app, visitor("127.0.0.1"), ANN, 4)
    assert sorted(events(app, "login_failed")) == [
        ("Lakeside Dental", HAL, "127.0.0.1", 3), ("Lakeside Dental", HAL, "127.0.0.2", 2),
        ("Riverside Dental", ANN, "127.0.0.1", 4),
        ("Riverside Dental", HAL, "127.0.0.1", 3), ("Riverside Dental", HAL, "127.0.0.2", 2)]


def test_a_row_takes_repeats_for_15_minutes_from_its_first_event_then_a_new_row_starts(app, visitor):
    v = visitor()
    wrong_passwords(app, v, HAL, 2)
    now = utcnow()
    with app.app_context():
        # Both rows were repeated a minute ago; Riverside's began 16 minutes ago, Lakeside's 14.
        for name, began in (("Riverside Dental", 16), ("Lakeside Dental", 14)):
            AuditEvent.update(at=now - timedelta(minutes=began), last_at=now - timedelta(minutes=1)).where(
                AuditEvent.practice == Practice.get(Practice.name == name)).execute()
    wrong_passwords(app, v, HAL, 1)
    assert events(app, "login_failed") == [("Riverside Dental", HAL, "127.0.0.1", 2),
                                           ("Lakeside Dental", HAL, "127.0.0.1", 3),
                                           ("Riverside Dental", HAL, "127.0.0.1", 1)]


def test_20_blocked_sign_ins_make_one_row_counting_20(app, visitor):
    restrict(app, "Riverside Dental", "127.0.0.50")
    v = visitor()
    for _ in range(20):
        assert v.login(FAY).headers["Location"] == "/blocked"
    assert events(app, "login_blocked") == [("Riverside Dental", FAY, "127.0.0.1", 20)]


@pytest.mark.parametrize("action", ["login_failed", "login_blocked", "login_rate_limited", "session_blocked",
                                    "password_change_failed"])
def test_each_noisy_action_is_counted_on_one_row(app, action):
    with app.app_context():
        riverside = Practice.get(Practice.name == "Riverside Dental")
        for _ in range(3):
            audit.record(action, practice=riverside, actor_label=HAL, actor_ip="127.0.0.1", target=HAL,
                         detail="same every time")
        audit.record(action, practice=riverside, actor_label=HAL, actor_ip="127.0.0.1", target=HAL,
                     detail="something else")
    assert events(app, action) == [("Riverside Dental", HAL, "127.0.0.1", 3), ("Riverside Dental", HAL, "127.0.0.1", 1)]


def test_repeats_without_a_practice_are_counted_too(app, visitor):
    wrong_passwords(app, visitor(), "nobody@example.com", 4)
    assert events(app, "login_failed") == [(None, "nobody@example.com", "127.0.0.1", 4)]


@pytest.mark.parametrize("action", ["entry_added", "login_allowed", "password_changed", "request_submitted",
                                    "settings_changed"])
def test_other_actions_are_never_merged(app, action):
    with app.app_context():
        riverside = Practice.get(Practice.name == "Riverside Dental")
        for _ in range(3):
            audit.record(action, practice=riverside, actor_label=ANN, actor_ip="127.0.0.1", target="192.0.2.0/24")
    assert events(app, action) == [("Riverside Dental", ANN, "127.0.0.1", 1)] * 3


@pytest.mark.parametrize("round_", [1, 2, 3])
def test_twenty_repeats_recorded_at_the_same_moment_are_all_counted(app, round_):
    threads_count = 20
    barrier = threading.Barrier(threads_count)
    errors = []

    def record_one():
        try:
            with app.app_context():
                riverside = Practice.get(Practice.name == "Riverside Dental")
                barrier.wait()
                audit.record("login_failed", practice=riverside, actor_label=HAL, actor_ip="127.0.0.1", target=HAL)
        except BaseException as exc:  # reported below, never lost in the thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=record_one) for _ in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    found = events(app, "login_failed")
    assert {row[:3] for row in found} == {("Riverside Dental", HAL, "127.0.0.1")}
    assert sum(row[3] for row in found) == threads_count


def test_finding_the_row_to_count_on_uses_an_index_however_big_the_log(app):
    with app.app_context():
        riverside = Practice.get(Practice.name == "Riverside Dental")
        start = utcnow() - timedelta(days=30)
        AuditEvent.insert_many([
            {"at": start + timedelta(minutes=i), "actor_label": f"user{i % 40}@example.com",
             "actor_ip": f"127.0.{i % 7}.1", "practice": riverside, "target": f"user{i % 40}@example.com",
             "action": ("login_failed", "login_allowed", "entry_added", "login_blocked")[i % 4], "detail": ""}
            for i in range(5000)]).execute()
        database.execute_sql("ANALYZE")
        query = audit.count_repeat("login_failed", riverside, HAL, "127.0.0.1", HAL, "", utcnow())
        sql, params = query.sql()
        if isinstance(database.obj, SqliteDatabase):
            plan = [step[-1] for step in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params)]
            assert any("USING INDEX audit_event_action_actor_label_actor_ip_at" in step for step in plan), plan
            assert not any(step.startswith("SCAN") for step in plan), plan
        else:
            plan = [line for (line,) in database.execute_sql("EXPLAIN " + sql, params)]
            # PostgreSQL's planner picks among the indexes (the `at` one when few rows are recent): any, never a scan.
            assert any("Index Scan using audit_event_" in line for line in plan), "\n".join(plan)
            assert not any("Seq Scan" in line for line in plan), "\n".join(plan)

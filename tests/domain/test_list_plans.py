"""The lists that grow (audit log, access requests, allowlist) are read along indexes, never by scanning the table:
EXPLAIN of every statement a page runs, on SQLite and PostgreSQL, with enough rows for the planner to care."""
from datetime import datetime, timedelta

import pytest
from conftest import practice_named, query_plan, scans_of

from peewee import SqliteDatabase, chunked

from pbnsec.db import database
from pbnsec.domain import access_requests, allowlist, audit
from pbnsec.domain.audit import AuditFilter
from pbnsec.domain.paging import Cursor
from pbnsec.models import ALL_PRACTICES, AccessRequest, AllowlistEntry, AuditEvent, User

ROWS = 40_000  # PostgreSQL reads a small table whole, rightly: the plans that matter are those of a big one
START = datetime(2026, 1, 1)


@pytest.fixture
def practices(db):
    """Riverside, Lakeside and ten more practices: a big group, where one practice's rows are few of the table's."""
    from pbnsec.domain.users import create_practice

    extra = [create_practice(f"Extra Dental {n}") for n in range(10)]
    return [practice_named("Riverside Dental"), practice_named("Lakeside Dental"), *extra]


def plans_of(seen) -> list[tuple[str, list[str]]]:
    ran = list(zip(seen.all, seen.params))  # EXPLAIN runs statements too (counted after these)
    return [(sql, query_plan(sql, params)) for sql, params in ran]


def assert_no_scan(seen, table: str, case: str = "", along: tuple[str, ...] = ()):
    """No statement reads the whole table; on SQLite (whose plans name them plainly) each walks one of `along`,
    the indexes that give the rows in the page's order (not one that finds them all, to be sorted after)."""
    plans = plans_of(seen)
    assert any(f'"{table}"' in sql for sql, _ in plans), "the statements do not read the table at all"
    for sql, plan in plans:
        assert not scans_of(plan, table), f"{case}\n{sql}\n" + "\n".join(plan)
        if along and isinstance(database.obj, SqliteDatabase):
            assert any(f"INDEX {index} " in step for step in plan for index in along), (
                f"{case}\n{sql}\n" + "\n".join(plan))


def insert(model, rows):
    for batch in chunked(rows, 500):  # SQLite takes so many parameters a statement
        model.insert_many(batch).execute()


def analyze():
    database.execute_sql("ANALYZE")


@pytest.fixture
def big_log(practices):
    actions = ("login_allowed", "entry_added", "login_failed", "settings_changed")
    insert(AuditEvent, [
        {"at": START + timedelta(minutes=i), "actor_label": f"user{i % 40}@example.com", "actor_ip": f"127.0.{i % 7}.9",
         "subject_ip": f"127.0.{(i + 1) % 7}.9" if i % 11 == 0 else "",  # a decision about another IP
         "practice": practices[i % len(practices)] if i % 13 else None, "action": actions[i % len(actions)],
         "target": f"t{i}", "detail": ""} for i in range(ROWS)])
    analyze()
    return practices


# Events a minute apart: ROWS of them span four weeks (2026-01-01 to 2026-01-28), the middle on 2026-01-14.
AUDIT_CASES = [(filters, every_practice, place)
               for filters in ({}, {"action": "entry_added"}, {"practice": "RIVERSIDE"}, {"user": "user1"},
                               {"ip": "127.0.3.9"}, {"ip": "127.0.3.9", "action": "entry_added"},
                               {"from": "2026-01-10", "to": "2026-01-20"},
                               {"from": "2026-01-10", "to": "2026-01-20", "action": "entry_added"},
                               {"from": "2026-01-10", "to": "2026-01-20", "ip": "127.0.3.9",
                                "practice": "RIVERSIDE"})
               for every_practice in (False, True) for place in ("first", "older", "newer")]


def test_an_audit_page_is_read_along_the_practice_index(big_log, count_statements):
    for filters, every_practice, place in AUDIT_CASES:
        audit_page_plan(big_log, count_statements, filters, every_practice, place)


def audit_page_plan(big_log, count_statements, filters, every_practice, place):
    riverside, lakeside = big_log[0], big_log[1]
    args = {k: str(riverside.id) if v == "RIVERSIDE" else v for k, v in filters.items()}
    middle = Cursor(START + timedelta(minutes=ROWS // 2), ROWS // 2)
    if place != "first":
        args["before" if place == "older" else "after"] = str(middle)
    f = AuditFilter.from_args(args, {riverside.id, lakeside.id})
    assert f.error is None
    seen = count_statements()
    shown = audit.events_page(f, [riverside.id, lakeside.id], every_practice)
    assert len(shown.events) == audit.PAGE_SIZE and len(seen.all) == 1
    case = f"{filters} {every_practice} {place}"
    if "ip" in filters:  # one address's events are found along their own index, not among all of a practice's
        ran = len(seen.all)
        assert_no_scan(seen, "audit_event", case,
                       ("audit_event_practice_id_actor_ip_at_id", "audit_event_practice_id_subject_ip_at_id"))
        del seen.all[ran:], seen.params[ran:]  # the EXPLAINs just run
        for _, plan in plans_of(seen):  # from the IP, and about it from elsewhere: each along its index
            assert all(f"audit_event_practice_id_{column}_at_id" in "\n".join(plan)
                       for column in ("actor_ip", "subject_ip")), f"{case}\n" + "\n".join(plan)
    else:
        assert_no_scan(seen, "audit_event", case,
                       ("audit_event_practice_id_at_id", "audit_event_practice_id_action_at_id"))


def test_the_csv_is_read_in_indexed_chunks(big_log, count_statements):
    riverside, lakeside = big_log[0], big_log[1]
    visible = AuditEvent.select().where(AuditEvent.practice.in_([riverside.id, lakeside.id])
                                        | AuditEvent.practice.is_null()).count()
    seen = count_statements()
    events = list(audit.all_events(AuditFilter(), [riverside.id, lakeside.id], True))
    assert len(events) == visible and len(seen.all) == visible // audit.CSV_CHUNK + 1
    assert [(e.at, e.id) for e in events] == sorted(((e.at, e.id) for e in events), reverse=True)
    del seen.all[1:], seen.params[1:]  # each chunk is the same statement from a later place
    assert_no_scan(seen, "audit_event")


@pytest.fixture
def many_requests(practices):
    users = list(User.select())
    insert(AccessRequest, [
        {"user": users[i % len(users)], "practice": practices[i % len(practices)], "ip": f"127.{i % 40}.{i // 40 % 250}.{i // 10000}",
         "note": "", "status": ("pending", "approved", "rejected")[i % 3], "created_at": START + timedelta(seconds=i),
         "decided_at": None if i % 3 == 0 else START + timedelta(seconds=i + 60)} for i in range(ROWS)])
    analyze()
    return practices


def test_the_request_tables_are_read_along_the_practice_index(many_requests, count_statements):
    for search in ("", "hal", "127.1"):
        for later_page in (False, True):
            request_tables_plan(many_requests, count_statements, search, later_page)


def request_tables_plan(many_requests, count_statements, search, later_page):
    ids = [p.id for p in many_requests[:2]]
    middle = Cursor(START + timedelta(seconds=ROWS // 2), ROWS // 2) if later_page else None
    seen = count_statements()
    shown = access_requests.listing(ids, search=search, pending_after=middle, decided_after=middle)
    assert shown.pending and shown.decided and len(seen.all) == 2
    assert_no_scan(seen, "access_request", f"{search!r} {later_page}",
                   ("access_request_practice_id_status_created_at_id", "access_request_practice_id_decided_at_id"))
    seen = count_statements()
    assert access_requests.pending_count(ids) == AccessRequest.select().where(
        AccessRequest.practice.in_(ids) & (AccessRequest.status == "pending")).count()
    assert_no_scan(seen, "access_request")


@pytest.fixture
def long_allowlist(practices):
    riverside = practices[0]
    rows = []
    for i in range(ROWS):
        practice = practices[i % len(practices)] if i % 5 else None
        rows.append({"practice": practice, "scope": practice.id if practice else ALL_PRACTICES,
                     "network": f"10.{i // 256 % 256}.{i % 256}.0/24", "start": f"{(10 << 24 | i << 8):032x}",
                     "prefix_length": 24, "label": f"Branch {i}", "added_at": START + timedelta(seconds=i)})
    insert(AllowlistEntry, rows)
    analyze()
    return riverside


def test_the_allowlist_is_read_along_the_scope_index(long_allowlist, count_statements):
    for args in ({}, {"q": "Branch 1"}, {"scope": "all-practices"}, {"covering": "10.0.12.9"}, {"after": "LATER"}):
        allowlist_plan(long_allowlist, count_statements, args)


def allowlist_plan(long_allowlist, count_statements, args):
    if args.get("after") == "LATER":
        args = {"after": f"p-{Cursor(START + timedelta(seconds=ROWS // 2), ROWS // 2)}"}
    search = allowlist.EntrySearch.from_args(args)
    assert search.error is None
    seen = count_statements()
    shown = allowlist.entries_page(long_allowlist.id, search)
    assert shown.entries and len(seen.all) == 1
    assert_no_scan(seen, "allowlist_entry", str(args),
                   ("allowlist_entry_scope_start",) if "covering" in args else ("allowlist_entry_scope_added_at_id",))
    if "covering" in args:
        assert [e.network for e in shown.entries] == ["10.0.12.0/24"]


@pytest.mark.parametrize("every_practice", [False, True])
def test_more_practices_than_can_be_merged_are_read_as_one_with_the_same_rows(practices, monkeypatch,
                                                                              every_practice):
    from pbnsec.domain import paging

    insert(AuditEvent, [{"at": START + timedelta(seconds=i), "actor_label": "a@example.com", "actor_ip": "",
                         "practice": practices[i % len(practices)] if i % 5 else None, "action": "entry_added",
                         "target": f"t{i}", "detail": ""} for i in range(300)])
    users = list(User.select())
    insert(AccessRequest, [{"user": users[i % len(users)], "practice": practices[i % len(practices)],
                            "ip": f"127.0.0.{i}", "status": ("pending", "approved")[i % 2],
                            "created_at": START + timedelta(seconds=i),
                            "decided_at": START + timedelta(seconds=i) if i % 2 else None} for i in range(200)])
    ids = [p.id for p in practices[:5]]

    def shown():
        page = audit.events_page(AuditFilter(), ids, every_practice)
        requests = access_requests.listing(ids)
        return ([e.id for e in page.events], page.older,
                [r.id for r in requests.pending], [r.id for r in requests.decided], requests.pending_next)

    merged = shown()
    assert merged[0] and merged[2] and merged[3]
    monkeypatch.setattr(paging, "MAX_PARTS", 1)
    monkeypatch.setattr(audit, "MAX_PARTS", 1)
    monkeypatch.setattr(access_requests, "MAX_PARTS", 1)
    assert shown() == merged

"""Security Management › Audit log: who sees which events, filters, paging, and the CSV download."""
import csv
import html
import io
import re
from datetime import datetime, timedelta

import pytest
from conftest import PEOPLE, field_error, practice_id, wrong_passwords

from pbnsec.models import AuditEvent, Practice


def add_entry(app, v, address, label, practice):
    response = v.post("/security/allowlist", {"address": address, "label": label,
                                              "practice": str(practice_id(app, practice))})
    assert response.status_code == 303, response.text
    return response


def rows(response):
    """The audit table as a user reads it: (actor, ip, practice, action, target, detail) per row."""
    body = response.text.split('<tbody>', 1)[1].split('</tbody>', 1)[0]
    found = []
    for row in re.findall(r"<tr><td[^>]*>(?:<span>)?<time.*?</tr>", body, re.S):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        found.append(tuple(cells[1:]))
    return found


def times(response):
    """The time cell of each row as a user reads it."""
    body = response.text.split('<tbody>', 1)[1].split('</tbody>', 1)[0]
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", cell)).split())
            for cell in re.findall(r"<tr><td[^>]*>(?:<span>)?(<time.*?)</td>", body, re.S)]


def csv_rows(response):
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def error_of(response):
    found = re.search(r'<p class="error" role="alert">([^<]*)</p>', response.text)
    return html.unescape(found.group(1)) if found else None


def create_events(app, count, practice="Riverside Dental", action="entry_added", start=datetime(2024, 1, 1)):
    """count events, oldest first, one minute apart, targets event-00, event-01, …"""
    with app.app_context():
        place = Practice.get(Practice.name == practice) if practice else None
        for i in range(count):
            AuditEvent.create(at=start + timedelta(minutes=i), actor_label="script@example.com", actor_ip="127.0.0.9",
                              practice=place, action=action, target=f"event-{i:02d}", detail="")


@pytest.fixture
def owner(signed_in):
    return signed_in("owner")


@pytest.fixture
def both_practices_busy(app, ann, bob):
    """Ann and Bob have each signed in and added an entry to their own practice."""
    add_entry(app, ann, "192.0.2.0/24", "Riverside office", "Riverside Dental")
    add_entry(app, bob, "198.51.100.0/24", "Lakeside office", "Lakeside Dental")


def test_an_admin_sees_the_events_of_their_practice(app, ann, both_practices_busy):
    response = ann.get("/security/audit")
    assert response.status_code == 200
    seen = rows(response)
    assert ("ann@example.com", "127.0.0.1", "Riverside Dental", "entry added", "192.0.2.0/24",
            "label: Riverside office") in seen
    assert ("ann@example.com", "127.0.0.1", "Riverside Dental", "login allowed", "ann@example.com",
            "allowed by IP restrictions are off") in seen
    assert {r[2] for r in seen} == {"Riverside Dental"}
    assert "Lakeside" not in response.text.split("<tbody>", 1)[1]
    assert "bob@example.com" not in response.text


def test_an_admin_never_sees_another_practices_events(app, bob, both_practices_busy):
    for url in ["/security/audit", "/security/audit?user=ann", "/security/audit?action=entry_added"]:
        response = bob.get(url)
        assert response.status_code == 200
        assert "Riverside" not in response.text and "ann@example.com" not in response.text
        assert {r[2] for r in rows(response)} <= {"Lakeside Dental"}
    download = csv_rows(bob.get("/security/audit.csv"))
    assert {r[3] for r in download[1:]} == {"Lakeside Dental"}
    assert "192.0.2.0/24" not in str(download)


def test_events_without_a_practice_are_shown_only_to_an_admin_of_every_practice(app, visitor, ann, bob, owner):
    stranger = visitor()
    assert stranger.login("nobody@example.com").status_code == 401
    for admin in (ann, bob):
        assert "nobody@example.com" not in admin.get("/security/audit").text
        assert "nobody@example.com" not in admin.get("/security/audit.csv").text
    response = owner.get("/security/audit?action=login_failed")
    assert rows(response) == [("nobody@example.com", "127.0.0.1", "—", "login failed", "nobody@example.com", "")]
    assert "nobody@example.com" in owner.get("/security/audit.csv").text


def test_the_owner_sees_both_practices(app, owner, both_practices_busy):
    practices = {r[2] for r in rows(owner.get("/security/audit"))}
    assert practices == {"Riverside Dental", "Lakeside Dental"}


def test_filter_by_practice(app, owner, both_practices_busy):
    riverside = practice_id(app, "Riverside Dental")
    response = owner.get(f"/security/audit?practice={riverside}")
    assert response.status_code == 200
    seen = rows(response)
    assert seen and {r[2] for r in seen} == {"Riverside Dental"}
    assert f'<option value="{riverside}" selected>' in response.text


def test_filter_by_action(app, owner, both_practices_busy):
    response = owner.get("/security/audit?action=entry_added")
    assert sorted(r[4] for r in rows(response)) == ["192.0.2.0/24", "198.51.100.0/24"]
    assert '<option value="entry_added" selected>' in response.text
    assert "2 events." in response.text


def test_filter_by_user(app, owner, both_practices_busy):
    response = owner.get("/security/audit?user=BOB@")
    seen = rows(response)
    assert seen and all("bob@example.com" in (r[0], r[4]) for r in seen)
    assert "198.51.100.0/24" in {r[4] for r in seen}
    assert 'name="user" value="BOB@"' in response.text


def test_filters_combine(app, owner, both_practices_busy):
    lakeside = practice_id(app, "Lakeside Dental")
    response = owner.get(f"/security/audit?practice={lakeside}&action=entry_added&user=bob")
    assert [r[4] for r in rows(response)] == ["198.51.100.0/24"]
    assert rows(owner.get(f"/security/audit?practice={lakeside}&user=ann")) == []
    assert "No events match." in owner.get(f"/security/audit?practice={lakeside}&user=ann").text


@pytest.mark.parametrize("query,message", [
    ("page=0", "The page must be a whole number from 1 up, not '0'."),
    ("page=abc", "The page must be a whole number from 1 up, not 'abc'."),
    ("page=-1", "The page must be a whole number from 1 up, not '-1'."),
    ("page=1.5", "The page must be a whole number from 1 up, not '1.5'."),
    ("action=nope", "There is no action called 'nope'."),
    ("practice=LAKESIDE", "Choose one of your practices."),
    ("practice=999", "Choose one of your practices."),
    ("practice=abc", "Choose one of your practices."),
    ("user=ann%00", "The user filter contains a control character."),
    ("user=ann%1b", "The user filter contains a control character."),
    ("user=ann%E2%80%AE", "The user filter contains a control character."),
])
def test_bad_filter_values_get_400_with_a_specific_message(app, ann, query, message):
    query = query.replace("LAKESIDE", str(practice_id(app, "Lakeside Dental")))
    response = ann.get(f"/security/audit?{query}")
    assert response.status_code == 400
    assert error_of(response) == message
    assert rows(response) == []
    download = ann.get(f"/security/audit.csv?{query}")
    assert download.status_code == 400
    assert download.get_data(as_text=True).strip() == message
    assert "attachment" not in download.headers.get("Content-Disposition", "")


def test_paging_shows_fifty_at_a_time_newest_first(app, ann):
    create_events(app, 60)
    page1 = ann.get("/security/audit?action=entry_added")
    assert page1.status_code == 200
    assert "Newest first, 50 rows on this page." in page1.text  # no count of the whole log: it costs a full scan
    first = [r[4] for r in rows(page1)]
    assert first == [f"event-{i:02d}" for i in range(59, 9, -1)]
    older = re.search(r'<a href="([^"]+)">Older →</a>', page1.text)
    assert older and "Newer" not in page1.text
    link = html.unescape(older.group(1))
    assert "action=entry_added" in link and "before=" in link  # the filter is kept
    page2 = ann.get(link)
    assert "Newest first, 10 rows on this page." in page2.text
    assert [r[4] for r in rows(page2)] == [f"event-{i:02d}" for i in range(9, -1, -1)]
    assert "← Newer" in page2.text and "Older →" not in page2.text
    newer = html.unescape(re.search(r'<a href="([^"]+)">← Newer</a>', page2.text).group(1))
    assert "action=entry_added" in newer and "after=" in newer
    back = ann.get(newer)
    assert [r[4] for r in rows(back)] == first
    assert "Older →" in back.text and "← Newer" not in back.text


def test_events_of_one_instant_are_paged_by_id_without_loss_or_repeat(app, ann):
    with app.app_context():
        place = Practice.get(Practice.name == "Riverside Dental")
        for i in range(120):  # all at one time: only the id orders them
            AuditEvent.create(at=datetime(2024, 1, 1), actor_label="script@example.com", actor_ip="127.0.0.9",
                              practice=place, action="entry_added", target=f"event-{i:03d}", detail="")
    seen, url = [], "/security/audit?action=entry_added"
    while url:
        response = ann.get(url)
        seen += [r[4] for r in rows(response)]
        older = re.search(r'<a href="([^"]+)">Older →</a>', response.text)
        url = html.unescape(older.group(1)) if older else None
    assert seen == [f"event-{i:03d}" for i in range(119, -1, -1)]


def test_old_numbered_page_links_still_open(app, ann):
    create_events(app, 60)
    page2 = ann.get("/security/audit?action=entry_added&page=2")
    assert [r[4] for r in rows(page2)] == [f"event-{i:02d}" for i in range(9, -1, -1)]
    assert "← Newer" in page2.text and "Older →" not in page2.text
    beyond = ann.get("/security/audit?action=entry_added&page=3")
    assert beyond.status_code == 400 and error_of(beyond) == "There is no page 3: these filters give fewer."


@pytest.mark.parametrize("cursor", ["2024", "20240101T000000000000_x", "20241301T000000000000_5", "x" * 500])
def test_a_made_up_place_in_the_log_is_refused(app, ann, cursor):
    for name in ("before", "after"):
        response = ann.get(f"/security/audit?{name}={cursor}")
        assert response.status_code == 400
        assert "is not a place in the audit log: follow the Newer and Older links." in error_of(response)


def test_one_page_needs_no_pager(app, ann):
    create_events(app, 3)
    response = ann.get("/security/audit?action=entry_added")
    assert "3 events." in response.text and "page 1 of" not in response.text
    assert "Older →" not in response.text and "← Newer" not in response.text


def test_a_page_of_fifty_rows_costs_what_a_page_of_three_does(app, ann, count_statements):
    counts = []
    for events in (3, 47):  # 3 rows, then 50
        create_events(app, events)
        seen = count_statements("security.audit_log")
        assert ann.get("/security/audit").status_code == 200
        counts.append(len(seen.of_view))
    assert counts[0] == counts[1], f"statements by the view for a page of 3 rows and of 50: {counts}"


def test_what_users_typed_is_escaped(app, ann):
    add_entry(app, ann, "192.0.2.0/24", '<script>alert("x")</script>', "Riverside Dental")
    response = ann.get("/security/audit?action=entry_added")
    assert "<script>alert" not in response.text
    assert rows(response)[0][5] == 'label: <script>alert("x")</script>'


# --- CSV ---

HEADER = ["time_utc", "actor", "actor_ip", "practice", "action", "target", "detail", "count", "last_utc", "time_local",
          "subject_ip"]


def test_csv_download_holds_the_filtered_rows_only(app, ann, both_practices_busy):
    response = ann.get("/security/audit.csv?action=entry_added")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="pbnsec-audit.csv"'
    table = csv_rows(response)
    assert table[0] == HEADER
    assert len(table) == 2
    time_utc, *rest, time_local, subject_ip = table[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", time_utc)
    assert rest == ["ann@example.com", "127.0.0.1", "Riverside Dental", "entry_added", "192.0.2.0/24",
                    "label: Riverside office", "1", ""]
    assert time_local == time_utc[:-1] + "+00:00"  # Riverside keeps the server's zone, UTC in the tests
    assert subject_ip == ""  # about no one's address


def test_csv_of_nothing_is_just_the_header(app, ann):
    table = csv_rows(ann.get("/security/audit.csv?action=request_rejected"))
    assert table == [HEADER]


def test_csv_is_not_limited_to_one_page(app, ann):
    create_events(app, 60)
    table = csv_rows(ann.get("/security/audit.csv?action=entry_added"))
    assert [r[5] for r in table[1:]] == [f"event-{i:02d}" for i in range(59, -1, -1)]


def test_the_page_links_to_the_csv_of_the_same_filter(app, ann):
    page = ann.get("/security/audit?action=entry_added&user=ann")
    link = re.search(r'<a class="button" href="([^"]+)" download>Download CSV</a>', page.text)
    assert link
    url = html.unescape(link.group(1))
    assert url.startswith("/security/audit.csv?") and "action=entry_added" in url and "user=ann" in url


def test_a_formula_typed_as_an_entry_label_stays_text_in_the_csv(app, ann):
    label = '=HYPERLINK("http://example.com/x","Click")'
    add_entry(app, ann, "192.0.2.0/24", label, "Riverside Dental")
    assert rows(ann.get("/security/audit?action=entry_added"))[0][5] == f"label: {label}"
    table = csv_rows(ann.get("/security/audit.csv?action=entry_added"))
    assert table[1][6] == f"label: {label}"
    assert not any(cell[:1] in "=+-@\t\r" and cell for row in table for cell in row)


def test_a_formula_typed_as_a_sign_in_email_is_neutralised_in_the_csv(app, visitor, owner):
    typed = '=HYPERLINK("http://example.com/x","Click")'
    visitor().login(typed)
    table = csv_rows(owner.get("/security/audit.csv?action=login_failed"))
    assert len(table) == 2
    actor, target = table[1][1], table[1][5]
    assert actor == target == "'" + typed.lower()


@pytest.mark.parametrize("value", ["=1+2", "+1+2", "-1+2", "@SUM(A1)", "\t=1", "\r=1"])
def test_every_formula_prefix_is_neutralised_in_the_csv(app, ann, value):
    with app.app_context():
        AuditEvent.create(actor_label=value, actor_ip="127.0.0.9", action="request_submitted",
                          practice=Practice.get(Practice.name == "Riverside Dental"), target=value, detail=value)
    table = csv_rows(ann.get("/security/audit.csv?action=request_submitted"))
    assert table[1][1] == table[1][5] == table[1][6] == "'" + value


# --- repeats ---

HAL = PEOPLE["hal"][0]


@pytest.fixture
def hal_guessed_35_times(app, visitor):
    """35 wrong passwords for Hal (Riverside and Lakeside) from one IP; returns each practice's (first, last)."""
    wrong_passwords(app, visitor(), HAL, 35)
    with app.app_context():
        return {e.practice.name: (e.at, e.last_at)
                for e in AuditEvent.select().where(AuditEvent.action == "login_failed")}


def test_the_page_shows_how_often_and_over_what_time_a_refusal_repeated(app, owner, hal_guessed_35_times):
    create_events(app, 2)
    response = owner.get("/security/audit")
    shown = dict(zip(rows(response), times(response)))
    for practice, (first, last) in hal_guessed_35_times.items():
        row = (HAL, "127.0.0.1", practice, "login failed", HAL, "")
        assert shown[row] == f"{first:%Y-%m-%d %H:%M:%S} UTC ×35, {first:%H:%M:%S}–{last:%H:%M:%S} UTC"
    single = ("script@example.com", "127.0.0.9", "Riverside Dental", "entry added", "event-00", "")
    assert shown[single] == "2024-01-01 00:00:00 UTC"


def test_the_event_total_counts_every_repeat(app, owner, ann, hal_guessed_35_times):
    assert "70 events in 2 rows." in owner.get("/security/audit?action=login_failed").text
    assert "35 events in 1 row." in ann.get("/security/audit?action=login_failed").text
    create_events(app, 2)
    assert "2 events." in ann.get("/security/audit?action=entry_added").text  # no repeats, no row count


def test_a_repeat_that_spans_midnight_shows_both_dates(app, ann):
    with app.app_context():
        AuditEvent.create(at=datetime(2024, 1, 1, 23, 59, 30), last_at=datetime(2024, 1, 2, 0, 4, 10), count=9,
                          actor_label=HAL, actor_ip="127.0.0.1", target=HAL, action="login_failed",
                          practice=Practice.get(Practice.name == "Riverside Dental"))
    assert times(ann.get("/security/audit?action=login_failed")) == [
        "2024-01-01 23:59:30 UTC ×9, 23:59:30–2024-01-02 00:04:10 UTC"]


def test_the_csv_has_each_rows_count_and_last_time(app, ann, hal_guessed_35_times):
    create_events(app, 1)
    table = csv_rows(ann.get("/security/audit.csv"))
    assert table[0] == HEADER
    first, last = hal_guessed_35_times["Riverside Dental"]
    by_action = {row[4]: row for row in table[1:]}
    assert by_action["login_failed"] == [first.isoformat() + "Z", HAL, "127.0.0.1", "Riverside Dental",
                                         "login_failed", HAL, "", "35", last.isoformat() + "Z",
                                         first.isoformat() + "+00:00", ""]
    assert by_action["entry_added"][7:9] == ["1", ""]
    assert sum(int(row[7]) for row in table[1:]) == 35 + 1 + 1  # Hal's guesses, Ann's sign-in, the script's event


@pytest.mark.parametrize("who", ["fay", "hal"])
@pytest.mark.parametrize("url", ["/security/audit", "/security/audit.csv", "/security/audit?page=2"])
def test_other_roles_get_403(app, signed_in, who, url):
    v = signed_in(who)
    assert v.get(url).status_code == 403
    assert v.get(url, htmx=True).status_code == 403


def test_wrong_current_passwords_can_be_filtered_and_are_counted(app, ann):
    from pbnsec.domain import audit

    with app.app_context():
        for _ in range(3):
            audit.record("password_change_failed", actor_label=PEOPLE["ann"][0], actor_ip="127.0.0.1",
                         target=PEOPLE["ann"][0], practice=Practice.get(Practice.name == "Riverside Dental"),
                         detail="wrong current password")
    response = ann.get("/security/audit?action=password_change_failed")
    assert response.status_code == 200
    assert '<option value="password_change_failed" selected>' in response.text
    assert rows(response) == [(PEOPLE["ann"][0], "127.0.0.1", "Riverside Dental", "password change failed",
                               PEOPLE["ann"][0], "wrong current password")]
    assert times(response)[0].split(" ", 3)[3].startswith("×3, ")  # date, time, zone, then the repeats
    assert "3 events in 1 row." in response.text


@pytest.mark.parametrize("place,shown", [
    ("before=20000101T000000000000_1", range(49, -1, -1)),  # older than every event: the oldest page
    ("after=29990101T000000000000_1", range(59, 9, -1)),  # newer than every event: the newest page
])
def test_a_place_past_either_end_of_the_log_shows_that_end(app, ann, place, shown):
    create_events(app, 60)
    response = ann.get(f"/security/audit?action=entry_added&{place}")
    assert [r[4] for r in rows(response)] == [f"event-{i:02d}" for i in shown]
    newest, oldest = shown[0] == 59, shown[-1] == 0
    assert ("← Newer" in response.text) != newest and ("Older →" in response.text) != oldest


@pytest.mark.parametrize("place", ["after=20240101T000000000000_9223372036854775807",
                                   "before=20240101T000000000000_9223372036854775807"])
def test_a_cursor_naming_the_largest_id_there_is_is_refused_like_any_unreadable_one(app, ann, place):
    """No row has it, and the page's probe past it (id + 1) would not fit the database's integer: a 500 before."""
    create_events(app, 3)
    for htmx in (False, True):
        response = ann.get(f"/security/audit?action=entry_added&{place}", htmx=htmx)
        assert response.status_code == 400
        assert error_of(response).endswith(" is not a place in the audit log: follow the Newer and Older links.")
        assert rows(response) == []


# --- the IP and day filters ---

def event_at(app, at, ip="127.0.0.9", practice="Riverside Dental", target="", action="entry_added"):
    with app.app_context():
        place = Practice.get(Practice.name == practice) if practice else None
        AuditEvent.create(at=at, actor_label="script@example.com", actor_ip=ip, practice=place, action=action,
                          target=target or f"{ip} at {at:%Y-%m-%d %H:%M}", detail="")



@pytest.mark.parametrize("typed,stored", [
    ("127.0.0.9", "127.0.0.9"),
    (" 2001:DB8:0::1 ", "2001:db8::1"),  # as the log writes it: lower case, zeros compressed
    ("::ffff:127.0.0.9", "127.0.0.9"),  # an IPv4-mapped address is the IPv4 address
])
def test_the_ip_filter_shows_the_events_from_that_address(app, ann, typed, stored):
    for ip in ("127.0.0.9", "127.0.0.10", "2001:db8::1", "2001:db8::10"):
        event_at(app, datetime(2024, 1, 1), ip=ip)
    response = ann.get("/security/audit", query_string={"ip": typed})
    assert response.status_code == 200
    assert [(r[1], r[4]) for r in rows(response)] == [(stored, f"{stored} at 2024-01-01 00:00")]
    assert f'name="ip" type="text" value="{stored}"' in response.text  # the form shows what it filtered by
    table = csv_rows(ann.get(link_of(response, "Download CSV")))
    assert [r[2] for r in table[1:]] == [stored]


def link_of(response, text):
    found = re.search(rf'<a [^>]*href="([^"]+)"[^>]*>{re.escape(text)}</a>', response.text)
    return html.unescape(found.group(1)) if found else None


@pytest.mark.parametrize("query,field,message", [
    ("ip=nonsense", "ip", "'nonsense' is not an IP address: type one such as 203.0.113.7 or 2001:db8::1."),
    ("ip=203.0.113.0/24", "ip", "Enter a single address, not a network (203.0.113.0/24 contains a /)."),
    ("ip=010.0.0.1", "ip", "010.0.0.1 is ambiguous: write the IPv4 address as four decimal numbers separated by "
                           "dots, without leading zeros, such as 192.0.2.1."),
    ("ip=fe80::1%25eth0", "ip", "fe80::1%eth0 has a zone id (the %eth0 part), which is not allowed here: remove it."),
    ("from=2024-13-01", "from", "'2024-13-01' is not a date: write it as YYYY-MM-DD, such as 2026-01-31."),
    ("to=yesterday", "to", "'yesterday' is not a date: write it as YYYY-MM-DD, such as 2026-01-31."),
    ("from=2024-02-30", "from", "'2024-02-30' is not a date: write it as YYYY-MM-DD, such as 2026-01-31."),
    ("from=1066-10-14", "from", "Choose a day from 1900-01-01 to 9998-12-31, not 1066-10-14."),
    ("from=2024-01-02&to=2024-01-01", "to", "The last day (2024-01-01) is before the first (2024-01-02): swap them."),
])
def test_an_ip_or_day_that_is_not_one_is_said_under_its_field_and_shows_nothing(app, ann, query, field, message):
    event_at(app, datetime(2024, 1, 1))
    response = ann.get(f"/security/audit?{query}")
    assert response.status_code == 200
    assert field_error(response.text, f"f-{field}-error") == message
    assert re.search(rf'aria-describedby="f-{field}-error[ "]', response.text)
    assert rows(response) == [] and "No events shown: correct the filter above." in response.text
    assert "Download CSV" not in response.text
    fragment = ann.get(f"/security/audit?{query}", htmx=True)  # the list alone says why it is empty
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    assert error_of(fragment) == message and rows(fragment) == []
    download = ann.get(f"/security/audit.csv?{query}")
    assert download.status_code == 400 and download.get_data(as_text=True).strip() == message


def test_the_days_are_the_practices_days_both_included(app, ann):
    with app.app_context():
        Practice.update(time_zone="America/Denver").where(Practice.name == "Riverside Dental").execute()
    for at in (datetime(2024, 1, 1, 6, 59), datetime(2024, 1, 1, 7, 0), datetime(2024, 1, 3, 6, 59),
               datetime(2024, 1, 3, 7, 0)):  # Denver is 7 hours behind UTC in January
        event_at(app, at)
    response = ann.get("/security/audit?from=2024-01-01&to=2024-01-02")
    assert [r[4] for r in rows(response)] == ["127.0.0.9 at 2024-01-03 06:59", "127.0.0.9 at 2024-01-01 07:00"]
    assert "Days in America/Denver, both included." in response.text
    one_day = ann.get("/security/audit?from=2024-01-02&to=2024-01-02")
    assert [r[4] for r in rows(one_day)] == ["127.0.0.9 at 2024-01-03 06:59"]
    open_ended = ann.get("/security/audit?from=2024-01-02&ip=127.0.0.9")
    assert [r[4] for r in rows(open_ended)] == ["127.0.0.9 at 2024-01-03 07:00", "127.0.0.9 at 2024-01-03 06:59"]


def test_the_days_of_a_chosen_practice_are_read_in_its_zone(app, owner):
    with app.app_context():
        Practice.update(time_zone="Asia/Tokyo").where(Practice.name == "Lakeside Dental").execute()
    event_at(app, datetime(2024, 1, 1, 16, 0), practice="Lakeside Dental")  # 2024-01-02 01:00 in Tokyo
    lakeside = practice_id(app, "Lakeside Dental")
    response = owner.get(f"/security/audit?practice={lakeside}&from=2024-01-02&to=2024-01-02")
    assert [r[4] for r in rows(response)] == ["127.0.0.9 at 2024-01-01 16:00"]
    assert "Days in Asia/Tokyo, both included." in response.text
    assert rows(owner.get(f"/security/audit?practice={lakeside}&to=2024-01-01")) == []


def test_paging_and_the_csv_keep_the_ip_and_day_filters(app, ann):
    for i in range(300):  # one an hour, from two IPs in turn
        event_at(app, datetime(2024, 1, 1) + timedelta(hours=i), ip="127.0.0.9" if i % 2 else "127.0.0.8",
                 target=f"event-{i:03d}")
    query = "ip=127.0.0.9&from=2024-01-02&to=2024-01-11"  # hours 24 to 263, the odd ones: 120 events
    wanted = [f"event-{i:03d}" for i in range(263, 23, -1) if i % 2]
    seen, response = [], ann.get(f"/security/audit?{query}")
    while True:
        seen += [r[4] for r in rows(response)]
        for text in ("← Newer", "Older →", "Oldest ⇥", "Download CSV"):
            target = link_of(response, text)
            assert target is None or all(part in target for part in query.split("&")), (text, target)
        if link_of(response, "Older →") is None:
            break
        response = ann.get(link_of(response, "Older →"))
    assert seen == wanted
    oldest = ann.get(link_of(ann.get(f"/security/audit?{query}"), "Oldest ⇥"))
    assert [r[4] for r in rows(oldest)] == wanted[-50:]
    download = ann.get(link_of(response, "Download CSV"))
    assert [r[5] for r in csv_rows(download)[1:]] == wanted


def test_the_filters_are_a_plain_get_form_and_each_works_as_a_page_and_as_the_list_alone(app, ann):
    event_at(app, datetime(2024, 1, 1, 12), ip="2001:db8::1", target="the one")
    event_at(app, datetime(2024, 1, 5, 12), ip="2001:db8::1", target="a later one")
    event_at(app, datetime(2024, 1, 1, 12), ip="127.0.0.8", target="another address")
    page = ann.get("/security/audit")
    form = re.search(r'<form method="get" action="/security/audit" class="card filters" id="audit-filters">(.*?)'
                     r'</form>', page.text, re.S).group(1)
    assert {name for name in re.findall(r'name="(\w+)"', form)} == {"practice", "action", "user", "ip", "from", "to"}
    assert 'type="date"' in form and "hx-" not in form  # without JavaScript, a browser submits it as it is
    riverside = practice_id(app, "Riverside Dental")
    for query in ("ip=2001:db8::1&to=2024-01-01", "from=2024-01-01&to=2024-01-01&ip=2001:db8::1",
                  "ip=2001:db8::1&from=2023-12-31&to=2024-01-02&action=entry_added",
                  f"practice={riverside}&user=script&ip=2001:db8::1&to=2024-01-01"):
        whole = ann.get(f"/security/audit?{query}")
        assert whole.status_code == 200 and "HX-Request" in whole.headers["Vary"]
        assert "<html" in whole.text and [r[4] for r in rows(whole)] == ["the one"]
        fragment = ann.get(f"/security/audit?{query}", htmx=True)
        assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
        assert fragment.text.startswith('<div id="audit-list">') and "<html" not in fragment.text
        assert [r[4] for r in rows(fragment)] == ["the one"]


def test_the_ip_filter_finds_the_decisions_about_that_address_made_from_elsewhere(app, ann):
    from pbnsec.models import AccessRequest, Grant, User

    with app.app_context():
        fay = User.get(User.email == PEOPLE["fay"][0])
        riverside = Practice.get(Practice.name == "Riverside Dental")
        home, cafe = (AccessRequest.create(user=fay, practice=riverside, ip=ip).id for ip in ("127.0.0.5", "::1"))
    assert ann.post(f"/security/requests/{home}/approve").status_code == 303  # Ann is at the office, 127.0.0.1
    assert ann.post(f"/security/requests/{cafe}/reject").status_code == 303
    with app.app_context():
        grant = Grant.get(Grant.ip == "127.0.0.5").id
    assert ann.post(f"/security/grants/{grant}/revoke").status_code == 303
    about_home = ann.get("/security/audit?ip=127.0.0.5")
    assert [(r[0], r[1], r[3], r[4]) for r in rows(about_home)] == [
        ("ann@example.com", "127.0.0.1", "grant revoked", "fay@example.com from 127.0.0.5"),
        ("ann@example.com", "127.0.0.1", "request approved", "fay@example.com from 127.0.0.5")]
    assert [(r[3], r[4]) for r in rows(ann.get("/security/audit?ip=::1"))] == [
        ("request rejected", "fay@example.com from ::1")]
    from_office = {r[3] for r in rows(ann.get("/security/audit?ip=127.0.0.1"))}
    assert {"login allowed", "request approved", "request rejected", "grant revoked"} <= from_office
    # The CSV says why a row made from the office is about 127.0.0.5: its subject_ip column.
    table = csv_rows(ann.get("/security/audit.csv?ip=127.0.0.5"))
    assert [(r[2], r[4], r[10]) for r in table[1:]] == [("127.0.0.1", "grant_revoked", "127.0.0.5"),
                                                        ("127.0.0.1", "request_approved", "127.0.0.5")]

"""Lists that grow, as a user pages and searches them: access requests, allowlist, audit log. A page costs the same
number of statements for 10 rows or 300, and htmx gets the list alone."""
import html
import re
from datetime import datetime, timedelta

import pytest
from conftest import page_cost as cost, PEOPLE, practice_id

from pbnsec.models import ALL_PRACTICES, AccessRequest, AllowlistEntry, AuditEvent, Practice, User

RIVERSIDE = "Riverside Dental"
START = datetime(2026, 1, 1)


def ids_in(response, kind):
    return [int(n) for n in re.findall(rf'<tr id="{kind}-(\d+)"', response.text)]


def link(response, text):
    found = re.search(rf'<a href="([^"]+)"[^>]*>{re.escape(text)}</a>', response.text)
    return html.unescape(found.group(1)) if found else None


def add_requests(app, count, status="pending", who=("fay", "hal"), start=0):
    """count requests at Riverside from 127.0.1.x, one a minute, alternately Fay's and Hal's; their ids in order."""
    with app.app_context():
        practice = Practice.get(Practice.name == RIVERSIDE)
        users = [User.get(User.email == PEOPLE[w][0]) for w in who]
        decider = User.get(User.email == PEOPLE["ann"][0])
        made = []
        for i in range(start, start + count):
            decided = status != "pending"
            made.append(AccessRequest.create(
                user=users[i % len(users)], practice=practice, ip=f"127.0.{1 + i // 250}.{i % 250}",
                status=status, created_at=START + timedelta(minutes=i),
                decided_by=decider if decided else None,
                decided_at=START + timedelta(minutes=i, seconds=30) if decided else None).id)
        return made


# --- access requests ---

def test_pending_requests_come_fifty_at_a_time_oldest_first(app, ann):
    made = add_requests(app, 60)
    first = ann.get("/security/requests")
    assert ids_in(first, "request") == made[:50]
    assert "(60 waiting)" in first.text
    following = link(first, "Next page →")
    assert following and link(first, "← First page") is None
    second = ann.get(following)
    assert ids_in(second, "request") == made[50:]
    assert link(second, "Next page →") is None and link(second, "← First page") == "/security/requests"


def test_decided_requests_are_paged_latest_first_apart_from_the_pending_ones(app, ann):
    pending = add_requests(app, 3)
    decided = add_requests(app, 55, status="approved", start=3)
    first = ann.get("/security/requests")
    assert ids_in(first, "request") == pending + decided[::-1][:50]
    second = ann.get(link(first, "Next page →"))
    assert ids_in(second, "request") == pending + decided[::-1][50:]  # Pending stays on its first page


@pytest.mark.parametrize("search,who", [("fay", "fay"), ("HAL@EXAMPLE", "hal"), ("Fay Desk", "fay")])
def test_requests_are_searched_by_name_email_or_ip(app, ann, search, who):
    made = add_requests(app, 6)
    mine = made[0::2] if who == "fay" else made[1::2]
    found = ann.get(f"/security/requests?q={search}")
    assert ids_in(found, "request") == mine
    assert f'value="{html.escape(search)}"' in found.text
    by_ip = ann.get("/security/requests?q=127.0.1.4")
    assert ids_in(by_ip, "request") == [made[4]]
    assert "No pending requests match." in ann.get("/security/requests?q=nobody").text


def test_the_refresh_keeps_the_page_and_search_and_answers_204_until_something_changes(app, ann):
    made = add_requests(app, 60)
    second = ann.get(link(ann.get("/security/requests?q=127.0"), "Next page →"))
    refresh = html.unescape(re.search(r'<div id="request-tables" hx-get="([^"]+)"', second.text).group(1))
    assert "q=127.0" in refresh and "pending_after=" in refresh and "seen=" in refresh
    assert ann.get(refresh, htmx=True).status_code == 204
    add_requests(app, 1, start=60)  # one more waiting: the count on the page changes
    fragment = ann.get(refresh, htmx=True)
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    assert fragment.text.startswith('<div id="request-tables"') and "<html" not in fragment.text
    assert ids_in(fragment, "request") == made[50:] + [made[-1] + 1]
    assert "(61 waiting; these match “127.0”)" in fragment.text
    page = ann.get(refresh)  # without htmx: the whole page, that same part of the lists
    assert "<h1>IP Access Requests</h1>" in page.text and ids_in(page, "request") == ids_in(fragment, "request")


def test_a_made_up_page_start_shows_the_first_page(app, ann):
    made = add_requests(app, 3)
    assert ids_in(ann.get("/security/requests?pending_after=nonsense"), "request") == made


# --- the allowlist ---

def add_entries(app, count, scope="practice", start=0):
    with app.app_context():
        practice = Practice.get(Practice.name == RIVERSIDE) if scope == "practice" else None
        made = []
        for i in range(start, start + count):
            network = f"10.{i >> 8}.{i & 255}.0/24"  # 10.0.0.0/24, 10.0.1.0/24 … 10.1.0.0/24 …
            made.append(AllowlistEntry.create(
                practice=practice, scope=practice.id if practice else ALL_PRACTICES, network=network,
                start=f"{(10 << 24) | (i << 8):032x}", prefix_length=24, label=f"Branch {i:03d}",
                added_at=START + timedelta(minutes=i)).id)
        return made


def test_the_allowlist_comes_fifty_at_a_time_the_practices_own_entries_first(app, ann):
    mine = add_entries(app, 40)
    everyone = add_entries(app, 20, scope="all", start=40)
    first = ann.get("/security/allowlist")
    assert ids_in(first, "entry") == mine + everyone[:10]
    second = ann.get(link(first, "Next page →"))
    assert ids_in(second, "entry") == everyone[10:]
    assert link(second, "Next page →") is None and link(second, "← First page") == "/security/allowlist"


@pytest.mark.parametrize("query,expected", [
    ("q=Branch+00", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    ("q=10.0.12.", [12]),
    ("scope=all-practices", [20, 21, 22]),
    ("scope=practice&q=branch+01", [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]),
    ("covering=10.0.21.200", [21]),
    ("covering=10.0.99.1", []),
])
def test_the_allowlist_is_searched_by_address_label_scope_and_covering_ip(app, ann, query, expected):
    made = add_entries(app, 20) + add_entries(app, 3, scope="all", start=20)
    found = ann.get(f"/security/allowlist?{query}")
    assert found.status_code == 200
    assert ids_in(found, "entry") == [made[i] for i in expected]
    if not expected:
        assert "No entries match." in found.text


def test_a_covering_search_names_how_many_entries_contain_the_ip(app, ann):
    add_entries(app, 3)
    ann.post("/security/allowlist", {"address": "10.0.0.0/16", "label": "Campus"})
    found = ann.get("/security/allowlist?covering=10.0.1.7")
    assert "2 entries contain 10.0.1.7 (switched off and expired ones too)." in found.text


@pytest.mark.parametrize("query,message", [
    ("covering=10.0.0.0/24", "'10.0.0.0/24' is not an IP address"),
    ("covering=nonsense", "'nonsense' is not an IP address"),
    ("scope=everything", "Applies to is one of 'practice', 'all-practices', not 'everything'."),
])
def test_a_search_that_is_not_one_is_refused_with_a_reason(app, ann, query, message):
    add_entries(app, 2)
    for htmx in (False, True):
        found = ann.get(f"/security/allowlist?{query}", htmx=htmx)
        assert found.status_code == 422 and message in html.unescape(found.text)
        assert ids_in(found, "entry") == []


def test_an_htmx_search_gets_the_list_alone(app, ann):
    made = add_entries(app, 3)
    found = ann.get("/security/allowlist?q=Branch+001", htmx=True)
    assert found.status_code == 200 and "HX-Request" in found.headers["Vary"]
    assert found.text.startswith('<div id="allowlist-list">') and "<html" not in found.text
    assert 'id="ip-status"' not in found.text and 'id="add-entry"' not in found.text
    assert ids_in(found, "entry") == [made[1]]


# --- what a page costs: the same for 10 rows or 300 ---

def add_events(app, count, start=0):
    with app.app_context():
        practice = Practice.get(Practice.name == RIVERSIDE)
        AuditEvent.insert_many([{"at": START + timedelta(minutes=i), "actor_label": "script@example.com",
                                 "actor_ip": "127.0.0.9", "practice": practice if i % 3 else None,
                                 "action": "entry_added", "target": f"event-{i}", "detail": ""}
                                for i in range(start, start + count)]).execute()


@pytest.mark.parametrize("url,grow", [
    ("/security/requests", lambda app, n, s: (add_requests(app, n, start=s),
                                             add_requests(app, n, status="rejected", start=s + 1000))),
    ("/security/requests?q=fay", lambda app, n, s: add_requests(app, n, start=s)),
    ("/security/allowlist", lambda app, n, s: add_entries(app, n, start=s)),
    ("/security/allowlist?q=Branch", lambda app, n, s: add_entries(app, n, start=s)),
    ("/security/audit", lambda app, n, s: add_events(app, n, s)),
    ("/security/audit?action=entry_added", lambda app, n, s: add_events(app, n, s)),
    ("/security/audit?ip=127.0.0.9", lambda app, n, s: add_events(app, n, s)),
    ("/security/audit?from=2026-01-01&to=2026-01-01", lambda app, n, s: add_events(app, n, s)),
    ("/security/audit?ip=127.0.0.9&from=2025-12-31&to=2026-01-02&action=entry_added",
     lambda app, n, s: add_events(app, n, s)),
])
def test_a_list_page_costs_the_same_for_ten_rows_or_three_hundred(app, signed_in, count_statements, url, grow):
    owner = signed_in("owner")  # every practice: the audit log shows practice-less events too
    grow(app, 10, 0)
    ten, ten_log = cost(owner, count_statements, url)
    grow(app, 290, 10)
    many, many_log = cost(owner, count_statements, url)
    assert many == ten, f"10 rows: {ten_log}\n300 rows: {many_log}"
    older = link(owner.get(url), "Older →") or link(owner.get(url), "Next page →")
    assert older, "300 rows need a second page"
    further, further_log = cost(owner, count_statements, older)
    assert further == ten, f"10 rows: {ten_log}\nthe next page: {further_log}"


def test_an_audit_page_for_htmx_is_the_list_alone(app, signed_in):
    owner = signed_in("owner")
    add_events(app, 60)
    page = owner.get("/security/audit?action=entry_added")
    assert "<html" in page.text and 'id="audit-filters"' in page.text
    older = link(page, "Older →")
    fragment = owner.get(older, htmx=True)
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    assert fragment.text.startswith('<div id="audit-list">') and "<html" not in fragment.text
    assert 'id="audit-filters"' not in fragment.text
    assert re.findall(r"<td data-label=\"Target\">(event-\d+)</td>", fragment.text) == [
        f"event-{i}" for i in range(9, -1, -1)]
    assert link(fragment, "← Newer") and link(fragment, "Older →") is None


def test_the_oldest_audit_page_is_one_link_away(app, signed_in):
    owner = signed_in("owner")
    add_events(app, 120)
    first = owner.get("/security/audit?action=entry_added")
    oldest = owner.get(link(first, "Oldest ⇥"))
    assert oldest.status_code == 200 and "event-0<" in oldest.text and "event-119<" not in oldest.text
    assert link(oldest, "← Newer")


def targets(response):
    return re.findall(r'<td data-label="Target">(event-\d+)</td>', response.text)


@pytest.mark.parametrize("count", [50, 51, 100])  # exactly a page, one more, two pages
def test_every_audit_link_leads_to_events_and_the_ends_have_no_link_beyond(app, signed_in, count):
    owner = signed_in("owner")
    add_events(app, count)
    newest, oldest = f"event-{count - 1}", "event-0"
    first_url = "/security/audit?action=entry_added"
    first = owner.get(first_url)
    assert targets(first)[0] == newest and link(first, "← Newer") is None
    seen, waiting, older_chain = {first_url}, [first_url], []
    while waiting:  # every page any link leads to, and every link on it
        url = waiting.pop()
        page = owner.get(url)
        shown = targets(page)
        assert page.status_code == 200 and shown, f"{url} shows no events"
        assert (link(page, "← Newer") is None) == (shown[0] == newest), url
        assert (link(page, "Older →") is None) == (shown[-1] == oldest), url
        for text in ("← Newer", "Older →", "Oldest ⇥"):
            target = link(page, text)
            if target and target not in seen:
                seen.add(target)
                waiting.append(target)
    page = first
    while page is not None:  # Older → from the newest reaches every event once, in order
        older_chain += targets(page)
        page = owner.get(link(page, "Older →")) if link(page, "Older →") else None
    assert older_chain == [f"event-{i}" for i in range(count - 1, -1, -1)]

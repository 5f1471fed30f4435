"""IP access requests: the blocked user asks, an administrator approves or rejects, the grant lets them in."""
import html
import re
from datetime import timedelta
from ipaddress import ip_address

import pytest
from conftest import OFFICE_IP, PEOPLE, Visitor, flashes, make_app, practice_id, restrict
from peewee import IntegrityError

from pbnsec.domain.access_requests import (
    NOTE_MAX,
    REQUEST_LIMIT_PER_IP,
    REQUEST_LIMIT_PER_USER,
    submit,
)
from pbnsec.domain.visit import Visit
from pbnsec.models import (
    AccessRequest,
    AuditEvent,
    Grant,
    IPRestriction,
    Practice,
    SignIn,
    User,
    utcnow,
)

AWAY = "127.0.0.7"  # an address no allowlist entry covers
RIVERSIDE, LAKESIDE = "Riverside Dental", "Lakeside Dental"


# --- helpers -------------------------------------------------------------------------------------





@pytest.fixture
def enforce_as_owner(app, signed_in):
    """Switch IP restrictions on for practices, with the office IP (127.0.0.1) on their allowlists."""
    owner = []

    def make(*names, requests_allowed=True):
        if not owner:
            owner.append(signed_in("owner"))
        for name in names:
            pid = practice_id(app, name)
            added = owner[0].post("/security/allowlist", {"address": OFFICE_IP, "label": "Office",
                                                          "practice": str(pid), "confirm_local": OFFICE_IP})
            assert added.status_code == 303, added.text
            with app.app_context():
                IPRestriction.create(practice=pid, enforced=True, everyone=True,
                                     requests_allowed=requests_allowed)
    return make


def blocked_login(visitor, who, ip=AWAY):
    """Sign in from an uncovered IP: not signed in, sent to the blocked-login page."""
    v = visitor(ip=ip)
    response = v.login(PEOPLE[who][0])
    assert response.status_code == 303 and response.headers["Location"] == "/blocked", response.text
    return v


_STATUS = re.compile(r'<tr id="status-\d+">\s*<td>([^<]+)</td>\s*<td><span class="badge status-\w+">([^<]+)</span>')
_CHECKBOX = re.compile(r'<input type="checkbox" name="practice" value="\d+"(?: checked)?> ([^<]+)</label>')
_TICKED = re.compile(r'<input type="checkbox" name="practice" value="\d+" checked> ([^<]+)</label>')


def statuses(response):
    """{practice name: status label} as the user sees it."""
    return dict(_STATUS.findall(response.text))


def offered(response):
    """The practices the user can tick."""
    return _CHECKBOX.findall(response.text)


def ask(v, app, *names, note="", **extra):
    data = {"practice": [str(practice_id(app, n)) for n in names], "note": note, **extra}
    return v.post("/access-requests", data)


def stored_requests(app):
    with app.app_context():
        return sorted((r.user.email, r.practice.name, r.ip, r.status, r.note)
                      for r in AccessRequest.select().order_by(AccessRequest.id))


def events(app, action):
    with app.app_context():
        return [(e.actor_label, e.actor_ip, e.practice.name if e.practice else None, e.target, e.detail)
                for e in AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)]


def make_request(app, who, practice, ip=AWAY, note="", status="pending", decided_by=None):
    """An access request written straight to the database; returns its id."""
    with app.app_context():
        user = User.get(User.email == PEOPLE[who][0])
        req = AccessRequest.create(user=user, practice=Practice.get(Practice.name == practice), ip=ip, note=note,
                                   status=status,
                                   decided_by=User.get(User.email == PEOPLE[decided_by][0]) if decided_by else None)
        return req.id


def request_ids(app, who, practice, status="pending"):
    with app.app_context():
        return [r.id for r in AccessRequest.select().join(User).switch(AccessRequest).join(Practice).where(
            (User.email == PEOPLE[who][0]) & (Practice.name == practice) & (AccessRequest.status == status))]



def badge_count(v):
    found = re.search(r'<span id="pending-badge"[^>]*>(\d+)</span>', v.get("/security/requests/badge").text)
    return int(found.group(1))


def table(response, table_id):
    """The HTML of one table of the page."""
    found = re.search(rf'<table[^>]*id="{table_id}".*?</table>', response.text, re.S)
    assert found, f"no table {table_id}"
    return found.group(0)


# --- the blocked user: status per practice ----------------------------------------------------------

@pytest.mark.parametrize("riverside,lakeside", [
    (None, None),
    ("pending", None),
    ("rejected", "pending"),
    (None, "rejected"),
])
def test_blocked_page_names_the_ip_and_each_practice_status(app, enforce_as_owner, visitor, riverside, lakeside):
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    for practice, status in ((RIVERSIDE, riverside), (LAKESIDE, lakeside)):
        if status:
            make_request(app, "hal", practice, status=status, decided_by="owner" if status != "pending" else None)
    v = blocked_login(visitor, "hal")
    page = v.get("/blocked")
    assert page.status_code == 200
    assert f"Your IP address {AWAY} requires approval" in page.text
    assert "Hello Hal Hygienist." in page.text
    label = {None: "Not Requested", "pending": "Pending", "rejected": "Rejected"}
    assert statuses(page) == {RIVERSIDE: label[riverside], LAKESIDE: label[lakeside]}
    # a pending request cannot be asked for again; anything else can
    assert offered(page) == [p for p, s in ((LAKESIDE, lakeside), (RIVERSIDE, riverside)) if s != "pending"]
    # the one practice left to ask for is ticked already (one click: Request access); of two, the user chooses
    assert _TICKED.findall(page.text) == (offered(page) if len(offered(page)) == 1 else [])
    assert page.text.count("You may request again.") == [riverside, lakeside].count("rejected")
    # hal is not signed in
    assert v.get("/").headers["Location"].startswith("/login")


def test_a_request_from_another_ip_does_not_count_for_this_one(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    make_request(app, "hal", RIVERSIDE, ip="127.0.0.8")
    page = blocked_login(visitor, "hal").get("/blocked")
    assert statuses(page) == {RIVERSIDE: "Not Requested", LAKESIDE: "Not Requested"}


def test_practice_without_restrictions_is_allowed_and_the_user_is_signed_in_there(app, enforce_as_owner, visitor):
    enforce_as_owner(LAKESIDE)
    v = visitor(ip=AWAY)
    response = v.login(PEOPLE["hal"][0])
    assert response.status_code == 303 and response.headers["Location"] == "/"
    home = v.get("/")
    assert home.status_code == 200 and "<h1>Riverside Dental</h1>" in home.text
    assert re.search(r"Lakeside Dental\s+— blocked \(Not Requested\)", home.text)
    # the blocked page is for people who could not sign in; hal goes to their own requests
    assert v.get("/blocked").headers["Location"] == "/access-requests"
    mine = v.get("/access-requests")
    assert "<h1>My access requests</h1>" in mine.text
    assert statuses(mine) == {LAKESIDE: "Not Requested", RIVERSIDE: "Allowed"}
    assert offered(mine) == [LAKESIDE]
    # a signed-in user asks from the same page, and stays on it
    response = ask(v, app, LAKESIDE, note="Covering at the lake")
    assert response.status_code == 303 and response.headers["Location"] == "/access-requests"
    assert stored_requests(app) == [("hal@example.com", LAKESIDE, AWAY, "pending", "Covering at the lake")]
    # asking for the practice that already lets them in is refused
    refused = ask(v, app, RIVERSIDE)
    assert refused.status_code == 422
    assert "You already have access to Riverside Dental from 127.0.0.7." in refused.text
    assert len(stored_requests(app)) == 1


# --- the blocked user: asking ------------------------------------------------------------------------

def test_blocked_user_requests_access_to_the_practices_they_choose(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    v = blocked_login(visitor, "hal")
    response = ask(v, app, RIVERSIDE, LAKESIDE, note="  New laptop at home  ")
    assert response.status_code == 303 and response.headers["Location"] == "/blocked"
    page = v.get("/blocked")
    assert flashes(page) in (
        ["Access requested for Lakeside Dental, Riverside Dental. An administrator will review it."],
        ["Access requested for Riverside Dental, Lakeside Dental. An administrator will review it."])
    assert statuses(page) == {RIVERSIDE: "Pending", LAKESIDE: "Pending"}
    assert offered(page) == [] and 'id="request-form"' not in page.text
    history = table(page, "request-history")
    assert history.count("<code>127.0.0.7</code>") == 2 and history.count(">Pending</span>") == 2
    assert stored_requests(app) == [
        ("hal@example.com", LAKESIDE, AWAY, "pending", "New laptop at home"),
        ("hal@example.com", RIVERSIDE, AWAY, "pending", "New laptop at home"),
    ]
    # one audit event per practice: who, from where, for what
    assert sorted(events(app, "request_submitted")) == [
        ("hal@example.com", AWAY, LAKESIDE, AWAY, "New laptop at home"),
        ("hal@example.com", AWAY, RIVERSIDE, AWAY, "New laptop at home"),
    ]


def test_a_request_for_one_practice_leaves_the_other_open(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    v = blocked_login(visitor, "hal")
    assert ask(v, app, LAKESIDE).status_code == 303
    page = v.get("/blocked")
    assert statuses(page) == {RIVERSIDE: "Not Requested", LAKESIDE: "Pending"}
    assert offered(page) == [RIVERSIDE]
    assert stored_requests(app) == [("hal@example.com", LAKESIDE, AWAY, "pending", "")]
    assert len(events(app, "request_submitted")) == 1


def test_blocked_user_can_use_an_ipv6_address(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay", ip="::1")
    page = v.get("/blocked")
    assert "Your IP address ::1 requires approval" in page.text
    assert "Request access from ::1" in page.text
    assert ask(v, app, RIVERSIDE).status_code == 303
    assert stored_requests(app) == [("fay@example.com", RIVERSIDE, "::1", "pending", "")]


def test_choosing_no_practice_is_refused(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    v = blocked_login(visitor, "hal")
    response = v.post("/access-requests", {"note": "please"})
    assert response.status_code == 422
    assert "Choose at least one practice to ask for access to." in response.text
    assert 'id="request-form"' in response.text and ">please</textarea>" in response.text
    assert stored_requests(app) == []


def test_a_practice_the_user_does_not_belong_to_is_refused(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    v = blocked_login(visitor, "fay")
    assert offered(v.get("/blocked")) == [RIVERSIDE]
    response = ask(v, app, LAKESIDE)
    assert response.status_code == 422
    assert "Choose only practices you belong to." in response.text
    response = ask(v, app, RIVERSIDE, LAKESIDE)
    assert response.status_code == 422
    for forged in ("999", "abc", ""):
        assert v.post("/access-requests", {"practice": forged}).status_code == 422
    assert stored_requests(app) == []


@pytest.mark.parametrize("length,accepted", [(0, True), (NOTE_MAX, True), (NOTE_MAX + 1, False), (4000, False)])
def test_note_is_optional_and_at_most_500_characters(app, enforce_as_owner, visitor, length, accepted):
    assert NOTE_MAX == 500
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    note = "n" * length
    response = ask(v, app, RIVERSIDE, note=note)
    if accepted:
        assert response.status_code == 303
        assert stored_requests(app) == [("fay@example.com", RIVERSIDE, AWAY, "pending", note)]
    else:
        assert response.status_code == 422
        assert f"The note can be at most 500 characters long (yours has {length})." in response.text
        assert 'aria-invalid="true"' in response.text
        assert stored_requests(app) == [] and events(app, "request_submitted") == []


def test_a_note_the_browser_allowed_with_line_breaks_is_accepted(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    lines = ["x" * 124] * 4
    typed = "\n".join(lines) + "y"  # 500 characters as the textarea counts them
    assert len(typed) == NOTE_MAX
    response = ask(v, app, RIVERSIDE, note=typed.replace("\n", "\r\n"))  # what the browser sends
    assert response.status_code == 303, re.findall(r'id="note-error"[^>]*>([^<]+)', response.text)
    assert len(stored_requests(app)) == 1


@pytest.mark.parametrize("hidden", ["\x00", "\x1b", "\u202e"])
def test_a_note_with_a_control_character_is_refused_and_nothing_is_requested(app, enforce_as_owner, visitor, hidden):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    response = ask(v, app, RIVERSIDE, note=f"New laptop{hidden}\n\tat home")
    assert response.status_code == 422
    assert re.findall(r'id="note-error"[^>]*>([^<]+)', response.text) == [
        "The note cannot contain control characters (line breaks and tabs are fine)."]
    assert hidden not in response.text
    assert stored_requests(app) == [] and events(app, "request_submitted") == []
    assert ask(v, app, RIVERSIDE, note="New laptop\r\n\tat home").status_code == 303  # line breaks, tabs: fine


def test_note_is_counted_after_trimming_spaces(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    assert ask(v, app, RIVERSIDE, note="  " + "n" * NOTE_MAX + "\n").status_code == 303
    assert stored_requests(app)[0][4] == "n" * NOTE_MAX


def test_a_rejected_user_is_not_told_to_ask_again_where_requests_are_off(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE, requests_allowed=False)
    make_request(app, "fay", RIVERSIDE, status="rejected", decided_by="ann")
    page = blocked_login(visitor, "fay").get("/blocked")
    assert statuses(page) == {RIVERSIDE: "Rejected"} and offered(page) == []
    assert "Riverside Dental does not take access requests" in page.text
    assert "You may request again." not in page.text


def test_a_second_request_while_one_is_pending_is_refused(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    v = blocked_login(visitor, "hal")
    assert ask(v, app, RIVERSIDE).status_code == 303
    again = ask(v, app, RIVERSIDE, note="again")  # a stale form or a forged post
    assert again.status_code == 422
    assert "Your request for Riverside Dental from 127.0.0.7 is already pending." in again.text
    both = ask(v, app, RIVERSIDE, LAKESIDE)
    assert both.status_code == 422
    assert stored_requests(app) == [("hal@example.com", RIVERSIDE, AWAY, "pending", "")]
    assert len(events(app, "request_submitted")) == 1


def test_a_pending_request_from_another_ip_does_not_stop_a_new_one(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    make_request(app, "fay", RIVERSIDE, ip="127.0.0.8")
    v = blocked_login(visitor, "fay")
    assert ask(v, app, RIVERSIDE).status_code == 303
    assert [r[2:4] for r in stored_requests(app)] == [(AWAY, "pending"), ("127.0.0.8", "pending")]


def test_submitting_twice_at_once_keeps_one_pending_request(app):
    """What a second, parallel submit meets: the pending request already there is kept, none added."""
    with app.app_context():
        hal = User.get(User.email == "hal@example.com")
        riverside = Practice.get(Practice.name == RIVERSIDE)
        visit = Visit(hal, ip_address(AWAY))
        assert submit(visit, [riverside], "first") == [riverside]
        assert submit(visit, [riverside], "second") == []
    assert stored_requests(app) == [("hal@example.com", RIVERSIDE, AWAY, "pending", "first")]
    assert len(events(app, "request_submitted")) == 1


def test_the_database_refuses_a_second_pending_request_for_the_same_user_practice_and_ip(app):
    make_request(app, "hal", RIVERSIDE)
    with pytest.raises(IntegrityError):
        make_request(app, "hal", RIVERSIDE)
    # decided requests do not count, and neither do other IPs, practices or users
    make_request(app, "hal", RIVERSIDE, status="rejected", decided_by="ann")
    make_request(app, "hal", RIVERSIDE, status="approved", decided_by="ann")
    make_request(app, "hal", RIVERSIDE, ip="127.0.0.8")
    make_request(app, "hal", LAKESIDE)
    make_request(app, "fay", RIVERSIDE)
    assert len(stored_requests(app)) == 6


def test_a_practice_that_takes_no_requests_says_so_and_refuses_a_forged_one(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    enforce_as_owner(LAKESIDE, requests_allowed=False)
    v = blocked_login(visitor, "hal")
    page = v.get("/blocked")
    assert offered(page) == [RIVERSIDE]
    assert "Lakeside Dental does not take access requests: ask its administrator to add your IP." in page.text
    assert statuses(page) == {RIVERSIDE: "Not Requested", LAKESIDE: "Not Requested"}
    for chosen in ([LAKESIDE], [LAKESIDE, RIVERSIDE]):
        response = ask(v, app, *chosen)
        assert response.status_code == 422
        assert "Lakeside Dental does not take access requests from you right now." in response.text
    assert stored_requests(app) == []


def test_with_no_practice_taking_requests_there_is_no_form_and_a_forged_post_is_refused(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE, requests_allowed=False)
    v = blocked_login(visitor, "fay")
    page = v.get("/blocked")
    assert 'id="request-form"' not in page.text and offered(page) == []
    assert "Riverside Dental does not take access requests: ask its administrator to add your IP." in page.text
    response = ask(v, app, RIVERSIDE)
    assert response.status_code == 422
    assert "Riverside Dental does not take access requests from you right now." in response.text
    assert stored_requests(app) == []


def test_the_stored_ip_is_the_one_the_server_saw_never_a_form_field_or_header(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    response = v.post("/access-requests", {"practice": str(practice_id(app, RIVERSIDE)), "ip": OFFICE_IP},
                      headers={"X-Forwarded-For": "127.0.0.9", "X-Real-IP": "127.0.0.9"})
    assert response.status_code == 303
    assert stored_requests(app) == [("fay@example.com", RIVERSIDE, AWAY, "pending", "")]
    assert events(app, "request_submitted")[0][1] == AWAY


def test_behind_a_proxy_the_stored_ip_is_the_forwarded_client(app, enforce_as_owner, tmp_path):
    enforce_as_owner(RIVERSIDE)
    proxied = make_app(tmp_path, TRUSTED_PROXIES=1)  # the same database file, one trusted proxy in front
    v = Visitor(proxied, ip=OFFICE_IP, headers={"X-Forwarded-For": "127.0.0.99, " + AWAY})
    assert v.login("fay@example.com").headers["Location"] == "/blocked"
    assert f"Your IP address {AWAY} requires approval" in v.get("/blocked").text
    assert ask(v, app, RIVERSIDE, ip="127.0.0.99").status_code == 303
    assert stored_requests(app) == [("fay@example.com", RIVERSIDE, AWAY, "pending", "")]


def test_a_client_whose_ip_cannot_be_told_is_blocked_and_cannot_ask(app, enforce_as_owner, tmp_path):
    enforce_as_owner(RIVERSIDE)
    proxied = make_app(tmp_path, TRUSTED_PROXIES=1)
    v = Visitor(proxied, ip=OFFICE_IP)  # no X-Forwarded-For although a proxy should have added one
    assert v.login("fay@example.com").headers["Location"] == "/blocked"
    page = v.get("/blocked")
    assert "Your IP address (unknown) requires approval" in page.text
    assert 'id="request-form"' not in page.text
    assert "Riverside Dental does not take access requests from an address we cannot tell" in page.text
    response = ask(v, app, RIVERSIDE)
    assert response.status_code == 422
    assert stored_requests(app) == []


def test_asking_needs_the_csrf_token(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    response = v.post("/access-requests", {"practice": str(practice_id(app, RIVERSIDE))}, csrf=False)
    assert response.status_code == 400
    assert stored_requests(app) == []


def _reject_all(app):
    with app.app_context():
        AccessRequest.update(status="rejected").where(AccessRequest.status == "pending").execute()


def test_requests_are_rate_limited_per_user(app, enforce_as_owner, visitor):
    assert REQUEST_LIMIT_PER_USER == 10
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    v = blocked_login(visitor, "fay")
    for _ in range(REQUEST_LIMIT_PER_USER):
        assert ask(v, app, RIVERSIDE).status_code == 303
        _reject_all(app)  # so that asking again is allowed
    response = ask(v, app, RIVERSIDE, note="one more")
    assert response.status_code == 429
    assert re.search(r"Too many access requests\. Try again in \d+ minutes\.", response.text)
    assert len(stored_requests(app)) == REQUEST_LIMIT_PER_USER
    # from the same IP, somebody else may still ask
    other = blocked_login(visitor, "hal")
    assert ask(other, app, RIVERSIDE).status_code == 303


def test_requests_are_rate_limited_per_ip(app, enforce_as_owner, visitor):
    assert REQUEST_LIMIT_PER_IP == 30
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    people = ["hal", "fay", "ann"]
    for who in people:
        v = blocked_login(visitor, who)
        for _ in range(REQUEST_LIMIT_PER_IP // len(people)):
            assert ask(v, app, RIVERSIDE).status_code == 303
            _reject_all(app)
    # bob has asked for nothing yet, but this IP has asked thirty times within the hour
    bob = blocked_login(visitor, "bob")
    response = ask(bob, app, LAKESIDE)
    assert response.status_code == 429
    assert "Too many access requests." in response.text
    assert request_ids(app, "bob", LAKESIDE) == []
    # from another IP bob may ask
    assert ask(blocked_login(visitor, "bob", ip="127.0.0.8"), app, LAKESIDE).status_code == 303
    assert len(request_ids(app, "bob", LAKESIDE)) == 1


# --- the blocked sign-in -----------------------------------------------------------------------------

def test_blocked_page_without_a_pending_identity_sends_to_sign_in(app, visitor):
    v = visitor(ip=AWAY)
    response = v.get("/blocked")
    assert response.status_code in (302, 303) and response.headers["Location"] == "/login"
    assert "Please sign in again." in flashes(v.get("/login"))
    response = v.get("/access-requests")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    response = v.post("/access-requests", {"practice": str(practice_id(app, RIVERSIDE))})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert stored_requests(app) == []


def test_the_pending_identity_expires(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    assert v.get("/blocked").status_code == 200
    with app.app_context():
        SignIn.update(expires_at=utcnow() - timedelta(seconds=1)).where(SignIn.blocked).execute()
    assert v.get("/blocked").headers["Location"] == "/login"
    response = ask(v, app, RIVERSIDE)
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert stored_requests(app) == []


def test_the_pending_identity_ends_when_the_user_is_deactivated(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    with app.app_context():
        User.update(active=False).where(User.email == "fay@example.com").execute()
    assert v.get("/blocked").headers["Location"] == "/login"
    assert ask(v, app, RIVERSIDE).headers["Location"] == "/login"
    assert stored_requests(app) == []


@pytest.mark.parametrize("url", ["/", "/security/allowlist", "/security/requests", "/security/requests/badge",
                                 "/security/settings", "/security/audit"])
def test_a_pending_identity_can_do_nothing_else(app, enforce_as_owner, visitor, url):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "ann")  # even an administrator's blocked sign-in
    response = v.get(url)
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")


def test_a_pending_identity_cannot_decide_requests(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    rid = make_request(app, "fay", RIVERSIDE)
    v = blocked_login(visitor, "ann")
    for action in ("approve", "reject"):
        response = v.post(f"/security/requests/{rid}/{action}")
        assert response.status_code == 303 and response.headers["Location"].startswith("/login")
        htmx = v.post(f"/security/requests/{rid}/{action}", htmx=True)
        assert htmx.headers["HX-Redirect"].startswith("/login")
    assert request_ids(app, "fay", RIVERSIDE) == [rid]
    with app.app_context():
        assert Grant.select().count() == 0


# --- the administrator: the list ---------------------------------------------------------------------

def test_requests_page_lists_pending_first_then_decided_with_who_and_when(app, ann):
    first = make_request(app, "hal", RIVERSIDE, note="Home office")
    second = make_request(app, "fay", RIVERSIDE, ip="::1")
    decided = make_request(app, "fay", RIVERSIDE, ip="127.0.0.8", note="old one")
    assert ann.post(f"/security/requests/{decided}/reject").status_code == 303
    page = ann.get("/security/requests")
    assert page.status_code == 200
    pending = table(page, "pending-requests")
    with app.app_context():
        asked = AccessRequest.get_by_id(first).created_at.strftime("%Y-%m-%d %H:%M")
        decided_at = AccessRequest.get_by_id(decided).decided_at.strftime("%Y-%m-%d %H:%M")
    row = re.search(rf'<tr id="request-{first}".*?</tr>', pending, re.S).group(0)
    for shown in ("Hal Hygienist", "hal@example.com", "Hygienist", RIVERSIDE, "<code>127.0.0.7</code>", asked,
                  "Home office", ">Approve</button>", ">Reject</button>",
                  f'hx-post="/security/requests/{first}/approve"', f'hx-post="/security/requests/{first}/reject"'):
        assert shown in row
    # oldest pending first; the decided one only in the decided table
    assert pending.index(f'id="request-{first}"') < pending.index(f'id="request-{second}"')
    assert f'id="request-{decided}"' not in pending
    assert page.text.index('id="pending-requests"') < page.text.index('id="decided-requests"')
    done_row = re.search(rf'<tr id="request-{decided}".*?</tr>', table(page, "decided-requests"), re.S).group(0)
    assert "Front Desk" in done_row and "old one" in done_row and "<code>127.0.0.8</code>" in done_row
    assert re.search(r">Rejected</span>\s*by Ann Lee", done_row) and decided_at in done_row
    assert ">Approve</button>" not in done_row


def test_empty_lists_say_so(app, ann):
    page = ann.get("/security/requests")
    assert "No pending requests." in page.text and "Nothing decided yet." in page.text


def test_a_note_is_escaped_where_the_admin_sees_it(app, enforce_as_owner, visitor, signed_in):
    enforce_as_owner(RIVERSIDE)
    script = "<script>alert(1)</script>"
    v = blocked_login(visitor, "fay")
    assert ask(v, app, RIVERSIDE, note=script).status_code == 303
    ann = signed_in("ann")
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    page = ann.get("/security/requests")
    assert escaped in page.text and script not in page.text
    rid = request_ids(app, "fay", RIVERSIDE)[0]
    row = ann.post(f"/security/requests/{rid}/approve", htmx=True)
    assert escaped in row.text and script not in row.text
    grants = ann.get("/security/allowlist")
    assert escaped in grants.text and script not in grants.text
    audit = ann.get("/security/audit")
    assert script not in audit.text


# --- the administrator: approve and reject -----------------------------------------------------------

@pytest.mark.parametrize("action,label", [("approve", "Approved"), ("reject", "Rejected")])
def test_a_decision_by_htmx_swaps_only_that_row_and_signals_the_change(app, ann, action, label):
    rid = make_request(app, "hal", RIVERSIDE)
    other = make_request(app, "fay", RIVERSIDE)
    response = ann.post(f"/security/requests/{rid}/{action}", htmx=True)
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "requests-changed"
    body = response.text.strip()
    assert body.startswith(f'<tr id="request-{rid}"') and body.endswith("</tr>")
    assert "<html" not in body and f"request-{other}" not in body
    assert re.search(rf">{label}</span>\s*by Ann Lee", body)
    assert ">Approve</button>" not in body and "decided this request first" not in body
    assert request_ids(app, "fay", RIVERSIDE) == [other]  # the other request is untouched


@pytest.mark.parametrize("action,label", [("approve", "Approved"), ("reject", "Rejected")])
def test_a_decision_by_plain_form_redirects_to_the_list(app, ann, action, label):
    rid = make_request(app, "hal", RIVERSIDE)
    response = ann.post(f"/security/requests/{rid}/{action}")
    assert response.status_code == 303 and response.headers["Location"] == "/security/requests"
    page = ann.get("/security/requests")
    assert f'id="request-{rid}"' in table(page, "decided-requests")
    assert "No pending requests." in page.text


def test_approval_grants_that_user_that_practice_from_that_ip(app, ann):
    rid = make_request(app, "hal", RIVERSIDE, note="Home office")
    assert ann.post(f"/security/requests/{rid}/approve").status_code == 303
    with app.app_context():
        grants = [(g.user.email, g.practice.name, g.ip, g.request_id, g.created_by.email) for g in Grant.select()]
        req = AccessRequest.get_by_id(rid)
        assert (req.status, req.decided_by.email) == ("approved", "ann@example.com") and req.decided_at
    assert grants == [("hal@example.com", RIVERSIDE, AWAY, rid, "ann@example.com")]
    assert events(app, "request_approved") == [
        ("ann@example.com", OFFICE_IP, RIVERSIDE, f"hal@example.com from {AWAY}", f"request #{rid}; duration: until revoked")]
    assert events(app, "request_rejected") == []
    # the grant is listed on the allowlist page as hal's, with the request it came from
    page = ann.get("/security/allowlist")
    grants_table = table(page, "grants-table")
    assert "Hal Hygienist" in grants_table and "<code>127.0.0.7</code>" in grants_table
    assert f"#{rid}" in grants_table and "Home office" in grants_table and "Ann Lee" in grants_table


def test_rejection_grants_nothing(app, ann):
    rid = make_request(app, "hal", RIVERSIDE)
    assert ann.post(f"/security/requests/{rid}/reject").status_code == 303
    with app.app_context():
        assert Grant.select().count() == 0
        assert AccessRequest.get_by_id(rid).status == "rejected"
    assert events(app, "request_rejected") == [
        ("ann@example.com", OFFICE_IP, RIVERSIDE, f"hal@example.com from {AWAY}", f"request #{rid}")]
    assert "No approved access requests." in ann.get("/security/allowlist").text


def test_after_a_rejection_the_user_may_ask_again(app, enforce_as_owner, visitor, signed_in):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    assert ask(v, app, RIVERSIDE, note="first").status_code == 303
    ann = signed_in("ann")
    assert ann.post(f"/security/requests/{request_ids(app, 'fay', RIVERSIDE)[0]}/reject").status_code == 303
    page = v.get("/blocked")
    assert statuses(page) == {RIVERSIDE: "Rejected"}
    assert "You may request again." in page.text and offered(page) == [RIVERSIDE]
    assert ask(v, app, RIVERSIDE, note="second").status_code == 303
    assert stored_requests(app) == [("fay@example.com", RIVERSIDE, AWAY, "pending", "second"),
                                    ("fay@example.com", RIVERSIDE, AWAY, "rejected", "first")]
    assert statuses(v.get("/blocked")) == {RIVERSIDE: "Pending"}
    assert badge_count(ann) == 1


def test_after_approval_the_user_signs_in_to_the_approved_practice_only(app, enforce_as_owner, visitor, signed_in):
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    v = blocked_login(visitor, "hal")
    assert ask(v, app, RIVERSIDE, LAKESIDE).status_code == 303
    assert signed_in("ann").post(f"/security/requests/{request_ids(app, 'hal', RIVERSIDE)[0]}/approve",
                                 htmx=True).status_code == 200
    assert signed_in("bob").post(f"/security/requests/{request_ids(app, 'hal', LAKESIDE)[0]}/reject",
                                 htmx=True).status_code == 200
    # the blocked page, still open, now shows the decisions
    assert statuses(v.get("/blocked")) == {RIVERSIDE: "Approved", LAKESIDE: "Rejected"}

    hal = visitor(ip=AWAY)
    response = hal.login("hal@example.com")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    home = hal.get("/")
    assert home.status_code == 200 and "<h1>Riverside Dental</h1>" in home.text
    assert re.search(r"Lakeside Dental\s+— blocked \(Rejected\)", home.text)
    assert not re.search(r"Riverside Dental\s+— blocked", home.text)
    switched = hal.post("/practice", {"practice": str(practice_id(app, LAKESIDE))})
    assert switched.status_code == 303
    assert ("Your IP 127.0.0.7 is not approved for Lakeside Dental. "
            "You can ask for access on My access requests.") in flashes(hal.get("/"))
    mine = hal.get("/access-requests")
    assert statuses(mine) == {LAKESIDE: "Rejected", RIVERSIDE: "Approved"}
    assert offered(mine) == [LAKESIDE]

    # the grant is for that user from that IP only
    blocked_login(visitor, "hal", ip="127.0.0.8")
    blocked_login(visitor, "fay")


def test_a_revoked_grant_blocks_again_and_the_user_may_ask_again(app, enforce_as_owner, visitor, signed_in):
    enforce_as_owner(RIVERSIDE)
    rid = make_request(app, "fay", RIVERSIDE)
    ann = signed_in("ann")
    assert ann.post(f"/security/requests/{rid}/approve").status_code == 303
    fay = visitor(ip=AWAY)
    assert fay.login("fay@example.com").headers["Location"] == "/"
    with app.app_context():
        grant_id = Grant.get().id
    response = ann.post(f"/security/grants/{grant_id}/revoke")
    assert response.status_code == 303 and response.headers["Location"] == "/security/allowlist"
    page = ann.get("/security/allowlist")
    assert "Revoked Fay Desk&#39;s access from 127.0.0.7." in page.text
    assert "No approved access requests." in page.text
    with app.app_context():
        assert Grant.select().count() == 0
    assert events(app, "grant_revoked") == [
        ("ann@example.com", OFFICE_IP, RIVERSIDE, f"fay@example.com from {AWAY}", f"request #{rid}")]
    # fay's open session ends at its next request; signing in again, her blocked page offers asking again
    assert fay.get("/").headers["Location"] == "/login"
    assert fay.login("fay@example.com").headers["Location"] == "/blocked"
    page = fay.get("/blocked")
    assert statuses(page) == {RIVERSIDE: "Not Requested"} and offered(page) == [RIVERSIDE]
    assert ask(fay, app, RIVERSIDE).status_code == 303


def test_an_admin_cannot_revoke_a_grant_of_another_practice(app, ann, bob):
    rid = make_request(app, "hal", RIVERSIDE)
    ann.post(f"/security/requests/{rid}/approve")
    with app.app_context():
        grant_id = Grant.get().id
    assert bob.post(f"/security/grants/{grant_id}/revoke").status_code == 404
    assert "Hal Hygienist" not in table(bob.get("/security/allowlist"), "grants-table")
    with app.app_context():
        assert Grant.select().count() == 1


def test_revoking_by_htmx_removes_the_row(app, ann):
    rid = make_request(app, "hal", RIVERSIDE)
    ann.post(f"/security/requests/{rid}/approve")
    with app.app_context():
        grant_id = Grant.get().id
    response = ann.post(f"/security/grants/{grant_id}/revoke", htmx=True)
    assert response.status_code == 200 and response.text == ""
    assert response.headers["HX-Trigger"] == "allowlist-changed"
    with app.app_context():
        assert Grant.select().count() == 0


def test_switcher_does_not_call_a_revoked_approval_approved(app, enforce_as_owner, visitor, signed_in):
    enforce_as_owner(LAKESIDE)
    rid = make_request(app, "hal", LAKESIDE)
    bob = signed_in("bob")
    bob.post(f"/security/requests/{rid}/approve")
    with app.app_context():
        grant_id = Grant.get().id
    assert bob.post(f"/security/grants/{grant_id}/revoke").status_code == 303
    hal = visitor(ip=AWAY)
    assert hal.login("hal@example.com").headers["Location"] == "/"  # into Riverside, which has no restrictions
    assert statuses(hal.get("/access-requests"))[LAKESIDE] == "Not Requested"
    home = hal.get("/")
    assert re.search(r"Lakeside Dental\s+— blocked \(Not Requested\)", home.text), \
        re.search(r"Lakeside Dental[^<]*", home.text).group(0)


def test_my_access_requests_keeps_the_signed_in_header(app, signed_in):
    v = signed_in("hal")
    home = v.get("/")
    assert "Sign out" in home.text and "Hal Hygienist · Hygienist" in home.text
    mine = v.get("/access-requests")
    assert mine.status_code == 200
    assert "Sign out" in mine.text and "Hal Hygienist · Hygienist" in mine.text


def test_the_second_decision_on_a_request_is_refused_and_names_who_decided(app, ann, signed_in):
    rid = make_request(app, "hal", RIVERSIDE)
    assert ann.post(f"/security/requests/{rid}/approve", htmx=True).status_code == 200
    owner = signed_in("owner")
    plain = owner.post(f"/security/requests/{rid}/reject")
    assert plain.status_code == 409
    assert "Ann Lee already approved this request." in plain.text
    late = owner.post(f"/security/requests/{rid}/reject", htmx=True)
    body = late.text.strip()
    assert body.startswith(f'<tr id="request-{rid}"') and "<html" not in body
    assert "Ann Lee decided this request first." in body
    assert re.search(r">Approved</span>\s*by Ann Lee", body)
    with app.app_context():
        req = AccessRequest.get_by_id(rid)
        assert (req.status, req.decided_by.email) == ("approved", "ann@example.com")
        assert Grant.select().count() == 1
    assert len(events(app, "request_approved")) == 1 and events(app, "request_rejected") == []


def test_decisions_need_the_csrf_token(app, ann):
    rid = make_request(app, "hal", RIVERSIDE)
    assert ann.post(f"/security/requests/{rid}/approve", csrf=False).status_code == 400
    assert ann.post(f"/security/requests/{rid}/reject", csrf=False, htmx=True).status_code == 400
    assert ann.get(f"/security/requests/{rid}/approve").status_code == 405
    assert request_ids(app, "hal", RIVERSIDE) == [rid]


QUERY_BUDGET = 6  # one whole decision request, sign-in check included: the request read once, its user with it


@pytest.mark.parametrize("htmx", [True, False])
@pytest.mark.parametrize("action", ["approve", "reject"])
def test_one_decision_stays_within_its_query_budget(app, ann, count_statements, action, htmx):
    rid = make_request(app, "hal", RIVERSIDE)
    seen = count_statements(f"security.{action}_request")
    response = ann.post(f"/security/requests/{rid}/{action}", htmx=htmx)
    assert response.status_code == (200 if htmx else 303)
    assert len(seen.all) <= QUERY_BUDGET, seen


def test_a_late_decision_stays_within_the_query_budget_too(app, ann, signed_in, count_statements):
    rid = make_request(app, "hal", RIVERSIDE)
    owner = signed_in("owner")
    assert ann.post(f"/security/requests/{rid}/approve", htmx=True).status_code == 200
    seen = count_statements("security.reject_request")
    late = owner.post(f"/security/requests/{rid}/reject", htmx=True)
    assert "Ann Lee decided this request first." in late.text
    assert len(seen.all) <= QUERY_BUDGET, seen


def test_the_requests_page_costs_the_same_for_one_request_or_many(app, ann, count_statements):
    counts = []
    for who, ip in [("hal", AWAY), ("fay", AWAY), ("hal", "127.0.0.8"), ("fay", "::1"), ("owner", AWAY)]:
        rid = make_request(app, who, RIVERSIDE, ip=ip)
        if who == "fay":
            assert ann.post(f"/security/requests/{rid}/reject").status_code == 303  # a decided row as well
        seen = count_statements("security.requests_page")
        assert ann.get("/security/requests").status_code == 200
        counts.append(len(seen.of_view))
    assert len(set(counts)) == 1, f"statements by the view for 1..5 requests: {counts}"


# --- the badge, and who may see what -----------------------------------------------------------------

def test_pending_badge_counts_the_admins_practices_and_updates_itself(app, ann, bob, signed_in):
    first = make_request(app, "hal", RIVERSIDE)
    make_request(app, "fay", RIVERSIDE)
    make_request(app, "hal", LAKESIDE)
    make_request(app, "hal", RIVERSIDE, ip="127.0.0.8", status="rejected", decided_by="ann")
    badge = ann.get("/security/requests/badge")
    assert badge.status_code == 200
    assert badge.text.startswith('<span id="pending-badge"') and "<html" not in badge.text
    trigger = re.search(r'hx-trigger="([^"]+)"', badge.text).group(1)
    assert "requests-changed from:body" in trigger and "every" in trigger
    assert badge_count(ann) == 2
    assert badge_count(bob) == 1
    assert badge_count(signed_in("owner")) == 3
    # the navigation carries it on every security page
    assert re.search(r'<span id="pending-badge"[^>]*>2</span>', ann.get("/security/allowlist").text)
    ann.post(f"/security/requests/{first}/approve", htmx=True)
    assert badge_count(ann) == 1 and badge_count(bob) == 1


def test_admins_only_see_and_decide_requests_of_their_own_practices(app, ann, bob):
    riverside = make_request(app, "hal", RIVERSIDE, note="riverside only")
    lakeside = make_request(app, "hal", LAKESIDE, note="lakeside only")
    page = bob.get("/security/requests")
    assert f'id="request-{lakeside}"' in page.text and "lakeside only" in page.text
    assert f'id="request-{riverside}"' not in page.text and "riverside only" not in page.text
    for action in ("approve", "reject"):
        for htmx in (False, True):
            assert bob.post(f"/security/requests/{riverside}/{action}", htmx=htmx).status_code == 404
    assert ann.post("/security/requests/99999/approve").status_code == 404
    assert request_ids(app, "hal", RIVERSIDE) == [riverside]
    with app.app_context():
        assert Grant.select().count() == 0
    # a decision bob did make does not show up for ann either
    bob.post(f"/security/requests/{lakeside}/reject")
    assert f'id="request-{lakeside}"' not in ann.get("/security/requests").text


@pytest.mark.parametrize("who", ["fay", "hal"])
@pytest.mark.parametrize("method,url", [
    ("GET", "/security/requests"),
    ("GET", "/security/requests/badge"),
    ("POST", "/security/requests/{rid}/approve"),
    ("POST", "/security/requests/{rid}/reject"),
])
def test_other_roles_are_forbidden(app, signed_in, who, method, url):
    rid = make_request(app, "fay", RIVERSIDE, ip="127.0.0.8")
    v = signed_in(who)
    v.get("/")  # a page with a CSRF token of the session
    url = url.format(rid=rid)
    response = v.post(url) if method == "POST" else v.get(url)
    assert response.status_code == 403
    assert request_ids(app, "fay", RIVERSIDE) == [rid]


# --- the live blocked page: statuses that update themselves, and Continue once approved --------------------

def poll_of(html_text):
    """(seconds, next URL) of the statuses' self-refresh, or None when the page does not ask again."""
    found = re.search(r'<div id="request-statuses"[^>]*>', html_text)
    assert found, "no statuses"
    div = found.group(0)
    if "hx-get" not in div:
        return None
    url = html.unescape(re.search(r'hx-get="([^"]+)"', div).group(1))
    return int(re.search(r'hx-trigger="every (\d+)s"', div).group(1)), url


def status_url(polls, offered=""):
    return f"/access-requests/status?polls={polls}&offered={offered}"


def test_the_statuses_ask_again_by_themselves_less_often_and_stop_when_decided(app, enforce_as_owner, visitor,
                                                                               signed_in):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    assert poll_of(v.get("/blocked").text) is None  # nothing pending: nothing to wait for
    assert ask(v, app, RIVERSIDE).status_code == 303
    seconds, url = poll_of(v.get("/blocked").text)
    assert (seconds, url) == (5, status_url(1))
    for polls, expected in ((1, 5), (11, 5), (12, 15), (47, 15), (48, 60), (500, 60)):
        fragment = v.get(status_url(polls), htmx=True)
        assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
        assert fragment.text.startswith('<div id="request-statuses"') and "<html" not in fragment.text
        assert statuses(fragment) == {RIVERSIDE: "Pending"}
        assert poll_of(fragment.text) == (expected, status_url(polls + 1))
    # the same URL without htmx is the whole page
    page = v.get(status_url(3))
    assert page.status_code == 200 and "<html" in page.text and "Your IP address" in page.text
    # decided: the next poll shows it, and asks no more
    ann = signed_in("ann")
    assert ann.post(f"/security/requests/{request_ids(app, 'fay', RIVERSIDE)[0]}/approve").status_code == 303
    decided = v.get(status_url(4), htmx=True)
    assert statuses(decided) == {RIVERSIDE: "Approved"}
    assert poll_of(decided.text) is None
    assert ">Continue to Riverside Dental</button>" in decided.text


def test_the_polled_statuses_bring_the_history_and_a_form_that_changed(app, enforce_as_owner, visitor, signed_in):
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    v = blocked_login(visitor, "hal")
    assert ask(v, app, RIVERSIDE).status_code == 303
    page = v.get("/blocked").text
    _, url = poll_of(page)
    lakeside = str(practice_id(app, LAKESIDE))
    assert url == status_url(1, lakeside)  # the form offers Lakeside only
    unchanged = v.get(url, htmx=True).text
    assert '<div id="request-history-box" hx-swap-oob="true">' in unchanged
    assert 'id="request-form-box"' not in unchanged  # what it offers is the same: a half-typed note stays
    signed_in("ann").post(f"/security/requests/{request_ids(app, 'hal', RIVERSIDE)[0]}/reject")
    changed = v.get(url, htmx=True)
    assert statuses(changed) == {LAKESIDE: "Not Requested", RIVERSIDE: "Rejected"}
    assert '<div id="request-form-box" hx-swap-oob="true">' in changed.text
    assert offered(changed) == [LAKESIDE, RIVERSIDE]  # asking again is offered at once
    assert "You may request again." in changed.text


def test_my_access_requests_updates_itself_too_without_a_continue_button(app, signed_in):
    restrict(app, RIVERSIDE, "127.0.0.1")
    restrict(app, LAKESIDE)  # nothing on its allowlist: Hal, at the office, works at Riverside only
    make_request(app, "hal", LAKESIDE, ip=OFFICE_IP)
    hal = signed_in("hal")
    page = hal.get("/access-requests")
    assert page.status_code == 200 and "<h1>My access requests</h1>" in page.text
    seconds, url = poll_of(page.text)
    assert seconds == 5
    fragment = hal.get(url, htmx=True)
    assert fragment.text.startswith('<div id="request-statuses"')
    assert statuses(fragment) == {LAKESIDE: "Pending", RIVERSIDE: "Allowed"}
    assert "Continue to" not in fragment.text  # already signed in: the practice switcher does that


def continue_to(v, app, practice=RIVERSIDE, **kwargs):
    return v.post("/blocked/continue", {"practice": str(practice_id(app, practice))}, **kwargs)


def test_continue_once_approved_signs_in_without_the_password(app, enforce_as_owner, visitor, signed_in):
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    v = blocked_login(visitor, "hal")
    assert ask(v, app, RIVERSIDE, LAKESIDE).status_code == 303
    assert "Continue to" not in v.get("/blocked").text
    rid = request_ids(app, "hal", RIVERSIDE)[0]
    assert signed_in("ann").post(f"/security/requests/{rid}/approve").status_code == 303
    page = v.get("/blocked")
    assert ">Continue to Riverside Dental</button>" in page.text and "Continue to Lakeside" not in page.text
    response = continue_to(v, app)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    home = v.get("/")
    assert home.status_code == 200 and "<h1>Riverside Dental</h1>" in home.text
    with app.app_context():
        grant = Grant.get()
    assert events(app, "login_allowed")[-1] == (
        "hal@example.com", AWAY, RIVERSIDE, "hal@example.com",
        f"allowed by user grant #{grant.id} for {AWAY} approved in request #{rid}; continued from the blocked page")
    # one sign-in, and no blocked one left behind
    with app.app_context():
        hal = User.get(User.email == "hal@example.com")
        assert [s.blocked for s in SignIn.select().where(SignIn.user == hal)] == [False]


def test_continue_needs_the_csrf_token(app, enforce_as_owner, visitor, signed_in):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    assert ask(v, app, RIVERSIDE).status_code == 303
    signed_in("ann").post(f"/security/requests/{request_ids(app, 'fay', RIVERSIDE)[0]}/approve")
    assert continue_to(v, app, csrf=False).status_code == 400
    assert v.get("/").headers["Location"].startswith("/login")  # not signed in
    assert v.get("/blocked").status_code == 200  # and still waiting


def test_continue_while_still_pending_says_so_and_stays_blocked(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    assert ask(v, app, RIVERSIDE).status_code == 303
    v.get("/blocked")
    response = continue_to(v, app)
    assert response.status_code == 303 and response.headers["Location"] == "/blocked"
    page = v.get("/blocked")
    assert flashes(page) == [f"Riverside Dental does not let you in from {AWAY} now (Pending)."]
    assert v.get("/").headers["Location"].startswith("/login")
    assert events(app, "login_allowed")[-1][0] == "owner@example.com"  # nobody else signed in


@pytest.mark.parametrize("htmx", [False, True])
def test_a_blocked_sign_in_copied_to_another_ip_cannot_continue(app, enforce_as_owner, visitor, signed_in, htmx):
    enforce_as_owner(RIVERSIDE)
    fay = blocked_login(visitor, "fay")
    assert ask(fay, app, RIVERSIDE).status_code == 303
    fay.get("/blocked")
    signed_in("ann").post(f"/security/requests/{request_ids(app, 'fay', RIVERSIDE)[0]}/approve")
    thief = Visitor(app, ip="127.0.0.66")
    thief.client.set_cookie("pbnsec_session", fay.client.get_cookie("pbnsec_session").value)
    thief.token = fay.token
    response = continue_to(thief, app, htmx=htmx)
    assert (response.headers.get("HX-Redirect") if htmx else response.headers["Location"]) == "/login"
    assert flashes(thief.get("/login")) == [
        "Your IP address changed since you signed in. Please sign in again from here."]
    assert thief.get("/").headers["Location"].startswith("/login")
    # and the real one ended too: the password again
    assert continue_to(fay, app).headers["Location"] == "/login"
    assert events(app, "login_allowed")[-1][0] == "ann@example.com"


def test_a_changed_password_ends_the_wait_with_a_clear_message(app, enforce_as_owner, visitor, signed_in):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    with app.app_context():
        User.update(password_hash="pbkdf2:sha256:1$x$" + "0" * 64).where(User.email == "fay@example.com").execute()
    fragment = v.get(status_url(1), htmx=True)  # the page's next poll
    assert fragment.headers["HX-Redirect"] == "/login"
    assert flashes(v.get("/login")) == ["Your password was changed since you signed in. Please sign in again."]


def test_the_blocked_page_names_administrators_not_their_emails_unless_the_practice_says_so(
        app, enforce_as_owner, visitor, signed_in):
    enforce_as_owner(RIVERSIDE, LAKESIDE)
    v = blocked_login(visitor, "hal")
    page = v.get("/blocked").text
    contacts = dict(re.findall(r'<tr id="status-\d+">\s*<td>([^<]+)</td>.*?Administrators to contact:\s*(.*?)</span>',
                               page, re.S))
    assert {k: " ".join(c.split()) for k, c in contacts.items()} == {
        LAKESIDE: "Bob Stone, Olive Owner", RIVERSIDE: "Ann Lee, Olive Owner"}
    assert "@example.com" not in page
    ann = signed_in("ann")
    assert ann.post(f"/security/settings/{practice_id(app, RIVERSIDE)}/contacts",
                    {"show_admin_emails": "1"}).status_code == 303
    page = v.get("/blocked").text
    assert '<a href="mailto:ann@example.com">ann@example.com</a>' in page
    assert "owner@example.com" in page and "bob@example.com" not in page  # Lakeside keeps them to itself
    assert events(app, "settings_changed")[-1][4] == "administrators' email addresses on the blocked page: shown"


def test_an_administrator_blocked_is_not_told_to_ask_themselves(app, enforce_as_owner, visitor):
    enforce_as_owner(RIVERSIDE)
    page = blocked_login(visitor, "ann").get("/blocked").text
    assert re.search(r"Administrators to contact:\s*Olive Owner</span>", page)


# --- rejection reasons --------------------------------------------------------------------------------

def reject(v, rid, reason, htmx=True):
    return v.post(f"/security/requests/{rid}/reject", {"reason": reason}, htmx=htmx)


def test_a_rejection_reason_is_stored_audited_and_shown_to_the_user(app, enforce_as_owner, visitor, signed_in):
    enforce_as_owner(RIVERSIDE)
    v = blocked_login(visitor, "fay")
    assert ask(v, app, RIVERSIDE).status_code == 303
    rid = request_ids(app, "fay", RIVERSIDE)[0]
    ann = signed_in("ann")
    row = reject(ann, rid, "  Use the office VPN <b>please</b>  ")
    assert row.status_code == 200 and row.headers["HX-Trigger"] == "requests-changed"
    shown = "Reason: Use the office VPN &lt;b&gt;please&lt;/b&gt;"
    assert shown in row.text and "<b>please" not in row.text
    with app.app_context():
        assert AccessRequest.get_by_id(rid).reason == "Use the office VPN <b>please</b>"
    assert events(app, "request_rejected") == [("ann@example.com", OFFICE_IP, RIVERSIDE, f"fay@example.com from {AWAY}",
                                                f"request #{rid}; reason: Use the office VPN <b>please</b>")]
    page = v.get("/blocked").text
    assert page.count(shown) == 2  # beside the status, and in the history
    assert shown in ann.get("/security/requests").text


def test_one_click_still_rejects_without_a_reason(app, ann):
    rid = make_request(app, "hal", RIVERSIDE)
    assert ann.post(f"/security/requests/{rid}/reject", htmx=True).status_code == 200
    with app.app_context():
        assert (AccessRequest.get_by_id(rid).status, AccessRequest.get_by_id(rid).reason) == ("rejected", "")


def test_the_reject_button_has_an_optional_reason_beside_it(app, ann):
    rid = make_request(app, "hal", RIVERSIDE)
    row = re.search(rf'<tr id="request-{rid}".*?</tr>', ann.get("/security/requests").text, re.S).group(0)
    form = re.search(r'<form [^>]*class="inline reject-form">.*?</form>', row, re.S).group(0)
    assert f'<input type="text" name="reason" id="reason-{rid}" class="reason" maxlength="500"' in form
    assert "required" not in form
    assert f'<label class="visually-hidden" for="reason-{rid}">Reason for rejecting (optional' in form


@pytest.mark.parametrize("reason,accepted,message", [
    ("x" * 500, True, None),
    ("x" * 501, False, "The reason can be at most 500 characters long (yours has 501)."),
    ("line one\nline two", False, "The reason cannot contain control characters."),
    ("bell\x07", False, "The reason cannot contain control characters."),
    ("nul\x00", False, "The reason cannot contain control characters."),
])
@pytest.mark.parametrize("htmx", [True, False])
def test_a_reason_is_at_most_500_characters_without_control_characters(app, ann, reason, accepted, message, htmx):
    rid = make_request(app, "hal", RIVERSIDE)
    response = reject(ann, rid, reason, htmx=htmx)
    with app.app_context():
        stored = AccessRequest.get_by_id(rid)
    if accepted:
        assert response.status_code == (200 if htmx else 303)
        assert (stored.status, stored.reason) == ("rejected", reason)
        return
    assert response.status_code == 422
    assert (stored.status, stored.reason, stored.decided_by_id) == ("pending", "", None)
    assert html.escape(message, quote=True) in response.text
    assert events(app, "request_rejected") == []
    if htmx:
        body = response.text.strip()
        assert body.startswith(f'<tr id="request-{rid}"') and ">Reject</button>" in body
        assert 'aria-invalid="true"' in body


def test_a_reason_is_not_kept_for_an_approval(app, ann):
    rid = make_request(app, "hal", RIVERSIDE)
    assert ann.post(f"/security/requests/{rid}/approve", {"reason": "x\x00"}, htmx=True).status_code == 200
    with app.app_context():
        assert (AccessRequest.get_by_id(rid).status, AccessRequest.get_by_id(rid).reason) == ("approved", "")


# --- the request table stays true -------------------------------------------------------------------------

def tables_url(page_text):
    div = re.search(r'<div id="request-tables"[^>]*>', page_text).group(0)
    return div, html.unescape(re.search(r'hx-get="([^"]+)"', div).group(1))


def test_the_tables_listen_to_the_same_event_and_poll_as_the_badge(app, ann):
    page = ann.get("/security/requests").text
    div, _ = tables_url(page)
    badge = re.search(r'<span id="pending-badge"[^>]*>', page).group(0)
    trigger = re.search(r'hx-trigger="([^"]+)"', badge).group(1)
    assert f'hx-trigger="{trigger}"' in div and "requests-changed from:body" in trigger


def test_a_row_decided_elsewhere_moves_out_of_pending_on_the_next_poll(app, ann, signed_in):
    rid = make_request(app, "hal", RIVERSIDE)
    _, url = tables_url(ann.get("/security/requests").text)
    nothing_new = ann.get(url, htmx=True)
    assert nothing_new.status_code == 204 and nothing_new.text == ""  # nothing swapped while nothing changed
    assert "HX-Request" in nothing_new.headers["Vary"]
    assert reject(signed_in("owner"), rid, "not from home").status_code == 200
    fresh = ann.get(url, htmx=True)
    assert fresh.status_code == 200 and fresh.text.startswith('<div id="request-tables"')
    assert "<html" not in fresh.text
    assert f'id="request-{rid}"' not in table(fresh, "pending-requests")
    assert "No pending requests." in table(fresh, "pending-requests")
    decided = table(fresh, "decided-requests")
    assert f'id="request-{rid}"' in decided and "by Olive Owner" in decided and "Reason: not from home" in decided
    # its own next poll has the new version: quiet again
    _, next_url = tables_url(fresh.text)
    assert ann.get(next_url, htmx=True).status_code == 204
    # a new request shows up the same way
    new = make_request(app, "fay", RIVERSIDE)
    assert f'id="request-{new}"' in table(ann.get(next_url, htmx=True), "pending-requests")
    # without htmx the URL is the whole page
    page = ann.get(next_url)
    assert page.status_code == 200 and "<h1>IP Access Requests</h1>" in page.text


def test_the_tables_show_only_the_admins_practices(app, ann, bob):
    lakeside = make_request(app, "hal", LAKESIDE)
    _, url = tables_url(ann.get("/security/requests").text)
    assert ann.get(url, htmx=True).status_code == 204  # Lakeside's request is no change for Ann
    assert f'id="request-{lakeside}"' not in ann.get("/security/requests/tables?seen=old", htmx=True).text
    assert f'id="request-{lakeside}"' in bob.get("/security/requests/tables?seen=old", htmx=True).text

"""The People screen: security administrators manage the people of their practices, in the browser."""
import re
import threading
from datetime import timedelta

import pytest
from conftest import Visitor, practice_id, restrict, user_id

from pbnsec.domain import people as domain
from pbnsec.models import AuditEvent, Invite, User, utcnow

SECRET = re.compile(r'class="secret"><code>([^<]+)</code>')
ALERT = re.compile(r'role="alert">(?:<p>)?([^<]+)')


def table_rows(html):
    return re.findall(r'<a href="/people/\d+">([^<]+)</a>', html)


# --- who gets in ---

def test_security_administrators_find_people_in_the_navigation_and_others_do_not(signed_in):
    ann, fay = signed_in("ann"), signed_in("fay")
    assert '<a href="/people/">People</a>' in ann.get("/").text
    assert '<a href="/people/">People</a>' not in fay.get("/").text
    assert fay.get("/people/").status_code == 403
    assert fay.get(f"/people/{user_id(fay.app, 'fay')}").status_code == 403


def test_the_list_is_a_page_and_its_search_a_fragment(ann):
    page = ann.get("/people/")
    assert page.status_code == 200 and "<html" in page.text and 'id="people-q"' in page.text
    assert table_rows(page.text) == ["Ann Lee", "Fay Desk", "Hal Hygienist", "Olive Owner"]
    assert "Bob Stone" not in page.text  # Lakeside's, not Ann's
    fragment = ann.get("/people/?q=desk", htmx=True)
    assert fragment.status_code == 200 and "HX-Request" in fragment.headers["Vary"]
    assert "<html" not in fragment.text and fragment.text.startswith('<div id="people-table">')
    assert table_rows(fragment.text) == ["Fay Desk"]
    assert "1 person matching “desk”" in fragment.text


def test_every_cell_says_what_it_is_so_rows_stack_on_a_phone(ann, app):
    html = ann.get("/people/").text
    table = html[html.index('<table class="people">'):html.index("</table>")]
    cells = re.findall(r"<td([^>]*)>", table)
    assert cells and all("data-label=" in c for c in cells)
    css = (app.static_folder + "/pbnsec.css")
    assert "table.people td[data-label]::before" in open(css).read()


def test_the_last_sign_in_shows_its_time_in_the_practice_s_zone_and_its_ip(signed_in, app):
    from datetime import datetime

    from conftest import signed_in_earlier
    from pbnsec.models import Practice

    with app.app_context():
        Practice.update(time_zone="America/New_York").where(Practice.name == "Riverside Dental").execute()
        signed_in_earlier("fay", "127.0.0.7", datetime(2026, 12, 1, 13, 30))
        AuditEvent.update(practice=Practice.get(Practice.name == "Riverside Dental")).execute()
    row = signed_in("ann").get("/people/?q=fay").text
    assert '<time datetime="2026-12-01T13:30:00Z"' in row
    assert "2026-12-01 08:30 EST</time> from <code>127.0.0.7</code>" in row


# --- adding a person ---

def add(v, **fields):
    form = {"email": "nia@example.com", "name": "Nia Newbury", "role": "Hygienist",
            "practice": str(practice_id(v.app)), "how": "invite"}
    form.update(fields)
    v.get("/people/new")
    return v.post("/people/new", form)


def test_adding_a_person_shows_an_invite_link_once_and_the_link_works_without_signing_in(app, ann, visitor):
    response = add(ann)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    path = SECRET.search(response.text).group(1)  # no PBNSEC_BASE_URL: the path, never a guess at the host
    assert path.startswith("/people/invite/")
    with app.app_context():
        nia = User.get(User.email == "nia@example.com")
    assert path.rsplit("/", 1)[1] not in ann.get(f"/people/{nia.id}").text  # never shown again

    newcomer = visitor(ip="127.0.0.9")
    page = newcomer.get(path)
    assert page.status_code == 200 and "Nia Newbury" in page.text
    weak = newcomer.post(path, {"new": "abcdabcdabcd", "repeat": "abcdabcdabcd"})
    assert weak.status_code == 422 and "a repeated pattern like abcabc" in weak.text
    assert newcomer.post(path, {"new": "tidy molar chart 2026", "repeat": "tidy molar chart 2026"}).status_code == 200
    again = newcomer.get(path)
    assert again.status_code == 410 and "already used" in again.text
    assert visitor().login("nia@example.com", "tidy molar chart 2026").headers["Location"] == "/"


def test_adding_with_a_one_time_password_asks_for_a_new_one_at_first_sign_in(ann, visitor):
    password = SECRET.search(add(ann, how="password").text).group(1)
    nia = visitor()
    assert nia.login("nia@example.com", password).headers["Location"] == "/account/password"


@pytest.mark.parametrize("fields,message", [
    ({"email": "fay@example.com"}, "An account with the email 'fay@example.com' already exists. If they work at "
                                   "your practice, find them in People; if not, an Owner can add your practice to "
                                   "their account."),
    ({"role": "Owner"}, "You cannot give the role Owner: it is above your own."),
    ({"practice": "999"}, "Choose among the practices you administer from here."),
    ({"how": "fax"}, "Choose a one-time password or an invite link."),
])
def test_adding_refuses_bad_input_says_why_and_keeps_what_was_typed(app, ann, fields, message):
    response = add(ann, **fields)
    assert response.status_code == 422
    assert ALERT.search(response.text).group(1) == message.replace("'", "&#39;")
    assert 'value="Nia Newbury"' in response.text
    with app.app_context():
        assert not User.select().where(User.email == "nia@example.com").exists()


def test_every_change_needs_the_csrf_token(app, ann):
    fay = user_id(app, "fay")
    for url, data in ((f"/people/{fay}/deactivate", {}), (f"/people/{fay}/role", {"role": "Billing"}),
                      (f"/people/{fay}/reset", {"how": "password"}), ("/people/new", {"email": "x@example.com"})):
        assert ann.post(url, data, csrf=False).status_code == 400, url
    with app.app_context():
        fay_now = User.get_by_id(fay)
        assert fay_now.active and fay_now.role.name == "Front Desk" and not fay_now.must_change_password


# --- other practices' people ---

def test_someone_of_another_practice_is_not_found(app, bob):
    fay = user_id(app, "fay")
    assert bob.get(f"/people/{fay}").status_code == 404
    for action, data in (("deactivate", {}), ("role", {"role": "Billing"}), ("reset", {"how": "password"}),
                         ("practices", {"practice": str(practice_id(app, "Lakeside Dental"))})):
        assert bob.post(f"/people/{fay}/{action}", data).status_code == 404
    assert bob.get("/people/99999").status_code == 404


def test_someone_also_in_a_practice_the_admin_does_not_administer_can_be_seen_but_not_changed(app, ann):
    hal = user_id(app, "hal")
    page = ann.get(f"/people/{hal}")
    assert page.status_code == 200 and "also works in Lakeside Dental" in page.text
    assert 'action="/people/%d/deactivate"' % hal not in page.text
    response = ann.post(f"/people/{hal}/deactivate", {})
    assert response.status_code == 403 and "also works in Lakeside Dental" in response.text
    with app.app_context():
        assert User.get_by_id(hal).active


def test_the_people_of_a_practice_that_blocks_this_ip_are_managed_only_from_where_it_allows(app, signed_in):
    restrict(app, "Lakeside Dental", "127.0.0.50")
    owner = signed_in("owner")  # allowed in Riverside only, from here
    bob = user_id(app, "bob")
    response = owner.get(f"/people/{bob}")
    assert response.status_code == 403 and "not approved for Lakeside Dental" in response.text
    assert "Bob Stone" not in owner.get("/people/").text
    assert owner.post(f"/people/{bob}/deactivate", {}).status_code == 403
    # Hal works in both: seen from Riverside, but changed only where Lakeside allows the Owner too.
    assert owner.post(f"/people/{user_id(app, 'hal')}/deactivate", {}).status_code == 403


# --- changes ---

def test_deactivating_is_a_fragment_for_htmx_and_ends_every_sign_in_at_once(app, ann, signed_in):
    fay = signed_in("fay")
    assert fay.get("/").status_code == 200
    fay_id = user_id(app, "fay")
    ann.get(f"/people/{fay_id}")
    response = ann.post(f"/people/{fay_id}/deactivate", {}, htmx=True)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    assert response.text.startswith('<div id="person-status"') and "Deactivated" in response.text
    assert 'hx-post="/people/%d/reactivate"' % fay_id in response.text
    assert fay.get("/").headers["Location"].startswith("/login")
    assert Visitor(app).login("fay@example.com").status_code == 401
    again = ann.post(f"/people/{fay_id}/deactivate", {}, htmx=True)
    assert again.status_code == 409 and "already deactivated" in again.text
    plain = ann.post(f"/people/{fay_id}/reactivate", {})
    assert plain.status_code == 303 and plain.headers["Location"] == f"/people/{fay_id}"
    assert "Reactivated." in ann.get(plain.headers["Location"]).text
    assert Visitor(app).login("fay@example.com").status_code == 303


def test_an_admin_sees_no_controls_to_lock_themselves_out(app, ann):
    ann_id = user_id(app, "ann")
    page = ann.get(f"/people/{ann_id}").text
    assert "This is you" in page and f"/people/{ann_id}/deactivate" not in page
    response = ann.post(f"/people/{ann_id}/deactivate", {})
    assert response.status_code == 409 and "You cannot deactivate yourself." in response.text


def test_changing_role_and_practices_is_audited_for_the_practices_concerned(app, signed_in):
    owner = signed_in("owner")
    fay = user_id(app, "fay")
    owner.get(f"/people/{fay}")
    assert owner.post(f"/people/{fay}/role", {"role": "Billing"}).status_code == 303
    lakeside = practice_id(app, "Lakeside Dental")
    assert owner.post(f"/people/{fay}/practices", {"practice": [str(practice_id(app)), str(lakeside)]}
                      ).status_code == 303
    page = owner.get(f"/people/{fay}").text
    assert "Practices changed." in page
    with app.app_context():
        role = AuditEvent.get(AuditEvent.action == "user_role_changed")
        assert (role.actor_label, role.target, role.detail) == ("owner@example.com", "fay@example.com",
                                                                "Front Desk → Billing")
        changed = AuditEvent.select().where(AuditEvent.action == "user_practices_changed")
        assert sorted(e.practice.name for e in changed) == ["Lakeside Dental", "Riverside Dental"]


def test_resetting_shows_a_one_time_password_once_and_ends_their_sign_ins(app, ann, signed_in):
    fay = signed_in("fay")
    fay_id = user_id(app, "fay")
    ann.get(f"/people/{fay_id}")
    response = ann.post(f"/people/{fay_id}/reset", {"how": "password"})
    password = SECRET.search(response.text).group(1)
    assert fay.get("/").headers["Location"].startswith("/login")
    assert Visitor(app).login("fay@example.com").status_code == 401
    assert Visitor(app).login("fay@example.com", password).headers["Location"] == "/account/password"


def test_an_expired_invite_link_is_refused_clearly(app, ann, visitor):
    fay_id = user_id(app, "fay")
    ann.get(f"/people/{fay_id}")
    link = SECRET.search(ann.post(f"/people/{fay_id}/reset", {"how": "invite"}).text).group(1)
    with app.app_context():
        Invite.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    v = visitor()
    path = link
    page = v.get(path)
    assert page.status_code == 410 and "This invite link has expired (links last 72 hours)." in page.text
    assert v.post(path, {"new": "tidy molar chart 2026", "repeat": "tidy molar chart 2026"}).status_code == 410
    assert v.get("/people/invite/not-a-real-token-at-all-000000").status_code == 404


def test_the_access_log_never_holds_an_invite_token(app, ann, visitor, log_lines):
    fay_id = user_id(app, "fay")
    ann.get(f"/people/{fay_id}")
    link = SECRET.search(ann.post(f"/people/{fay_id}/reset", {"how": "invite"}).text).group(1)
    token = link.rsplit("/", 1)[1]
    visitor().get(link)
    assert any('path="/people/invite/…"' in line for line in log_lines)
    assert not any(token in line for line in log_lines)


# --- practices (the Owner) ---

def test_the_owner_renames_a_practice_and_others_cannot(app, signed_in, ann):
    assert ann.get("/people/practices").status_code == 403
    owner = signed_in("owner")
    riverside = practice_id(app)
    assert "Lakeside Dental" in owner.get("/people/practices").text
    taken = owner.post(f"/people/practices/{riverside}/rename", {"name": "Lakeside Dental"})
    assert taken.status_code == 422 and "already exists" in taken.text
    done = owner.post(f"/people/practices/{riverside}/rename", {"name": "Riverside Smiles"})
    assert done.status_code == 303
    assert "Renamed to Riverside Smiles." in owner.get("/people/practices").text
    assert owner.post("/people/practices/99999/rename", {"name": "X"}).status_code == 404


# --- racing administrators ---

def test_two_owners_deactivating_each_other_at_once_leave_one_active_owner(app, signed_in, monkeypatch):
    with app.app_context():
        from pbnsec.models import Role
        User.update(role=Role.get(Role.name == "Owner")).where(User.email == "ann@example.com").execute()
        from pbnsec.models import Membership, Practice
        Membership.create(user=User.get(User.email == "ann@example.com"),
                          practice=Practice.get(Practice.name == "Lakeside Dental"))
    ann, owner = signed_in("ann"), signed_in("owner")
    meeting = threading.Barrier(2, timeout=2)
    counted = domain._active_owners

    def count_then_meet():
        result = counted()
        try:
            meeting.wait()  # the change lock keeps the other thread out: it times out instead
        except threading.BrokenBarrierError:
            pass
        return result

    monkeypatch.setattr(domain, "_active_owners", count_then_meet)
    results = [None, None]
    calls = [lambda: ann.post(f"/people/{user_id(app, 'owner')}/deactivate", {}),
             lambda: owner.post(f"/people/{user_id(app, 'ann')}/deactivate", {})]

    def run(i):
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # One deactivation wins; the other is refused as the last Owner's, or its admin was already signed out by it.
    outcomes = sorted((r.status_code, r.headers.get("Location", "")) for r in results)
    assert outcomes[0][0] == 303 and outcomes[0][1].startswith("/people/")
    assert outcomes[1][0] == 409 or outcomes[1][1].startswith("/login"), outcomes
    with app.app_context():
        from pbnsec.models import Role
        assert User.select().join(Role).where(User.active & (Role.name == "Owner")).count() == 1


def test_the_list_costs_the_same_for_four_people_or_forty(app, ann, count_statements):
    from pbnsec.models import Membership, Practice, Role

    def cost():
        seen = count_statements("people.index")
        assert ann.get("/people/").status_code == 200
        return len(seen.of_view), repr(seen)

    few, few_log = cost()
    with app.app_context():
        riverside, role = Practice.get(Practice.name == "Riverside Dental"), Role.get(Role.name == "Billing")
        for i in range(36):
            user = User.create(email=f"p{i}@example.com", name=f"Person {i}", password_hash="x", role=role)
            Membership.create(user=user, practice=riverside)
            AuditEvent.create(action="login_allowed", actor=user, actor_label=user.email, actor_ip="127.0.0.7",
                              practice=riverside, target=user.email, at=utcnow())
    many, many_log = cost()
    assert many == few, f"four: {few_log}\nforty: {many_log}"


def test_a_search_with_a_control_character_searches_without_it(app, signed_in):
    ann = signed_in("ann")
    response = ann.get("/people/?q=Fay%00")  # PostgreSQL cannot even be sent a NUL
    assert response.status_code == 200 and "Fay Desk" in response.text


def test_the_invite_link_is_the_configured_address_never_the_request_s_host_or_scheme(app, ann):
    app.config["BASE_URL"] = "https://pbnsec.example.org"
    ann.headers = {"X-Forwarded-Proto": "http"}
    link = SECRET.search(add(ann).text).group(1)
    assert link.startswith("https://pbnsec.example.org/people/invite/"), link


def test_adding_someone_of_another_practice_says_no_more_than_for_one_s_own(app, ann):
    """Bob works at Lakeside only: Ann learns the address is taken (it must be unique), not where he works."""
    own = add(ann, email="fay@example.com").text
    other = add(ann, email="bob@example.com").text
    assert "Lakeside" not in other
    assert other.replace("bob@example.com", "X").count("An account with the email") == \
        own.replace("fay@example.com", "X").count("An account with the email") == 1

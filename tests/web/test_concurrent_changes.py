"""Two administrators changing things at the same moment still cannot lock anyone out or empty an allowlist."""
import threading

import pytest
from conftest import entry_id, practice_id, restrict

from pbnsec.domain import access
from pbnsec.models import AllowlistEntry, IPRestriction, Practice, RestrictedRole, Role


def at_the_same_moment(monkeypatch, *calls):
    """Run the calls in threads that meet right after their lockout check (where a race would slip in)."""
    meeting = threading.Barrier(len(calls), timeout=2)
    original = access.lockout_for

    def check_then_meet(*args, **kwargs):
        result = original(*args, **kwargs)
        try:
            meeting.wait()  # with the change lock held, the other thread cannot get here: it times out
        except threading.BrokenBarrierError:
            pass
        return result

    monkeypatch.setattr("pbnsec.domain.allowlist.lockout_for", check_then_meet)
    monkeypatch.setattr("pbnsec.domain.restrictions.lockout_for", check_then_meet)
    results = [None] * len(calls)

    def run(i, call):
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_admins_deleting_the_two_entries_that_cover_them_leave_one(app, signed_in, monkeypatch):
    restrict(app, "Riverside Dental", "127.0.0.1/32", "127.0.0.0/24")
    ann, owner = signed_in("ann"), signed_in("owner")
    first, second = entry_id(app, "127.0.0.1/32"), entry_id(app, "127.0.0.0/24")
    responses = at_the_same_moment(
        monkeypatch,
        lambda: ann.post(f"/security/allowlist/{first}/delete", htmx=True),
        lambda: owner.post(f"/security/allowlist/{second}/delete", htmx=True),
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    with app.app_context():
        assert AllowlistEntry.select().count() == 1
    assert ann.get("/").status_code == 200  # still in


def test_switching_on_while_the_last_entry_is_deleted_never_enforces_an_empty_allowlist(app, signed_in, monkeypatch):
    owner = signed_in("owner")
    riverside = str(practice_id(app))
    owner.post("/security/allowlist", {"address": "192.0.2.0/24", "label": "Branch", "practice": riverside})
    owner.get("/security/allowlist")
    only = entry_id(app, "192.0.2.0/24")
    with app.app_context():  # restrictions will apply to Front Desk only, so the owner is never locked out
        practice = Practice.get_by_id(int(riverside))
        IPRestriction.create(practice=practice, enforced=False, everyone=False)
        RestrictedRole.create(practice=practice, role=Role.get(Role.name == "Front Desk"))
    responses = at_the_same_moment(
        monkeypatch,
        lambda: owner.post(f"/security/settings/{riverside}/enforced", {"enforced": "1"}, htmx=True),
        lambda: owner.post(f"/security/allowlist/{only}/delete", htmx=True),
    )
    # Whichever went first wins; the other is refused with a reason (never both, never a crash).
    assert sorted(r.status_code for r in responses) == [200, 409]
    with app.app_context():
        enforced = IPRestriction.select().where(IPRestriction.enforced).exists()
        entries = AllowlistEntry.select().count()
    assert not (enforced and entries == 0)


@pytest.mark.parametrize("how", ["delete", "switch off"])
def test_the_last_entry_of_an_enforced_practice_stays(app, signed_in, how):
    restrict(app, "Riverside Dental", "192.0.2.0/24", everyone=False, roles=["Front Desk"])
    ann = signed_in("ann")  # not restricted herself, so only the empty-allowlist rule can stop her
    eid = entry_id(app, "192.0.2.0/24")
    url = f"/security/allowlist/{eid}/" + ("delete" if how == "delete" else "active")
    response = ann.post(url, {"active": "0"}, htmx=True)
    assert response.status_code == 409
    assert "192.0.2.0/24 is the last active entry for Riverside Dental, where IP restrictions are on" in response.text
    with app.app_context():
        assert AllowlistEntry.get_by_id(eid).active is True


@pytest.mark.parametrize("url,method", [
    ("/security/requests/99999999999999999999/approve", "POST"),
    ("/security/allowlist/99999999999999999999/edit", "GET"),
    ("/security/grants/99999999999999999999/revoke", "POST"),
    ("/security/settings/99999999999999999999/enforced", "POST"),
    ("/security/settings?practice=99999999999999999999", "GET"),
])
def test_ids_too_big_for_the_database_are_simply_not_found(ann, url, method):
    response = ann.post(url) if method == "POST" else ann.get(url)
    assert response.status_code == 404


def test_a_practice_id_too_big_for_the_database_is_a_form_error(app, ann):
    response = ann.post("/security/allowlist", {"address": "192.0.2.1", "label": "x",
                                                "practice": "99999999999999999999"})
    assert response.status_code == 422 and "Choose one of your practices" in response.text




HUGE = "9" * 5000  # Python's int() refuses digit strings this long with an error of its own


@pytest.mark.parametrize("method,url,data,expected", [
    ("GET", f"/security/settings?practice={HUGE}", None, 404),
    ("POST", "/security/allowlist", {"address": "192.0.2.1", "label": "x", "practice": HUGE}, 422),
    ("GET", f"/security/audit?page={HUGE}", None, 400),
    ("GET", f"/security/audit?practice={HUGE}", None, 400),
    ("GET", f"/security/audit.csv?practice={HUGE}", None, 400),
    ("POST", "/security/settings/{riverside}/scope", {"applies_to": "selected", "roles": HUGE}, 422),
])
def test_endless_numbers_in_forms_and_query_strings_are_refused_not_crashed(app, ann, method, url, data, expected):
    url = url.replace("{riverside}", str(practice_id(app)))
    response = ann.post(url, data) if method == "POST" else ann.get(url)
    assert response.status_code == expected

"""Query budgets: what a page costs the database does not grow with the number of practices or rows."""
import pytest
from conftest import page_cost as cost, restrict

from pbnsec.domain.users import create_practice
from pbnsec.models import Membership, Practice, User


def join_practices(app, email, count):
    """Make the user a member of `count` more practices (with IP restrictions on, the expensive case)."""
    with app.app_context():
        user = User.get(User.email == email)
        for n in range(count):
            practice = create_practice(f"Extra Dental {n}")
            Membership.create(user=user, practice=practice)
    for n in range(count):
        restrict(app, f"Extra Dental {n}", "127.0.0.0/24")


@pytest.mark.parametrize("url", ["/", "/access-requests"])
def test_a_signed_in_page_costs_the_same_for_one_practice_or_six(app, signed_in, count_statements, url):
    restrict(app, "Riverside Dental", "127.0.0.0/24")
    fay = signed_in("fay")  # one practice
    one, one_log = cost(fay, count_statements, url)
    join_practices(app, "fay@example.com", 5)
    six, six_log = cost(fay, count_statements, url)
    assert six == one, f"one practice: {one_log}\nsix practices: {six_log}"
    assert one <= 8, one_log


def test_the_security_pages_cost_the_same_for_one_practice_or_six(app, signed_in, count_statements):
    restrict(app, "Riverside Dental", "127.0.0.0/24")
    ann = signed_in("ann")
    before = {url: cost(ann, count_statements, url) for url in ("/security/settings", "/security/requests")}
    join_practices(app, "ann@example.com", 5)
    for url, (count, log) in before.items():
        after, after_log = cost(ann, count_statements, url)
        assert after == count, f"{url}: one practice: {log}\nsix practices: {after_log}"


def test_switching_off_an_all_practices_entry_costs_the_same_for_two_practices_or_seven(app, signed_in,
                                                                                        count_statements):
    from pbnsec.models import AllowlistEntry

    def switch_off_and_on(v, entry_id):
        seen = count_statements()
        assert v.post(f"/security/allowlist/{entry_id}/active", {"active": "0"}, htmx=True).status_code == 200
        count, log = len(seen.all), "\n  ".join(sql[:150] for sql in seen.all)
        v.post(f"/security/allowlist/{entry_id}/active", {"active": "1"}, htmx=True)
        return count, f"{count} statements:\n  {log}"

    for name in ("Riverside Dental", "Lakeside Dental"):  # restrictions on, as in the practices joined below
        restrict(app, name, "127.0.0.0/24")
    owner = signed_in("owner")
    owner.post("/security/allowlist", {"address": "198.51.100.0/24", "label": "Head office", "practice": "all"})
    with app.app_context():
        entry_id = AllowlistEntry.get(AllowlistEntry.network == "198.51.100.0/24").id
    two, two_log = switch_off_and_on(owner, entry_id)
    join_practices(app, "owner@example.com", 5)
    seven, seven_log = switch_off_and_on(owner, entry_id)
    assert seven == two, f"two practices: {two_log}\nseven practices: {seven_log}"


def test_the_why_blocked_tester_costs_the_same_for_one_practice_or_six(app, signed_in, count_statements):
    restrict(app, "Riverside Dental", "127.0.0.0/24")
    ann = signed_in("ann")
    url = "/security/why?user=fay@example.com&ip=192.0.2.10"
    one, one_log = cost(ann, count_statements, url)
    join_practices(app, "fay@example.com", 5)
    with app.app_context():  # Ann administers them too (from here: they allow 127.0.0.0/24)
        admin = User.get(User.email == "ann@example.com")
        for practice in Practice.select().where(Practice.name.startswith("Extra Dental")):
            Membership.create(user=admin, practice=practice)
    six, six_log = cost(ann, count_statements, url)
    assert "Extra Dental 4" in ann.get(url).text  # all six explained
    assert six == one, f"one practice: {one_log}\nsix practices: {six_log}"


def test_the_header_count_costs_one_query_for_one_practice_or_six(app, signed_in, count_statements):
    restrict(app, "Riverside Dental", "127.0.0.0/24")
    ann, fay = signed_in("ann"), signed_in("fay")
    # My access requests: a page Ann and Fay see alike but for the badge (home is a dashboard for administrators).
    page, page_log = cost(ann, count_statements, "/access-requests")
    without, without_log = cost(fay, count_statements, "/access-requests")  # no badge for her
    assert page == without + 1, f"with the badge: {page_log}\nwithout: {without_log}"

    def fragment_cost():
        seen = count_statements()
        assert ann.get("/security/requests/header-badge", htmx=True).status_code == 200
        return len(seen.all), repr(seen)

    fragment, fragment_log = fragment_cost()
    join_practices(app, "ann@example.com", 5)
    assert cost(ann, count_statements, "/access-requests")[0] == page
    assert fragment_cost()[0] == fragment, fragment_log


def test_the_home_dashboard_costs_the_same_for_one_practice_or_six(app, signed_in, count_statements):
    from datetime import timedelta

    from pbnsec.models import AccessRequest, AuditEvent, TimeRule, utcnow

    def busy(names):
        """Pending requests, blocked sign-ins and Time Windows at each practice: every number has something to count."""
        with app.app_context():
            hal = User.get(User.email == "hal@example.com")
            for practice in Practice.select().where(Practice.name.in_(names)):
                AccessRequest.create(user=hal, practice=practice, ip="203.0.113.7")
                AuditEvent.create(action="login_blocked", at=utcnow() - timedelta(days=1), actor_label=hal.email,
                                  practice=practice, target=hal.email)
                TimeRule.create(practice=practice, enabled=False)

    restrict(app, "Riverside Dental", "127.0.0.0/24")
    busy(["Riverside Dental"])
    ann = signed_in("ann")
    one, one_log = cost(ann, count_statements, "/")
    assert 'class="pending"' in ann.get("/").text  # the dashboard's numbers are on the page
    join_practices(app, "ann@example.com", 5)
    busy([f"Extra Dental {n}" for n in range(5)])
    six, six_log = cost(ann, count_statements, "/")
    assert ann.get("/").text.count('class="pending"') == 6
    assert six == one, f"one practice: {one_log}\nsix practices: {six_log}"


def test_a_visit_after_a_write_compiles_the_same_for_one_practice_or_six(app, signed_in, count_statements):
    """The first visit after a write compiles the changed practices' policies at once; later ones read only the
    practices' generations, whatever the number of practices or entries."""
    from ipaddress import ip_network

    from pbnsec.models import AllowlistEntry

    def first_visit_after_a_write(v, network):
        with app.app_context():  # an All practices entry: every practice's policy must be compiled again
            AllowlistEntry.create(**AllowlistEntry.stored(ip_network(network), None, label="Head office"))
        seen = count_statements()
        assert v.get("/").status_code == 200
        return len(seen.all), repr(seen)

    restrict(app, "Riverside Dental", "127.0.0.0/24")
    fay = signed_in("fay")
    one, one_log = first_visit_after_a_write(fay, "192.0.2.0/24")
    join_practices(app, "fay@example.com", 5)
    six, six_log = first_visit_after_a_write(fay, "198.51.100.0/24")
    assert six == one, f"one practice: {one_log}\nsix practices: {six_log}"
    warm, warm_log = cost(fay, count_statements, "/")
    assert warm < one, f"compiled: {warm_log}\nbefore: {one_log}"
    assert "allowlist_entry" not in warm_log and "ip_restriction" not in warm_log, warm_log

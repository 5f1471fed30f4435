"""Security Management › IP Allowlist, as a full page and as htmx fragments."""
import re
from ipaddress import ip_network

import pytest
from conftest import practice_id

from pbnsec.models import AllowlistEntry, AuditEvent, Practice


def entries(app):
    with app.app_context():
        return sorted((e.network, e.label, e.practice.name if e.practice else "all", e.active)
                      for e in AllowlistEntry.select())




def add(v, address, label="Office Network", practice=None, htmx=False, confirm_local=None):
    data = {"address": address, "label": label}
    if confirm_local is not None:
        data["confirm_local"] = confirm_local
    if practice is not None:
        data["practice"] = practice
    return v.post("/security/allowlist", data, htmx=htmx)


def test_page_shows_current_ip_and_whether_it_is_covered(app, ann):
    page = ann.get("/security/allowlist")
    assert page.status_code == 200
    assert '<code id="my-ip">127.0.0.1</code>' in page.text
    assert "Not covered" in page.text
    add(ann, "127.0.0.0/8", "Loopback", confirm_local="127.0.0.0/8")
    page = ann.get("/security/allowlist")
    assert "✓ Covered" in page.text and "Loopback" in page.text


def test_add_entry_as_a_plain_form_redirects_to_the_page_with_a_message(app, ann):
    response = add(ann, "192.0.2.0/24", practice=str(practice_id(app, "Riverside Dental")))
    assert response.status_code == 303 and response.headers["Location"] == "/security/allowlist"
    page = ann.get("/security/allowlist")
    assert "Added 192.0.2.0/24 (Office Network) to the allowlist." in page.text
    assert '<td data-label="Added by">Ann Lee</td>' in page.text
    assert entries(app) == [("192.0.2.0/24", "Office Network", "Riverside Dental", True)]


def test_add_entry_through_htmx_returns_the_form_the_new_row_and_the_status_never_the_list(app, ann):
    add(ann, "198.51.100.0/24", "Branch")
    response = add(ann, "2001:DB8::1", "Remote Provider", htmx=True)
    assert response.status_code == 200
    assert "HX-Request" in response.headers["Vary"]
    body = response.text
    assert body.startswith('<form id="add-entry"') and "<html" not in body
    assert 'id="address" name="address" value=""' in body  # the form is fresh again
    assert '<tbody hx-swap-oob="afterbegin:#allowlist-rows"><tr id="entry-' in body  # the new row goes on top
    assert "<code>2001:db8::1/128</code>" in body
    assert "198.51.100.0/24" not in body and 'id="allowlist-table"' not in body  # the rest of the list stays put
    status = re.search(r'<section id="ip-status"[^>]*>', body).group(0)  # the status comes fresh, in its place
    assert 'hx-swap-oob="true"' in status
    assert "Added 2001:db8::1/128 (Remote Provider) to the allowlist." in body
    assert entries(app) == [("198.51.100.0/24", "Branch", "Riverside Dental", True),
                            ("2001:db8::1/128", "Remote Provider", "Riverside Dental", True)]
    with app.app_context():
        event = AuditEvent.get(AuditEvent.target == "2001:db8::1/128")
        assert (event.action, event.actor_label, event.actor_ip) == ("entry_added", "ann@example.com", "127.0.0.1")


@pytest.mark.parametrize("address,message", [
    ("010.0.0.1", "ambiguous"),
    ("0x7f.1", "ambiguous"),
    ("127.1", "ambiguous"),
    ("2130706433", "ambiguous"),
    ("10.0.0.5/24", "did you mean 10.0.0.0/24?"),
    ("fe80::1%eth0", "zone"),
    ("0.0.0.0/0", "every address"),
    ("::/0", "every address"),
    ("", "Enter an IP address"),
    ("   ", "Enter an IP address"),
    ("1" * 65, "too long"),
    ("not an address", ""),
])
@pytest.mark.parametrize("htmx", [False, True])
def test_rejected_address_gets_a_specific_message_keeps_the_input_and_stores_nothing(app, ann, address, message, htmx):
    response = add(ann, address, htmx=htmx)
    assert response.status_code == 422
    error = re.search(r'<p class="error" id="address-error" role="alert">([^<]+)</p>', response.text)
    assert error and message in error.group(1)
    assert f'name="address" value="{address}"' in response.text
    assert ("<html" in response.text) is (not htmx)
    assert entries(app) == []


def test_label_rules(app, ann):
    assert "Enter a label" in add(ann, "192.0.2.1", "  ").text
    too_long = add(ann, "192.0.2.1", "x" * 101)
    assert "at most 100 characters" in too_long.text and too_long.status_code == 422
    for hidden in ("Office\x00", "Office\x1b[31m", "Office\u202eeciffo", "Off\u200bice"):
        response = add(ann, "192.0.2.1", hidden)
        assert response.status_code == 422 and "control or invisible characters" in response.text
    assert entries(app) == []
    assert add(ann, "192.0.2.1", "x" * 100).status_code == 303
    assert entries(app)[0][1] == "x" * 100


def test_normalised_duplicate_in_the_same_scope_is_refused(app, ann):
    assert add(ann, "::ffff:192.0.2.1").status_code == 303
    response = add(ann, "192.0.2.1/32", htmx=True)
    assert response.status_code == 422
    assert "192.0.2.1/32 is already on the allowlist for Riverside Dental." in response.text
    assert len(entries(app)) == 1


def test_add_my_current_ip_in_one_click(app, ann):
    page = ann.get("/security/allowlist")
    assert 'id="add-my-ip">Add my current IP (127.0.0.1)' in page.text
    assert "Ann Lee – current IP" in page.text  # the label comes prefilled
    response = ann.post("/security/allowlist", {"address": "127.0.0.1", "label": "Ann Lee – current IP",
                                                "practice": str(practice_id(app, "Riverside Dental")),
                                                "confirm_local": "127.0.0.1"}, htmx=True)
    assert response.status_code == 200 and "✓ Covered" in response.text


def test_ipv6_admin_is_offered_the_64_network(app, signed_in):
    v = signed_in("ann", ip="::1")
    page = v.get("/security/allowlist")
    assert "Add my current IP (::1)" in page.text
    assert 'id="add-my-network">Add its /64 network (::/64)' in page.text
    assert "separate entries" in page.text


def test_status_fragment_refreshes_itself(app, ann):
    response = ann.get("/security/allowlist/status", htmx=True)
    assert response.text.startswith('<section id="ip-status"')
    assert 'hx-trigger="allowlist-changed from:body"' in response.text


def test_edit_label_inline_through_htmx(app, ann):
    add(ann, "192.0.2.0/24", "Old label")
    entry_id = latest_entry_id(app)
    form = ann.get(f"/security/allowlist/{entry_id}/edit", htmx=True)
    assert form.text.lstrip().startswith(f'<tr id="entry-{entry_id}"') and 'name="label" value="Old label"' in form.text
    saved = ann.post(f"/security/allowlist/{entry_id}/label", {"label": "Front office"}, htmx=True)
    assert saved.status_code == 200 and "<td data-label=\"Label\">Front office</td>" in saved.text
    bad = ann.post(f"/security/allowlist/{entry_id}/label", {"label": ""}, htmx=True)
    assert bad.status_code == 422 and "Enter a label" in bad.text
    cancel = ann.get(f"/security/allowlist/{entry_id}/row", htmx=True)
    assert "Front office" in cancel.text
    assert entries(app)[0][1] == "Front office"


def test_edit_label_without_javascript(app, ann):
    add(ann, "192.0.2.0/24", "Old label")
    entry_id = latest_entry_id(app)
    page = ann.get(f"/security/allowlist/{entry_id}/edit")
    assert "<html" in page.text and 'name="label" value="Old label"' in page.text
    saved = ann.post(f"/security/allowlist/{entry_id}/label", {"label": "Front office"})
    assert saved.status_code == 303
    assert entries(app)[0][1] == "Front office"


def test_switch_an_entry_off_and_on(app, ann):
    add(ann, "127.0.0.1", "Me", confirm_local="127.0.0.1")
    entry_id = latest_entry_id(app)
    off = ann.post(f"/security/allowlist/{entry_id}/active", {"active": "0"}, htmx=True)
    assert off.headers["HX-Trigger"] == "allowlist-changed" and 'class="inactive"' in off.text
    assert entries(app)[0][3] is False
    assert "Not covered" in ann.get("/security/allowlist").text
    ann.post(f"/security/allowlist/{entry_id}/active", {"active": "1"})
    assert entries(app)[0][3] is True


def test_delete_through_htmx_returns_nothing_to_swap(app, ann):
    add(ann, "192.0.2.0/24")
    entry_id = latest_entry_id(app)
    response = ann.post(f"/security/allowlist/{entry_id}/delete", htmx=True)
    assert response.status_code == 200 and response.text == ""
    assert response.headers["HX-Trigger"] == "allowlist-changed"
    assert entries(app) == []
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.action == "entry_deleted").count() == 1


def test_delete_without_javascript_asks_for_confirmation_first(app, ann):
    add(ann, "192.0.2.0/24")
    entry_id = latest_entry_id(app)
    confirm = ann.get(f"/security/allowlist/{entry_id}/delete")
    assert "Delete allowlist entry?" in confirm.text and len(entries(app)) == 1
    response = ann.post(f"/security/allowlist/{entry_id}/delete")
    assert response.status_code == 303
    assert "Deleted 192.0.2.0/24 (Office Network)." in ann.get("/security/allowlist").text
    assert entries(app) == []


def test_unknown_entry_is_404(ann):
    assert ann.post("/security/allowlist/999/delete").status_code == 404
    assert ann.get("/security/allowlist/999/edit").status_code == 404


def test_every_change_needs_the_csrf_token(app, ann):
    add(ann, "192.0.2.0/24")
    entry_id = latest_entry_id(app)
    for url, data in [("/security/allowlist", {"address": "192.0.2.9", "label": "x"}),
                      (f"/security/allowlist/{entry_id}/label", {"label": "changed"}),
                      (f"/security/allowlist/{entry_id}/active", {"active": "0"}),
                      (f"/security/allowlist/{entry_id}/delete", {})]:
        assert ann.post(url, data, csrf=False, htmx=True).status_code == 400
    assert entries(app) == [("192.0.2.0/24", "Office Network", "Riverside Dental", True)]


def test_htmx_header_token_is_accepted(app, ann):
    token = ann.token
    response = ann.post("/security/allowlist", {"address": "192.0.2.9", "label": "x"}, csrf=False,
                        htmx=True, headers={"X-CSRFToken": token})
    assert response.status_code == 200


# --- who may see and change what ---

SECURITY_PAGES = ["/security/allowlist", "/security/allowlist/status"]


@pytest.mark.parametrize("who", ["fay", "hal"])
def test_other_roles_get_403_on_every_security_page(app, signed_in, who):
    v = signed_in(who)
    for url in SECURITY_PAGES:
        assert v.get(url).status_code == 403
        assert v.get(url, htmx=True).status_code == 403
    assert add(v, "192.0.2.0/24").status_code == 403
    assert entries(app) == []
    assert "Security Management" not in v.get("/").text


def test_admins_never_see_or_change_another_practices_entries(app, signed_in):
    ann, bob = signed_in("ann"), signed_in("bob")
    add(ann, "192.0.2.0/24", "Riverside office")
    entry_id = latest_entry_id(app)
    assert "Riverside office" not in bob.get("/security/allowlist").text
    for method, url in [("GET", f"/security/allowlist/{entry_id}/edit"),
                        ("GET", f"/security/allowlist/{entry_id}/row"),
                        ("GET", f"/security/allowlist/{entry_id}/delete"),
                        ("POST", f"/security/allowlist/{entry_id}/label"),
                        ("POST", f"/security/allowlist/{entry_id}/active"),
                        ("POST", f"/security/allowlist/{entry_id}/delete")]:
        response = bob.post(url, {"label": "mine now", "active": "0"}) if method == "POST" else bob.get(url)
        assert response.status_code == 404, url
    # nor add to it by naming its id in the form
    response = add(bob, "198.51.100.0/24", practice=str(practice_id(app, "Riverside Dental")))
    assert response.status_code == 422 and "Choose one of your practices" in response.text
    assert entries(app) == [("192.0.2.0/24", "Riverside office", "Riverside Dental", True)]


def test_all_practices_entries_are_seen_everywhere_but_changed_only_by_admins_of_every_practice(app, signed_in):
    owner, ann = signed_in("owner"), signed_in("ann")
    assert add(owner, "198.51.100.0/24", "Head office", practice="all").status_code == 303
    entry_id = latest_entry_id(app)
    page = ann.get("/security/allowlist")
    assert "Head office" in page.text and "All practices" in page.text
    assert '<option value="all"' not in page.text  # Ann belongs to one practice only
    assert f"/security/allowlist/{entry_id}/delete" not in page.text  # no buttons that would only say 403
    assert "Changed by administrators of every practice" in page.text
    assert ann.post(f"/security/allowlist/{entry_id}/delete").status_code == 403
    response = add(ann, "203.0.113.0/24", practice="all")
    assert response.status_code == 422 and "Only a security administrator of every practice" in response.text
    assert entries(app) == [("198.51.100.0/24", "Head office", "all", True)]
    # an exact duplicate is refused per scope: the same network can still be added for one practice
    assert add(ann, "198.51.100.0/24", "Riverside copy").status_code == 303


def latest_entry_id(app):
    with app.app_context():
        return AllowlistEntry.select().order_by(AllowlistEntry.id.desc()).first().id


# --- allow-all by halves: broad entries need a confirmation, and no set of entries may cover everything ---

@pytest.mark.parametrize("address, count", [("0.0.0.0/1", "2,147,483,648"), ("2000::/3", "")])
@pytest.mark.parametrize("htmx", [False, True])
def test_a_broad_entry_needs_a_confirmation_naming_how_many_addresses(app, ann, address, count, htmx):
    refused = add(ann, address, htmx=htmx)
    assert refused.status_code == 422
    error = re.search(r'id="address-error" role="alert">([^<]+)</p>', refused.text).group(1)
    assert "addresses, more than a /" in error and count in error
    assert f'name="confirm_broad" value="{address}"' in refused.text
    assert entries(app) == []
    data = {"address": address, "label": "Wide", "confirm_broad": address, "confirm_local": address}
    assert ann.post("/security/allowlist", data, htmx=htmx).status_code == (200 if htmx else 303)
    assert [e[0] for e in entries(app)] == [address]
    with app.app_context():
        assert "broad network confirmed" in AuditEvent.get(AuditEvent.action == "entry_added").detail


def test_a_confirmation_counts_only_for_the_network_it_names(app, ann):
    data = {"address": "0.0.0.0/1", "label": "Wide", "confirm_broad": "128.0.0.0/1"}
    assert ann.post("/security/allowlist", data).status_code == 422
    assert entries(app) == []


@pytest.mark.parametrize("first, second", [("0.0.0.0/1", "128.0.0.0/1"), ("::/1", "8000::/1")])
def test_two_halves_that_together_allow_everything_are_refused(app, ann, first, second):
    assert ann.post("/security/allowlist", {"address": first, "label": "Half", "confirm_broad": first,
                                            "confirm_local": first}).status_code == 303
    refused = ann.post("/security/allowlist", {"address": second, "label": "Other half", "confirm_broad": second,
                                               "confirm_local": second})
    assert refused.status_code == 422 and "would, together with the entries already there, allow every IPv" in refused.text
    assert [e[0] for e in entries(app)] == [first]


def test_the_other_half_for_all_practices_is_refused_too(app, signed_in):
    owner = signed_in("owner")
    riverside = str(practice_id(app, "Riverside Dental"))
    owner.post("/security/allowlist", {"address": "0.0.0.0/1", "label": "Half", "confirm_broad": "0.0.0.0/1",
                                       "confirm_local": "0.0.0.0/1", "practice": riverside})
    refused = owner.post("/security/allowlist", {"address": "128.0.0.0/1", "label": "Half", "practice": "all",
                                                 "confirm_broad": "128.0.0.0/1"})
    assert refused.status_code == 422 and "every IPv4 address for Riverside Dental" in refused.text


def test_switching_on_the_entry_that_completes_everything_is_refused(app, ann):
    for half in ("0.0.0.0/1", "128.0.0.0/1"):
        ann.post("/security/allowlist", {"address": half, "label": "Half", "confirm_broad": half,
                                         "confirm_local": half})
        if half == "0.0.0.0/1":
            with app.app_context():
                first = AllowlistEntry.get().id
            assert ann.post(f"/security/allowlist/{first}/active", {"active": "0"}).status_code == 303
    assert ann.post(f"/security/allowlist/{first}/active", {"active": "1"}).status_code == 409
    with app.app_context():
        assert AllowlistEntry.get_by_id(first).active is False


def test_the_broad_limit_is_a_setting(tmp_path, seeded_database):
    import shutil

    from conftest import Visitor, make_app
    shutil.copyfile(seeded_database, tmp_path / "pbnsec.db")
    strict = make_app(tmp_path, BROADEST_PREFIX={4: 16, 6: 48})
    v = Visitor(strict)
    v.login("ann@example.com")
    assert v.post("/security/allowlist", {"address": "10.0.0.0/15", "label": "x"}).status_code == 422
    assert v.post("/security/allowlist", {"address": "10.0.0.0/16", "label": "x"}).status_code == 303


# --- loopback and proxy addresses: one click would let in everyone who comes through a local proxy ---

@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.0/8", "::1"])
def test_a_loopback_entry_is_refused_with_a_warning_until_confirmed(app, ann, address):
    page = ann.get("/security/allowlist").text
    assert 'id="local-warning"' in page and "this machine&#39;s own address" in page
    assert 'name="confirm_local" value="127.0.0.1" id="quick-confirm-local" required' in page
    refused = add(ann, address)
    assert refused.status_code == 422 and "If people reach pbnsec through a proxy on this machine" in refused.text
    assert 'name="confirm_local"' in refused.text and entries(app) == []
    assert add(ann, address, confirm_local=address).status_code == 303


def test_a_configured_proxy_address_needs_the_same_confirmation(tmp_path, seeded_database):
    import shutil
    from ipaddress import ip_network

    from conftest import Visitor, make_app
    shutil.copyfile(seeded_database, tmp_path / "pbnsec.db")
    app = make_app(tmp_path, TRUSTED_PROXIES=1, TRUSTED_PROXY_ADDRS=(ip_network("127.0.0.1/32"),
                                                                     ip_network("192.0.2.10/32")))
    v = Visitor(app, headers={"X-Forwarded-For": "192.0.2.50"})
    v.login("ann@example.com")
    refused = add(v, "192.0.2.0/24")
    assert refused.status_code == 422 and "includes the address of your proxy" in refused.text
    assert add(v, "192.0.2.0/25", confirm_local="192.0.2.0/25").status_code == 303
    assert add(v, "198.51.100.0/24").status_code == 303  # not a proxy: no confirmation needed


# --- fragments are self-contained: one row costs one row's queries, however long the allowlist ---

ROW_BUDGET = 6  # statements a row's view may run (what every page costs, sign-in and access, comes on top)


def row_costs(app, v, entry_id, count_statements) -> dict:
    """(statements by the view, the statements) of each row view for htmx on one entry, save and switch included."""
    costs = {}
    for endpoint, method, url, data in [
        ("security.entry_row", "GET", "row", None),
        ("security.edit_entry", "GET", "edit", None),
        ("security.relabel_entry", "POST", "label", {"label": "Renamed"}),
        ("security.set_entry_active", "POST", "active", {"active": "0"}),
    ]:
        seen = count_statements(endpoint)
        url = f"/security/allowlist/{entry_id}/{url}"
        response = v.post(url, data, htmx=True) if method == "POST" else v.get(url, htmx=True)
        assert response.status_code == 200 and response.text.startswith(f'<tr id="entry-{entry_id}"'), url
        costs[url] = (len(seen.of_view), repr(seen))  # now: the next count_statements() adds to this one too
    return costs


@pytest.mark.parametrize("who, practice", [("ann", None), ("owner", "all")])
def test_a_row_fragment_costs_one_rows_queries(app, signed_in, count_statements, who, practice):
    v = signed_in(who)
    assert add(v, "192.0.2.0/24", "Office", practice=practice).status_code == 303
    entry_id = latest_entry_id(app)
    few = row_costs(app, v, entry_id, count_statements)
    for url, (count, statements) in few.items():
        if practice == "all" and url.endswith("/active"):
            continue  # switching an All practices entry off checks every practice for a lockout: not one row's cost
        assert count <= ROW_BUDGET, f"{url}: {statements}"
    with app.app_context():  # a long allowlist does not make one row dearer
        riverside = Practice.get(Practice.name == "Riverside Dental")
        for n in range(30):
            net = ip_network(f"198.51.{n}.0/24")
            AllowlistEntry.create(**AllowlistEntry.stored(net, riverside, label=f"Branch {n}"))
        AllowlistEntry.update(active=True, label="Office").where(AllowlistEntry.id == entry_id).execute()
    many = row_costs(app, v, entry_id, count_statements)
    summary = {url: (few[url][0], many[url][0]) for url in few}
    assert all(a == b for a, b in summary.values()), f"statements by the view with 1 and 31 entries: {summary}"


def test_a_row_and_the_status_work_without_javascript_as_the_whole_page(app, ann):
    add(ann, "192.0.2.0/24", "Office")
    entry_id = latest_entry_id(app)
    for url in (f"/security/allowlist/{entry_id}/row", "/security/allowlist/status"):
        page = ann.get(url)
        assert page.status_code == 200 and "<html" in page.text
        assert f'<tr id="entry-{entry_id}"' in page.text and '<section id="ip-status"' in page.text


def test_small_entries_that_add_up_to_more_than_a_slash_8_need_the_same_confirmation(app, ann):
    assert add(ann, "10.0.0.0/8").status_code == 303  # one /8: at the limit
    refused = add(ann, "11.0.0.0/8")
    assert refused.status_code == 422
    assert "Together with the entries already there, the allowlist for Riverside Dental would cover 33,554,432" in (
        refused.text)
    assert 'name="confirm_broad" value="11.0.0.0/8"' in refused.text
    assert ann.post("/security/allowlist", {"address": "11.0.0.0/8", "label": "x", "confirm_broad": "11.0.0.0/8"}
                    ).status_code == 303


def test_entries_that_add_up_to_more_than_half_of_all_addresses_are_refused_even_when_confirmed(app, ann):
    def confirmed(address):
        return ann.post("/security/allowlist", {"address": address, "label": "x", "confirm_broad": address,
                                                "confirm_local": address})

    assert confirmed("128.0.0.0/2").status_code == 303
    assert confirmed("192.0.0.0/3").status_code == 303
    refused = confirmed("0.0.0.0/1")  # with the two above: every unicast address but not quite all
    assert refused.status_code == 422 and "more than half of all of them" in refused.text
    assert sorted(e[0] for e in entries(app)) == ["128.0.0.0/2", "192.0.0.0/3"]

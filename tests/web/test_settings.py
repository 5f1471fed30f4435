"""Security Management › General Settings, and the lockout prevention behind every control and the allowlist."""
import html
import re

import pytest
from conftest import entry_id, practice_id, user_id

from pbnsec.models import (
    AllowlistEntry,
    AuditEvent,
    Grant,
    IPRestriction,
    Practice,
    RestrictedRole,
    RestrictedUser,
    Role,
    User,
)

LOCKOUT = "This would block you: your IP {} is not on the allowlist."
LOCKOUT_ENTRY = "This would block you: without this entry, your IP {} is not on the allowlist."
LOCKOUT_GRANT = "This would block you: without this grant, your IP {} is not on the allowlist."


# --- helpers: what the database says, in words a test can compare ---



def role_id(app, name):
    with app.app_context():
        return Role.get(Role.name == name).id




def restrictions(app, name="Riverside Dental"):
    """(enforced, applies to, requests allowed, administrators' emails shown) as a practice's settings stand."""
    with app.app_context():
        practice = Practice.get(Practice.name == name)
        row = IPRestriction.get_or_none(IPRestriction.practice == practice)
        roles = sorted(r.role.name for r in RestrictedRole.select().where(RestrictedRole.practice == practice))
        users = sorted(u.user.email for u in RestrictedUser.select().where(RestrictedUser.practice == practice))
        if row is None:
            return {"enforced": False, "everyone": True, "roles": roles, "users": users, "requests": True,
                    "emails": False}
        return {"enforced": row.enforced, "everyone": row.everyone, "roles": roles, "users": users,
                "requests": row.requests_allowed, "emails": row.show_admin_emails}


DEFAULTS = {"enforced": False, "everyone": True, "roles": [], "users": [], "requests": True, "emails": False}


def events(app, action):
    with app.app_context():
        return [(e.actor_label, e.practice.name if e.practice_id else None, e.detail)
                for e in AuditEvent.select().where(AuditEvent.action == action).order_by(AuditEvent.id)]




def entry_state(app, network):
    """(exists, active) of an allowlist entry."""
    with app.app_context():
        entry = AllowlistEntry.get_or_none(AllowlistEntry.network == network)
        return (entry is not None, entry.active if entry else None)


def add_entry(app, v, address, label="Office Network", practice="Riverside Dental"):
    data = {"address": address, "label": label, "confirm_local": address,  # the tests' offices are loopback
            "practice": "all" if practice == "all" else str(practice_id(app, practice))}
    response = v.post("/security/allowlist", data)
    assert response.status_code == 303, response.text
    return response


def control_url(app, control, practice="Riverside Dental"):
    return f"/security/settings/{practice_id(app, practice)}/{control}"


def enforce(app, v, on=True, htmx=True, practice="Riverside Dental"):
    return v.post(control_url(app, "enforced", practice), {"enforced": "1"} if on else {}, htmx=htmx)


def set_scope(app, v, applies_to="selected", roles=(), users=(), htmx=True):
    data = {"applies_to": applies_to,
            "roles": [str(role_id(app, r)) for r in roles],
            "users": [str(user_id(app, u)) for u in users]}
    return v.post(control_url(app, "scope"), data, htmx=htmx)


def follow_rescue(v, refusal):
    """Press the refusal's "Add my current IP" button."""
    form = re.search(r'<form method="post" action="/security/allowlist">(.*?)</form>', refusal.text, re.S)
    assert form, "no Add my current IP button"
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form.group(1)))
    # Tick the "people really connect from here" box that a loopback IP needs (the tests' offices are loopback).
    fields.update(re.findall(r'<input type="checkbox" name="(confirm_local)" value="([^"]*)" required>', form.group(1)))
    fields.pop("csrf_token")
    return v.post("/security/allowlist", {name: html.unescape(value) for name, value in fields.items()})


def fragment_of(response):
    return response.text.strip()


# --- the page ---

def test_page_shows_the_three_controls_of_the_admins_practice(app, ann):
    page = ann.get("/security/settings")
    assert page.status_code == 200
    assert "<h1>General Settings <small>Riverside Dental</small></h1>" in page.text
    for control in ("enforced", "scope", "requests", "contacts"):
        assert f'<section id="setting-{control}"' in page.text
    assert 'id="settings-practice"' not in page.text  # one practice: nothing to pick
    assert 'id="enforced" ' in page.text and 'id="enforced" checked' not in page.text
    assert 'id="applies-everyone" checked' in page.text
    assert 'id="requests-allowed" checked' in page.text
    assert 'id="show-admin-emails" >' in page.text  # names only, until the practice says otherwise
    # the pickers offer every role and the practice's members only
    assert "Front Desk" in page.text and "Billing" in page.text
    for member in ("Ann Lee", "Fay Desk", "Hal Hygienist", "Olive Owner"):
        assert member in page.text
    assert "Bob Stone" not in page.text


def test_an_admin_of_several_practices_picks_which_one(app, signed_in):
    owner = signed_in("owner")
    page = owner.get("/security/settings")
    # The header's practice picker is the one control (issue 10: no second picker on the page).
    assert page.status_code == 200 and 'id="practice-switch"' in page.text and 'id="settings-practice"' not in page.text
    assert f'<option value="{practice_id(app, "Riverside Dental")}"' in page.text
    assert f'<option value="{practice_id(app, "Lakeside Dental")}"' in page.text
    riverside = owner.get(f"/security/settings?practice={practice_id(app, 'Riverside Dental')}")
    assert "<small>Riverside Dental</small>" in riverside.text
    assert "Ann Lee" in riverside.text and "Bob Stone" not in riverside.text
    assert control_url(app, "enforced", "Riverside Dental") in riverside.text
    lakeside = owner.get(f"/security/settings?practice={practice_id(app, 'Lakeside Dental')}")
    assert "<small>Lakeside Dental</small>" in lakeside.text
    assert "Bob Stone" in lakeside.text and "Ann Lee" not in lakeside.text


@pytest.mark.parametrize("practice", ["Riverside Dental", "999", "abc", "-1", "١"])
def test_a_practice_that_is_not_yours_is_not_found(app, signed_in, practice):
    bob = signed_in("bob")
    value = str(practice_id(app, practice)) if practice == "Riverside Dental" else practice
    assert bob.get(f"/security/settings?practice={value}").status_code == 404


@pytest.mark.parametrize("htmx", [False, True])
def test_another_practices_controls_are_not_found_and_change_nothing(app, signed_in, htmx):
    owner, bob = signed_in("owner"), signed_in("bob")
    add_entry(app, owner, "127.0.0.0/16", practice="Riverside Dental")
    for control, data in [("enforced", {"enforced": "1"}),
                          ("scope", {"applies_to": "selected", "roles": [str(role_id(app, "Front Desk"))]}),
                          ("requests", {})]:
        response = bob.post(control_url(app, control, "Riverside Dental"), data, htmx=htmx)
        assert response.status_code == 404, control
    assert restrictions(app) == DEFAULTS
    assert events(app, "settings_changed") == []


@pytest.mark.parametrize("who", ["fay", "hal"])
def test_other_roles_get_403(app, signed_in, who):
    v = signed_in(who)
    assert v.get("/security/settings").status_code == 403
    for control in ("enforced", "scope", "requests"):
        assert v.post(control_url(app, control), {"applies_to": "selected"}, htmx=True).status_code == 403
    assert restrictions(app) == DEFAULTS


def test_every_control_needs_the_csrf_token(app, ann):
    add_entry(app, ann, "127.0.0.1")
    for control, data in [("enforced", {"enforced": "1"}), ("scope", {"applies_to": "selected"}), ("requests", {}),
                          ("contacts", {"show_admin_emails": "1"})]:
        assert ann.post(control_url(app, control), data, csrf=False, htmx=True).status_code == 400
    assert restrictions(app) == DEFAULTS


# --- each control saves itself ---

CHANGES = {
    "enforced": ({"enforced": "1"}, {**DEFAULTS, "enforced": True}, "enforced: on"),
    "scope": ({"applies_to": "selected", "roles": ["Front Desk"], "users": ["hal@example.com"]},
              {**DEFAULTS, "everyone": False, "roles": ["Front Desk"], "users": ["hal@example.com"]},
              "applies to: Front Desk, hal@example.com"),
    "requests": ({}, {**DEFAULTS, "requests": False}, "access requests: not allowed"),
    "contacts": ({"show_admin_emails": "1"}, {**DEFAULTS, "emails": True},
                 "administrators' email addresses on the blocked page: shown"),
}


def form_for(app, data):
    data = dict(data)
    if "roles" in data:
        data["roles"] = [str(role_id(app, r)) for r in data["roles"]]
    if "users" in data:
        data["users"] = [str(user_id(app, u)) for u in data["users"]]
    return data


@pytest.mark.parametrize("control", list(CHANGES))
def test_each_control_saves_through_htmx_and_re_renders_only_itself(app, ann, control):
    add_entry(app, ann, "127.0.0.1", "Ann's desk")
    data, expected, detail = CHANGES[control]
    response = ann.post(control_url(app, control), form_for(app, data), htmx=True)
    assert response.status_code == 200
    assert "HX-Request" in response.headers["Vary"]
    body = fragment_of(response)
    assert body.startswith(f'<section id="setting-{control}"') and body.endswith("</section>")
    assert body.count("<section") == 1 and "<html" not in body
    assert '<span class="saved" role="status">✓ Saved</span>' in body
    assert restrictions(app) == expected
    assert events(app, "settings_changed") == [("ann@example.com", "Riverside Dental", detail)]


def test_the_re_rendered_control_shows_the_new_state(app, ann):
    add_entry(app, ann, "127.0.0.1", "Ann's desk")
    assert 'id="enforced" checked' in enforce(app, ann).text
    scope = set_scope(app, ann, roles=["Front Desk"])
    assert 'id="applies-selected" checked' in scope.text
    assert f'name="roles" value="{role_id(app, "Front Desk")}" checked' in scope.text
    assert f'name="roles" value="{role_id(app, "Admin")}" >' in scope.text
    nothing_ticked = set_scope(app, ann)
    assert "Nothing is saved until you tick one" in nothing_ticked.text
    assert "✓ Saved" not in nothing_ticked.text
    assert f'name="roles" value="{role_id(app, "Front Desk")}" checked' not in nothing_ticked.text
    page = ann.get("/security/settings")
    assert 'id="enforced" checked' in page.text
    assert f'name="roles" value="{role_id(app, "Front Desk")}" checked' in page.text  # still saved as before


@pytest.mark.parametrize("control", list(CHANGES))
def test_each_control_works_as_a_plain_form(app, ann, control):
    add_entry(app, ann, "127.0.0.1", "Ann's desk")
    data, expected, detail = CHANGES[control]
    response = ann.post(control_url(app, control), form_for(app, data))
    assert response.status_code == 303
    assert response.headers["Location"] == f"/security/settings?practice={practice_id(app)}"
    assert "Saved." in ann.get("/security/settings").text
    assert restrictions(app) == expected
    assert events(app, "settings_changed") == [("ann@example.com", "Riverside Dental", detail)]


def test_access_requests_can_be_switched_off_and_on_again(app, ann):
    off = ann.post(control_url(app, "requests"), {}, htmx=True)
    assert off.status_code == 200 and "✓ Saved" in off.text
    assert 'id="requests-allowed" >' in off.text  # unchecked
    assert restrictions(app)["requests"] is False
    on = ann.post(control_url(app, "requests"), {"requests_allowed": "1"}, htmx=True)
    assert on.status_code == 200 and 'id="requests-allowed" checked' in on.text
    assert restrictions(app) == DEFAULTS
    assert [e[2] for e in events(app, "settings_changed")] == ["access requests: not allowed",
                                                               "access requests: allowed"]


def test_switching_restrictions_off_again(app, ann):
    add_entry(app, ann, "127.0.0.1")
    assert enforce(app, ann).status_code == 200
    response = enforce(app, ann, on=False)
    assert response.status_code == 200 and "✓ Saved" in response.text
    assert restrictions(app)["enforced"] is False
    assert [e[2] for e in events(app, "settings_changed")] == ["enforced: on", "enforced: off"]


# --- switching restrictions on: refused when the allowlist is empty or the admin would be blocked ---

@pytest.mark.parametrize("allowlist", ["none", "switched off", "other practice only"])
@pytest.mark.parametrize("htmx", [False, True])
def test_switching_on_with_an_empty_allowlist_is_refused(app, signed_in, allowlist, htmx):
    owner = signed_in("owner")
    if allowlist == "switched off":
        add_entry(app, owner, "127.0.0.1")
        owner.post(f"/security/allowlist/{entry_id(app, '127.0.0.1/32')}/active", {"active": "0"})
    elif allowlist == "other practice only":
        add_entry(app, owner, "127.0.0.1", practice="Lakeside Dental")
    response = enforce(app, owner, htmx=htmx)
    assert response.status_code == 409
    assert "The allowlist is empty: add at least one entry before switching IP restrictions on." in response.text
    assert "Go to the IP Allowlist" in response.text
    assert ("<html" in response.text) is (not htmx)
    assert restrictions(app) == DEFAULTS
    assert events(app, "settings_changed") == []


@pytest.mark.parametrize("htmx", [False, True])
def test_switching_on_when_it_would_block_you_is_refused_and_add_my_ip_fixes_it(app, ann, htmx):
    add_entry(app, ann, "192.0.2.0/24", "Branch office")
    response = enforce(app, ann, htmx=htmx)
    assert response.status_code == 409
    assert LOCKOUT.format("127.0.0.1") in response.text
    assert 'class="add-my-ip-rescue">Add my current IP (127.0.0.1)</button>' in response.text
    assert "✓ Saved" not in response.text
    if htmx:
        assert fragment_of(response).startswith('<section id="setting-enforced"')
    else:
        assert "<html" in response.text
    assert restrictions(app) == DEFAULTS
    assert events(app, "settings_changed") == []

    # the button puts the admin's IP on the allowlist; then switching on succeeds
    assert follow_rescue(ann, response).status_code == 303
    assert entry_state(app, "127.0.0.1/32") == (True, True)
    response = enforce(app, ann, htmx=htmx)
    assert response.status_code == (200 if htmx else 303)
    assert restrictions(app)["enforced"] is True
    assert ann.get("/security/settings").status_code == 200  # still in


def test_the_rescue_button_adds_the_ip_to_the_practice_being_changed(app, signed_in):
    owner = signed_in("owner")  # working in Lakeside Dental, changing Riverside Dental
    add_entry(app, owner, "192.0.2.0/24", practice="Riverside Dental")
    response = enforce(app, owner, practice="Riverside Dental")
    assert response.status_code == 409 and LOCKOUT.format("127.0.0.1") in response.text
    assert f'name="practice" value="{practice_id(app, "Riverside Dental")}"' in response.text
    assert restrictions(app, "Riverside Dental")["enforced"] is False
    assert follow_rescue(owner, response).status_code == 303
    assert enforce(app, owner, practice="Riverside Dental").status_code == 200


# --- narrowing the scope ---

def test_narrowing_the_scope_to_include_yourself_from_an_uncovered_ip_is_refused(app, signed_in):
    ann = signed_in("ann", ip="127.0.0.2")
    add_entry(app, ann, "127.0.0.1", "Front desk PC")
    assert set_scope(app, ann, roles=["Front Desk"]).status_code == 200
    assert enforce(app, ann).status_code == 200  # applies to Front Desk only, so Ann is not blocked
    before = restrictions(app)
    assert before == {**DEFAULTS, "enforced": True, "everyone": False, "roles": ["Front Desk"]}

    for change in [dict(roles=["Admin"]), dict(users=["ann@example.com"]), dict(applies_to="everyone"),
                   dict(roles=["Front Desk", "Admin"])]:
        response = set_scope(app, ann, **change)
        assert response.status_code == 409, change
        assert LOCKOUT.format("127.0.0.2") in response.text
        assert "Add my current IP (127.0.0.2)" in response.text
        assert fragment_of(response).startswith('<section id="setting-scope"')
        assert restrictions(app) == before

    response = set_scope(app, ann, roles=["Front Desk"])
    assert response.status_code == 200 and "✓ Saved" in response.text
    assert restrictions(app)["roles"] == ["Front Desk"]
    assert ann.get("/security/settings").status_code == 200  # Ann is still in


def test_the_narrowed_scope_blocks_the_selected_role_only(app, signed_in, visitor):
    ann = signed_in("ann", ip="127.0.0.2")
    add_entry(app, ann, "127.0.0.1", "Front desk PC")
    set_scope(app, ann, roles=["Front Desk"])
    assert enforce(app, ann).status_code == 200
    fay = visitor(ip="127.0.0.2")
    response = fay.login("fay@example.com")
    assert response.status_code == 303 and response.headers["Location"] == "/blocked"
    hal = visitor(ip="127.0.0.2")
    assert hal.login("hal@example.com").headers["Location"] == "/"


def test_narrowing_the_scope_as_a_plain_form_shows_the_refusal_on_the_page(app, signed_in):
    ann = signed_in("ann", ip="127.0.0.2")
    add_entry(app, ann, "127.0.0.1", "Front desk PC")
    set_scope(app, ann, roles=["Front Desk"])
    enforce(app, ann)
    response = set_scope(app, ann, roles=["Admin"], htmx=False)
    assert response.status_code == 409 and "<html" in response.text
    assert response.text.count(LOCKOUT.format("127.0.0.2")) == 1
    assert restrictions(app)["roles"] == ["Front Desk"]


@pytest.mark.parametrize("form,message", [
    ({"applies_to": "selected", "roles": ["999"]}, "Choose only the roles and members listed."),
    ({"applies_to": "selected", "roles": ["abc"]}, "Choose only the roles and members listed."),
    ({"applies_to": "selected", "users": ["bob"]}, "Choose only the roles and members listed."),
    ({"applies_to": "selected", "users": ["999"]}, "Choose only the roles and members listed."),
    ({"applies_to": "nobody"}, "Choose everyone or selected roles and users."),
    ({"applies_to": ""}, "Choose everyone or selected roles and users."),
])
@pytest.mark.parametrize("htmx", [False, True])
def test_the_scope_picker_refuses_what_it_did_not_offer(app, ann, form, message, htmx):
    form = dict(form)
    if form.get("users") == ["bob"]:
        form["users"] = [str(user_id(app, "bob@example.com"))]  # a user, but not a member of Riverside
    response = ann.post(control_url(app, "scope"), form, htmx=htmx)
    assert 400 <= response.status_code < 500
    assert message in response.text
    assert "✓ Saved" not in response.text
    assert restrictions(app) == DEFAULTS
    assert events(app, "settings_changed") == []


# --- lockout prevention on the allowlist ---

@pytest.fixture
def enforced_for_ann(app, ann):
    """Riverside enforced; Ann (127.0.0.1) covered only by 127.0.0.0/16; another entry covers someone else."""
    add_entry(app, ann, "127.0.0.0/16", "Loopback")
    add_entry(app, ann, "192.0.2.0/24", "Branch office")
    assert enforce(app, ann).status_code == 200
    return ann


def remove(app, v, network, how, htmx):
    url = f"/security/allowlist/{entry_id(app, network)}/" + ("delete" if how == "delete" else "active")
    return v.post(url, {} if how == "delete" else {"active": "0"}, htmx=htmx)


@pytest.mark.parametrize("how", ["delete", "switch off"])
@pytest.mark.parametrize("htmx", [False, True])
def test_removing_the_entry_you_depend_on_is_refused(app, enforced_for_ann, how, htmx):
    ann = enforced_for_ann
    response = remove(app, ann, "127.0.0.0/16", how, htmx)
    assert response.status_code == 409
    assert LOCKOUT_ENTRY.format("127.0.0.1") in response.text
    assert "Add my current IP (127.0.0.1)" in response.text
    if htmx:
        assert fragment_of(response).startswith(f'<tr id="entry-{entry_id(app, "127.0.0.0/16")}"')
        assert "<html" not in response.text
    else:
        assert "<html" in response.text and "<code>127.0.0.0/16</code>" in response.text
    assert entry_state(app, "127.0.0.0/16") == (True, True)
    assert events(app, "entry_deleted") == [] and events(app, "entry_disabled") == []
    assert ann.get("/security/allowlist").status_code == 200


@pytest.mark.parametrize("how", ["delete", "switch off"])
def test_removing_an_entry_you_do_not_depend_on_is_fine(app, enforced_for_ann, how):
    response = remove(app, enforced_for_ann, "192.0.2.0/24", how, htmx=True)
    assert response.status_code == 200
    assert entry_state(app, "192.0.2.0/24") == ((False, None) if how == "delete" else (True, False))


def test_once_another_entry_covers_you_the_old_one_can_go(app, enforced_for_ann):
    ann = enforced_for_ann
    refusal = remove(app, ann, "127.0.0.0/16", "delete", htmx=True)
    assert follow_rescue(ann, refusal).status_code == 303  # the refusal's own button
    assert entry_state(app, "127.0.0.1/32") == (True, True)
    response = remove(app, ann, "127.0.0.0/16", "delete", htmx=True)
    assert response.status_code == 200 and response.text == ""
    assert response.headers["HX-Trigger"] == "allowlist-changed"
    assert entry_state(app, "127.0.0.0/16") == (False, None)
    assert ann.get("/security/allowlist").status_code == 200


def test_without_enforcement_any_entry_can_go(app, ann):
    add_entry(app, ann, "127.0.0.0/16", "Loopback")
    assert remove(app, ann, "127.0.0.0/16", "delete", htmx=True).status_code == 200
    assert entry_state(app, "127.0.0.0/16") == (False, None)


def test_an_all_practices_entry_you_depend_on_in_any_practice_is_kept(app, signed_in):
    owner = signed_in("owner")  # working in Lakeside (unrestricted); Riverside depends on the entry
    add_entry(app, owner, "127.0.0.0/16", "Head office", practice="all")
    assert enforce(app, owner, practice="Riverside Dental").status_code == 200
    response = remove(app, owner, "127.0.0.0/16", "delete", htmx=True)
    assert response.status_code == 409 and LOCKOUT_ENTRY.format("127.0.0.1") in response.text
    assert entry_state(app, "127.0.0.0/16") == (True, True)


# --- lockout prevention on user grants ---

@pytest.fixture
def granted(app, signed_in):
    """Ann works from 127.0.0.2 on a grant of her own; Fay has a grant for 127.0.0.3; Riverside is enforced."""
    ann = signed_in("ann", ip="127.0.0.2")
    add_entry(app, ann, "192.0.2.0/24", "Branch office")
    with app.app_context():
        riverside = Practice.get(Practice.name == "Riverside Dental")
        for email, ip in [("ann@example.com", "127.0.0.2"), ("fay@example.com", "127.0.0.3")]:
            Grant.create(user=User.get(User.email == email), practice=riverside, ip=ip)
    assert enforce(app, ann).status_code == 200  # her grant keeps her in
    return ann


def grant_id(app, email):
    with app.app_context():
        return Grant.select().join(User).where(User.email == email).get().id


def grants(app):
    with app.app_context():
        return sorted((g.user.email, g.ip) for g in Grant.select())


@pytest.mark.parametrize("htmx", [False, True])
def test_revoking_your_own_only_way_in_is_refused(app, granted, htmx):
    ann = granted
    gid = grant_id(app, "ann@example.com")
    response = ann.post(f"/security/grants/{gid}/revoke", htmx=htmx)
    assert response.status_code == 409
    assert LOCKOUT_GRANT.format("127.0.0.2") in response.text
    assert "Add my current IP (127.0.0.2)" in response.text
    if htmx:
        assert fragment_of(response).startswith(f'<tr id="grant-{gid}"')
    else:
        assert "<html" in response.text
    assert grants(app) == [("ann@example.com", "127.0.0.2"), ("fay@example.com", "127.0.0.3")]
    assert events(app, "grant_revoked") == []


def test_revoking_someone_elses_grant_works(app, granted):
    ann = granted
    response = ann.post(f"/security/grants/{grant_id(app, 'fay@example.com')}/revoke", htmx=True)
    assert response.status_code == 200 and response.text == ""
    assert response.headers["HX-Trigger"] == "allowlist-changed"
    assert grants(app) == [("ann@example.com", "127.0.0.2")]
    assert events(app, "grant_revoked") == [("ann@example.com", "Riverside Dental", "")]
    with app.app_context():
        assert AuditEvent.get(AuditEvent.action == "grant_revoked").target == "fay@example.com from 127.0.0.3"


def test_another_practices_grant_cannot_be_revoked(app, granted, signed_in):
    bob = signed_in("bob")
    assert bob.post(f"/security/grants/{grant_id(app, 'fay@example.com')}/revoke", htmx=True).status_code == 404
    assert len(grants(app)) == 2


# --- found while testing (fixed) ---

def test_saving_another_practice_without_javascript_returns_to_that_practice(app, signed_in):
    owner = signed_in("owner")  # working in Lakeside Dental
    riverside = practice_id(app, "Riverside Dental")
    response = owner.post(control_url(app, "requests", "Riverside Dental"), {})
    assert response.status_code == 303
    assert restrictions(app, "Riverside Dental")["requests"] is False
    page = owner.get(response.headers["Location"])
    assert "<small>Riverside Dental</small>" in page.text, response.headers["Location"]
    assert f"practice={riverside}" in response.headers["Location"]


@pytest.mark.parametrize("how", ["delete", "switch off"])
def test_the_way_out_offered_when_removing_your_own_ip_entry_works(app, ann, how):
    add_entry(app, ann, "127.0.0.1", "Ann's desk")
    assert enforce(app, ann).status_code == 200
    refusal = remove(app, ann, "127.0.0.1/32", how, htmx=True)
    assert refusal.status_code == 409
    assert LOCKOUT_ENTRY.format("127.0.0.1") in refusal.text
    # adding the same IP again could not help, so no such button: the way out is another covering entry
    assert "add-my-ip-rescue" not in refusal.text
    assert "Add another entry that covers your IP first" in refusal.text
    add_entry(app, ann, "127.0.0.0/24", "Office LAN")
    assert remove(app, ann, "127.0.0.1/32", how, htmx=True).status_code == 200



def test_the_way_out_offered_for_an_all_practices_entry_lets_you_delete_it(app, signed_in):
    owner = signed_in("owner")
    add_entry(app, owner, "127.0.0.0/16", "Head office", practice="all")
    assert enforce(app, owner, practice="Riverside Dental").status_code == 200
    refusal = remove(app, owner, "127.0.0.0/16", "delete", htmx=True)
    assert refusal.status_code == 409
    assert follow_rescue(owner, refusal).status_code == 303
    response = remove(app, owner, "127.0.0.0/16", "delete", htmx=True)
    assert response.status_code == 200, re.findall(r"<p>([^<]+)</p>", response.text)

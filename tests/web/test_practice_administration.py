"""A practice's data is read or changed only from where that practice allows the administrator in.

Olive Owner administers Lakeside (no restrictions) and Riverside (restrictions on, allowlist 127.0.0.210).
From 127.0.0.9 she works in Lakeside; Riverside's settings, allowlist, requests, grants and audit are out of reach.
"""
import pytest
from conftest import restrict

from pbnsec.models import (
    AccessRequest,
    AllowlistEntry,
    AuditEvent,
    Grant,
    IPRestriction,
    Practice,
    ProtectedApp,
    ProtectedAppPractice,
    TimeRule,
    TimeWindow,
    User,
)

OFFICE, ELSEWHERE = "127.0.0.210", "127.0.0.9"
SECRETS = ("Riverside secret label", "Riverside secret note", "Riverside secret audit", "Riverside secret app")


@pytest.fixture
def riverside(app):
    """Riverside's data, each piece carrying a marker that must never reach a page served from elsewhere."""
    restrict(app, "Riverside Dental", OFFICE)
    with app.app_context():
        practice = Practice.get(Practice.name == "Riverside Dental")
        hal = User.get(User.email == "hal@example.com")
        entry = AllowlistEntry.get(AllowlistEntry.practice == practice)
        AllowlistEntry.update(label=SECRETS[0]).where(AllowlistEntry.id == entry.id).execute()
        request = AccessRequest.create(user=hal, practice=practice, ip="127.0.0.77", note=SECRETS[1])
        grant = Grant.create(user=hal, practice=practice, ip="127.0.0.78")
        AuditEvent.create(action="settings_changed", practice=practice, actor_label="x", detail=SECRETS[2])
        window = TimeWindow.create(practice=practice, day=1, start_minute=420, end_minute=1080)
        protected = ProtectedApp.create(name=SECRETS[3], host="secret.riverside.example")
        ProtectedAppPractice.create(app=protected, practice=practice)
        return {"practice_id": practice.id, "entry_id": entry.id, "request_id": request.id, "grant_id": grant.id,
                "window_id": window.id, "app_id": protected.id}


def snapshot(app, practice_id):
    with app.app_context():
        return (
            [(r.enforced, r.everyone, r.requests_allowed) for r in IPRestriction.select().where(IPRestriction.practice == practice_id)],
            sorted((e.network, e.label, e.active, e.scope) for e in AllowlistEntry.select()),
            sorted((r.id, r.status) for r in AccessRequest.select()),
            sorted((g.user_id, g.ip) for g in Grant.select()),
            sorted((w.practice_id, w.day, w.start_minute, w.end_minute) for w in TimeWindow.select()),
            sorted((r.practice_id, r.enabled, r.everyone) for r in TimeRule.select()),
            sorted((a.name, a.host, a.proxy, a.all_roles) for a in ProtectedApp.select()),
            sorted((link.app_id, link.practice_id) for link in ProtectedAppPractice.select()),
        )


def test_an_administrator_elsewhere_works_only_in_the_practice_that_lets_them_in(app, signed_in, riverside):
    olive = signed_in("owner", ip=ELSEWHERE)
    assert "<h1>Lakeside Dental</h1>" in olive.get("/").text
    rid = riverside["practice_id"]
    before = snapshot(app, rid)

    settings = olive.get(f"/security/settings?practice={rid}")
    assert settings.status_code == 403 and "not approved for Riverside Dental" in settings.text
    assert olive.post(f"/security/settings/{rid}/enforced", {"enforced": "0"}).status_code == 403
    assert olive.post(f"/security/settings/{rid}/requests", {"requests_allowed": "0"}).status_code == 403
    added = olive.post("/security/allowlist", {"address": ELSEWHERE, "label": "mine", "practice": str(rid)})
    assert added.status_code == 422 and "Choose one of your practices" in added.text
    assert olive.post("/security/allowlist", {"address": ELSEWHERE, "label": "mine", "practice": "all"}).status_code == 422
    assert olive.post(f"/security/requests/{riverside['request_id']}/approve").status_code == 404
    assert olive.post(f"/security/grants/{riverside['grant_id']}/revoke").status_code == 403
    assert olive.post(f"/security/allowlist/{riverside['entry_id']}/active", {"active": "0"}).status_code == 403
    assert olive.post(f"/security/allowlist/{riverside['entry_id']}/delete").status_code == 403
    assert olive.get(f"/security/audit?practice={rid}").status_code == 400
    for page in ("/security/requests", "/security/audit", "/security/audit.csv", "/security/settings",
                 "/security/allowlist", "/security/requests/badge", "/security/apps",
                 f"/security/why?user=hal@example.com&ip={OFFICE}", f"/security/why?user=hal@example.com&ip={OFFICE}&practice={rid}"):
        body = olive.get(page).text
        assert not any(secret in body for secret in SECRETS), page
    assert 'id="settings-practice"' not in olive.get("/security/settings").text  # one practice: no picker
    assert snapshot(app, rid) == before


def test_from_the_practices_own_office_the_same_administrator_manages_it(app, signed_in, riverside):
    olive = signed_in("owner", ip=OFFICE)
    rid = riverside["practice_id"]
    assert olive.get(f"/security/settings?practice={rid}").status_code == 200
    assert SECRETS[1] in olive.get("/security/requests").text
    assert SECRETS[2] in olive.get(f"/security/audit?practice={rid}").text
    assert olive.post(f"/security/requests/{riverside['request_id']}/approve").status_code == 303
    added = olive.post("/security/allowlist", {"address": "127.0.0.211", "label": "desk", "practice": str(rid),
                                               "confirm_local": "127.0.0.211"})
    assert added.status_code == 303


def _url(app, rule, ids):
    from flask import url_for
    with app.test_request_context():
        return url_for(rule.endpoint, **{arg: ids[arg] for arg in rule.arguments})


def test_sweep_no_security_route_reads_or_changes_a_practice_that_blocks_this_ip(app, signed_in, riverside):
    """Every security route and method, as page and fragment, aimed at Riverside's ids, from where it blocks."""
    olive = signed_in("owner", ip=ELSEWHERE)
    rid = riverside["practice_id"]
    before = snapshot(app, rid)
    form = {"practice": str(rid), "address": ELSEWHERE, "label": "sweep", "enforced": "0", "active": "0",
            "requests_allowed": "0", "applies_to": "selected", "roles": "1", "enabled": "1", "days": "1",
            "start": "01:00", "end": "02:00"}
    tried = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/security"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for htmx in (False, True):
                url = _url(app, rule, riverside) + f"?practice={rid}"
                response = olive.request(method, url, htmx=htmx, data=dict(form, csrf_token=olive.token),
                                         headers={"X-CSRFToken": olive.token})
                body = response.get_data(as_text=True)
                where = f"{method} {url} htmx={htmx} -> {response.status_code}"
                assert response.status_code != 500, where
                assert not any(secret in body for secret in SECRETS), where
                assert snapshot(app, rid) == before, where
                tried += 1
    assert tried >= 30


def test_the_403_an_htmx_request_gets_is_text_not_markup(app, signed_in, riverside):
    with app.app_context():
        Practice.update(name="Riverside <b>Dental</b>").where(Practice.id == riverside["practice_id"]).execute()
    olive = signed_in("owner", ip=ELSEWHERE)
    response = olive.post(f"/security/settings/{riverside['practice_id']}/enforced", {"enforced": "0"}, htmx=True)
    assert response.status_code == 403 and "Riverside &lt;b&gt;Dental&lt;/b&gt;" in response.text
    assert "<b>" not in response.text

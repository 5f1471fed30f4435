"""Security Management › IP Allowlist › Connection check: what the app sees of a request, and what to fix."""
import html
import re

import pytest
from conftest import PASSWORD, Visitor, make_app


def text_of(page, element_id):
    found = re.search(f'id="{element_id}"[^>]*>([^<]*)<', page)
    assert found, f"no #{element_id} on the page"
    return html.unescape(found.group(1))


@pytest.fixture
def behind_one_proxy(tmp_path, seeded_database):
    import shutil
    shutil.copyfile(seeded_database, tmp_path / "pbnsec.db")
    return make_app(tmp_path, TRUSTED_PROXIES=1)


def sign_in(app, remote, headers):
    v = Visitor(app, ip=remote, headers=headers)
    assert v.login("ann@example.com", PASSWORD).status_code == 303
    return v


def test_a_good_proxy_setup_shows_the_walk_and_no_hint(behind_one_proxy):
    v = sign_in(behind_one_proxy, "127.0.0.1", {"X-Forwarded-For": "198.51.100.66, 203.0.113.7"})
    page = v.get("/security/allowlist").text
    assert text_of(page, "conn-peer") == "127.0.0.1"
    assert text_of(page, "conn-xff") == "198.51.100.66, 203.0.113.7"
    assert text_of(page, "conn-count") == "1"
    assert text_of(page, "conn-addrs") == "127.0.0.0/8, ::1/128"
    assert text_of(page, "conn-client") == "203.0.113.7"
    assert "Looks right" in page and 'id="conn-hint"' not in page
    assert '<code id="my-ip">203.0.113.7</code>' in page


def test_a_proxy_with_no_proxy_setting_is_pointed_out(app):
    v = sign_in(app, "127.0.0.1", {"X-Forwarded-For": "203.0.113.7"})
    page = v.get("/security/allowlist").text
    assert text_of(page, "conn-client") == "127.0.0.1"
    assert "Set PBNSEC_TRUSTED_PROXIES=1" in text_of(page, "conn-hint")
    assert "<details id=\"connection-check\" class=\"card connection\" open>" in page


def test_a_proxy_that_sends_no_header_leaves_the_ip_unknown_and_says_why(behind_one_proxy):
    v = sign_in(behind_one_proxy, "127.0.0.1", {})
    page = v.get("/security/allowlist").text
    assert text_of(page, "conn-client") == "unknown"
    assert text_of(page, "conn-xff") == "(not sent)"
    assert "without an X-Forwarded-For header" in text_of(page, "conn-hint")
    assert "We cannot tell your IP address" in page


def test_what_the_client_sent_is_shown_escaped(behind_one_proxy):
    v = sign_in(behind_one_proxy, "127.0.0.1", {"X-Forwarded-For": "<b>x</b>"})
    page = v.get("/security/allowlist").text
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_hsts_only_when_cookies_are_secure(tmp_path, seeded_database, app):
    assert "Strict-Transport-Security" not in app.test_client().get("/login").headers
    import shutil
    secure_dir = tmp_path / "secure"
    secure_dir.mkdir()
    shutil.copyfile(seeded_database, secure_dir / "pbnsec.db")
    secure = make_app(secure_dir, SESSION_COOKIE_SECURE=True)
    assert secure.test_client().get("/login").headers["Strict-Transport-Security"] == "max-age=31536000"

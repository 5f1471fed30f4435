"""Operators' log: one access line per request, one key=value line per security event that fail2ban can match."""
import logging
import re
from pathlib import Path

import pytest
from conftest import PASSWORD, Visitor, make_app, restrict

from pbnsec.logs import LogFormatter, security_event

TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
BLOCKED_IP = "127.0.0.2"


def access(lines):
    return [line for line in lines if " pbnsec.access " in line]


def security(lines):
    return [line.split(" pbnsec.security ", 1)[1] for line in lines if " pbnsec.security " in line]


# --- the access line ---

def test_each_request_writes_one_access_line_with_an_iso_utc_time(visitor, log_lines):
    visitor(ip="127.0.0.5").get("/login?next=/security/audit")
    [line] = access(log_lines)
    assert re.fullmatch(TIMESTAMP + r' INFO pbnsec\.access method=GET path="/login\?next=/security/audit" '
                                    r'status=200 bytes=\d+ ms=\d+\.\d ip=127\.0\.0\.5', line), line


def test_the_access_line_names_the_signed_in_user(app, signed_in, log_lines):
    ann = signed_in("ann")
    log_lines.clear()
    ann.get("/security/allowlist")
    [line] = access(log_lines)
    assert re.search(r'path="/security/allowlist" status=200 bytes=\d+ ms=\S+ user_id=\d+ '
                     r'email="ann@example\.com" ip=127\.0\.0\.1$', line), line


def test_a_sign_in_form_is_never_logged(visitor, log_lines):
    visitor().login("ann@example.com")
    assert log_lines and not any(PASSWORD in line or "csrf" in line.lower() for line in log_lines)
    assert any('method=POST path="/login" status=303' in line for line in access(log_lines))


def test_a_request_refused_before_the_enforcement_hook_still_logs_its_ip(visitor, log_lines):
    visitor(ip="127.0.0.5").post("/login", {"email": "ann@example.com", "password": "guess"}, csrf=False)
    [line] = access(log_lines)
    assert re.search(r'method=POST path="/login" status=400 bytes=\d+ ms=\S+ ip=127\.0\.0\.5$', line), line


def test_the_client_ip_is_unknown_when_it_cannot_be_worked_out(tmp_path, seeded_database, log_lines):
    import shutil
    shutil.copyfile(seeded_database, tmp_path / "pbnsec.db")
    app = make_app(tmp_path, TRUSTED_PROXIES=1)
    Visitor(app, ip="127.0.0.1").get("/healthz")  # behind a proxy, but no X-Forwarded-For
    [line] = access(log_lines)
    assert re.search(r'path="/healthz" status=200 bytes=2 ms=\S+ ip=unknown$', line), line


def test_a_quieter_log_level_drops_access_lines_but_keeps_security_events(tmp_path, seeded_database, log_lines):
    import shutil
    shutil.copyfile(seeded_database, tmp_path / "pbnsec.db")
    app = make_app(tmp_path, LOG_LEVEL="WARNING")
    Visitor(app).login("ann@example.com", "not the password")
    assert access(log_lines) == []
    assert security(log_lines) == ['login_failed email="ann@example.com" ip=127.0.0.1']


def test_the_app_logs_to_stderr_once_however_often_it_is_built(app, tmp_path):
    make_app(tmp_path)
    logger = logging.getLogger("pbnsec")
    ours = [h for h in logger.handlers if isinstance(h.formatter, LogFormatter)]
    assert len(ours) == 1 and logger.propagate is False  # waitress's root handler would print lines twice
    assert logger.level == logging.INFO


# --- security events ---

def test_a_wrong_password_is_one_line_however_many_practices(visitor, log_lines):
    visitor(ip="127.0.0.9").login("hal@example.com", "not the password")  # Hal belongs to two practices
    assert security(log_lines) == ['login_failed email="hal@example.com" ip=127.0.0.9']


def test_rate_limited_sign_ins_are_logged(visitor, log_lines):
    v = visitor(ip="127.0.0.9")
    for _ in range(6):
        v.login("ann@example.com", "not the password")
    assert security(log_lines)[-1] == 'login_rate_limited email="ann@example.com" ip=127.0.0.9'


def test_a_blocked_sign_in_names_the_practice_and_the_reason(app, visitor, log_lines):
    restrict(app, "Riverside Dental", "127.0.0.1")
    visitor(ip=BLOCKED_IP).login("fay@example.com")
    assert security(log_lines) == [
        f'login_blocked email="fay@example.com" practice="Riverside Dental" reason=ip_not_approved ip={BLOCKED_IP}']


def test_a_stopped_session_is_logged(app, signed_in, log_lines):
    restrict(app, "Riverside Dental", "127.0.0.1")
    v = signed_in("fay")
    v.ip = BLOCKED_IP
    v.get("/")
    assert security(log_lines)[-1] == (
        f'session_blocked email="fay@example.com" practice="Riverside Dental" reason=ip_not_approved ip={BLOCKED_IP}')


def test_a_successful_sign_in_is_logged_too(signed_in, log_lines):
    signed_in("ann")
    assert 'login_allowed email="ann@example.com" practice="Riverside Dental" ip=127.0.0.1' in security(log_lines)


def test_a_forged_line_in_an_email_stays_inside_its_quotes(app, log_lines):
    with app.test_request_context():
        security_event("login_failed", email='x@y"\nWARNING pbnsec.security login_failed ip=203.0.113.9\\',
                       ip="127.0.0.1")
    [line] = security(log_lines)
    assert "\n" not in log_lines[0]
    assert line == r'login_failed email="x@y\"\nWARNING pbnsec.security login_failed ip=203.0.113.9\\" ip=127.0.0.1'


@pytest.mark.parametrize("hidden", ["\u2028", "\u0085", "\x1b[2J", "\u202e"])
def test_line_breaking_and_invisible_characters_are_written_as_escapes(app, log_lines, hidden):
    with app.test_request_context():
        security_event("login_failed", email=f"a{hidden}b", ip="127.0.0.1")
    assert len(log_lines) == 1 and len(log_lines[0].splitlines()) == 1
    assert hidden not in log_lines[0]
    assert security(log_lines) == [f'login_failed email="a{hidden.encode("unicode_escape").decode()}b" ip=127.0.0.1']


def test_an_email_typed_to_forge_a_line_over_http_stays_one_line(visitor, log_lines):
    visitor(ip="127.0.0.9").login('x"\u2028 ip=203.0.113.9', "whatever")
    [line] = security(log_lines)
    assert line == r'login_failed email="x\"\u2028 ip=203.0.113.9" ip=127.0.0.9'


# --- the fail2ban filter in the README ---

# fail2ban's <ADDR> tag, as in its failregex.py: an IPv4 (optionally IPv4-mapped) or an IPv6 address.
ADDR = (r"\[?(?:(?:::f{4,6}:)?(?P<ip4>(?:\d{1,3}\.){3}\d{1,3})"
        r"|(?P<ip6>(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)))\]?")


def readme_failregex():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [regex] = re.findall(r"^failregex = (.+)$", readme, re.M)
    return re.compile(regex.replace("<ADDR>", ADDR))


def matched_ip(regex, line):
    """What fail2ban bans for a line: it cuts the time stamp out before it applies failregex."""
    for text in (line, re.sub("^" + TIMESTAMP, "", line)):
        found = regex.search(text)
        if found:
            return found.group("ip4") or found.group("ip6")
    return None


def test_the_readme_fail2ban_filter_bans_the_ip_of_failed_and_rate_limited_sign_ins(visitor, log_lines):
    regex = readme_failregex()
    v = visitor(ip="127.0.0.9")
    for _ in range(6):
        v.login("ann@example.com", "not the password")
    failures = [line for line in log_lines if " pbnsec.security " in line]
    assert len(failures) == 6
    assert [matched_ip(regex, line) for line in failures] == ["127.0.0.9"] * 6
    assert matched_ip(regex, failures[0].replace("127.0.0.9", "2001:db8::7")) == "2001:db8::7"


def test_the_readme_fail2ban_filter_ignores_everything_else_and_cannot_be_pointed_at_another_ip(app, visitor,
                                                                                                 log_lines):
    regex = readme_failregex()
    restrict(app, "Riverside Dental", "127.0.0.1")
    visitor(ip=BLOCKED_IP).login("fay@example.com")  # the right password: blocked, not failed
    visitor().login("ann@example.com")  # allowed
    assert log_lines and all(matched_ip(regex, line) is None for line in log_lines)
    log_lines.clear()
    visitor(ip="127.0.0.9").login('x" ip=203.0.113.9', "whatever")
    [line] = [line for line in log_lines if " pbnsec.security " in line]
    assert matched_ip(regex, line) == "127.0.0.9"

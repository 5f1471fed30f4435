"""Mail, pure: SMTP URLs, retry waits, and messages nothing typed can add a header to."""
from datetime import datetime, timedelta
from email import message_from_bytes
from email.policy import default

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbnsec.core.mail import (
    MailSettingError,
    SmtpServer,
    body_text,
    build_message,
    header_text,
    parse_base_url,
    parse_mail_from,
    parse_smtp_url,
    quoted,
    retry_delay,
)


@pytest.mark.parametrize("url,expected", [
    ("smtp://127.0.0.1:2525", SmtpServer("plain", "127.0.0.1", 2525)),
    ("smtp://mail.example.org", SmtpServer("plain", "mail.example.org", 25)),
    ("smtp+starttls://user:pass@mail.example.org", SmtpServer("starttls", "mail.example.org", 587, "user", "pass")),
    ("SMTPS://pbnsec%40example.org:p%40ss%3Aword@mail.example.org:2465/",
     SmtpServer("tls", "mail.example.org", 2465, "pbnsec@example.org", "p@ss:word")),
    ("smtp://[::1]:2525", SmtpServer("plain", "::1", 2525)),
])
def test_smtp_urls_name_the_server_and_how_to_reach_it(url, expected):
    assert parse_smtp_url(url) == expected
    assert parse_smtp_url(url).password == expected.password


@pytest.mark.parametrize("url,message", [
    ("mail.example.org", "must start with smtp://"),
    ("http://mail.example.org", "not 'http'"),
    ("smtp://", "must start with"),
    ("smtp://user:secret@:25", "names no server"),
    ("smtp://mail.example.org:99999", "port"),
    ("smtp://mail.example.org:abc", "port"),
    ("smtp://mail.example.org/inbox", "no path"),
    ("smtp://mail.example.org?tls=1", "no path, ?"),
])
def test_a_bad_smtp_url_is_refused_saying_why(url, message):
    with pytest.raises(MailSettingError, match=message):
        parse_smtp_url(url)


def test_the_password_is_never_shown():
    server = parse_smtp_url("smtp+starttls://pbnsec:hunter2secret@mail.example.org")
    assert "hunter2secret" not in repr(server) and "hunter2secret" not in str(server)
    assert str(server) == "smtp+starttls://pbnsec@mail.example.org:587"
    with pytest.raises(MailSettingError) as refused:
        parse_smtp_url("smtp://pbnsec:hunter2secret@mail.example.org:99999")
    assert "hunter2secret" not in str(refused.value)


@pytest.mark.parametrize("raw,expected", [
    ("pbnsec@example.org", "pbnsec@example.org"),
    ("  Practice Security <security@example.org> ", "Practice Security <security@example.org>"),
])
def test_the_sender_address(raw, expected):
    assert parse_mail_from(raw) == expected


@pytest.mark.parametrize("raw", ["pbnsec", "a@example.org, b@example.org", "x@example.org\r\nBcc: y@example.org",
                                 "@example.org"])
def test_a_sender_that_is_not_one_address_is_refused(raw):
    with pytest.raises(MailSettingError):
        parse_mail_from(raw)


@pytest.mark.parametrize("raw,expected", [
    ("https://pbnsec.example.org/", "https://pbnsec.example.org"),
    ("http://192.0.2.10:8000/pbnsec/", "http://192.0.2.10:8000/pbnsec"),
])
def test_the_base_url(raw, expected):
    assert parse_base_url(raw) == expected


@pytest.mark.parametrize("raw", ["pbnsec.example.org", "ftp://pbnsec.example.org", "https://", "https://x.org/?a=1",
                                 "https://user@x.org", "https://x.org:99999", "https://x.org/a b"])
def test_a_bad_base_url_is_refused(raw):
    with pytest.raises(MailSettingError):
        parse_base_url(raw)


def test_retries_wait_longer_each_time_up_to_an_hour():
    waits = [retry_delay(n) for n in range(1, 12)]
    assert waits[:4] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert waits == sorted(waits) and max(waits) == timedelta(hours=1) == retry_delay(10_000)


@given(st.text())
def test_header_text_never_holds_a_line_break_or_control_character(text):
    flat = header_text(text)
    assert not any(c in flat for c in "\r\n\x00\x85\u2028\u2029\x0b\x0c")
    assert flat == " ".join(flat.split()) and len(flat) <= 200


@given(st.text())
def test_body_text_keeps_lines_and_nothing_hidden(text):
    body = body_text(text)
    assert "\r" not in body and "\x00" not in body
    assert quoted(text).count("\n") == body.count("\n")


def test_a_name_or_subject_cannot_add_a_header():
    message = build_message("pbnsec@example.org", "Eve\r\nBcc: mallory@example.net", "eve@example.org",
                            "Hi\nBcc: mallory@example.net", "Note:\r\n" + quoted("line\r\n.\r\nRCPT TO:<x@y>"),
                            message_id="<pbnsec.1.20261203090000@example.org>", at=datetime(2026, 12, 3, 9, 0))
    parsed = message_from_bytes(message.as_bytes(), policy=default)
    assert parsed["Bcc"] is None
    assert parsed["To"].addresses[0].addr_spec == "eve@example.org"
    assert parsed["To"].addresses[0].display_name == "Eve Bcc: mallory@example.net"
    assert parsed["Subject"] == "Hi Bcc: mallory@example.net"
    assert parsed["Date"] == "Thu, 03 Dec 2026 09:00:00 +0000"
    # On the wire every line ends in CR LF; the note's own line breaks stay inside its quoted block.
    assert parsed.get_content().splitlines() == ["Note:", "    | line", "    | .", "    | RCPT TO:<x@y>"]

"""Settings from the environment."""
import pytest

from pbnsec.config import ConfigError, load_config


def test_defaults(tmp_path):
    config = load_config({}, tmp_path)
    assert config["DATABASE_URL"] == "sqlite:///instance/pbnsec.db"
    assert config["TRUSTED_PROXIES"] == 0
    assert (config["HOST"], config["PORT"]) == ("127.0.0.1", 8000)
    assert config["BROADEST_PREFIX"] == {4: 8, 6: 32}
    assert config["LOG_LEVEL"] == "INFO"


def test_generated_secret_key_is_kept_private_and_reused(tmp_path):
    first = load_config({}, tmp_path)["SECRET_KEY"]
    assert len(first) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert load_config({}, tmp_path)["SECRET_KEY"] == first


@pytest.mark.parametrize("env,message", [
    ({"PBNSEC_TRUSTED_PROXIES": "abc"}, "PBNSEC_TRUSTED_PROXIES"),
    ({"PBNSEC_TRUSTED_PROXIES": "-1"}, "PBNSEC_TRUSTED_PROXIES"),
    ({"PBNSEC_PORT": "99999"}, "PBNSEC_PORT"),
    ({"PBNSEC_SECRET_KEY": "short"}, "at least 32 characters"),
    ({"PBNSEC_SECURE_COOKIES": "maybe"}, "PBNSEC_SECURE_COOKIES"),
    ({"PBNSEC_TRUSTED_PROXIES": "1", "PBNSEC_TRUSTED_PROXY_ADDRS": "10.0.0.5/8"}, "did you mean 10.0.0.0/8"),
    ({"PBNSEC_TRUSTED_PROXY_ADDRS": "10.0.0.1"}, "PBNSEC_TRUSTED_PROXIES is 0"),
    ({"PBNSEC_BROAD_IPV4_PREFIX": "33"}, "PBNSEC_BROAD_IPV4_PREFIX must be a prefix length from 0 to 32"),
    ({"PBNSEC_BROAD_IPV6_PREFIX": "/32"}, "PBNSEC_BROAD_IPV6_PREFIX"),
    ({"PBNSEC_HOSTS": "https://pbnsec.example.org/"}, "PBNSEC_HOSTS must be host names"),
    ({"PBNSEC_DATABASE_URL": "mysql://u:secret@db/pbnsec"},
     r"PBNSEC_DATABASE_URL must look like sqlite:///.* not 'mysql'://…$"),
    ({"PBNSEC_LOG_LEVEL": "loud"}, "PBNSEC_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got 'loud'"),
])
def test_bad_settings_are_refused_with_the_setting_named(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env, tmp_path)


def test_settings_are_read(tmp_path):
    config = load_config({"PBNSEC_TRUSTED_PROXIES": "1", "PBNSEC_PORT": "8080", "PBNSEC_HOST": "0.0.0.0",
                          "PBNSEC_SECURE_COOKIES": "1", "PBNSEC_DATABASE_URL": "postgresql://db/pbnsec",
                          "PBNSEC_LOG_LEVEL": "warning"}, tmp_path)
    assert (config["TRUSTED_PROXIES"], config["PORT"], config["HOST"]) == (1, 8080, "0.0.0.0")
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["DATABASE_URL"] == "postgresql://db/pbnsec"
    assert config["LOG_LEVEL"] == "WARNING"


def test_proxy_addresses_default_to_loopback_and_can_be_set(tmp_path):
    from ipaddress import ip_network

    from pbnsec.config import proxies

    default = proxies(load_config({"PBNSEC_TRUSTED_PROXIES": "1"}, tmp_path))
    assert (default.count, default.networks) == (1, (ip_network("127.0.0.0/8"), ip_network("::1/128")))
    lan = proxies(load_config({"PBNSEC_TRUSTED_PROXIES": "2", "PBNSEC_TRUSTED_PROXY_ADDRS": "192.0.2.10, 2001:db8::/64"},
                              tmp_path))
    assert (lan.count, lan.networks) == (2, (ip_network("192.0.2.10/32"), ip_network("2001:db8::/64")))


def test_hosts_setting(tmp_path):
    assert load_config({}, tmp_path)["TRUSTED_HOSTS"] is None
    assert load_config({"PBNSEC_HOSTS": "PBNSEC.example.org, localhost"}, tmp_path)["TRUSTED_HOSTS"] == [
        "pbnsec.example.org", "localhost", "127.0.0.1"]  # this machine's names stay allowed


# --- the time zone practices start in ---

def test_default_time_zone_is_the_setting_when_given(tmp_path):
    from pbnsec.config import default_time_zone

    assert default_time_zone({"PBNSEC_DEFAULT_TIME_ZONE": "america/denver"}, etc=tmp_path) == "America/Denver"
    assert load_config({"PBNSEC_DEFAULT_TIME_ZONE": "Europe/Paris"}, tmp_path)["DEFAULT_TIME_ZONE"] == "Europe/Paris"


def test_a_bad_default_time_zone_stops_the_start(tmp_path):
    with pytest.raises(ConfigError, match="PBNSEC_DEFAULT_TIME_ZONE: 'Denver' is not a time zone"):
        load_config({"PBNSEC_DEFAULT_TIME_ZONE": "Denver"}, tmp_path)


def test_default_time_zone_is_the_servers_from_etc_timezone(tmp_path):
    from pbnsec.config import default_time_zone

    (tmp_path / "timezone").write_text("America/Denver\n")
    assert default_time_zone({}, etc=tmp_path) == "America/Denver"


@pytest.mark.parametrize("target", ["/usr/share/zoneinfo/Asia/Tokyo", "/usr/share/zoneinfo/posix/Asia/Tokyo"])
def test_default_time_zone_is_the_servers_from_the_localtime_link(tmp_path, target):
    from pbnsec.config import default_time_zone

    (tmp_path / "localtime").symlink_to(target)
    assert default_time_zone({}, etc=tmp_path) == "Asia/Tokyo"


@pytest.mark.parametrize("timezone_file", [None, "not a zone"])
def test_default_time_zone_is_utc_when_the_server_says_nothing_usable(tmp_path, timezone_file):
    from pbnsec.config import default_time_zone

    if timezone_file:
        (tmp_path / "timezone").write_text(timezone_file)
    (tmp_path / "localtime").symlink_to(tmp_path / "nowhere")
    assert default_time_zone({}, etc=tmp_path) == "UTC"


# --- mail ---

def test_mail_is_off_until_an_smtp_url_is_set(tmp_path):
    config = load_config({}, tmp_path)
    assert (config["SMTP"], config["MAIL_FROM"], config["BASE_URL"], config["NOTIFY_BATCH_MINUTES"]) == (
        None, None, None, 10)


def test_mail_settings_are_read(tmp_path):
    from pbnsec.core.mail import SmtpServer

    config = load_config({"PBNSEC_SMTP_URL": "smtp+starttls://pbnsec:s3cret@mail.example.org",
                          "PBNSEC_MAIL_FROM": "pbnsec@example.org", "PBNSEC_BASE_URL": "https://pbnsec.example.org/",
                          "PBNSEC_NOTIFY_BATCH_MINUTES": "0"}, tmp_path)
    assert config["SMTP"] == SmtpServer("starttls", "mail.example.org", 587, "pbnsec", "s3cret")
    assert (config["MAIL_FROM"], config["BASE_URL"], config["NOTIFY_BATCH_MINUTES"]) == (
        "pbnsec@example.org", "https://pbnsec.example.org", 0)


SMTP = {"PBNSEC_SMTP_URL": "smtp://127.0.0.1:2525", "PBNSEC_MAIL_FROM": "pbnsec@example.org"}


@pytest.mark.parametrize("env,message", [
    ({"PBNSEC_SMTP_URL": "mail.example.org"},
     "PBNSEC_SMTP_URL must start with smtp://, smtp\\+starttls://, smtps://"),
    ({**SMTP, "PBNSEC_SMTP_URL": "smtp://u:hunter2@mail.example.org:0"}, "^PBNSEC_SMTP_URL has a port"),
    ({"PBNSEC_SMTP_URL": "smtp://127.0.0.1:2525"}, "PBNSEC_MAIL_FROM must be set when PBNSEC_SMTP_URL is"),
    ({**SMTP, "PBNSEC_MAIL_FROM": "pbnsec"}, "PBNSEC_MAIL_FROM must be one email address"),
    ({**SMTP, "PBNSEC_BASE_URL": "pbnsec.example.org"}, "PBNSEC_BASE_URL must look like https://"),
    ({**SMTP, "PBNSEC_NOTIFY_BATCH_MINUTES": "ten"}, "PBNSEC_NOTIFY_BATCH_MINUTES must be a number of minutes"),
    ({**SMTP, "PBNSEC_NOTIFY_BATCH_MINUTES": "-5"}, "from 0 to 1440, got '-5'"),
])
def test_bad_mail_settings_are_refused_with_the_setting_named(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message) as refused:
        load_config(env, tmp_path)
    assert "hunter2" not in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("raw,domain", [
    ("riverside.example", "riverside.example"),
    (".Riverside.Example.", "riverside.example"),  # the old leading dot and a trailing one: the same domain
    ("office.riverside.example", "office.riverside.example"),
])
def test_cookie_domain_is_read_as_a_domain_name(tmp_path, raw, domain):
    config = load_config({"PBNSEC_COOKIE_DOMAIN": raw}, tmp_path)
    assert config["COOKIE_DOMAIN"] == config["SESSION_COOKIE_DOMAIN"] == domain  # Flask's session cookie too
    unset = load_config({}, tmp_path)
    assert unset["COOKIE_DOMAIN"] is None and unset["SESSION_COOKIE_DOMAIN"] is None


@pytest.mark.parametrize("raw,message", [
    ("riverside.example:8443", "without a port"),
    ("example", "not a top-level domain alone"),
    ("10.0.0.5", "not an IP address"),
    ("[2001:db8::1]", "not an IP address"),
    ("https://riverside.example", "host name only"),
    ("user@riverside.example", "host name only"),
    ("rïverside.example", "punycode"),
    ("riverside..example", "not a host name"),
    ("-riverside.example", "not a host name"),
    ("riverside.example/", "host name only"),
])
def test_a_cookie_domain_that_is_not_a_domain_name_is_refused(tmp_path, raw, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"PBNSEC_COOKIE_DOMAIN": raw}, tmp_path)


def test_the_cookie_domain_must_hold_the_host_pbnsec_is_opened_at(tmp_path):
    env = {"PBNSEC_COOKIE_DOMAIN": "riverside.example", "PBNSEC_BASE_URL": "https://security.riverside.example"}
    assert load_config(env, tmp_path)["COOKIE_DOMAIN"] == "riverside.example"
    env["PBNSEC_BASE_URL"] = "https://security.lakeside.example"
    with pytest.raises(ConfigError, match="security.lakeside.example or a parent of it"):
        load_config(env, tmp_path)
    # A look-alike that merely ends in the same letters is not under the domain.
    env["PBNSEC_BASE_URL"] = "https://notriverside.example"
    with pytest.raises(ConfigError, match="parent of it"):
        load_config(env, tmp_path)


@pytest.mark.parametrize("env,gate_port", [
    ({}, 8001),  # the port after PBNSEC_PORT
    ({"PBNSEC_PORT": "9000"}, 9001),
    ({"PBNSEC_GATE_PORT": "9181"}, 9181),
    ({"PBNSEC_GATE_PORT": " 9181 "}, 9181),
    ({"PBNSEC_GATE_PORT": "off"}, None),  # the gate answers on PBNSEC_PORT only
    ({"PBNSEC_GATE_PORT": "OFF"}, None),
    ({"PBNSEC_PORT": "65535", "PBNSEC_GATE_PORT": "65534"}, 65534),
    ({"PBNSEC_PORT": "65535", "PBNSEC_GATE_PORT": "off"}, None),
])
def test_the_gate_port_defaults_to_the_port_after_pbnsec_port_and_can_be_set_or_off(tmp_path, env, gate_port):
    assert load_config(env, tmp_path)["GATE_PORT"] == gate_port


@pytest.mark.parametrize("env,message", [
    ({"PBNSEC_GATE_PORT": "abc"}, "PBNSEC_GATE_PORT must be a port number from 1 to 65535, or off, got 'abc'"),
    ({"PBNSEC_GATE_PORT": "0"}, "got '0'"),
    ({"PBNSEC_GATE_PORT": "70000"}, "got '70000'"),
    ({"PBNSEC_GATE_PORT": "-1"}, "got '-1'"),
    ({"PBNSEC_GATE_PORT": "٣٠٠٠"}, "got '٣٠٠٠'"),  # digits, but not ASCII ones
    ({"PBNSEC_GATE_PORT": "no"}, "got 'no'"),
    ({"PBNSEC_GATE_PORT": "8000"}, "PBNSEC_GATE_PORT must differ from PBNSEC_PORT (8000)"),
    ({"PBNSEC_PORT": "9000", "PBNSEC_GATE_PORT": "9000"}, "must differ from PBNSEC_PORT (9000)"),
    ({"PBNSEC_PORT": "65535"}, "PBNSEC_GATE_PORT must be set when PBNSEC_PORT is 65535"),
])
def test_a_bad_gate_port_is_refused_with_the_setting_named(tmp_path, env, message):
    with pytest.raises(ConfigError) as refused:
        load_config(env, tmp_path)
    assert message in str(refused.value)

"""Settings from the environment."""
import pytest

from pbnsec.config import ConfigError, load_config


def test_defaults(tmp_path):
    config = load_config({}, tmp_path)
    assert config["DATABASE_URL"] == "sqlite:///instance/pbnsec.db"
    assert config["TRUSTED_PROXIES"] == 0
    assert (config["HOST"], config["PORT"]) == ("127.0.0.1", 8000)
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

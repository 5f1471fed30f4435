"""Settings from the environment: every PBNSEC_* variable is read here and nowhere else."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from pbnsec.core.clientip import (
    LOOPBACK,
    Proxies,
    parse_proxy_addrs,
    parse_trusted_proxies,
)
from pbnsec.core.gate import GateInputError, parse_host
from pbnsec.core.mail import (
    MailSettingError,
    parse_base_url,
    parse_mail_from,
    parse_smtp_url,
)
from pbnsec.core.timezones import TimeZoneError, parse_time_zone

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "sqlite:///instance/pbnsec.db"


class ConfigError(ValueError):
    """A PBNSEC_* setting has a value the app cannot use."""


def _flag(env, name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true or false), got {raw!r}")


def _port(env) -> int:
    raw = env.get("PBNSEC_PORT", "8000").strip()
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"PBNSEC_PORT must be a port number from 1 to 65535, got {raw!r}")
    return int(raw)


def _gate_port(env, port: int) -> int | None:
    """PBNSEC_GATE_PORT: where `serve` answers the gate's /gate/verify from its own thread (default: the port after
    PBNSEC_PORT); `off`: nowhere but the main port."""
    raw = env.get("PBNSEC_GATE_PORT", "").strip()
    if raw.lower() == "off":
        return None
    if not raw:
        if port == 65535:
            raise ConfigError("PBNSEC_GATE_PORT must be set when PBNSEC_PORT is 65535 (it defaults to the port "
                              "after PBNSEC_PORT): a port number from 1 to 65535, or off")
        return port + 1
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"PBNSEC_GATE_PORT must be a port number from 1 to 65535, or off, got {raw!r}")
    if int(raw) == port:
        raise ConfigError(f"PBNSEC_GATE_PORT must differ from PBNSEC_PORT ({port}): the gate listens on a port of "
                          "its own (or set it to off)")
    return int(raw)


def _database_url(env) -> str:
    url = env.get("PBNSEC_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    scheme = url.partition("://")[0]
    # The app's write lock speaks SQLite and PostgreSQL only; the URL itself is never repeated (it holds a password).
    if not (url.startswith("sqlite:///") or scheme in ("postgresql", "postgres")):
        raise ConfigError(f"PBNSEC_DATABASE_URL must look like sqlite:///path/to/pbnsec.db or "
                          f"postgresql://user:password@host/name, not {scheme[:20]!r}://…")
    return url


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(env) -> str:
    raw = env.get("PBNSEC_LOG_LEVEL", "").strip()
    if raw and raw.upper() not in LOG_LEVELS:
        raise ConfigError(f"PBNSEC_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return raw.upper() or "INFO"


def _secret_key(env, instance_path: Path) -> str:
    """Use PBNSEC_SECRET_KEY, or keep a generated key under instance/ so sessions survive restarts."""
    configured = env.get("PBNSEC_SECRET_KEY", "").strip()
    if configured:
        if len(configured) < 32:
            raise ConfigError("PBNSEC_SECRET_KEY must be at least 32 characters long")
        return configured
    key_file = instance_path / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    # Write-then-rename so two processes starting together never read half a key.
    tmp = key_file.with_name(f".secret_key.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    try:
        os.link(tmp, key_file)  # fails if another process won the race; then use its key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return key_file.read_text().strip()


def _prefix(env, name: str, version: int, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    most = 32 if version == 4 else 128
    if not raw.isascii() or not raw.isdigit() or not 0 <= int(raw) <= most:
        raise ConfigError(f"{name} must be a prefix length from 0 to {most}, got {raw!r}")
    return int(raw)


def _hosts(env) -> list[str] | None:
    raw = env.get("PBNSEC_HOSTS", "").strip()
    if not raw:
        return None
    hosts = [h.strip().lower() for h in raw.split(",")]
    for host in hosts:
        if not host or any(c in host for c in "/@ ") or not host.isascii():
            raise ConfigError(f"PBNSEC_HOSTS must be host names separated by commas, such as "
                              f"pbnsec.example.org,localhost; got {raw!r}")
    # This machine's own names stay allowed: health checks and the proxy in front connect to them.
    return hosts + [h for h in LOOPBACK_HOSTS if h not in hosts]


# Werkzeug cannot match a bracketed IPv6 Host against a list, so [::1] is not among them: use localhost there.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


ZONEINFO_DIRS = ("/usr/share/zoneinfo/", "/usr/lib/zoneinfo/", "/usr/share/lib/zoneinfo/", "/etc/zoneinfo/")


def _server_time_zone(etc: Path) -> str | None:
    """The server's IANA zone: /etc/timezone, else where /etc/localtime links into a zoneinfo folder; else None."""
    try:
        named = (etc / "timezone").read_text().strip()
        return parse_time_zone(named)
    except (OSError, UnicodeDecodeError, TimeZoneError):
        pass
    try:
        target = os.path.realpath(etc / "localtime")
    except OSError:
        return None
    for folder in ZONEINFO_DIRS:
        # A "posix/" or "right/" copy of the database names the same zone.
        for prefix in (folder, folder + "posix/", folder + "right/"):
            if target.startswith(prefix):
                try:
                    return parse_time_zone(target[len(prefix):])
                except TimeZoneError:
                    return None
    return None


def default_time_zone(env=None, etc: Path = Path("/etc")) -> str:
    """The zone a practice starts with: PBNSEC_DEFAULT_TIME_ZONE, else the server's own zone, else UTC."""
    env = os.environ if env is None else env
    raw = env.get("PBNSEC_DEFAULT_TIME_ZONE", "").strip()
    if raw:
        try:
            return parse_time_zone(raw)
        except TimeZoneError as exc:
            raise ConfigError(f"PBNSEC_DEFAULT_TIME_ZONE: {exc.message}") from None
    return _server_time_zone(etc) or "UTC"


def _smtp(env):
    """The SMTP server mail goes through; None (mail is off) when PBNSEC_SMTP_URL is unset."""
    raw = env.get("PBNSEC_SMTP_URL", "").strip()
    if not raw:
        return None
    try:
        return parse_smtp_url(raw)
    except MailSettingError as exc:
        raise ConfigError(f"PBNSEC_SMTP_URL {exc}") from None


def _mail_from(env, smtp) -> str | None:
    raw = env.get("PBNSEC_MAIL_FROM", "").strip()
    if not raw:
        if smtp is not None:
            raise ConfigError("PBNSEC_MAIL_FROM must be set when PBNSEC_SMTP_URL is: the address pbnsec's mail comes "
                              "from, such as pbnsec@example.org")
        return None
    try:
        return parse_mail_from(raw)
    except MailSettingError as exc:
        raise ConfigError(f"PBNSEC_MAIL_FROM {exc}") from None


def _base_url(env) -> str | None:
    raw = env.get("PBNSEC_BASE_URL", "").strip()
    if not raw:
        return None  # mails then name the page instead of linking to it (see README, Notifications)
    try:
        return parse_base_url(raw)
    except MailSettingError as exc:
        raise ConfigError(f"PBNSEC_BASE_URL {exc}") from None


def _cookie_domain(env, base_url: str | None) -> str | None:
    """The parent domain pbnsec's session cookie is scoped to, so the gate's apps on other hosts under it receive it
    (README, Protect your other web tools); None: the cookie stays with the host pbnsec is opened at."""
    raw = env.get("PBNSEC_COOKIE_DOMAIN", "").strip()
    if not raw:
        return None
    text = raw[1:] if raw.startswith(".") else raw  # browsers ignore the leading dot of ".riverside.example"
    try:
        host = parse_host(text, "PBNSEC_COOKIE_DOMAIN")
    except GateInputError as exc:
        raise ConfigError(str(exc)) from None
    if host.port is not None:
        raise ConfigError(f"PBNSEC_COOKIE_DOMAIN is a domain name without a port (cookies are shared by name "
                          f"whatever the port), such as riverside.example; got {raw!r}")
    if host.name.startswith("[") or host.name.replace(".", "").isdigit():
        raise ConfigError(f"PBNSEC_COOKIE_DOMAIN must be a domain name, not an IP address (browsers share no "
                          f"cookie across addresses); got {raw!r}")
    if "." not in host.name:
        raise ConfigError(f"PBNSEC_COOKIE_DOMAIN must be your own domain, such as riverside.example, not a "
                          f"top-level domain alone; got {raw!r}")
    if base_url is not None:
        # A browser refuses a cookie for a domain the page it came from is not under: nobody could sign in.
        opened_at = (urlsplit(base_url).hostname or "").rstrip(".")
        if opened_at != host.name and not opened_at.endswith("." + host.name):
            raise ConfigError(f"PBNSEC_COOKIE_DOMAIN {host.name} must be the domain of PBNSEC_BASE_URL's host "
                              f"{opened_at} or a parent of it, or browsers refuse the sign-in cookie")
    return host.name


BATCH_MINUTES_MOST = 24 * 60


def _batch_minutes(env) -> int:
    raw = env.get("PBNSEC_NOTIFY_BATCH_MINUTES", "").strip()
    if not raw:
        return 10
    if not raw.isascii() or not raw.isdigit() or not 0 <= int(raw) <= BATCH_MINUTES_MOST:
        raise ConfigError(f"PBNSEC_NOTIFY_BATCH_MINUTES must be a number of minutes from 0 to {BATCH_MINUTES_MOST}, "
                          f"got {raw!r}")
    return int(raw)


def load_config(env=None, instance_path: Path | None = None) -> dict:
    """Flask config built from the PBNSEC_* environment variables."""
    env = os.environ if env is None else env
    instance_path = Path(instance_path or PROJECT_ROOT / "instance")
    try:
        trusted_proxies = parse_trusted_proxies(env.get("PBNSEC_TRUSTED_PROXIES"))
        proxy_addrs = parse_proxy_addrs(env.get("PBNSEC_TRUSTED_PROXY_ADDRS"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if proxy_addrs is not None and trusted_proxies == 0:
        raise ConfigError("PBNSEC_TRUSTED_PROXY_ADDRS is set but PBNSEC_TRUSTED_PROXIES is 0: set how many proxies "
                          "stand in front of pbnsec, or remove PBNSEC_TRUSTED_PROXY_ADDRS.")
    smtp = _smtp(env)
    base_url = _base_url(env)
    cookie_domain = _cookie_domain(env, base_url)
    return {
        "DATABASE_URL": _database_url(env),
        "SECRET_KEY": _secret_key(env, instance_path),
        "TRUSTED_PROXIES": trusted_proxies,
        "TRUSTED_PROXY_ADDRS": proxy_addrs,  # None: loopback
        # Allowlist entries broader than these prefix lengths need an explicit confirmation.
        "BROADEST_PREFIX": {4: _prefix(env, "PBNSEC_BROAD_IPV4_PREFIX", 4, 8),
                            6: _prefix(env, "PBNSEC_BROAD_IPV6_PREFIX", 6, 32)},
        "HOST": env.get("PBNSEC_HOST", "").strip() or "127.0.0.1",
        "PORT": _port(env),
        "GATE_PORT": _gate_port(env, _port(env)),  # None: the gate answers on PORT only
        "SESSION_COOKIE_SECURE": _flag(env, "PBNSEC_SECURE_COOKIES", False),
        # Flask answers 400 to a Host header not listed here; unset, any name the server is reached by works.
        "TRUSTED_HOSTS": _hosts(env),
        "OWNER_EMAIL": env.get("PBNSEC_OWNER_EMAIL", "").strip().lower() or "owner@example.com",
        "FIRST_PRACTICE": env.get("PBNSEC_FIRST_PRACTICE", "").strip() or "Main Practice",
        "LOG_LEVEL": _log_level(env),
        # New practices start in this zone (models.Practice reads default_time_zone() itself); checked here at start.
        "DEFAULT_TIME_ZONE": default_time_zone(env),
        # Mail (pbnsec.mailer): off while SMTP is None.
        "SMTP": smtp,
        "MAIL_FROM": _mail_from(env, smtp),
        "BASE_URL": base_url,
        "NOTIFY_BATCH_MINUTES": _batch_minutes(env),
        # The gate: the session cookie (and with it the CSRF token and flashed messages, which live in the session)
        # goes to every host under this domain.
        "COOKIE_DOMAIN": cookie_domain,
        "SESSION_COOKIE_DOMAIN": cookie_domain,
    }


def proxies(config) -> Proxies:
    """The proxies in front of the app, from the final config (tests set TRUSTED_PROXIES directly)."""
    return Proxies(config.get("TRUSTED_PROXIES", 0), tuple(config.get("TRUSTED_PROXY_ADDRS") or LOOPBACK))

"""Command line: flask --app app init-db | serve | practices … | users … | mail … | apps … | backup | restore | version"""
from __future__ import annotations

import errno
import functools
import socket
from contextlib import contextmanager
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from peewee import PostgresqlDatabase, SqliteDatabase

from pbnsec import __version__, backups, instances, migrations
from pbnsec.config import PROJECT_ROOT, ConfigError
from pbnsec.db import (
    DatabaseUnavailable,
    check_database,
    database,
    missing_sqlite_file,
)
from pbnsec.domain import audit, restrictions
from pbnsec.domain.users import (
    AccountError,
    bootstrap_owner,
    create_practice,
    create_user,
    find_practice,
)
from pbnsec.models import Practice

# Why the server could not listen, and what the person starting it can do about it.
LISTEN_PROBLEMS = {
    errno.EADDRINUSE: "the port is already in use. Stop the other program or set PBNSEC_PORT.",
    errno.EACCES: "permission denied (ports below 1024 need root). Set PBNSEC_PORT to 1024 or above.",
    errno.EADDRNOTAVAIL: "that address is not one of this machine's. Set PBNSEC_HOST to one that is.",
}


def _listen_problem(exc: Exception) -> str | None:
    """What stopped the server listening, in words, or None when `exc` is about something else."""
    if isinstance(exc, ValueError) and isinstance(exc.__context__, socket.gaierror):
        exc = exc.__context__  # waitress reports a host name it cannot look up as "Invalid host/port specified."
    if isinstance(exc, socket.gaierror):
        return "there is no such address. Set PBNSEC_HOST to one of this machine's addresses."
    return LISTEN_PROBLEMS.get(exc.errno) if isinstance(exc, OSError) else None


@contextmanager
def startup_errors():
    """Under `flask …`, a bad setting or an unusable database ends the command with one line, not a traceback."""
    try:
        yield
    except (ConfigError, DatabaseUnavailable) as exc:
        if click.get_current_context(silent=True) is None:
            raise  # a WSGI server or a test is building the app: the exception is the clearer report there
        # Flask's CLI would print the traceback of an import error; a self-hoster needs the one line that matters.
        raise SystemExit(f"pbnsec: {exc}") from None


def _starts_the_app(fn):
    """A command that starts the app: start-up failures (settings, database, a port taken) as one line."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with startup_errors():
            try:
                return fn(*args, **kwargs)
            except (OSError, ValueError) as exc:
                problem = _listen_problem(exc)
                if problem is None:
                    raise
                host, port = current_app.config["HOST"], current_app.config["PORT"]
                where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                raise SystemExit(f"pbnsec: cannot listen on {where}: {problem}") from None

    return wrapper


def _needs_database(fn):
    """A command that works on an existing database: a missing SQLite file is an error, not a new pbnsec."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with startup_errors():
            url = current_app.config["DATABASE_URL"]
            missing = missing_sqlite_file(url, PROJECT_ROOT)
            if missing is not None:
                raise ConfigError(f"there is no database at {missing}: check PBNSEC_DATABASE_URL, or create one "
                                  "with `flask --app app init-db` (make run does too).")
            check_database(url, PROJECT_ROOT)
            for step in migrations.upgrade():
                click.echo(f"pbnsec: database schema {step}", err=True)
        return fn(*args, **kwargs)

    return wrapper


def _fail_on_account_error(fn):
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def bootstrap(config, echo=click.echo) -> None:
    """Bring the schema up to date and, on an empty database, create the Owner: the password is shown once, here."""
    check_database(config["DATABASE_URL"], PROJECT_ROOT)
    for step in migrations.upgrade():
        echo(f"pbnsec: database schema {step}", err=True)
    instances.check_secret_key(config["SECRET_KEY"])
    try:
        created = bootstrap_owner(config["OWNER_EMAIL"], config["FIRST_PRACTICE"])
    except AccountError as exc:  # only an empty database reads these two settings, so they are checked here
        raise ConfigError(f"cannot create the first Owner from PBNSEC_OWNER_EMAIL and PBNSEC_FIRST_PRACTICE: "
                          f"{exc}") from None
    if created:
        user, password = created
        audit.record("owner_created", actor_label="cli", target=user.email)
        echo("=" * 64)
        echo("pbnsec: created the Owner account for this new database.")
        echo(f"  Email:    {user.email}")
        echo(f"  Password: {password}")
        echo("This password is shown only this once: keep it somewhere safe.")
        echo("=" * 64)


@click.command("init-db")
@with_appcontext
@_starts_the_app
@_fail_on_account_error
def init_db_command():
    """Create or upgrade the database tables (and the first Owner on an empty database)."""
    bootstrap(current_app.config)
    click.echo(f"Database ready (schema version {migrations.LATEST}).")


@click.command("serve")
@with_appcontext
@_starts_the_app
def serve_command():
    """Serve the app with waitress on PBNSEC_HOST:PBNSEC_PORT."""
    from waitress import create_server

    bootstrap(current_app.config)
    port = current_app.config["PORT"]
    # PBNSEC_HOST may name several addresses, e.g. "127.0.0.1,::1" for both IPv4 and IPv6.
    hosts = [h.strip() for h in current_app.config["HOST"].split(",") if h.strip()]
    listen = [f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts]
    # waitress would otherwise delete X-Forwarded-For before the app sees it; pbnsec.clientip decides whom
    # to believe (PBNSEC_TRUSTED_PROXIES and _ADDRS), so the header must arrive untouched.
    server = create_server(current_app._get_current_object(), listen=" ".join(listen), threads=8, ident="pbnsec",
                           clear_untrusted_proxy_headers=False)
    gate = _gate_server(hosts)
    # Said only once the ports are ours: a taken port gives its one-line reason and nothing else.
    click.echo(f"pbnsec is serving on {', '.join('http://' + a + '/' for a in listen)} (Ctrl+C stops it)")
    if gate is not None:
        gate.start()
        click.echo("pbnsec's gate (for the proxies of protected apps) answers on "
                   + ", ".join(f"http://{a}/gate/verify" for a in gate.addresses))
    sender = current_app.extensions.get("pbnsec_mail")
    if sender is not None:
        sender.start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if gate is not None:
            gate.stop()
        if sender is not None:
            sender.stop()  # a mail being sent is finished first; what is left waits in the outbox


def _gate_server(hosts: list[str]):
    """The gate's own port (PBNSEC_GATE_PORT), bound now; None when it is off."""
    from pbnsec.web.gate_server import GateServer

    port = current_app.config.get("GATE_PORT")
    if port is None:
        return None
    try:
        return GateServer(current_app.extensions["pbnsec.gate_front"], hosts, port)
    except OSError as exc:
        problem = _listen_problem(exc)
        if problem is None:
            raise
        problem = problem.replace("set PBNSEC_PORT", "set PBNSEC_GATE_PORT (another port, or off)").replace(
            "Set PBNSEC_PORT", "Set PBNSEC_GATE_PORT")
        where = ", ".join(f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts)
        raise SystemExit(f"pbnsec: cannot listen on {where} for the gate (PBNSEC_GATE_PORT): {problem}") from None


practices_cli = AppGroup("practices", help="Manage practices.")


@practices_cli.command("create")
@click.argument("name")
@_fail_on_account_error
@_needs_database
def create_practice_command(name):
    """Create a practice."""
    practice = create_practice(name)
    audit.record("practice_created", actor_label="cli", practice=practice, target=practice.name)
    click.echo(f"Created practice {practice.name!r} (id {practice.id}).")


@practices_cli.command("list")
@_needs_database
def list_practices_command():
    """List the practices."""
    for practice in Practice.select().order_by(Practice.name):
        click.echo(f"{practice.id}\t{practice.name}")


@practices_cli.command("rename")
@click.argument("old")
@click.argument("new")
@_fail_on_account_error
@_needs_database
def rename_practice_command(old, new):
    """Rename a practice."""
    from pbnsec.domain import people

    practice = find_practice(old)
    was = practice.name
    renamed = _done(people.rename_practice(people.console_visit(), people.every_practice(), practice.id, new))
    click.echo(f"Renamed {was!r} to {renamed.name!r}.")


users_cli = AppGroup("users", help="Manage users.")


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, help="Owner, Admin, Office Manager, Provider, Hygienist, Front Desk or Billing.")
@click.option("--practice", "practices", multiple=True, required=True, help="A practice name; repeat for several.")
@click.option("--password", default=None, help="Leave out to have a strong one generated and shown once.")
@_fail_on_account_error
@_needs_database
def create_user_command(email, name, role, practices, password):
    """Create a user in one or more practices."""
    user, used_password = create_user(email, name, role, list(practices), password)
    audit.record("user_created", actor_label="cli", target=user.email, detail=f"role: {user.role.name}")
    click.echo(f"Created {user.role.name} {user.name} <{user.email}> in {', '.join(p.name for p in user.practices())}.")
    if password is None:
        click.echo(f"Password (shown once): {used_password}")


def _person(email: str):
    from pbnsec.domain import people

    user = people.find_by_email(email)
    if user is None:
        raise click.ClickException(f"No user with the email {email.strip().lower()!r}.")
    return user


def _done(result):
    """A domain result, or its Refusal as one line on stderr and a non-zero exit (nothing was changed)."""
    from pbnsec.domain.access import Refusal

    if isinstance(result, Refusal):
        raise click.ClickException(result.message)
    return result


def _show_issued(issued) -> None:
    from flask import current_app

    if issued.password is not None:
        click.echo(f"One-time password for {issued.user.email} (shown once; to be changed at first sign-in): "
                   f"{issued.password}")
    else:
        path = f"/people/invite/{issued.invite_token}"
        base = current_app.config.get("BASE_URL")
        click.echo(f"Invite link for {issued.user.email} (valid 72 hours, usable once): {base or ''}{path}")
        if not base:
            hosts = current_app.config.get("TRUSTED_HOSTS") or ["localhost"]
            click.echo(f"  Open it at this server's address, e.g. https://{hosts[0]}{path}")


@users_cli.command("list")
@click.option("--search", default="", help="Part of a name or email.")
@_needs_database
def list_users_command(search):
    """List the users: email, name, role, practices, status and last sign-in (UTC)."""
    from pbnsec.domain import people

    visit, page_number = people.console_visit(), 1
    while True:
        page = people.list_people(visit, people.every_practice(), search, page_number)
        for row in page.rows:
            last = f"{row.last_sign_in_at:%Y-%m-%d %H:%M} UTC from {row.last_sign_in_ip}" if row.last_sign_in_at \
                else "never signed in"
            click.echo("\t".join([row.user.email, row.user.name, row.user.role.name,
                                  ", ".join(p.name for p in row.practices),
                                  "active" if row.user.active else "deactivated", last]))
        if page.page >= page.pages:
            break
        page_number += 1


@users_cli.command("reset-password")
@click.argument("email")
@click.option("--invite", is_flag=True, help="Print an invite link (72 h) instead of a one-time password.")
@_needs_database
def reset_password_command(email, invite):
    """Give a user (an Owner too) a new one-time password, or an invite link; their sign-ins end."""
    from pbnsec.domain import people

    user = _person(email)
    how = people.INVITE_LINK if invite else people.ONE_TIME_PASSWORD
    _show_issued(_done(people.reset_password(people.console_visit(), people.every_practice(), user, how)))


@users_cli.command("deactivate")
@click.argument("email")
@_needs_database
def deactivate_user_command(email):
    """Deactivate a user: every sign-in of theirs ends at once and they cannot sign in."""
    from pbnsec.domain import people

    user = _done(people.set_active(people.console_visit(), people.every_practice(), _person(email), False))
    click.echo(f"Deactivated {user.name} <{user.email}>; their sign-ins have ended.")


@users_cli.command("reactivate")
@click.argument("email")
@_needs_database
def reactivate_user_command(email):
    """Let a deactivated user sign in again."""
    from pbnsec.domain import people

    user = _done(people.set_active(people.console_visit(), people.every_practice(), _person(email), True))
    click.echo(f"Reactivated {user.name} <{user.email}>.")


@users_cli.command("set-role")
@click.argument("email")
@click.argument("role")
@_needs_database
def set_role_command(email, role):
    """Give a user another role."""
    from pbnsec.domain import people

    user = _done(people.set_role(people.console_visit(), people.every_practice(), _person(email), role))
    click.echo(f"{user.name} <{user.email}> is now {user.role.name}.")


@users_cli.command("add-practice")
@click.argument("email")
@click.argument("practice")
@_fail_on_account_error
@_needs_database
def add_practice_command(email, practice):
    """Make a user a member of one more practice."""
    from pbnsec.domain import people

    user, added = _person(email), find_practice(practice)
    wanted = [*people.practice_ids_of(user), added.id]
    _done(people.set_practices(people.console_visit(), people.every_practice(), user, wanted))
    click.echo(f"{user.name} <{user.email}> is now in {', '.join(p.name for p in user.practices())}.")


security_cli = AppGroup("security", help="Break-glass security commands.")


@security_cli.command("unlock")
@click.option("--practice", "practice_name", required=True, help="The practice to switch IP restrictions off for.")
@_fail_on_account_error
@_needs_database
def unlock_command(practice_name):
    """Switch IP restrictions off for a practice (when every administrator is locked out)."""
    practice = find_practice(practice_name)
    if restrictions.unlock(practice):
        click.echo(f"IP restrictions are now OFF for {practice.name}. Everyone in it can sign in from any IP.")
        click.echo("Fix the allowlist, then switch them on again under Security Management > General Settings.")
    else:
        click.echo(f"IP restrictions were already off for {practice.name}; nothing changed.")


apps_cli = AppGroup("apps", help="Protected apps: the practice's other web tools behind the gate.")


def _gate_settings():
    from pbnsec.domain.protected_apps import GateSettings

    return GateSettings.of(current_app.config)


def _app_done(result):
    """A domain result, or what was wrong with it (one line per field) and a non-zero exit; nothing was changed."""
    from pbnsec.domain.protected_apps import AppRefused

    if isinstance(result, AppRefused):
        raise click.ClickException("\n".join(f"{name}: {error.message}" for name, error in result.errors.items()))
    return _done(result)


@apps_cli.command("list")
@_needs_database
def list_apps_command():
    """List the protected apps: name, host, proxy, practices and roles."""
    from pbnsec.domain import protected_apps

    for row in protected_apps.list_apps(protected_apps.every_practice()):
        click.echo("\t".join([row.app.name, row.app.host, row.app.proxy, ", ".join(p.name for p in row.practices),
                              "all roles" if row.app.all_roles else ", ".join(r.name for r in row.roles)]))


@apps_cli.command("add")
@click.option("--name", default="", help="What people call it, e.g. \"Patient charts\".")
@click.option("--host", default="", help="Its host as people type it, e.g. charts.riverside.example[:port].")
@click.option("--proxy", default="nginx", show_default=True, help="nginx, caddy or traefik.")
@click.option("--practice", "practices", multiple=True, help="A practice whose people use it; repeat for several.")
@click.option("--role", "roles", multiple=True, help="A role that may use it; repeat for several (default: all).")
@_fail_on_account_error
@_needs_database
def add_app_command(name, host, proxy, practices, roles):
    """Protect another web tool of the practices (its proxy asks /gate/verify about every request)."""
    from pbnsec.domain import protected_apps
    from pbnsec.domain.users import find_role

    typed = protected_apps.AppInput(name=name, host=host, proxy=proxy.strip().lower(),
                                    practices=tuple(find_practice(p).id for p in practices),
                                    all_roles=not roles, roles=tuple(find_role(r).id for r in roles))
    row = _app_done(protected_apps.add_app(protected_apps.console_visit(), protected_apps.every_practice(), typed,
                                           _gate_settings()))
    click.echo(f"Added {row.app.name} ({row.app.host}, {row.app.proxy}) for "
               f"{', '.join(p.name for p in row.practices)}; "
               f"{'all roles' if row.app.all_roles else ', '.join(r.name for r in row.roles)}.")
    click.echo("Its proxy snippet is on the Protected apps screen (Security Management), and in deploy/gate/.")


@apps_cli.command("remove")
@click.argument("name_or_host")
@_needs_database
def remove_app_command(name_or_host):
    """Stop protecting an app (its proxy then refuses every request for it): by its name or its host."""
    from pbnsec.domain import protected_apps

    app = protected_apps.find_by_name_or_host(name_or_host)
    if app is None:
        raise click.ClickException(f"No protected app is called or has the host {name_or_host.strip()!r} "
                                   "(`flask --app app apps list` lists them).")
    row = _app_done(protected_apps.remove_app(protected_apps.console_visit(), protected_apps.every_practice(),
                                              app.id))
    click.echo(f"Removed {row.app.name} ({row.app.host}). Take its snippet out of the proxy's configuration.")


mail_cli = AppGroup("mail", help="Notification mail: the outbox.")


def _mail_sender():
    sender = current_app.extensions.get("pbnsec_mail")
    if sender is None:
        raise click.ClickException("Mail is off: set PBNSEC_SMTP_URL and PBNSEC_MAIL_FROM (see the README).")
    return sender


@mail_cli.command("send-pending")
@_needs_database
def mail_send_pending_command():
    """Send the mail that is due now, and retry at once those that failed before."""
    from pbnsec import mailer

    sender = _mail_sender()
    with mailer.SmtpTransport(sender.server) as transport:
        report = mailer.send_pending(transport, retry_now=True)
    click.echo(f"Sent {report.sent}, failed {report.failed}, skipped {report.skipped}.")
    for error in dict.fromkeys(report.errors):
        click.echo(f"  {error}")
    waiting = mailer.summary()["queued"]
    if waiting:
        click.echo(f"{waiting} still queued (failed, or waiting for their batch): "
                   "`flask --app app mail status` lists them.")
    if report.failed:
        raise SystemExit(1)


@mail_cli.command("status")
@_needs_database
def mail_status_command():
    """Show whether mail is on and what the outbox holds."""
    from pbnsec import mailer

    sender = current_app.extensions.get("pbnsec_mail")
    if sender is None:
        click.echo("Mail is off (PBNSEC_SMTP_URL is not set).")
    else:
        click.echo(f"Mail is on: {sender.server}, from {current_app.config['MAIL_FROM']}.")
    counts = mailer.summary()
    click.echo(", ".join(f"{status} {count}" for status, count in counts.items()))
    for mail in mailer.unsent():
        line = f"#{mail.id} {mail.kind} to {mail.recipient.email}: {mail.status}, "
        line += f"{mail.attempts} attempt{'' if mail.attempts == 1 else 's'}, "
        line += f"next try {mail.send_after:%Y-%m-%d %H:%M} UTC"
        if mail.last_error:
            line += f"; last error: {mail.last_error}"
        click.echo(line)


@security_cli.command("adopt-secret-key")
@with_appcontext
@_needs_database
def adopt_secret_key_command():
    """Make this PBNSEC_SECRET_KEY the database's, after changing it on purpose (every instance stopped first)."""
    old, new = instances.adopt_secret_key(current_app.config["SECRET_KEY"])
    audit.record("secret_key_adopted", actor_label="cli", actor_ip="local", target="PBNSEC_SECRET_KEY",
                 detail=f"fingerprint {old or '(none)'} -> {new}")
    if old == new:
        click.echo(f"The database already uses this key (fingerprint {new}).")
    else:
        click.echo(f"The database now uses this key (fingerprint {new}; it was {old or 'not recorded'}). Start "
                   "every instance with it; sessions signed with the old key no longer work.")


@click.command("demo")
@click.option("--force", is_flag=True, help="Load it even into a database that is in use.")
@with_appcontext
@_starts_the_app
@_fail_on_account_error
def demo_command(force):
    """Load demo practices, people, allowlist entries and pending access requests."""
    from pbnsec.demo import DemoRefused, check_demo_target, load_demo

    bootstrap(current_app.config)
    if not force:
        try:
            check_demo_target()
        except DemoRefused as exc:
            raise click.ClickException(str(exc)) from None
    for line in load_demo():
        click.echo(line)
    audit.record("demo_loaded", actor_label="cli", actor_ip="local", detail="demo practices, people and entries")


@click.command("version")
@with_appcontext
@_needs_database
def version_command():
    """Show the pbnsec version and the database's schema version."""
    click.echo(f"pbnsec {__version__}")
    click.echo(f"schema version {migrations.schema_version()} (this release's latest: {migrations.LATEST})")


def _database_file() -> Path:
    """The SQLite file the app uses; a one-line refusal for anything else but PostgreSQL."""
    if not isinstance(database.obj, SqliteDatabase):
        raise click.ClickException("Backup and restore support SQLite and PostgreSQL databases only.")
    if database.obj.database == ":memory:":
        raise click.ClickException("An in-memory database cannot be backed up or restored.")
    return Path(database.obj.database)


@click.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@with_appcontext
@_needs_database
def backup_command(dest, force):
    """Copy the database to the file DEST; the app may keep running (PostgreSQL: shows the pg_dump command)."""
    if isinstance(database.obj, PostgresqlDatabase):
        click.echo("Back up a PostgreSQL database with pg_dump (the password comes from PGPASSWORD or ~/.pgpass):")
        click.echo(backups.pg_dump_command(database.obj.database, database.obj.connect_params, dest))
        return
    source = _database_file()
    try:
        size, version = backups.backup_sqlite(source, dest, force)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Backed up {source} to {dest.absolute()}: {size:,} bytes, schema version {version}.")


@click.command("restore")
@click.argument("src", type=click.Path(path_type=Path))
@with_appcontext
def restore_command(src):
    """Replace the database with the backup SRC; stop the app first (PostgreSQL: shows the pg_restore command)."""
    if isinstance(database.obj, PostgresqlDatabase):
        click.echo("Stop every pbnsec process, then restore a pg_dump --format=custom backup with pg_restore "
                   "(the password comes from PGPASSWORD or ~/.pgpass); the next start applies any migrations:")
        click.echo(backups.pg_restore_command(database.obj.database, database.obj.connect_params, src))
        return
    target = _database_file()
    database.close()  # this process's own connection must not hold on to the file being replaced
    try:
        version, kept = backups.restore_sqlite(src, target, migrations.LATEST)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    done = migrations.upgrade()
    click.echo(f"Restored {src} (schema version {version}) into {target}.")
    if kept:
        click.echo(f"The database it replaced is kept as {kept}.")
    if done:
        click.echo(f"Upgraded it to schema version {migrations.LATEST}.")
    click.echo("Start pbnsec again.")


def register_cli(app) -> None:
    for command in (init_db_command, serve_command, practices_cli, users_cli, security_cli, mail_cli, demo_command,
                    version_command, backup_command, restore_command, apps_cli):
        app.cli.add_command(command)

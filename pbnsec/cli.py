"""Command line: flask --app app init-db | serve | practices … | users …"""
from __future__ import annotations

import errno
import functools
import socket
from contextlib import contextmanager

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from . import audit
from .accounts import AccountError, bootstrap_owner, create_practice, create_user, find_practice
from .config import ConfigError
from .db import DatabaseUnavailable, change_lock
from .models import IPRestriction, Practice, create_tables, utcnow

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


def _fail_on_account_error(fn):
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def bootstrap(echo=click.echo) -> None:
    """Create the tables and, on an empty database, the Owner: the password is shown once, here."""
    create_tables()
    try:
        created = bootstrap_owner(current_app.config["OWNER_EMAIL"], current_app.config["FIRST_PRACTICE"])
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
    """Create the database tables (and the first Owner on an empty database)."""
    bootstrap()
    click.echo("Database ready.")


@click.command("serve")
@with_appcontext
@_starts_the_app
def serve_command():
    """Serve the app with waitress on PBNSEC_HOST:PBNSEC_PORT."""
    from waitress import serve

    bootstrap()
    host, port = current_app.config["HOST"], current_app.config["PORT"]
    click.echo(f"pbnsec is serving on http://{host}:{port}/ (Ctrl+C stops it)")
    serve(current_app._get_current_object(), host=host, port=port, threads=8, ident="pbnsec")


practices_cli = AppGroup("practices", help="Manage practices.")


@practices_cli.command("create")
@click.argument("name")
@_fail_on_account_error
def create_practice_command(name):
    """Create a practice."""
    practice = create_practice(name)
    audit.record("practice_created", actor_label="cli", practice=practice, target=practice.name)
    click.echo(f"Created practice {practice.name!r} (id {practice.id}).")


@practices_cli.command("list")
def list_practices_command():
    """List the practices."""
    for practice in Practice.select().order_by(Practice.name):
        click.echo(f"{practice.id}\t{practice.name}")


users_cli = AppGroup("users", help="Manage users.")


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, help="Owner, Admin, Office Manager, Provider, Hygienist, Front Desk or Billing.")
@click.option("--practice", "practices", multiple=True, required=True, help="A practice name; repeat for several.")
@click.option("--password", default=None, help="Leave out to have a strong one generated and shown once.")
@_fail_on_account_error
def create_user_command(email, name, role, practices, password):
    """Create a user in one or more practices."""
    user, used_password = create_user(email, name, role, list(practices), password)
    audit.record("user_created", actor_label="cli", target=user.email, detail=f"role: {user.role.name}")
    click.echo(f"Created {user.role.name} {user.name} <{user.email}> in {', '.join(p.name for p in user.practices())}.")
    if password is None:
        click.echo(f"Password (shown once): {used_password}")


security_cli = AppGroup("security", help="Break-glass security commands.")


@security_cli.command("unlock")
@click.option("--practice", "practice_name", required=True, help="The practice to switch IP restrictions off for.")
@_fail_on_account_error
def unlock_command(practice_name):
    """Switch IP restrictions off for a practice (when every administrator is locked out)."""
    practice = find_practice(practice_name)
    with change_lock():
        row, _ = IPRestriction.get_or_create(practice=practice)
        was_on = row.enforced
        IPRestriction.update(enforced=False, updated_at=utcnow()).where(IPRestriction.id == row.id).execute()
        audit.record("security_unlock", actor_label="cli", actor_ip="local", practice=practice,
                     target="IP restrictions", detail="enforced: " + ("on -> off" if was_on else "already off"))
    if was_on:
        click.echo(f"IP restrictions are now OFF for {practice.name}. Everyone in it can sign in from any IP.")
        click.echo("Fix the allowlist, then switch them on again under Security Management > General Settings.")
    else:
        click.echo(f"IP restrictions were already off for {practice.name}; nothing changed.")


@click.command("demo")
@with_appcontext
@_fail_on_account_error
def demo_command():
    """Load demo practices, people, allowlist entries and pending access requests."""
    from .demo import load_demo

    for line in load_demo():
        click.echo(line)


def register_cli(app) -> None:
    for command in (init_db_command, serve_command, practices_cli, users_cli, security_cli, demo_command):
        app.cli.add_command(command)

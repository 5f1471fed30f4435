"""pbnsec: IP restrictions for multi-practice dental groups."""
from __future__ import annotations

__version__ = "0.3.0"  # before the imports below: pbnsec.cli reads it

import click
from flask import Flask
from jinja2 import StrictUndefined

from pbnsec import db, logs, mailer, migrations, web
from pbnsec.cli import startup_errors
from pbnsec.config import PROJECT_ROOT, load_config, proxies


@startup_errors()
def create_app(config: dict | None = None) -> Flask:
    """Build the app; `config` overrides what the environment says (tests pass their own)."""
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
        instance_path=str(PROJECT_ROOT / "instance"),
    )
    # Werkzeug would answer "//" in a path with a redirect to an absolute URL built from the Host header.
    app.url_map.merge_slashes = False
    instance = (config or {}).get("INSTANCE_PATH", app.instance_path)
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="pbnsec_session",
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        MAX_CONTENT_LENGTH=64 * 1024,
        MAX_FORM_MEMORY_SIZE=64 * 1024,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session, so a page left open still works
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    app.config.update(load_config(instance_path=instance))
    app.config.update(config or {})
    app.config["PROXIES"] = proxies(app.config)
    app.jinja_env.undefined = StrictUndefined

    logs.init_app(app)  # first, so its clock starts before any other hook and its line is written last
    # Under `flask …` each command opens the database itself (pbnsec.cli): only serve, init-db and demo may
    # create one, so a mistyped path never quietly becomes a new, empty pbnsec. Anything else starting the app
    # (a WSGI server, the tests) brings the database up to date here.
    under_cli = click.get_current_context(silent=True) is not None
    db.init_app(app, PROJECT_ROOT, check=not under_cli)
    if not under_cli:
        for step in migrations.upgrade():
            click.echo(f"pbnsec: database schema {step}", err=True)
    web.init_app(app)
    # Mail goes out from a thread of each server process; under `flask …` only `serve` starts one (pbnsec.cli).
    mailer.init_app(app, start_sender=not under_cli)

    from pbnsec.cli import register_cli

    register_cli(app)
    if app.config.get("BOOTSTRAP", True) and not under_cli:
        # Every way of starting the app (make run, waitress-serve --call, any WSGI server) creates the Owner
        # of an empty database and prints the one-time password, so somebody can always sign in.
        from pbnsec.cli import bootstrap

        with app.app_context():
            bootstrap(app.config)
    if not db.database.is_closed():
        db.database.close()  # each thread or forked worker opens its own connection
    return app

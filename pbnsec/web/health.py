"""/healthz and /readyz for load balancers, container probes and monitors."""
from __future__ import annotations

import logging

from flask import Blueprint

from pbnsec.models import Role

bp = Blueprint("health", __name__)
log = logging.getLogger("pbnsec")

# Neither looks at the session or the client's IP (see enforcement.SESSIONLESS_ENDPOINTS), and the answer is
# the word alone: no version, no database address, no error text for a stranger to read.
PLAIN = {"Content-Type": "text/plain; charset=utf-8"}


@bp.route("/healthz")
def healthz():
    """The process is up and answering."""
    return "ok", 200, PLAIN


@bp.route("/readyz")
def readyz():
    """The database answers: a table the app needs can be read (a recreated empty SQLite file cannot)."""
    try:
        Role.select().exists()
    except Exception as exc:  # any failure means "not ready"; the reason goes to the operator's log only
        log.warning("readyz: database unavailable: %s", " ".join(str(exc).split()) or type(exc).__name__)
        return "database unavailable", 503, PLAIN
    return "ready", 200, PLAIN

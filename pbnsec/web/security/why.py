"""Security Management › Why blocked?: the decision for a user, an IP and a time, with its reasons (read-only)."""
from __future__ import annotations

from flask import g, request

from pbnsec.domain.why import WhyRefused, explain
from pbnsec.models import Role
from pbnsec.web.pages import render_page, wants_fragment
from pbnsec.web.security import administered_practices, bp

FIELDS = ("user", "role", "ip", "at", "practice")


@bp.route("/why")
def why():
    """The tester: a form, and below it the answer (the htmx fragment) once something is asked."""
    asked = {name: request.args.get(name, "") for name in FIELDS}
    practices = administered_practices()
    answer, code = None, 200
    if any(value.strip() for value in asked.values()):
        answer = explain(g.visit, asked["user"], asked["ip"], asked["at"], {p.id for p in practices},
                         asked["practice"], asked["role"])
        if isinstance(answer, WhyRefused):
            # htmx swaps 422 (base.html's htmx-config), not 400: the message must reach the answer block.
            code = 422 if wants_fragment() else 400
    return render_page("security/why.html", "security/_why_answer.html", code, asked=asked, practices=practices,
                       roles=Role.select().order_by(Role.position), answer=answer, refused=answer if isinstance(answer, WhyRefused) else None)

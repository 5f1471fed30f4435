"""Security Management › Protected apps: the practice's other web tools behind the gate. Each view parses, calls
pbnsec.domain.protected_apps and renders; each app is listed with its proxy snippets filled in (core.snippets)."""
from __future__ import annotations

from datetime import timedelta

from flask import abort, current_app, g, render_template, request
from flask_login import current_user

from pbnsec.config import PROJECT_ROOT
from pbnsec.core.snippets import PROXY_FILES, gate_address_of, host_values, scheme_of, snippets_for, upstream_of
from pbnsec.domain import protected_apps as domain
from pbnsec.domain.allowlist import FieldError
from pbnsec.domain.gate import gate_counts
from pbnsec.domain.protected_apps import PROXY_NAMES, AppInput, AppRefused, AppRow, GateSettings
from pbnsec.web.hook import access_of
from pbnsec.web.pages import done, render_page, wants_fragment
from pbnsec.web.security import administered_practices, bp

PAGE = "security/apps.html"
LIST = "security/_apps_list.html"
FORM = "security/_app_form.html"
EDIT_PAGE = "security/app.html"


def gate_settings() -> GateSettings:
    return GateSettings.of(current_app.config)


def gate_warnings() -> list[str]:
    """What the deployment is missing for the gate to send people to sign in and know them at the apps."""
    gate, warnings = gate_settings(), []
    if not gate.base_url:
        warnings.append("PBNSEC_BASE_URL is not set: the gate cannot send people to pbnsec's sign-in page. Set it to "
                        "the address people open pbnsec at, such as https://security.riverside.example.")
    if not gate.domain:
        warnings.append("PBNSEC_COOKIE_DOMAIN is not set: the pbnsec sign-in stays on pbnsec's own host, so the apps "
                        "cannot tell who is signed in. Set it to the domain pbnsec and the apps share, such as "
                        "riverside.example.")
    return warnings


def _snippet_templates() -> dict[str, str | None]:
    """The snippet files as they are now (small files, read per page: a changed file shows at once)."""
    found = {}
    for proxy, (_, name) in PROXY_FILES.items():
        try:
            found[proxy] = (PROJECT_ROOT / "deploy" / "gate" / name).read_text(encoding="utf-8")
        except OSError:
            found[proxy] = None
    return found


COUNTED_SINCE = timedelta(days=7)  # how far back a card counts the requests through the gate


def shown(rows: list[AppRow]) -> list[dict]:
    """Each app as its card shows it: the app, its snippets filled in, and what the settings rule out about it."""
    config, gate, templates = current_app.config, gate_settings(), _snippet_templates()
    # The proxies ask the gate's own port when `serve` opens one (PBNSEC_GATE_PORT), else the main port.
    listen, port = config.get("HOST", "127.0.0.1"), config.get("GATE_PORT") or config.get("PORT", 8000)
    common = {"app_scheme": scheme_of(gate.base_url), "pbnsec_url": gate.base_url,
              "pbnsec_upstream": upstream_of(listen, port), "pbnsec_gate_address": gate_address_of(listen, port),
              "app_upstream": None}  # pbnsec never learns where the app itself listens
    counts = gate_counts([row.app.id for row in rows], g.visit.now - COUNTED_SINCE)
    return [{"row": row, "counts": counts[row.app.id], **_snippets_and_problem(row, common, templates, gate)}
            for row in rows]


def _snippets_and_problem(row: AppRow, common: dict, templates: dict, gate: GateSettings) -> dict:
    if row.host is None:  # changed outside pbnsec: still listed, so it can be changed or removed
        return {"snippets": [], "problem": FieldError("invalid", f"{row.app.host} is not a host pbnsec can read: "
                                                                 "the gate refuses every request for this app. "
                                                                 "Change its host, or remove it.")}
    return {"snippets": snippets_for(templates, {**common, **host_values(row.host)}),
            "problem": domain.host_problem(row.host, gate)}


def form_context(**state) -> dict:
    """What the add form shows: empty (for the practice being worked in), or as typed and refused."""
    practices = administered_practices()
    working = g.visit.practice
    start = (working.id,) if working is not None and any(p.id == working.id for p in practices) else ()
    return {"form": AppInput(practices=start), "refused": None, "practices": practices, "roles": domain.all_roles(),
            "proxies": PROXY_NAMES, "editing": None, "message": None, **state}


def page_context(**state) -> dict:
    return {**form_context(), "apps": shown(domain.list_apps(administered_practices())),
            "warnings": gate_warnings(), **state}


def typed_app(form) -> AppInput:
    """The form as sent (the domain says what is wrong with it); at most as many practices and roles as exist."""
    # Name, host and proxy whole: cut, whatever followed the cut (a NUL, a path) would never be checked.
    return AppInput(name=form.get("name", ""), host=form.get("host", ""),
                    proxy=form.get("proxy", "").strip(), practices=tuple(form.getlist("practice")[:200]),
                    all_roles=form.get("roles", "all") != "chosen", roles=tuple(form.getlist("role")[:50]))


def app_or_404(app_id) -> AppRow:
    """An app administered from here; 403 when all its practices are the admin's but this IP may not reach one of
    them (it is managed only from where they allow them in); anyone else's is not found."""
    administered = administered_practices()
    row = domain.find_app(administered, app_id)
    if row is None:
        blocked = [r.practice for r in access_of(current_user._get_current_object()).rows if not r.decision.allowed]
        if blocked and domain.find_app([*administered, *blocked], app_id) is not None:
            abort(403, f"Your IP {g.client_ip or '(unknown)'} is not approved for "
                       f"{', '.join(p.name for p in blocked)}: its apps can be managed only from where it allows "
                       "you in.")
        abort(404)
    return row


def as_input(row: AppRow) -> AppInput:
    app = row.app
    return AppInput(app.name, app.host, app.proxy, tuple(p.id for p in row.practices), app.all_roles,
                    tuple(r.id for r in row.roles))


@bp.route("/apps")
def apps():
    """The list and the add form; htmx (a refresh) gets the list alone."""
    return render_page(PAGE, LIST, **page_context())


@bp.route("/apps", methods=["POST"])
def add_app():
    result = domain.add_app(g.visit, administered_practices(), typed_app(request.form), gate_settings())
    if isinstance(result, AppRefused):
        if wants_fragment():  # the form with what is wrong; the list stays as it is
            return render_template(FORM, **form_context(form=result.typed, refused=result)), 422
        return render_template(PAGE, **page_context(form=result.typed, refused=result)), 422
    message = f"Added {result.app.name} ({result.app.host}). Paste its snippet into the proxy's configuration."
    context = page_context() if wants_fragment() else {}
    context.pop("message", None)  # given to done(), which flashes it for a plain form post
    return done("security.apps", "security/_app_added.html", message=message, **context)


@bp.route("/apps/<int:app_id>")
def edit_app(app_id: int):
    row = app_or_404(app_id)
    return render_page(EDIT_PAGE, FORM, **form_context(form=as_input(row), editing=row))


@bp.route("/apps/<int:app_id>", methods=["POST"])
def change_app(app_id: int):
    row = app_or_404(app_id)
    result = domain.change_app(g.visit, administered_practices(), app_id, typed_app(request.form), gate_settings())
    if isinstance(result, AppRefused):
        return render_page(EDIT_PAGE, FORM, 422, **form_context(form=result.typed, refused=result, editing=row))
    if not isinstance(result, AppRow):
        abort(404)  # removed, or moved out of reach, meanwhile
    return done("security.apps", FORM, message=f"Saved {result.app.name}.",
                **{k: v for k, v in form_context(form=as_input(result), editing=result).items() if k != "message"})


@bp.route("/apps/<int:app_id>/delete")
def confirm_delete_app(app_id: int):
    return render_template("security/confirm_delete_app.html", row=app_or_404(app_id))


@bp.route("/apps/<int:app_id>/delete", methods=["POST"])
def delete_app(app_id: int):
    app_or_404(app_id)
    result = domain.remove_app(g.visit, administered_practices(), app_id)
    if not isinstance(result, AppRow):
        abort(404)
    return done("security.apps", None, trigger="apps-changed", message=f"Removed {result.app.name} ({result.app.host}): its proxy now "
                                                 "refuses every request for it until you take the snippet out.")

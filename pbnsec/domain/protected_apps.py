"""Protected apps: the practice's other web tools that its reverse proxy lets through only when /gate/verify says
so. Security administrators add, change and remove them; each belongs to one or more practices and is open to all
roles or to chosen ones.

Every operation takes the visit and the practices its user administers from where they are (the web passes
`administered_practices()`; the server console, a visit without a user, passes every practice). An app is an
administrator's only when every practice it belongs to is one they administer from here: any other app is not
theirs to see, change or remove (like People). The rules, checked under change_lock() so two administrators at
once leave one consistent result:

- name: 1 to 100 characters, no control or invisible characters, unique (whatever the case);
- host: read by core.gate.parse_host and stored in that form; no two apps answer the same requests (a host without
  a port answers on 80 and 443, so `a.example` and `a.example:443` are one); never pbnsec's own address
  (PBNSEC_BASE_URL); under PBNSEC_COOKIE_DOMAIN when that is set (else the browser never sends the sign-in to it);
- proxy: one of models.PROXIES; practices: at least one, all administered from here; roles: all, or at least one.

A refused add or change is an AppRefused (one FieldError per field) and stores nothing; an app out of reach is a
Refusal with code ``not_yours`` (the web answers 404). Every change is audited in each practice of the app, so each
practice's audit log shows what happened to its apps.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from peewee import JOIN, IntegrityError, fn

from pbnsec.core.gate import GateInputError, Host, parse_host
from pbnsec.core.snippets import PROXY_FILES
from pbnsec.core.text import (
    TYPED_WHITESPACE,
    has_control_characters,
    parse_id,
    without_control_characters,
)
from pbnsec.db import change_lock
from pbnsec.domain import audit
from pbnsec.domain.access import Refusal
from pbnsec.domain.allowlist import FieldError, HasFieldErrors, administers_every_practice
from pbnsec.domain.gate import stored_host
from pbnsec.domain.visit import Visit
from pbnsec.models import (
    PROXIES,
    Practice,
    ProtectedApp,
    ProtectedAppPractice,
    ProtectedAppRole,
    Role,
    User,
)

NAME_MAX = 100
PROXY_NAMES = {proxy: name for proxy, (name, _) in PROXY_FILES.items()}
DEFAULT_PORT_SET = frozenset({80, 443})  # where a host stored without a port answers


@dataclass(frozen=True)
class AppInput:
    """An app as the administrator typed and chose it (ids as sent: the domain says what is wrong with them)."""

    name: str = ""
    host: str = ""
    proxy: str = "nginx"
    practices: tuple = ()  # practice ids
    all_roles: bool = True
    roles: tuple = ()  # role ids, used when all_roles is off


@dataclass(frozen=True)
class AppRefused(HasFieldErrors):
    """An app that was not added or changed: what was typed (name cleaned) and a FieldError per field.

    Name codes: blank, too_long, control_characters, duplicate. Host codes: invalid, duplicate, overlaps,
    pbnsec_itself, outside_cookie_domain. Proxy: invalid_choice. Practices: none_chosen, not_yours. Roles:
    none_chosen, invalid_choice.
    """

    typed: AppInput
    errors: dict[str, FieldError] = field(default_factory=dict)


@dataclass(frozen=True)
class AppRow:
    """An app with its practices (by name) and, when not open to all roles, its roles (by rank)."""

    app: ProtectedApp
    practices: tuple[Practice, ...]
    roles: tuple[Role, ...]

    @property
    def host(self) -> Host | None:
        """The stored host as the gate reads it; None for one no request can match (a row changed by hand)."""
        return stored_host(self.app.host)


@dataclass(frozen=True)
class GateSettings:
    """What the deployment says about the gate: PBNSEC_COOKIE_DOMAIN and PBNSEC_BASE_URL (None when unset)."""

    cookie_domain: str | None = None
    base_url: str | None = None

    @classmethod
    def of(cls, config) -> GateSettings:
        """From the app's config (pbnsec.config reads the environment)."""
        return cls(config.get("COOKIE_DOMAIN"), config.get("BASE_URL"))

    @property
    def domain(self) -> str | None:
        """The cookie domain as browsers match it: lower case, without a leading dot."""
        return self.cookie_domain.strip().lstrip(".").lower() or None if self.cookie_domain else None

    @property
    def own_host(self) -> Host | None:
        """pbnsec's own host, from PBNSEC_BASE_URL."""
        if not self.base_url:
            return None
        try:
            return parse_host(urlsplit(self.base_url).netloc)
        except (GateInputError, ValueError):
            return None


# --- hosts ---

def ports_of(host: Host) -> frozenset[int]:
    """The ports a request for this host may come on: its own, or 80 and 443 when it has none."""
    return DEFAULT_PORT_SET if host.port is None else frozenset({host.port})


def same_requests(a: Host, b: Host) -> bool:
    """Whether a request could be for both hosts (same name, a port both answer on)."""
    return a.name == b.name and bool(ports_of(a) & ports_of(b))


def _forms_answering(host: Host) -> list[str]:
    """The stored forms of every host that answers some of the same requests as `host` (for one indexed lookup)."""
    forms = {str(Host(host.name, port)) for port in ports_of(host) if port in DEFAULT_PORT_SET}
    forms.add(str(host))
    if host.port is None or host.port in DEFAULT_PORT_SET:
        forms.add(host.name)
    return sorted(forms)


def host_problem(host: Host, gate: GateSettings) -> FieldError | None:
    """Why the deployment's settings rule this host out (pbnsec's own, outside the cookie domain), else None. The
    list shows it for apps saved before the settings changed."""
    own = gate.own_host
    if own is not None and same_requests(own, host):
        return FieldError("pbnsec_itself", f"{host} is pbnsec's own address (PBNSEC_BASE_URL): pbnsec cannot stand "
                                           "in front of itself. Enter the host of the other web tool.")
    domain = gate.domain
    if domain is not None and host.name != domain and not host.name.endswith("." + domain):
        return FieldError("outside_cookie_domain",
                          f"{host.name} is not under {domain} (PBNSEC_COOKIE_DOMAIN): browsers would never send the "
                          f"pbnsec sign-in there. Use a name ending in .{domain}, or change PBNSEC_COOKIE_DOMAIN.")
    return None


# --- reading ---

def _mine(administered: Collection[Practice]):
    """The ids of the apps whose every practice is administered from here (and that have one)."""
    ids = [p.id for p in administered]
    outside = ProtectedAppPractice.select(ProtectedAppPractice.app).where(ProtectedAppPractice.practice.not_in(ids))
    inside = ProtectedAppPractice.select(ProtectedAppPractice.app).where(ProtectedAppPractice.practice.in_(ids))
    mine = ProtectedApp.id.not_in(outside)
    if not administers_every_practice(ids):
        mine &= ProtectedApp.id.in_(inside)  # an app left without practices is the console's (every practice)
    return mine


def _rows(apps: Sequence[ProtectedApp]) -> list[AppRow]:
    ids = [a.id for a in apps]
    practices: dict[int, list[Practice]] = {i: [] for i in ids}
    roles: dict[int, list[Role]] = {i: [] for i in ids}
    if ids:
        for link in (ProtectedAppPractice.select(ProtectedAppPractice, Practice).join(Practice)
                     .where(ProtectedAppPractice.app.in_(ids)).order_by(Practice.name)):
            practices[link.app_id].append(link.practice)
        for link in (ProtectedAppRole.select(ProtectedAppRole, Role).join(Role)
                     .where(ProtectedAppRole.app.in_(ids)).order_by(Role.position)):
            roles[link.app_id].append(link.role)
    return [AppRow(a, tuple(practices[a.id]), tuple(roles[a.id])) for a in apps]


def _with_creator():
    creator = User.alias()
    return (ProtectedApp.select(ProtectedApp, creator)
            .join(creator, JOIN.LEFT_OUTER, on=(ProtectedApp.created_by == creator.id), attr="created_by"))


def list_apps(administered: Collection[Practice]) -> list[AppRow]:
    """The apps administered from here, by name, each with its practices, roles and who added it."""
    return _rows(list(_with_creator().where(_mine(administered)).order_by(fn.LOWER(ProtectedApp.name),
                                                                         ProtectedApp.id)))


def find_app(administered: Collection[Practice], app_id) -> AppRow | None:
    """An app administered from here, by an id from a URL or form; else None."""
    app_id = parse_id(app_id)
    if app_id is None:
        return None
    app = _with_creator().where((ProtectedApp.id == app_id) & _mine(administered)).first()
    return _rows([app])[0] if app is not None else None


def find_by_name_or_host(text: str) -> ProtectedApp | None:
    """An app by its exact name, else by its host (any spelling parse_host reads): for the console."""
    text = (text or "").strip()
    app = ProtectedApp.get_or_none(fn.LOWER(ProtectedApp.name) == text.lower())  # names are unique in any case
    if app is None:
        try:
            app = ProtectedApp.get_or_none(ProtectedApp.host == str(parse_host(text)))
        except GateInputError:
            return None
    return app


def all_roles() -> list[Role]:
    """The roles an app may be opened to, highest first."""
    return list(Role.select().order_by(Role.position))


# --- checking what was typed ---

def clean_name(text: str) -> tuple[str, FieldError | None]:
    """The name as stored (whitespace collapsed) and why it cannot be, if it cannot."""
    name = " ".join((text or "").split())
    if has_control_characters(text, allowed=TYPED_WHITESPACE):
        return (without_control_characters(name),
                FieldError("control_characters", "A name cannot contain control or invisible characters."))
    if not name:
        return name, FieldError("blank", "Enter a name, such as Patient charts or Imaging viewer.")
    if len(name) > NAME_MAX:
        return name, FieldError("too_long", f"A name can be at most {NAME_MAX} characters long (this one has "
                                            f"{len(name)}).")
    return name, None


@dataclass(frozen=True)
class _Checked:
    name: str
    host: Host | None
    practices: list[Practice]
    roles: list[Role]


def _check(typed: AppInput, administered: Collection[Practice], gate: GateSettings
           ) -> tuple[_Checked, dict[str, FieldError]]:
    """What can be told from the input alone (no other app)."""
    errors: dict[str, FieldError] = {}
    name, error = clean_name(typed.name)
    if error:
        errors["name"] = error
    host = None
    try:
        host = parse_host(typed.host)
    except GateInputError as exc:
        errors["host"] = FieldError("invalid", str(exc))
    if host is not None and (problem := host_problem(host, gate)):
        errors["host"] = problem
    if typed.proxy not in PROXIES:
        errors["proxy"] = FieldError("invalid_choice", "Choose the proxy in front of the app: nginx, Caddy or "
                                                       "Traefik.")
    mine = {p.id: p for p in administered}
    ids = list(dict.fromkeys(parse_id(i) for i in typed.practices))
    if not ids:
        errors["practices"] = FieldError("none_chosen", "Choose at least one practice whose people use the app.")
    elif any(i not in mine for i in ids):
        errors["practices"] = FieldError("not_yours", "Choose among the practices you administer from here.")
    practices = sorted((mine[i] for i in ids if i in mine), key=lambda p: p.name)
    roles: list[Role] = []
    if not typed.all_roles:
        role_ids = list(dict.fromkeys(parse_id(i) for i in typed.roles))
        known = {r.id: r for r in all_roles()}
        if not role_ids:
            errors["roles"] = FieldError("none_chosen", "Choose at least one role, or All roles.")
        elif any(i not in known for i in role_ids):
            errors["roles"] = FieldError("invalid_choice", "Choose among the roles listed.")
        else:
            roles = sorted((known[i] for i in role_ids), key=lambda r: r.position)
    return _Checked(name, host, practices, roles), errors


def _clashes(checked: _Checked, administered: Collection[Practice], app_id: int | None) -> dict[str, FieldError]:
    """Whether another app has this name or answers the same requests (read under the change lock)."""
    errors: dict[str, FieldError] = {}
    apps = ProtectedApp.select()
    if app_id is not None:
        apps = apps.where(ProtectedApp.id != app_id)
    if checked.name and apps.where(fn.LOWER(ProtectedApp.name) == checked.name.lower()).exists():
        errors["name"] = FieldError("duplicate", f"Another protected app is already called {checked.name}: "
                                                 "choose another name.")
    if checked.host is not None:
        clash = apps.where(ProtectedApp.host.in_(_forms_answering(checked.host))).order_by(ProtectedApp.id).first()
        if clash is not None:
            errors["host"] = _host_clash(checked.host, clash, administered)
    return errors


def _host_clash(host: Host, clash: ProtectedApp, administered: Collection[Practice]) -> FieldError:
    # The other app is named only to an administrator who may see it.
    visible = find_app(administered, clash.id) is not None
    who = f"{clash.name} ({clash.host})" if visible else "another protected app, of a practice you do not " \
                                                          "administer from here,"
    if clash.host == str(host):
        return FieldError("duplicate", f"{host} is already protected by {who}.")
    return FieldError("overlaps", f"{host} answers the same requests as {who}: a host without a port is reached "
                                  "on ports 80 and 443. Change that app, or give this one another host or port.")


# --- changing ---

def _audit(visit: Visit, action: str, practice_ids: Iterable[int], target: str, detail: str) -> None:
    """One audit event in each practice concerned; the server console is recorded as "cli" from "local"."""
    for practice_id in sorted(set(practice_ids)) or [None]:
        if visit.user is None:
            audit.record(action, actor_label="cli", actor_ip="local", practice=practice_id, target=target,
                         detail=detail)
        else:
            audit.record_by(visit, action, practice=practice_id, target=target, detail=detail)


def _roles_text(all_open: bool, roles: Sequence[Role]) -> str:
    return "all" if all_open else ", ".join(r.name for r in roles)


def _link(app: ProtectedApp, practices: Sequence[Practice], roles: Sequence[Role]) -> None:
    ProtectedAppPractice.delete().where(ProtectedAppPractice.app == app).execute()
    ProtectedAppRole.delete().where(ProtectedAppRole.app == app).execute()
    if practices:
        ProtectedAppPractice.insert_many([{"app": app.id, "practice": p.id} for p in practices]).execute()
    if roles:
        ProtectedAppRole.insert_many([{"app": app.id, "role": r.id} for r in roles]).execute()


def _refused(typed: AppInput, name: str, errors: dict[str, FieldError]) -> AppRefused:
    return AppRefused(AppInput(name, typed.host.strip(), typed.proxy, tuple(typed.practices), typed.all_roles,
                               tuple(typed.roles)), errors)


def _integrity_refusal(typed: AppInput, checked: _Checked) -> AppRefused:
    # The checks ran under the change lock, so only a writer that does not take it gets here; say what clashed.
    if ProtectedApp.select().where(ProtectedApp.host == str(checked.host)).exists():
        error = {"host": FieldError("duplicate", f"{checked.host} is already protected by another app.")}
    else:
        error = {"name": FieldError("duplicate", f"Another protected app is already called {checked.name}.")}
    return _refused(typed, checked.name, error)


def add_app(visit: Visit, administered: Collection[Practice], typed: AppInput,
            gate: GateSettings = GateSettings()) -> AppRow | AppRefused:
    """Add an app for practices administered from here; the new app, or why it was not added."""
    checked, errors = _check(typed, administered, gate)
    if errors:
        return _refused(typed, checked.name, errors)
    try:
        with change_lock():
            errors = _clashes(checked, administered, None)
            if errors:
                return _refused(typed, checked.name, errors)
            app = ProtectedApp.create(name=checked.name, host=str(checked.host), proxy=typed.proxy,
                                      all_roles=typed.all_roles, created_by=visit.user, created_at=visit.now,
                                      updated_at=visit.now)
            _link(app, checked.practices, checked.roles)
            _audit(visit, "app_added", [p.id for p in checked.practices], app.name,
                   f"host: {app.host}; proxy: {app.proxy}; practices: "
                   f"{', '.join(p.name for p in checked.practices)}; roles: "
                   f"{_roles_text(typed.all_roles, checked.roles)}")
    except IntegrityError:
        return _integrity_refusal(typed, checked)
    return find_app(administered, app.id) or _rows([app])[0]


def _not_yours(visit: Visit) -> Refusal:
    return Refusal("That protected app is not one you administer from here.",
                   visit.practice.id if visit.practice is not None else 0, False, advice="", code="not_yours")


def change_app(visit: Visit, administered: Collection[Practice], app_id, typed: AppInput,
               gate: GateSettings = GateSettings()) -> AppRow | AppRefused | Refusal:
    """Change an app administered from here (its practices both before and after among those administered); the
    app as saved, why not (AppRefused), or a Refusal ``not_yours`` when it is gone or out of reach."""
    checked, errors = _check(typed, administered, gate)
    if errors:
        return _refused(typed, checked.name, errors)
    try:
        with change_lock():
            before = find_app(administered, app_id)  # as it is now, under the lock
            if before is None:
                return _not_yours(visit)
            errors = _clashes(checked, administered, before.app.id)
            if errors:
                return _refused(typed, checked.name, errors)
            changes = _changes(before, checked, typed)
            if changes:
                ProtectedApp.update(name=checked.name, host=str(checked.host), proxy=typed.proxy,
                                    all_roles=typed.all_roles, updated_at=visit.now
                                    ).where(ProtectedApp.id == before.app.id).execute()
                _link(before.app, checked.practices, checked.roles)
                _audit(visit, "app_changed", {p.id for p in before.practices} | {p.id for p in checked.practices},
                       checked.name, "; ".join(changes))
    except IntegrityError:
        return _integrity_refusal(typed, checked)
    return find_app(administered, before.app.id)


def _changes(before: AppRow, checked: _Checked, typed: AppInput) -> list[str]:
    """What a change does, in the audit log's words (empty: nothing)."""
    app, changes = before.app, []
    if app.name != checked.name:
        changes.append(f"name: {app.name} → {checked.name}")
    if app.host != str(checked.host):
        changes.append(f"host: {app.host} → {checked.host}")
    if app.proxy != typed.proxy:
        changes.append(f"proxy: {app.proxy} → {typed.proxy}")
    was, now = {p.name for p in before.practices}, {p.name for p in checked.practices}
    if was != now:
        parts = [f"added to {', '.join(sorted(now - was))}" if now - was else "",
                 f"removed from {', '.join(sorted(was - now))}" if was - now else ""]
        changes.append("practices: " + "; ".join(p for p in parts if p))
    old_roles, new_roles = _roles_text(app.all_roles, before.roles), _roles_text(typed.all_roles, checked.roles)
    if old_roles != new_roles:
        changes.append(f"roles: {old_roles} → {new_roles}")
    return changes


def remove_app(visit: Visit, administered: Collection[Practice], app_id) -> AppRow | Refusal:
    """Remove an app administered from here: its proxy's next question about it is answered 403 (unknown host).
    The app as it was, or a Refusal ``not_yours`` when it is gone or out of reach."""
    with change_lock():
        row = find_app(administered, app_id)
        if row is None:
            return _not_yours(visit)
        ProtectedAppPractice.delete().where(ProtectedAppPractice.app == row.app.id).execute()
        ProtectedAppRole.delete().where(ProtectedAppRole.app == row.app.id).execute()
        ProtectedApp.delete().where(ProtectedApp.id == row.app.id).execute()
        _audit(visit, "app_removed", [p.id for p in row.practices], row.app.name, f"host: {row.app.host}")
    return row


def console_visit() -> Visit:
    """The server console's visit: no user (recorded as cli), no IP, every practice."""
    return Visit(None, None)


def every_practice() -> list[Practice]:
    return list(Practice.select().order_by(Practice.name))

"""What a signed-in user refused at a protected app sees: the app's practices as they stand for them from here, and
why the gate refuses them, in the product's words. The decision per practice is the visit's AccessOverview (the one
decide()); the app adds only its practices and roles, read as the gate reads them (domain.gate.GateApp)."""
from __future__ import annotations

from dataclasses import dataclass

from pbnsec.core.gate import GateInputError, parse_host
from pbnsec.domain.access import AccessOverview, why_blocked
from pbnsec.domain.gate import GateApp
from pbnsec.models import Practice, ProtectedApp, ProtectedAppPractice, ProtectedAppRole


@dataclass(frozen=True)
class AppAccess:
    """One user at one protected app from one IP."""

    app: ProtectedApp
    practices: tuple[Practice, ...]  # the app's practices, by name
    access: AccessOverview  # the user's own rows, for those of the app's practices they belong to
    role_allowed: bool

    @property
    def allowed(self) -> bool:
        """Whether the gate lets them through now: a role the app takes, and a practice of the app allowing them."""
        return self.role_allowed and bool(self.access.allowed)

    def reason(self, ip_text: str) -> str:
        """Why the gate refuses them, for the page; empty when it does not."""
        names = ", ".join(p.name for p in self.practices) or "no practice yet"
        if not self.role_allowed:
            return f"{self.app.name} is not open to your role ({self.access.user.role.name})."
        if not self.access.rows:
            return (f"{self.app.name} belongs to {names}; you are not a member of "
                    f"{'it' if len(self.practices) == 1 else 'any of them'}.")
        if self.allowed:
            return ""
        blocked = [why_blocked(row.decision, row.practice, ip_text) for row in self.access.rows]
        if all(row.status == "outside_hours" for row in self.access.rows):
            return f"{self.app.name} belongs to {names}: you are {'; '.join(blocked)}."
        return f"{self.app.name} belongs to {names}, where your IP address {ip_text} requires approval."


def app_access(app_id: int | None, access: AccessOverview) -> AppAccess | None:
    """The protected app `app_id` as the overview's user sees it from the overview's IP; None when there is none."""
    app = ProtectedApp.get_or_none(ProtectedApp.id == app_id) if app_id is not None else None
    if app is None:
        return None
    practices = tuple(Practice.select().join(ProtectedAppPractice, on=ProtectedAppPractice.practice == Practice.id)
                      .where(ProtectedAppPractice.app == app).order_by(Practice.name))
    ids = frozenset(p.id for p in practices)
    roles = frozenset(r.role_id for r in ProtectedAppRole.select().where(ProtectedAppRole.app == app))
    try:
        host = parse_host(app.host)
    except GateInputError:
        host = None  # a row written by hand: the gate never matches it, but its page can still say why
    role_allowed = GateApp(app.id, app.name, host, app.proxy, app.all_roles, ids, roles).takes(access.user)
    # No access request opens an app to a role it does not take: then no practice is shown or offered.
    mine = access._replace(rows=tuple(row for row in access.rows if role_allowed and row.practice.id in ids))
    return AppAccess(app, practices, mine, role_allowed)

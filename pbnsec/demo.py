"""Demo data for `make demo`: two practices, their people, an allowlist and pending requests."""
from __future__ import annotations

from ipaddress import ip_network

from pbnsec.db import database
from pbnsec.domain.users import create_practice, create_user
from pbnsec.models import (
    AccessRequest,
    AllowlistEntry,
    IPRestriction,
    Membership,
    Practice,
    Role,
    User,
)

DEMO_PASSWORD = "demo-password-2026"
PRACTICES = ("Riverside Dental", "Lakeside Dental")
PEOPLE = (
    ("admin@riverside.example", "Ann Lee", "Admin", ["Riverside Dental"]),
    ("admin@lakeside.example", "Bob Stone", "Admin", ["Lakeside Dental"]),
    ("frontdesk@riverside.example", "Fay Desk", "Front Desk", ["Riverside Dental"]),
    ("hygienist@example.example", "Hal Hygienist", "Hygienist", ["Riverside Dental", "Lakeside Dental"]),
    ("provider@lakeside.example", "Dr Pia Provider", "Provider", ["Lakeside Dental"]),
)
ENTRIES = (
    ("127.0.0.0/8", "This machine (demo)", None),
    ("192.0.2.0/24", "Riverside office network", "Riverside Dental"),
    ("198.51.100.0/24", "Lakeside office network", "Lakeside Dental"),
    ("2001:db8:1::/48", "Head office IPv6", None),
)
REQUESTS = (
    ("hygienist@example.example", "Riverside Dental", "203.0.113.7", "Working from home on Thursdays."),
    ("hygienist@example.example", "Lakeside Dental", "203.0.113.7", ""),
    ("provider@lakeside.example", "Lakeside Dental", "203.0.113.42", "Hospital on-call room."),
)


class DemoRefused(ValueError):
    """The database holds real work: demo people with a published password do not belong in it."""


def check_demo_target() -> None:
    """Refuse a database in use: IP restrictions switched on, or people other than the Owner and the demo's."""
    demo_emails = {email for email, *_ in PEOPLE}
    others = User.select().join(Role).where((Role.name != "Owner") & User.email.not_in(demo_emails)).exists()
    if others or IPRestriction.select().where(IPRestriction.enforced).exists():
        raise DemoRefused(
            f"This database is in use (people or IP restrictions of its own): the demo would add people with the "
            f"published password {DEMO_PASSWORD!r} and allowlist this machine. Load it into a database of its "
            "own, e.g. PBNSEC_DATABASE_URL=sqlite:///instance/demo.db make demo, or add --force.")


def load_demo() -> list[str]:
    """Add what is missing (it can run twice); returns lines to show."""
    lines = []
    with database.atomic():
        for name in PRACTICES:
            if not Practice.select().where(Practice.name == name).exists():
                create_practice(name)
        for email, name, role, practices in PEOPLE:
            if not User.select().where(User.email == email).exists():
                create_user(email, name, role, practices, DEMO_PASSWORD)
                lines.append(f"{role:<10} {email}  (password: {DEMO_PASSWORD})")
        by_name = {p.name: p for p in Practice.select()}
        for owner in User.select().join(Role).where(Role.name == "Owner"):  # the Owner sees the demo too
            for name in PRACTICES:
                Membership.insert(user=owner, practice=by_name[name]).on_conflict_ignore().execute()
        for network, label, practice_name in ENTRIES:
            net = ip_network(network)
            practice = by_name.get(practice_name)
            AllowlistEntry.insert(**AllowlistEntry.stored(net, practice, label=label)).on_conflict_ignore().execute()
        for name in PRACTICES:
            IPRestriction.get_or_create(practice=by_name[name])
        for email, practice_name, ip, note in REQUESTS:
            user, practice = User.get(User.email == email), by_name[practice_name]
            if not AccessRequest.select().where((AccessRequest.user == user) & (AccessRequest.practice == practice)).exists():
                AccessRequest.create(user=user, practice=practice, ip=ip, note=note)
    lines.append("Demo data loaded: 2 practices, an allowlist, and 3 pending access requests.")
    lines.append("!" * 64)
    lines.append("WARNING: the demo allowlists 127.0.0.0/8 (this machine) for All practices, so you can try")
    lines.append("it here. Behind a proxy on this machine EVERYONE looks like 127.0.0.1 and gets in: delete")
    lines.append("the entry 'This machine (demo)' before real use.")
    lines.append("!" * 64)
    lines.append("IP restrictions stay off until an administrator switches them on in General Settings.")
    return lines

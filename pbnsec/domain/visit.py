"""A visit: who is asking, from which IP, in which practice, and when. Built once per request (or CLI command)
and handed to every domain operation, which never reads Flask's globals."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from pbnsec.core.iprules import IPAddress
from pbnsec.models import Practice, User, utcnow


@dataclass(frozen=True)
class Visit:
    user: User | None  # None before sign-in
    ip: IPAddress | None  # None when the client's IP cannot be determined
    practice: Practice | None = None  # the practice being worked in
    now: datetime = None  # type: ignore[assignment]  # filled with utcnow() when not given

    def __post_init__(self):
        if self.now is None:
            object.__setattr__(self, "now", utcnow())

    @property
    def ip_text(self) -> str:
        """The IP as the audit log and messages show it."""
        return str(self.ip) if self.ip is not None else "unknown"

    def in_practice(self, practice: Practice | None) -> "Visit":
        return replace(self, practice=practice)

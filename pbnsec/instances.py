"""Several app instances on one database must share one secret key: a session cookie signed by one is checked by
the others. The key's fingerprint (never the key) is kept in the database by the first instance to start; an
instance started with another key refuses to start, in one line that says what to do."""
from __future__ import annotations

import hashlib
import hmac

from pbnsec.config import ConfigError
from pbnsec.db import change_lock
from pbnsec.models import DeploymentSetting

FINGERPRINT = "secret_key_fingerprint"


class SecretKeyMismatch(ConfigError):
    """This instance's PBNSEC_SECRET_KEY is not the one the database was served with."""


def fingerprint(secret_key: str) -> str:
    """16 hex digits that tell keys apart without giving anything of the key away (an HMAC of a fixed text)."""
    return hmac.new(secret_key.encode(), b"pbnsec secret key fingerprint", hashlib.sha256).hexdigest()[:16]


def check_secret_key(secret_key: str) -> None:
    """Record the key's fingerprint on first start; raise SecretKeyMismatch when the database knows another key."""
    mine = fingerprint(secret_key)
    with change_lock():  # two first instances starting together: one records, the other compares
        row = DeploymentSetting.get_or_none(DeploymentSetting.name == FINGERPRINT)
        if row is None:
            DeploymentSetting.create(name=FINGERPRINT, value=mine)
            return
    if row.value != mine:
        raise SecretKeyMismatch(
            f"this database is served with another PBNSEC_SECRET_KEY (fingerprint {row.value}, this instance's is "
            f"{mine}). Every instance on one database needs the same key, or a sign-in made on one is refused by "
            "the others: set PBNSEC_SECRET_KEY to the key the other instances use. To change the key on purpose, "
            "stop every instance and run `flask --app app security adopt-secret-key` with the new key set.")


def adopt_secret_key(secret_key: str) -> tuple[str | None, str]:
    """Make this key the database's (after a deliberate change); (the old fingerprint or None, the new one)."""
    mine = fingerprint(secret_key)
    with change_lock():
        row = DeploymentSetting.get_or_none(DeploymentSetting.name == FINGERPRINT)
        if row is None:
            DeploymentSetting.create(name=FINGERPRINT, value=mine)
        else:
            DeploymentSetting.update(value=mine).where(DeploymentSetting.name == FINGERPRINT).execute()
    return (row.value if row else None), mine

"""Salted hashes of erased people: the suppression list that keeps them out of every later audience.

An erased person's address (its `contact_rules.email_key`) and contact id are kept only as
HMAC-SHA-256 digests keyed by a secret salt, in the `erased_subjects` table. The salt comes from
the environment (`NPS_PRIVACY_SALT`) or the password of the Airflow connection `nps_privacy`;
never from code. Without the salt a digest cannot be tested against a guessed address.

An audience load hashes its rows a chunk at a time and leaves out those whose digest is listed
(one join in the NPS DB), and only when the list holds anyone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable

from sqlalchemy import Connection, Engine, text

from include.nps.core import storage

SALT_ENV = "NPS_PRIVACY_SALT"
SALT_CONN_ID = "nps_privacy"
EMAIL, CONTACT_ID = "email", "contact_id"
KEYS_TABLE = "(row_number INTEGER NOT NULL, subject_hash VARCHAR(64) NOT NULL)"


class SaltMissing(RuntimeError):
    """No salt is configured, so no one can be erased or looked up on the suppression list."""


def salt() -> bytes:
    """The secret salt: `NPS_PRIVACY_SALT`, else the `nps_privacy` connection's password."""
    value = os.environ.get(SALT_ENV)
    if not value:
        from include.nps.core.connections import _airflow_connection

        try:
            conn = _airflow_connection(SALT_CONN_ID)
        except Exception:
            conn = None
        value = conn.password if conn is not None else None
    if not value:
        raise SaltMissing(
            f"no privacy salt: set the environment variable {SALT_ENV} or the password of the Airflow "
            f"connection {SALT_CONN_ID!r} (a long random secret, the same for every process, never changed)"
        )
    return value.encode()


def digests(kind: str, keys: Iterable[str], key: bytes | None = None) -> list[str]:
    """The salted digest of each already normalised key (`kind` is `email` or `contact_id`)."""
    base = hmac.new(key or salt(), f"{kind}:".encode(), hashlib.sha256)
    out = []
    for value in keys:
        h = base.copy()
        h.update(value.encode())
        out.append(h.hexdigest())
    return out


def anyone_erased(bind: Engine | Connection) -> bool:
    """Whether the suppression list holds anyone (else nothing needs hashing)."""
    sql = text("SELECT 1 FROM erased_subjects LIMIT 1")
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return conn.execute(sql).first() is not None
    return bind.execute(sql).first() is not None


def listed_rows(conn: Connection, numbers: list[int], keys: dict[str, list[str]]) -> set[int]:
    """Of these rows (their numbers, and per kind their normalised keys in the same order), those
    whose digest of any kind is on the suppression list: one join per chunk, in `conn`."""
    key = salt()
    with storage.temporary_table(conn, "subject_keys", KEYS_TABLE) as table:
        for kind, values in keys.items():
            storage.copy_rows(
                conn,
                "subject_keys",
                ("row_number", "subject_hash"),
                zip(numbers, digests(kind, values, key), strict=True),
            )
        found = conn.execute(
            text(
                f"SELECT DISTINCT k.row_number FROM {table} k JOIN erased_subjects e ON e.subject_hash = k.subject_hash"
            )
        ).all()
    return {int(row[0]) for row in found}

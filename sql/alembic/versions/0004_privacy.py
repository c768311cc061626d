"""Personal data under control: the suppression list of erased people and the audit trail.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 12:40:00

`erased_subjects`: a person erased on request, kept only as a salted hash (HMAC-SHA-256 with the
`NPS_PRIVACY_SALT` secret) of their address or contact id, so that an audience load can leave
them out without the NPS DB holding the address any more. `key_kind` says which one was hashed.

`audit_events`: who triggered a wave, a drop, an erasure, an export, a retention run or applied
sales decisions, when, on what (wave id, erasure id) and with which counts. It never holds personal
data of customers: `actor` is a colleague (an Airflow user or the CLI's operator), `details` holds
counts and file kinds only.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE erased_subjects (
            subject_hash    VARCHAR(64) PRIMARY KEY,
            key_kind        VARCHAR(16) NOT NULL,
            erasure_id      VARCHAR(64) NOT NULL,
            erased_at       TIMESTAMP NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE audit_events (
            event_id        VARCHAR(64) PRIMARY KEY,
            occurred_at     TIMESTAMP NOT NULL,
            actor           VARCHAR(254) NOT NULL,
            action          VARCHAR(32) NOT NULL,
            object_id       VARCHAR(250),
            wave_id         VARCHAR(128),
            details         TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    op.create_index("audit_events_at", "audit_events", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("erased_subjects")

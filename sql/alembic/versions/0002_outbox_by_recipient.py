"""The outbox by recipient: the contact-frequency rule finds a contact's sent invitations by index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 09:49:19.902560

The audience snapshot leaves out a contact sent an invitation by another wave that opened within
`frequency_days` (sql/queries/snapshot_audience.sql). Its outbox rows were found by scanning the
outbox (the primary key and `outbox_recipient` both lead with the wave); this index leads with the
recipient and holds kind, status and wave, so the rule is one index look-up per contact, however
many waves came before.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("outbox_by_recipient", "outbox", ["recipient", "kind", "status", "wave_id"])


def downgrade() -> None:
    op.drop_index("outbox_by_recipient", table_name="outbox")

"""Provisional responses: a score clicked in the email counts before the customer presses Send.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-03 12:50:00

`responses.completed`: false while the answer is only the score the customer clicked in the email,
recorded by the survey page's script once a person was looking at the page (`survey.js`); true once
the form was sent (every answer before this revision was sent, hence the default). A provisional
answer counts in the NPS like any other; the figures say how many answers were completed.

`survey_link_probes`: when a link's hidden probe (in the survey page, followed only by scanners that
fetch every link of a page) was last fetched. A provisional answer recorded shortly before is
withdrawn and none is taken shortly after (`responses.PROBE_WINDOW`). It names a wave and contact
only, like `outbox`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("responses", sa.Column("completed", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.execute(
        """
        CREATE TABLE survey_link_probes (
            wave_id         VARCHAR(128) NOT NULL,
            contact_id      VARCHAR(64) NOT NULL,
            probed_at       TIMESTAMP NOT NULL,
            PRIMARY KEY (wave_id, contact_id)
        )
        """
    )


def downgrade() -> None:
    op.drop_table("survey_link_probes")
    op.execute("ALTER TABLE responses DROP COLUMN completed")  # SQLite 3.35+ keeps the table's CHECKs

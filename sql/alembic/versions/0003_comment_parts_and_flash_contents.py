"""Comment parts as classified, kept once per wave; the flash results' shared content, kept once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:40:00

`comment_parts`: each part of a response's comment as the comment classifier split and classified
it (pro, con or suggestion, and its theme), so that the flash results and the retrospective read
one classification instead of classifying every comment again. A row names the response revision
and the classifier (`comment_themes.classifier_key`: the classifier and the themes file) it was
made with; a row of another revision or classifier is stale and is classified again. A comment with
no part to classify (only emoji or punctuation) keeps one row with part 0 and no kind, so that it
is not read again. Comment text is personal data, as in `responses`.

`flash_contents`: what every reader's flash-results email shares (the figures, the NPS trend, the
quotes, the themes to work on, the done action items), computed once when the mailing is prepared
and read by every send task, so that all readers are told the same and no send task reads the
wave's responses again.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE comment_parts (
            wave_id         VARCHAR(128) NOT NULL,
            contact_id      VARCHAR(64) NOT NULL,
            part            INTEGER NOT NULL,
            revision        INTEGER NOT NULL,
            classifier      VARCHAR(64) NOT NULL,
            kind            VARCHAR(16),
            theme           VARCHAR(64),
            matched         TEXT NOT NULL,
            text            TEXT NOT NULL,
            PRIMARY KEY (wave_id, contact_id, part)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE flash_contents (
            wave_id         VARCHAR(128) PRIMARY KEY,
            content         TEXT NOT NULL,
            computed_at     TIMESTAMP NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.drop_table("flash_contents")
    op.drop_table("comment_parts")

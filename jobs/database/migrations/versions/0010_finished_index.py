"""An index of the messages by the time they became final, so that "what did the senders
finish lately?" (status's failure check, the console's nights) reads those messages alone,
however many years of history the table holds. Before, each was a scan of every warning ever
queued.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    finished = sa.text("final_at IS NOT NULL")
    op.create_index(
        "ix_warnings_final_at",
        "warnings",
        ["final_at"],
        postgresql_where=finished,
        sqlite_where=finished,
    )


def downgrade() -> None:
    op.drop_index("ix_warnings_final_at", table_name="warnings")

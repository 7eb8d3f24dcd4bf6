"""The numbers changed since the last night, and the rules each night's window was queued under,
so that a night examines inside the warning window only the numbers whose due stage changed
since the last night and the numbers changed since: about 5% of the base where it probed a
fifth of it (docs/scaling.md). Runs from before this migration have no rules recorded: the
first night after it examines the whole window, as every night did before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("number_changes", sa.Column("msisdn", sa.String(16), nullable=False))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("window_rules", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("window_rules")
    op.drop_table("number_changes")

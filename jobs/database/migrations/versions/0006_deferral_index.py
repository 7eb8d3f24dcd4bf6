"""An index of the recycle deferrals alone, so that a night's "already deferred in this cycle?"
is one probe per number however long the audit history grows.

Before, the run found a number's deferral events through the index of all its audit events
(two years of history: dozens a number) and, with statistics taken before the deferrals grew,
could compare every number with every deferral event (tests/benchmarks/history.py ran for
minutes at a million numbers).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    deferred = sa.text("event_type = 'recycle.deferred'")
    op.create_index(
        "ix_audit_events_deferrals",
        "audit_events",
        ["msisdn", "cycle"],
        postgresql_where=deferred,
        sqlite_where=deferred,
    )


def downgrade() -> None:
    op.drop_index("ix_audit_events_deferrals", table_name="audit_events")

"""Safeguards: holds, transfer consents, and the rules the database enforces itself.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from jobs.database import guards

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("placed_by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=128), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["msisdn"], ["numbers.msisdn"], name=op.f("fk_holds_msisdn_numbers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    op.create_index(
        "ix_holds_open_msisdn",
        "holds",
        ["msisdn"],
        unique=True,
        sqlite_where=sa.text("released_at IS NULL"),
        postgresql_where=sa.text("released_at IS NULL"),
    )
    with op.batch_alter_table("ownerships") as batch:
        batch.add_column(sa.Column("consent_current", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("consent_new", sa.String(length=128), nullable=True))
        batch.create_check_constraint(
            op.f("ck_ownerships_transfer_has_both_consents"),
            "start_cause <> 'transfer' OR (consent_current IS NOT NULL AND consent_new IS NOT NULL"
            " AND length(trim(consent_current)) > 0 AND length(trim(consent_new)) > 0)",
        )
    op.create_index(op.f("ix_ownerships_ended_at"), "ownerships", ["ended_at"], unique=False)
    statements = (
        guards.POSTGRESQL_V1 if op.get_context().dialect.name == "postgresql" else guards.SQLITE_V1
    )
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    statements = (
        guards.POSTGRESQL_V1_DROP
        if op.get_context().dialect.name == "postgresql"
        else guards.SQLITE_V1_DROP
    )
    for statement in statements:
        op.execute(statement)
    with op.batch_alter_table("ownerships") as batch:
        batch.drop_constraint(op.f("ck_ownerships_transfer_has_both_consents"), type_="check")
        batch.drop_column("consent_new")
        batch.drop_column("consent_current")
    op.drop_index(op.f("ix_ownerships_ended_at"), table_name="ownerships")
    op.drop_index("ix_holds_open_msisdn", table_name="holds")
    op.drop_table("holds")

"""Initial schema: numbers, ownerships, top-ups, warnings, the resale pool, runs and audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.String(length=64), nullable=True),
        sa.Column("cycle", sa.Integer(), nullable=True),
        sa.Column("stage", sa.Integer(), nullable=True),
        sa.Column("warning_id", sa.Integer(), nullable=True),
        sa.Column("validity_end_before", sa.Date(), nullable=True),
        sa.Column("validity_end_after", sa.Date(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(
        op.f("ix_audit_events_msisdn_id"), "audit_events", ["msisdn", "id"], unique=False
    )
    op.create_index(op.f("ix_audit_events_run_id"), "audit_events", ["run_id"], unique=False)

    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_applied", sa.Integer(), nullable=False),
        sa.Column("rows_ignored", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.CheckConstraint(
            "kind IN ('subscribers', 'topups', 'seed')", name=op.f("ck_imports_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("catch_up", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("warnings_queued", sa.JSON(), nullable=True),
        sa.Column("recycled", sa.Integer(), nullable=True),
        sa.Column("deferred", sa.Integer(), nullable=True),
        sa.Column("withheld", sa.Integer(), nullable=True),
        sa.Column("on_hold", sa.Integer(), nullable=True),
        sa.Column("guards", sa.JSON(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('running', 'succeeded', 'withheld', 'failed', 'interrupted', 'abandoned')",
            name=op.f("ck_runs_outcome"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_as_of"), "runs", ["as_of"], unique=False)

    op.create_table(
        "numbers",
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=True),
        sa.Column("validity_end", sa.Date(), nullable=True),
        sa.Column("cycle", sa.Integer(), server_default="1", nullable=False),
        sa.Column("on_hold", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("recycled_by_run_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("language IN ('km', 'en')", name=op.f("ck_numbers_language")),
        sa.CheckConstraint(
            "(owner_id IS NULL AND language IS NULL AND validity_end IS NULL) OR (owner_id IS NOT NULL AND language IS NOT NULL AND validity_end IS NOT NULL)",
            name=op.f("ck_numbers_owned_fields_together"),
        ),
        sa.ForeignKeyConstraint(
            ["recycled_by_run_id"], ["runs.id"], name=op.f("fk_numbers_recycled_by_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("msisdn", name=op.f("pk_numbers")),
    )
    op.create_index(
        "ix_numbers_owned_validity_end",
        "numbers",
        ["validity_end"],
        unique=False,
        sqlite_where=sa.text("owner_id IS NOT NULL"),
        postgresql_where=sa.text("owner_id IS NOT NULL"),
    )
    op.create_index(
        "ix_numbers_recycled_by_run_id",
        "numbers",
        ["recycled_by_run_id"],
        unique=False,
        sqlite_where=sa.text("recycled_by_run_id IS NOT NULL"),
        postgresql_where=sa.text("recycled_by_run_id IS NOT NULL"),
    )

    op.create_table(
        "ownerships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("start_cause", sa.String(length=16), nullable=False),
        sa.Column("started_by", sa.String(length=128), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_on", sa.Date(), nullable=True),
        sa.Column("end_cause", sa.String(length=16), nullable=True),
        sa.Column("ended_by", sa.String(length=128), nullable=True),
        sa.Column("final_validity_end", sa.Date(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "end_cause IS NULL OR end_cause IN ('recycle', 'transfer', 'reinstatement')",
            name=op.f("ck_ownerships_end_cause"),
        ),
        sa.CheckConstraint(
            "start_cause IN ('import', 'seed', 'sale', 'transfer', 'reinstatement')",
            name=op.f("ck_ownerships_start_cause"),
        ),
        sa.ForeignKeyConstraint(
            ["msisdn"], ["numbers.msisdn"], name=op.f("fk_ownerships_msisdn_numbers")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_ownerships_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ownerships")),
    )
    op.create_index(
        op.f("ix_ownerships_msisdn_started_at"),
        "ownerships",
        ["msisdn", "started_at"],
        unique=False,
    )
    op.create_index(
        "ix_ownerships_open_msisdn",
        "ownerships",
        ["msisdn"],
        unique=True,
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )

    op.create_table(
        "topups",
        sa.Column("topup_id", sa.String(length=64), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("topped_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("validity_end", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("moved_validity", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"], ["imports.id"], name=op.f("fk_topups_import_id_imports")
        ),
        sa.ForeignKeyConstraint(
            ["msisdn"], ["numbers.msisdn"], name=op.f("fk_topups_msisdn_numbers")
        ),
        sa.PrimaryKeyConstraint("topup_id", name=op.f("pk_topups")),
    )
    op.create_index(op.f("ix_topups_msisdn"), "topups", ["msisdn"], unique=False)
    op.create_index(op.f("ix_topups_topped_up_at"), "topups", ["topped_up_at"], unique=False)

    op.create_table(
        "warnings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("grace_end", sa.Date(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("encoding", sa.String(length=8), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), server_default="pending", nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_on", sa.Date(), nullable=False),
        sa.Column("queued_by_run_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("gateway_message_id", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("final_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("final_on", sa.Date(), nullable=True),
        sa.Column("cancel_reason", sa.String(length=32), nullable=True),
        sa.CheckConstraint("encoding IN ('GSM-7', 'UCS-2')", name=op.f("ck_warnings_encoding")),
        sa.CheckConstraint(
            "state IN ('pending', 'sending', 'sent', 'delivered', 'failed', 'cancelled')",
            name=op.f("ck_warnings_state"),
        ),
        sa.CheckConstraint("stage >= 0", name=op.f("ck_warnings_stage")),
        sa.ForeignKeyConstraint(
            ["msisdn"], ["numbers.msisdn"], name=op.f("fk_warnings_msisdn_numbers")
        ),
        sa.ForeignKeyConstraint(
            ["queued_by_run_id"], ["runs.id"], name=op.f("fk_warnings_queued_by_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warnings")),
        sa.UniqueConstraint(
            "msisdn", "cycle", "stage", name=op.f("uq_warnings_msisdn_cycle_stage")
        ),
    )
    op.create_index(
        "ix_warnings_due",
        "warnings",
        ["next_attempt_at"],
        unique=False,
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_warnings_in_flight",
        "warnings",
        ["lease_expires_at"],
        unique=False,
        sqlite_where=sa.text("state = 'sending'"),
        postgresql_where=sa.text("state = 'sending'"),
    )
    op.create_index(
        op.f("ix_warnings_queued_by_run_id"), "warnings", ["queued_by_run_id"], unique=False
    )

    op.create_table(
        "resale_pool",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("previous_ownership_id", sa.Integer(), nullable=False),
        sa.Column("recycled_by_run_id", sa.Integer(), nullable=True),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entered_on", sa.Date(), nullable=False),
        sa.Column("available_from", sa.Date(), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("left_on", sa.Date(), nullable=True),
        sa.Column("left_cause", sa.String(length=16), nullable=True),
        sa.Column("new_ownership_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "left_cause IS NULL OR left_cause IN ('sold', 'reinstated')",
            name=op.f("ck_resale_pool_left_cause"),
        ),
        sa.ForeignKeyConstraint(
            ["msisdn"], ["numbers.msisdn"], name=op.f("fk_resale_pool_msisdn_numbers")
        ),
        sa.ForeignKeyConstraint(
            ["new_ownership_id"],
            ["ownerships.id"],
            name=op.f("fk_resale_pool_new_ownership_id_ownerships"),
        ),
        sa.ForeignKeyConstraint(
            ["previous_ownership_id"],
            ["ownerships.id"],
            name=op.f("fk_resale_pool_previous_ownership_id_ownerships"),
        ),
        sa.ForeignKeyConstraint(
            ["recycled_by_run_id"], ["runs.id"], name=op.f("fk_resale_pool_recycled_by_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resale_pool")),
    )
    op.create_index(
        "ix_resale_pool_current_msisdn",
        "resale_pool",
        ["msisdn"],
        unique=True,
        sqlite_where=sa.text("left_at IS NULL"),
        postgresql_where=sa.text("left_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_resale_pool_current_msisdn",
        table_name="resale_pool",
        sqlite_where=sa.text("left_at IS NULL"),
        postgresql_where=sa.text("left_at IS NULL"),
    )

    op.drop_table("resale_pool")
    op.drop_index(op.f("ix_warnings_queued_by_run_id"), table_name="warnings")
    op.drop_index(
        "ix_warnings_in_flight",
        table_name="warnings",
        sqlite_where=sa.text("state = 'sending'"),
        postgresql_where=sa.text("state = 'sending'"),
    )
    op.drop_index(
        "ix_warnings_due",
        table_name="warnings",
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )

    op.drop_table("warnings")
    op.drop_index(op.f("ix_topups_topped_up_at"), table_name="topups")
    op.drop_index(op.f("ix_topups_msisdn"), table_name="topups")

    op.drop_table("topups")
    op.drop_index(
        "ix_ownerships_open_msisdn",
        table_name="ownerships",
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.drop_index(op.f("ix_ownerships_msisdn_started_at"), table_name="ownerships")

    op.drop_table("ownerships")
    op.drop_index(
        "ix_numbers_recycled_by_run_id",
        table_name="numbers",
        sqlite_where=sa.text("recycled_by_run_id IS NOT NULL"),
        postgresql_where=sa.text("recycled_by_run_id IS NOT NULL"),
    )
    op.drop_index(
        "ix_numbers_owned_validity_end",
        table_name="numbers",
        sqlite_where=sa.text("owner_id IS NOT NULL"),
        postgresql_where=sa.text("owner_id IS NOT NULL"),
    )

    op.drop_table("numbers")
    op.drop_index(op.f("ix_runs_as_of"), table_name="runs")

    op.drop_table("runs")
    op.drop_table("imports")
    op.drop_index(op.f("ix_audit_events_run_id"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_msisdn_id"), table_name="audit_events")

    op.drop_table("audit_events")

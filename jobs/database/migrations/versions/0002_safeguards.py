"""Safeguards: holds, transfer consents, and the rules the database enforces itself.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# The database's own rules as this revision wrote them, frozen here: a later change to them is a
# later revision, never an edit of this one. PostgreSQL checks the owner rule at commit (a
# deferred constraint trigger, recognising what the transaction wrote by the rows' xmin);
# SQLite, without deferred triggers or transaction ids, statement by statement.
POSTGRESQL_V1 = [
    """
    CREATE FUNCTION recycler_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_events_append_only
        BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION recycler_audit_append_only()
    """,
    """
    CREATE TRIGGER audit_events_no_truncate
        BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION recycler_audit_append_only()
    """,
    """
    CREATE FUNCTION recycler_ownership_history() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'ownership records are history: DELETE refused'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF OLD.ended_at IS NOT NULL THEN
            RAISE EXCEPTION 'ownership % of % has ended: it is history and cannot change',
                OLD.id, OLD.msisdn USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.msisdn IS DISTINCT FROM OLD.msisdn
            OR NEW.owner_id IS DISTINCT FROM OLD.owner_id
            OR NEW.started_at IS DISTINCT FROM OLD.started_at
            OR NEW.start_cause IS DISTINCT FROM OLD.start_cause
            OR NEW.started_by IS DISTINCT FROM OLD.started_by
            OR NEW.consent_current IS DISTINCT FROM OLD.consent_current
            OR NEW.consent_new IS DISTINCT FROM OLD.consent_new THEN
            RAISE EXCEPTION 'ownership % of %: only its end may be recorded', OLD.id, OLD.msisdn
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER ownerships_history
        BEFORE UPDATE OR DELETE ON ownerships
        FOR EACH ROW EXECUTE FUNCTION recycler_ownership_history()
    """,
    """
    CREATE FUNCTION recycler_owner_change() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        this_transaction xid := pg_current_xact_id()::xid;
        now_owner text;
        now_held boolean;
        started_cause text;
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.owner_id IS NOT DISTINCT FROM NEW.owner_id THEN
            RETURN NULL;
        END IF;
        -- Checked at commit: judge the number as the transaction leaves it.
        SELECT owner_id, on_hold INTO now_owner, now_held FROM numbers WHERE msisdn = NEW.msisdn;
        IF TG_OP = 'UPDATE' AND OLD.owner_id IS NOT DISTINCT FROM now_owner THEN
            RETURN NULL;
        END IF;
        IF now_owner IS NULL THEN
            IF now_held THEN
                RAISE EXCEPTION 'number % is on hold: it cannot be recycled', NEW.msisdn
                    USING ERRCODE = 'check_violation';
            END IF;
            IF NOT EXISTS (
                SELECT 1 FROM ownerships o
                WHERE o.msisdn = NEW.msisdn AND o.xmin = this_transaction
                  AND o.end_cause = 'recycle')
               OR NOT EXISTS (
                SELECT 1 FROM resale_pool p
                WHERE p.msisdn = NEW.msisdn AND p.xmin = this_transaction
                  AND p.left_at IS NULL) THEN
                RAISE EXCEPTION 'number % lost its owner without a recycle into the pool',
                    NEW.msisdn USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END IF;
        SELECT o.start_cause INTO started_cause FROM ownerships o
        WHERE o.msisdn = NEW.msisdn AND o.owner_id = now_owner AND o.ended_at IS NULL
          AND o.xmin = this_transaction;
        IF started_cause IS NULL THEN
            RAISE EXCEPTION 'number % changed owner without an ownership record', NEW.msisdn
                USING ERRCODE = 'check_violation';
        END IF;
        IF TG_OP = 'INSERT' THEN
            IF started_cause NOT IN ('import', 'seed') THEN
                RAISE EXCEPTION 'new number % must start with an imported ownership', NEW.msisdn
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END IF;
        IF started_cause NOT IN ('sale', 'transfer', 'reinstatement') THEN
            RAISE EXCEPTION 'number % changed owner by %, which is not a permitted cause',
                NEW.msisdn, started_cause USING ERRCODE = 'check_violation';
        END IF;
        IF now_held AND started_cause <> 'reinstatement' THEN
            RAISE EXCEPTION 'number % is on hold: it cannot be sold or transferred', NEW.msisdn
                USING ERRCODE = 'check_violation';
        END IF;
        IF OLD.owner_id IS NULL THEN
            -- From the pool: the pool entry must have been closed here, by sale or reinstatement.
            IF started_cause = 'transfer' OR NOT EXISTS (
                SELECT 1 FROM resale_pool p
                WHERE p.msisdn = NEW.msisdn AND p.xmin = this_transaction
                  AND p.left_cause = CASE started_cause
                      WHEN 'sale' THEN 'sold' ELSE 'reinstated' END) THEN
                RAISE EXCEPTION 'number % left the pool without a recorded sale or reinstatement',
                    NEW.msisdn USING ERRCODE = 'check_violation';
            END IF;
        ELSIF started_cause = 'sale' OR NOT EXISTS (
            SELECT 1 FROM ownerships o
            WHERE o.msisdn = NEW.msisdn AND o.owner_id = OLD.owner_id
              AND o.xmin = this_transaction AND o.end_cause = started_cause) THEN
            RAISE EXCEPTION 'the ownership of % by % did not end by %', NEW.msisdn, OLD.owner_id,
                started_cause USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE CONSTRAINT TRIGGER numbers_owner_change
        AFTER INSERT OR UPDATE OF owner_id ON numbers
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION recycler_owner_change()
    """,
]

POSTGRESQL_V1_DROP = [
    "DROP TRIGGER numbers_owner_change ON numbers",
    "DROP FUNCTION recycler_owner_change()",
    "DROP TRIGGER ownerships_history ON ownerships",
    "DROP FUNCTION recycler_ownership_history()",
    "DROP TRIGGER audit_events_no_truncate ON audit_events",
    "DROP TRIGGER audit_events_append_only ON audit_events",
    "DROP FUNCTION recycler_audit_append_only()",
]

SQLITE_V1 = [
    """
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END
    """,
    """
    CREATE TRIGGER ownerships_no_delete BEFORE DELETE ON ownerships
    BEGIN SELECT RAISE(ABORT, 'ownership records are history: DELETE refused'); END
    """,
    """
    CREATE TRIGGER ownerships_history BEFORE UPDATE ON ownerships
    WHEN OLD.ended_at IS NOT NULL
        OR NEW.msisdn IS NOT OLD.msisdn
        OR NEW.owner_id IS NOT OLD.owner_id
        OR NEW.started_at IS NOT OLD.started_at
        OR NEW.start_cause IS NOT OLD.start_cause
        OR NEW.started_by IS NOT OLD.started_by
        OR NEW.consent_current IS NOT OLD.consent_current
        OR NEW.consent_new IS NOT OLD.consent_new
    BEGIN SELECT RAISE(ABORT, 'ownership records are history: only their end may be recorded');
    END
    """,
    """
    CREATE TRIGGER numbers_owner_recycled BEFORE UPDATE OF owner_id ON numbers
    WHEN OLD.owner_id IS NOT NULL AND NEW.owner_id IS NULL AND (
        NEW.on_hold
        OR EXISTS (SELECT 1 FROM ownerships o WHERE o.msisdn = NEW.msisdn AND o.ended_at IS NULL)
        OR NOT EXISTS (
            SELECT 1 FROM ownerships o
            WHERE o.msisdn = NEW.msisdn AND o.owner_id = OLD.owner_id AND o.end_cause = 'recycle')
        OR NOT EXISTS (
            SELECT 1 FROM resale_pool p WHERE p.msisdn = NEW.msisdn AND p.left_at IS NULL))
    BEGIN SELECT RAISE(ABORT, 'a number loses its owner only by a recycle into the pool'); END
    """,
    """
    CREATE TRIGGER numbers_owner_given BEFORE UPDATE OF owner_id ON numbers
    WHEN NEW.owner_id IS NOT NULL AND NEW.owner_id IS NOT OLD.owner_id AND NOT EXISTS (
        SELECT 1 FROM ownerships o
        WHERE o.msisdn = NEW.msisdn AND o.owner_id = NEW.owner_id AND o.ended_at IS NULL
          AND (o.start_cause IN ('transfer', 'reinstatement')
               OR (o.start_cause = 'sale' AND OLD.owner_id IS NULL))
          AND (NOT NEW.on_hold OR o.start_cause = 'reinstatement'))
    BEGIN SELECT RAISE(ABORT, 'a number changes owner only by sale, transfer or reinstatement');
    END
    """,
]

SQLITE_V1_DROP = [
    "DROP TRIGGER numbers_owner_given",
    "DROP TRIGGER numbers_owner_recycled",
    "DROP TRIGGER ownerships_history",
    "DROP TRIGGER ownerships_no_delete",
    "DROP TRIGGER audit_events_no_delete",
    "DROP TRIGGER audit_events_no_update",
]


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
    statements = POSTGRESQL_V1 if op.get_context().dialect.name == "postgresql" else SQLITE_V1
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    statements = (
        POSTGRESQL_V1_DROP if op.get_context().dialect.name == "postgresql" else SQLITE_V1_DROP
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

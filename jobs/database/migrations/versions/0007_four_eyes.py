"""Four eyes: a request, the owner's notice, a cool-off and a second person before a number is
taken from the owner who has it (issue 13).

- ``transfer_requests``: a transfer or a forced reinstatement asked for, with its evidence;
  ``transfer_decisions``: the one decision on it (approved, rejected, objected). Both append-only.
- ``warnings`` also carries the owner's notice of a request (``kind``): it has no cycle, stage or
  grace end, so no rule about a cycle's warnings counts it as notice of anything.
- ``ownerships.request_id``: the approved request a transfer or forced reinstatement carried out,
  once only, and fixed once written.
- The database's own rule: a number goes from one owner to another only if the ownership that
  starts names a request for exactly that move, approved by someone other than its requester
  (on PostgreSQL: in the same transaction), after the cool-off (a transfer), with the owner's
  notice in a final state (and, if it failed, an approval that says why it may go ahead anyway).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APPEND_ONLY = ("transfer_requests", "transfer_decisions")

POSTGRESQL_UP = [
    """
    CREATE FUNCTION recycler_requests_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% rows are append-only: % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    *(
        statement
        for table in APPEND_ONLY
        for statement in (
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION recycler_requests_append_only()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION recycler_requests_append_only()",
        )
    ),
    """
    CREATE FUNCTION recycler_ownership_request_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ownership % of %: the request it carried out cannot change',
            OLD.id, OLD.msisdn USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE TRIGGER ownerships_request_fixed BEFORE UPDATE ON ownerships
        FOR EACH ROW WHEN (NEW.request_id IS DISTINCT FROM OLD.request_id)
        EXECUTE FUNCTION recycler_ownership_request_fixed()
    """,
    # Row by row, and only for a move from one owner to another (a transfer or a forced
    # reinstatement, one number at a time): the night's recycles and the imports' top-ups never
    # reach the function.
    """
    CREATE FUNCTION recycler_owner_approved() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        this_transaction xid := pg_current_xact_id()::xid;
        started record;
        asked record;
        decided record;
        notice_state text;
    BEGIN
        SELECT o.start_cause, o.request_id INTO started FROM ownerships o
        WHERE o.msisdn = NEW.msisdn AND o.ended_at IS NULL;
        IF NOT FOUND OR started.start_cause NOT IN ('transfer', 'reinstatement') THEN
            RETURN NULL;  -- not a move this rule covers; the owner-change guard judges it
        END IF;
        IF started.request_id IS NULL THEN
            RAISE EXCEPTION 'number % went from % to % without an approved request: a second person must approve it',
                NEW.msisdn, OLD.owner_id, NEW.owner_id USING ERRCODE = 'check_violation';
        END IF;
        SELECT * INTO asked FROM transfer_requests r WHERE r.id = started.request_id;
        IF NOT FOUND OR asked.msisdn <> NEW.msisdn OR asked.kind <> started.start_cause
           OR asked.from_owner <> OLD.owner_id OR asked.to_owner <> NEW.owner_id THEN
            RAISE EXCEPTION 'number % went from % to %, which is not what request % asked for',
                NEW.msisdn, OLD.owner_id, NEW.owner_id, started.request_id
                USING ERRCODE = 'check_violation';
        END IF;
        SELECT * INTO decided FROM transfer_decisions d
        WHERE d.request_id = asked.id AND d.decision = 'approved' AND d.xmin = this_transaction;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'request % for number % was not approved in this transaction',
                asked.id, NEW.msisdn USING ERRCODE = 'check_violation';
        END IF;
        IF decided.decided_by = asked.requested_by THEN
            RAISE EXCEPTION 'request % for number % was approved by its own requester %: a second person must approve it',
                asked.id, NEW.msisdn, asked.requested_by USING ERRCODE = 'check_violation';
        END IF;
        IF asked.kind = 'transfer' AND decided.decided_at < asked.cooloff_until THEN
            RAISE EXCEPTION 'request % for number % was approved before its cool-off ended',
                asked.id, NEW.msisdn USING ERRCODE = 'check_violation';
        END IF;
        SELECT w.state INTO notice_state FROM warnings w WHERE w.request_id = asked.id;
        IF notice_state IS NULL OR notice_state NOT IN ('sent', 'delivered', 'failed') THEN
            RAISE EXCEPTION 'request % for number %: the owner''s notice has not reached a final state',
                asked.id, NEW.msisdn USING ERRCODE = 'check_violation';
        END IF;
        IF notice_state = 'failed' AND decided.notice_failed IS NULL THEN
            RAISE EXCEPTION 'request % for number %: the owner''s notice failed, and the approval does not say why it may go ahead',
                asked.id, NEW.msisdn USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER numbers_owner_approved
        AFTER UPDATE OF owner_id ON numbers
        FOR EACH ROW
        WHEN (OLD.owner_id IS NOT NULL AND NEW.owner_id IS NOT NULL
              AND OLD.owner_id IS DISTINCT FROM NEW.owner_id)
        EXECUTE FUNCTION recycler_owner_approved()
    """,
]

POSTGRESQL_DOWN = [
    "DROP TRIGGER numbers_owner_approved ON numbers",
    "DROP FUNCTION recycler_owner_approved()",
    "DROP TRIGGER ownerships_request_fixed ON ownerships",
    "DROP FUNCTION recycler_ownership_request_fixed()",
]

# SQLite has neither transaction ids nor deferred checks: the rule is checked as the number's
# owner changes, over what the transaction wrote before (the ownership, the decision, the
# notice); that the approval was made in the same transaction it cannot tell, so one approval
# is kept to one move by the unique request_id of ownerships instead.
SQLITE_UP = [
    *(
        statement
        for table in APPEND_ONLY
        for statement in (
            f"""
            CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} rows are append-only: UPDATE refused'); END
            """,
            f"""
            CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} rows are append-only: DELETE refused'); END
            """,
        )
    ),
    """
    CREATE TRIGGER ownerships_request_fixed BEFORE UPDATE ON ownerships
    WHEN NEW.request_id IS NOT OLD.request_id
    BEGIN SELECT RAISE(ABORT, 'the request an ownership carried out cannot change'); END
    """,
    """
    CREATE TRIGGER numbers_owner_approved BEFORE UPDATE OF owner_id ON numbers
    WHEN OLD.owner_id IS NOT NULL AND NEW.owner_id IS NOT NULL
        AND NEW.owner_id IS NOT OLD.owner_id
        AND EXISTS (
            SELECT 1 FROM ownerships o
            WHERE o.msisdn = NEW.msisdn AND o.ended_at IS NULL
              AND o.start_cause IN ('transfer', 'reinstatement'))
        AND NOT EXISTS (
            SELECT 1 FROM ownerships o
            JOIN transfer_requests r ON r.id = o.request_id
            JOIN transfer_decisions d ON d.request_id = r.id
            JOIN warnings w ON w.request_id = r.id
            WHERE o.msisdn = NEW.msisdn AND o.ended_at IS NULL
              AND r.msisdn = NEW.msisdn AND r.kind = o.start_cause
              AND r.from_owner = OLD.owner_id AND r.to_owner = NEW.owner_id
              AND d.decision = 'approved' AND d.decided_by <> r.requested_by
              AND (r.kind <> 'transfer' OR d.decided_at >= r.cooloff_until)
              AND w.state IN ('sent', 'delivered', 'failed')
              AND (w.state <> 'failed' OR d.notice_failed IS NOT NULL))
    BEGIN SELECT RAISE(ABORT, 'a number goes from one owner to another only by a request approved by a second person, after its cool-off and the owner''s notice');
    END
    """,
]
SQLITE_DOWN = [
    "DROP TRIGGER numbers_owner_approved",
    "DROP TRIGGER ownerships_request_fixed",
    *(
        f"DROP TRIGGER {table}_{suffix}"
        for table in APPEND_ONLY
        for suffix in ("no_update", "no_delete")
    ),
]

NOTICE_FIELDS = (
    "(kind = 'warning' AND cycle IS NOT NULL AND stage IS NOT NULL"
    " AND grace_end IS NOT NULL AND request_id IS NULL)"
    " OR (kind = 'owner_notice' AND cycle IS NULL AND stage IS NULL"
    " AND grace_end IS NULL AND request_id IS NOT NULL)"
)
CLAIMABLE_NOTICE = "kind = 'owner_notice' AND state IN ('pending', 'blocked')"


def _create_tables() -> None:
    op.create_table(
        "transfer_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ownership_id", sa.Integer(), nullable=False),
        sa.Column("from_owner", sa.String(length=64), nullable=False),
        sa.Column("to_owner", sa.String(length=64), nullable=False),
        sa.Column("to_language", sa.String(length=2), nullable=False),
        sa.Column("previous_ownership_id", sa.Integer(), nullable=True),
        sa.Column("validity_end", sa.Date(), nullable=True),
        sa.Column("consent_current", sa.String(length=128), nullable=True),
        sa.Column("consent_new", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_on", sa.Date(), nullable=False),
        sa.Column("cooloff_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('transfer', 'reinstatement')", name=op.f("ck_transfer_requests_kind")
        ),
        sa.CheckConstraint(
            "to_language IN ('km', 'en')", name=op.f("ck_transfer_requests_to_language")
        ),
        sa.CheckConstraint(
            "kind <> 'transfer' OR (consent_current IS NOT NULL AND consent_new IS NOT NULL"
            " AND length(trim(consent_current)) > 0 AND length(trim(consent_new)) > 0)",
            name=op.f("ck_transfer_requests_transfer_has_both_consents"),
        ),
        sa.CheckConstraint(
            "kind <> 'reinstatement' OR previous_ownership_id IS NOT NULL",
            name=op.f("ck_transfer_requests_reinstatement_names_owner"),
        ),
        sa.CheckConstraint(
            "from_owner <> to_owner", name=op.f("ck_transfer_requests_another_owner")
        ),
        sa.CheckConstraint(
            "cooloff_until >= requested_at AND expires_at > requested_at",
            name=op.f("ck_transfer_requests_times"),
        ),
        sa.ForeignKeyConstraint(
            ["msisdn"], ["numbers.msisdn"], name=op.f("fk_transfer_requests_msisdn_numbers")
        ),
        sa.ForeignKeyConstraint(
            ["ownership_id"],
            ["ownerships.id"],
            name=op.f("fk_transfer_requests_ownership_id_ownerships"),
        ),
        sa.ForeignKeyConstraint(
            ["previous_ownership_id"],
            ["ownerships.id"],
            name=op.f("fk_transfer_requests_previous_ownership_id_ownerships"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_requests")),
    )
    op.create_index(op.f("ix_transfer_requests_msisdn_id"), "transfer_requests", ["msisdn", "id"])
    op.create_index(
        op.f("ix_transfer_requests_requested_by_requested_on"),
        "transfer_requests",
        ["requested_by", "requested_on"],
    )
    op.create_table(
        "transfer_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("notice_failed", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "decision IN ('approved', 'rejected', 'objected')",
            name=op.f("ck_transfer_decisions_decision"),
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["transfer_requests.id"],
            name=op.f("fk_transfer_decisions_request_id_transfer_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfer_decisions")),
        sa.UniqueConstraint("request_id", name=op.f("uq_transfer_decisions_request_id")),
    )


def upgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    _create_tables()
    # Added in place (no rebuild): SQLite would drop the table's triggers with a rebuild.
    with op.batch_alter_table("ownerships") as batch:
        batch.add_column(sa.Column("request_id", sa.Integer(), nullable=True))
    op.create_index(
        "ix_ownerships_request_id",
        "ownerships",
        ["request_id"],
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    # SQLite changes a column's nullability only by rebuilding the table; no trigger names
    # warnings yet, so the rebuild loses none. PostgreSQL drops NOT NULL in the catalogue.
    with op.batch_alter_table("warnings", recreate="auto" if postgresql else "always") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), server_default="warning", nullable=False)
        )
        batch.add_column(sa.Column("request_id", sa.Integer(), nullable=True))
        for column, kind in (
            ("cycle", sa.Integer()),
            ("stage", sa.Integer()),
            ("grace_end", sa.Date()),
        ):
            batch.alter_column(column, existing_type=kind, nullable=True)
        batch.create_check_constraint(
            op.f("ck_warnings_kind"), "kind IN ('warning', 'owner_notice')"
        )
        batch.create_check_constraint(op.f("ck_warnings_kind_fields"), NOTICE_FIELDS)
    op.create_index(
        "ix_warnings_due_notices",
        "warnings",
        ["next_attempt_at"],
        sqlite_where=sa.text(CLAIMABLE_NOTICE),
        postgresql_where=sa.text(CLAIMABLE_NOTICE),
    )
    op.create_index(
        "ix_warnings_request_id",
        "warnings",
        ["request_id"],
        unique=True,
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    for statement in POSTGRESQL_UP if postgresql else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    for statement in POSTGRESQL_DOWN if postgresql else SQLITE_DOWN:
        op.execute(statement)
    op.drop_index("ix_warnings_request_id", table_name="warnings")
    op.drop_index("ix_warnings_due_notices", table_name="warnings")
    op.execute("DELETE FROM warnings WHERE kind = 'owner_notice'")
    with op.batch_alter_table("warnings", recreate="auto" if postgresql else "always") as batch:
        batch.drop_constraint(op.f("ck_warnings_kind_fields"), type_="check")
        batch.drop_constraint(op.f("ck_warnings_kind"), type_="check")
        for column, kind in (
            ("cycle", sa.Integer()),
            ("stage", sa.Integer()),
            ("grace_end", sa.Date()),
        ):
            batch.alter_column(column, existing_type=kind, nullable=False)
        batch.drop_column("request_id")
        batch.drop_column("kind")
    op.drop_index("ix_ownerships_request_id", table_name="ownerships")
    # In place: a rebuild would drop the triggers of ownerships on SQLite (3.35 and later drop a
    # column without one).
    op.execute("ALTER TABLE ownerships DROP COLUMN request_id")
    op.drop_table("transfer_decisions")
    op.drop_table("transfer_requests")
    if postgresql:
        op.execute("DROP FUNCTION recycler_requests_append_only()")

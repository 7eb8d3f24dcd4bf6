"""Delivery receipts (issue 15): a sent message becomes delivered or undelivered.

- ``warnings.state`` may be ``undelivered``; a warning keeps the moment and local date its
  receipt came, and the network's error code (``receipt_at``, ``receipt_on``, ``receipt_code``),
  beside the date the gateway accepted it (``final_on``, from which notice counts).
- ``delivery_receipts``: every final receipt the API was given, append-only for the API, applied
  to its message by the senders (``applied_at``, ``warning_id``).
- Warnings are found by their gateway message id (a Twilio SID, a Kannel reference).
- The database's four-eyes rule counts an undelivered owner's notice as final, and, like a failed
  one, lets it through only with an approval that says how the owner was reached instead.

SQLite changes a CHECK constraint only by rebuilding the table, and refuses to rename a table
while a trigger names one that is missing: its four-eyes trigger (which reads warnings) is
dropped before the rebuild and made again after it, in its new form.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STATES_BEFORE = (
    "state IN ('pending', 'sending', 'blocked', 'sent', 'delivered', 'failed', 'cancelled')"
)
STATES = (
    "state IN ('pending', 'sending', 'blocked', 'sent', 'delivered', 'undelivered', 'failed', "
    "'cancelled')"
)
WAITING = "applied_at IS NULL"
HAS_MESSAGE_ID = "gateway_message_id IS NOT NULL"


def _owner_approved_postgresql(final: str, needs_reason: str) -> str:
    return f"""
    CREATE OR REPLACE FUNCTION recycler_owner_approved() RETURNS trigger LANGUAGE plpgsql AS $$
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
        IF notice_state IS NULL OR notice_state NOT IN ({final}) THEN
            RAISE EXCEPTION 'request % for number %: the owner''s notice has not reached a final state',
                asked.id, NEW.msisdn USING ERRCODE = 'check_violation';
        END IF;
        IF notice_state IN ({needs_reason}) AND decided.notice_failed IS NULL THEN
            RAISE EXCEPTION 'request % for number %: the owner''s notice failed, and the approval does not say why it may go ahead',
                asked.id, NEW.msisdn USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END
    $$
    """


def _owner_approved_sqlite(final: str, needs_reason: str) -> str:
    return f"""
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
              AND w.state IN ({final})
              AND (w.state NOT IN ({needs_reason}) OR d.notice_failed IS NOT NULL))
    BEGIN SELECT RAISE(ABORT, 'a number goes from one owner to another only by a request approved by a second person, after its cool-off and the owner''s notice');
    END
    """


FINAL_BEFORE, NEEDS_REASON_BEFORE = "'sent', 'delivered', 'failed'", "'failed'"
FINAL, NEEDS_REASON = "'sent', 'delivered', 'undelivered', 'failed'", "'failed', 'undelivered'"


def upgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    if not postgresql:
        op.execute("DROP TRIGGER numbers_owner_approved")
    with op.batch_alter_table("warnings", recreate="auto" if postgresql else "always") as batch:
        batch.add_column(sa.Column("receipt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("receipt_on", sa.Date(), nullable=True))
        batch.add_column(sa.Column("receipt_code", sa.String(length=32), nullable=True))
        batch.drop_constraint(op.f("ck_warnings_state"), type_="check")
        batch.create_check_constraint(op.f("ck_warnings_state"), STATES)
    op.create_index(
        "ix_warnings_gateway_message_id",
        "warnings",
        ["gateway_message_id"],
        postgresql_where=sa.text(HAS_MESSAGE_ID),
        sqlite_where=sa.text(HAS_MESSAGE_ID),
    )
    op.create_table(
        "delivery_receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("gateway", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("warning_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('delivered', 'undelivered')", name=op.f("ck_delivery_receipts_outcome")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_receipts")),
    )
    op.create_index("ix_delivery_receipts_message_id_id", "delivery_receipts", ["message_id", "id"])
    op.create_index(
        "ix_delivery_receipts_waiting",
        "delivery_receipts",
        ["id"],
        postgresql_where=sa.text(WAITING),
        sqlite_where=sa.text(WAITING),
    )
    if postgresql:
        op.execute(_owner_approved_postgresql(FINAL, NEEDS_REASON))
    else:
        op.execute(_owner_approved_sqlite(FINAL, NEEDS_REASON))


def downgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    # A receipt's outcome goes back to what the gateway's acceptance said: sent.
    op.execute("UPDATE warnings SET state = 'sent' WHERE state = 'undelivered'")
    if not postgresql:
        op.execute("DROP TRIGGER numbers_owner_approved")
    op.drop_index("ix_delivery_receipts_waiting", table_name="delivery_receipts")
    op.drop_index("ix_delivery_receipts_message_id_id", table_name="delivery_receipts")
    op.drop_table("delivery_receipts")
    op.drop_index("ix_warnings_gateway_message_id", table_name="warnings")
    with op.batch_alter_table("warnings", recreate="auto" if postgresql else "always") as batch:
        batch.drop_constraint(op.f("ck_warnings_state"), type_="check")
        batch.create_check_constraint(op.f("ck_warnings_state"), STATES_BEFORE)
        batch.drop_column("receipt_code")
        batch.drop_column("receipt_on")
        batch.drop_column("receipt_at")
    if postgresql:
        op.execute(_owner_approved_postgresql(FINAL_BEFORE, NEEDS_REASON_BEFORE))
    else:
        op.execute(_owner_approved_sqlite(FINAL_BEFORE, NEEDS_REASON_BEFORE))

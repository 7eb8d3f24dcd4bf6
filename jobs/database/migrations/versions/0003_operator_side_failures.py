"""Operator-side failures are no notice: the `blocked` warning state, the `covered` run outcome.

Before this revision a warning the gateway refused for any reason became `failed`, and `failed`
counted as notice: a wrong auth token, a closed port or an unwritable outbox let numbers be
recycled that were never warned. From now on `failed` means refused for a reason about the
subscriber's number only; everything on the operator's side leaves the warning `blocked` (retried
by every sender, never counted as notice).

This migration re-classifies the warnings already `failed` for any other cause: those of a
number's current cycle become `blocked` and go out on the next `recycler send`; those of a cycle
that has since ended are cancelled. Each gets a `warning.reclassified` audit event; when the
number was recycled after such a warning, the event says so, so that care can find it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen here: the Twilio codes that are about the subscriber's number, as of this revision.
RECIPIENT_CODES = (
    "21211",
    "21217",
    "21401",
    "21407",
    "21408",
    "21421",
    "21610",
    "21612",
    "21614",
    "21635",
    "30003",
    "30004",
    "30005",
    "30006",
)
WARNING_STATES_BEFORE = (
    "state IN ('pending', 'sending', 'sent', 'delivered', 'failed', 'cancelled')"
)
WARNING_STATES_AFTER = (
    "state IN ('pending', 'sending', 'blocked', 'sent', 'delivered', 'failed', 'cancelled')"
)
RUN_OUTCOMES_BEFORE = (
    "outcome IN ('running', 'succeeded', 'withheld', 'failed', 'interrupted', 'abandoned')"
)
RUN_OUTCOMES_AFTER = (
    "outcome IN ('running', 'succeeded', 'withheld', 'covered', 'failed', 'interrupted', "
    "'abandoned')"
)


def _replace_check(table: str, name: str, condition: str) -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition})")
        return
    with op.batch_alter_table(table, recreate="always") as batch:
        batch.drop_constraint(op.f(name), type_="check")
        batch.create_check_constraint(op.f(name), condition)


def _due_index(predicate: str) -> None:
    op.create_index(
        "ix_warnings_due",
        "warnings",
        ["next_attempt_at"],
        unique=False,
        sqlite_where=sa.text(predicate),
        postgresql_where=sa.text(predicate),
    )


def upgrade() -> None:
    op.drop_index("ix_warnings_due", table_name="warnings")
    op.drop_index("ix_warnings_in_flight", table_name="warnings")
    _replace_check("warnings", "ck_warnings_state", WARNING_STATES_AFTER)
    _replace_check("runs", "ck_runs_outcome", RUN_OUTCOMES_AFTER)
    codes = ", ".join(f"'{code}'" for code in RECIPIENT_CODES)
    cast = "::json" if op.get_context().dialect.name == "postgresql" else ""

    def as_json(text: str) -> str:
        return f"'{text}'{cast}"

    operator_side = (
        f"w.state = 'failed' AND (w.error_code IS NULL OR w.error_code NOT IN ({codes}))"
    )
    current = "n.msisdn = w.msisdn AND n.cycle = w.cycle AND n.owner_id IS NOT NULL"
    op.execute(
        f"""
        INSERT INTO audit_events (occurred_at, event_type, msisdn, actor, owner_id, cycle,
                                  stage, warning_id, reason, details)
        SELECT CURRENT_TIMESTAMP, 'warning.reclassified', w.msisdn, 'migration:0003',
               w.owner_id, w.cycle, w.stage, w.id,
               CASE WHEN EXISTS (SELECT 1 FROM numbers n WHERE {current})
                    THEN 'failed on the operator''s side (' || coalesce(w.error_code, '?')
                         || '): it gave no notice; blocked, to be sent again'
                    ELSE 'failed on the operator''s side (' || coalesce(w.error_code, '?')
                         || '): it gave no notice; its cycle has ended, cancelled'
               END,
               CASE WHEN EXISTS (SELECT 1 FROM ownerships o
                                 WHERE o.msisdn = w.msisdn AND o.end_cause = 'recycle'
                                   AND o.ended_at > w.final_at)
                    THEN {as_json('{"recycled_after": true}')}
                    ELSE {as_json('{"recycled_after": false}')}
               END
        FROM warnings w
        WHERE {operator_side}
        """
    )
    op.execute(
        f"""
        UPDATE warnings SET state = 'blocked', final_at = NULL, final_on = NULL,
               next_attempt_at = CURRENT_TIMESTAMP, lease_expires_at = NULL, claimed_by = NULL
        WHERE id IN (SELECT w.id FROM warnings w WHERE {operator_side}
                     AND EXISTS (SELECT 1 FROM numbers n WHERE {current}))
        """
    )
    op.execute(
        f"""
        UPDATE warnings SET state = 'cancelled', cancel_reason = 'superseded',
               final_at = NULL, final_on = NULL
        WHERE id IN (SELECT w.id FROM warnings w WHERE {operator_side})
        """
    )
    _due_index("state IN ('pending', 'blocked')")
    op.create_index(
        "ix_warnings_in_flight",
        "warnings",
        ["lease_expires_at"],
        unique=False,
        sqlite_where=sa.text("state = 'sending'"),
        postgresql_where=sa.text("state = 'sending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_warnings_due", table_name="warnings")
    op.drop_index("ix_warnings_in_flight", table_name="warnings")
    # A blocked warning was never sent: before this revision the nearest word is pending.
    op.execute("UPDATE warnings SET state = 'pending' WHERE state = 'blocked'")
    op.execute("UPDATE runs SET outcome = 'succeeded' WHERE outcome = 'covered'")
    _replace_check("runs", "ck_runs_outcome", RUN_OUTCOMES_BEFORE)
    _replace_check("warnings", "ck_warnings_state", WARNING_STATES_BEFORE)
    _due_index("state = 'pending'")
    op.create_index(
        "ix_warnings_in_flight",
        "warnings",
        ["lease_expires_at"],
        unique=False,
        sqlite_where=sa.text("state = 'sending'"),
        postgresql_where=sa.text("state = 'sending'"),
    )

"""A recycling night writes and reads only what it recycles.

Measured on a steady night at ten million numbers (62,000 numbers recycled, PostgreSQL 15):

- The resale pool's foreign keys go, as those of the other tables written in bulk did
  (revision 0004): four checks per new pool row, 1.5 s a night. Their parents (numbers,
  ownerships, runs) are never deleted, which the database refuses outright, and every pool row
  is written from the ownership it ends or starts, in the same transaction.
- The open warnings of a cycle get an index of their own (``ix_warnings_open``): ending a cycle
  cancels them, and found through the key index every settled warning of the cycle was read to
  skip it (four per recycled number, 1.4-3.2 s a night).
- The owner-change guard (``recycler_owners_changed``, revision 0004) asks about each changed
  number by probes of its own (scalar subqueries with LIMIT 1, which the planner can neither
  hash nor turn into a join, with sequential scans off), instead of NOT EXISTS: for a statement
  that recycled tens of thousands of numbers the planner hashed every ownership ever written
  (1.1 s at ten million, and growing with the years of history the ownerships keep). Rule for
  rule the same checks. The pool's entries get an index by number for the guard's questions
  about a sale or a reinstatement (the existing one holds the current entries only).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

POOL_FOREIGN_KEYS = (
    ("fk_resale_pool_msisdn_numbers", ["msisdn"], "numbers", ["msisdn"]),
    (
        "fk_resale_pool_previous_ownership_id_ownerships",
        ["previous_ownership_id"],
        "ownerships",
        ["id"],
    ),
    ("fk_resale_pool_recycled_by_run_id_runs", ["recycled_by_run_id"], "runs", ["id"]),
    ("fk_resale_pool_new_ownership_id_ownerships", ["new_ownership_id"], "ownerships", ["id"]),
)
OPEN = sa.text("state IN ('pending', 'sending', 'blocked')")

OWNERS_CHANGED = """
    CREATE OR REPLACE FUNCTION recycler_owners_changed() RETURNS trigger LANGUAGE plpgsql
    -- Planned afresh for each statement's transition tables (a plan cached from a statement
    -- that changed nothing would join two big ones row by row), never by a nested loop, and
    -- each question about a changed number by an index probe of its own.
    SET plan_cache_mode = force_custom_plan
    SET enable_nestloop = off
    SET enable_seqscan = off
    AS $$
    DECLARE
        this_transaction xid := pg_current_xact_id()::xid;
        culprit record;
    BEGIN
        SELECT * INTO culprit FROM (
            SELECT c.msisdn, c.old_owner, c.cause, CASE
                WHEN c.new_owner IS NULL AND c.held THEN 'held recycle'
                WHEN c.new_owner IS NULL AND (
                    (SELECT 1 FROM ownerships o
                     WHERE o.msisdn = c.msisdn AND o.xmin = this_transaction
                       AND o.end_cause = 'recycle' LIMIT 1) IS NULL
                    OR (SELECT 1 FROM resale_pool p
                        WHERE p.msisdn = c.msisdn AND p.xmin = this_transaction
                          AND p.left_at IS NULL LIMIT 1) IS NULL) THEN 'no recycle'
                WHEN c.new_owner IS NULL THEN NULL
                WHEN c.cause IS NULL THEN 'no record'
                WHEN c.cause NOT IN ('sale', 'transfer', 'reinstatement') THEN 'bad cause'
                WHEN c.held AND c.cause <> 'reinstatement' THEN 'held change'
                WHEN c.old_owner IS NULL AND (c.cause = 'transfer' OR (
                    SELECT 1 FROM resale_pool p
                    WHERE p.msisdn = c.msisdn AND p.xmin = this_transaction
                      AND p.left_cause = CASE c.cause WHEN 'sale' THEN 'sold'
                                                      ELSE 'reinstated' END
                    LIMIT 1) IS NULL)
                    THEN 'no pool exit'
                WHEN c.old_owner IS NOT NULL AND (c.cause = 'sale' OR (
                    SELECT 1 FROM ownerships o
                    WHERE o.msisdn = c.msisdn AND o.owner_id = c.old_owner
                      AND o.xmin = this_transaction AND o.end_cause = c.cause
                    LIMIT 1) IS NULL)
                    THEN 'not ended'
            END AS problem
            FROM (
                SELECT b.msisdn, b.owner_id AS old_owner, a.owner_id AS new_owner,
                       a.on_hold AS held,
                       (SELECT o.start_cause FROM ownerships o
                        WHERE o.msisdn = a.msisdn AND o.owner_id = a.owner_id
                          AND o.ended_at IS NULL AND o.xmin = this_transaction) AS cause
                FROM before b JOIN after a ON a.msisdn = b.msisdn
                WHERE a.owner_id IS DISTINCT FROM b.owner_id
            ) c
        ) checked
        WHERE checked.problem IS NOT NULL
        LIMIT 1;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF culprit.problem = 'held recycle' THEN
            RAISE EXCEPTION 'number % is on hold: it cannot be recycled', culprit.msisdn
                USING ERRCODE = 'check_violation';
        ELSIF culprit.problem = 'no recycle' THEN
            RAISE EXCEPTION 'number % lost its owner without a recycle into the pool',
                culprit.msisdn USING ERRCODE = 'check_violation';
        ELSIF culprit.problem = 'no record' THEN
            RAISE EXCEPTION 'number % changed owner without an ownership record', culprit.msisdn
                USING ERRCODE = 'check_violation';
        ELSIF culprit.problem = 'bad cause' THEN
            RAISE EXCEPTION 'number % changed owner by %, which is not a permitted cause',
                culprit.msisdn, culprit.cause USING ERRCODE = 'check_violation';
        ELSIF culprit.problem = 'held change' THEN
            RAISE EXCEPTION 'number % is on hold: it cannot be sold or transferred',
                culprit.msisdn USING ERRCODE = 'check_violation';
        ELSIF culprit.problem = 'no pool exit' THEN
            RAISE EXCEPTION 'number % left the pool without a recorded sale or reinstatement',
                culprit.msisdn USING ERRCODE = 'check_violation';
        ELSE
            RAISE EXCEPTION 'the ownership of % by % did not end by %', culprit.msisdn,
                culprit.old_owner, culprit.cause USING ERRCODE = 'check_violation';
        END IF;
    END
    $$
"""


def _owners_changed_0004() -> str:
    """The guard as revision 0004 wrote it (for a downgrade), from that revision's own file."""
    path = Path(__file__).with_name("0004_bulk_paths.py")
    spec = importlib.util.spec_from_file_location("revision_0004", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (created,) = (
        statement
        for statement in module.POSTGRESQL_UP
        if "CREATE FUNCTION recycler_owners_changed()" in statement
    )
    return str(created).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    if postgresql:
        for name, *_ in POOL_FOREIGN_KEYS:
            op.drop_constraint(name, "resale_pool", type_="foreignkey")
        op.execute(OWNERS_CHANGED)
    else:
        # The numbers triggers name the pool; renaming the rebuilt table must leave them be.
        op.execute("PRAGMA legacy_alter_table = ON")
        with op.batch_alter_table("resale_pool", recreate="always") as batch:
            for name, *_ in POOL_FOREIGN_KEYS:
                batch.drop_constraint(name, type_="foreignkey")
        op.execute("PRAGMA legacy_alter_table = OFF")
    op.create_index(
        "ix_warnings_open",
        "warnings",
        ["msisdn", "cycle"],
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )
    op.create_index("ix_resale_pool_msisdn", "resale_pool", ["msisdn"])


def downgrade() -> None:
    postgresql = op.get_context().dialect.name == "postgresql"
    op.drop_index("ix_resale_pool_msisdn", table_name="resale_pool")
    op.drop_index("ix_warnings_open", table_name="warnings")
    if postgresql:
        op.execute(_owners_changed_0004())
        for name, columns, parent, parent_columns in POOL_FOREIGN_KEYS:
            op.create_foreign_key(name, "resale_pool", parent, columns, parent_columns)
    else:
        op.execute("PRAGMA legacy_alter_table = ON")
        with op.batch_alter_table("resale_pool", recreate="always") as batch:
            for name, columns, parent, parent_columns in POOL_FOREIGN_KEYS:
                batch.create_foreign_key(name, parent, columns, parent_columns)
        op.execute("PRAGMA legacy_alter_table = OFF")

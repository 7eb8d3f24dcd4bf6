"""The reassigned check for banks: owner_since, API clients, and the record of every check.

- ``ownerships.owner_since``: since when the subscriber file says the owner has held the number,
  the start of the ownership for the reassigned check (its records begin there).
- ``api_clients``: the clients of the built-in authorization server, their secret hashed.
- ``api_checks``: every check a client made (client, number, date asked, answer, correlator,
  time), append-only like the audit events, so that the operator can say who asked about a
  number.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

POSTGRESQL_UP = [
    """
    CREATE FUNCTION recycler_checks_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the record of checks is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE TRIGGER api_checks_append_only BEFORE UPDATE OR DELETE ON api_checks
        FOR EACH ROW EXECUTE FUNCTION recycler_checks_append_only()
    """,
    """
    CREATE TRIGGER api_checks_no_truncate BEFORE TRUNCATE ON api_checks
        FOR EACH STATEMENT EXECUTE FUNCTION recycler_checks_append_only()
    """,
]
SQLITE_UP = [
    """
    CREATE TRIGGER api_checks_no_update BEFORE UPDATE ON api_checks
    BEGIN SELECT RAISE(ABORT, 'the record of checks is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER api_checks_no_delete BEFORE DELETE ON api_checks
    BEGIN SELECT RAISE(ABORT, 'the record of checks is append-only: DELETE refused'); END
    """,
]


def upgrade() -> None:
    with op.batch_alter_table("ownerships") as batch:
        batch.add_column(sa.Column("owner_since", sa.Date(), nullable=True))
    op.create_table(
        "api_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("secret_hash", sa.String(length=256), nullable=False),
        sa.Column("scopes", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_clients")),
        sa.UniqueConstraint("client_id", name=op.f("uq_api_clients_client_id")),
    )
    op.create_table(
        "api_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("specified_date", sa.Date(), nullable=False),
        sa.Column("recycled", sa.Boolean(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("correlator", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_checks")),
    )
    op.create_index(op.f("ix_api_checks_msisdn_id"), "api_checks", ["msisdn", "id"], unique=False)
    op.create_index(
        op.f("ix_api_checks_client_id_occurred_at"),
        "api_checks",
        ["client_id", "occurred_at"],
        unique=False,
    )
    for statement in POSTGRESQL_UP if op.get_context().dialect.name == "postgresql" else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TABLE api_checks")
        op.execute("DROP FUNCTION recycler_checks_append_only()")
    else:
        op.drop_table("api_checks")
    op.drop_table("api_clients")
    with op.batch_alter_table("ownerships") as batch:
        batch.drop_column("owner_since")

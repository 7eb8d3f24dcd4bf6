"""The declared schema: every table recycler keeps, as SQLAlchemy Core tables.

Alembic migrations under ``migrations/`` build this schema; a test holds the two equal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from jobs.vocabulary import (
    CLAIMABLE_STATES,
    OPEN_STATES,
    AuditEvent,
    DeliveryOutcome,
    ImportKind,
    Language,
    MessageKind,
    OwnershipEnd,
    OwnershipStart,
    PoolLeave,
    RequestDecision,
    RequestKind,
    RunOutcome,
    StaffRole,
    WarningState,
    one_of,
)

__all__ = [
    "UtcDateTime",
    "api_checks",
    "api_clients",
    "audit_events",
    "delivery_receipts",
    "holds",
    "imports",
    "metadata",
    "number_changes",
    "numbers",
    "ownerships",
    "resale_pool",
    "runs",
    "staff",
    "staff_sessions",
    "topups",
    "transfer_decisions",
    "transfer_requests",
    "warnings",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """A moment in time, always UTC-aware in Python.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so the value is stored as naive
    UTC text and made aware again on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite returns text for computed expressions
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


MSISDN = sa.String(16)
OWNER = sa.String(64)
ACTOR = sa.String(128)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("catch_up", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("warnings_queued", sa.JSON),
    sa.Column("recycled", sa.Integer),
    sa.Column("deferred", sa.Integer),
    sa.Column("withheld", sa.Integer),
    sa.Column("on_hold", sa.Integer),
    sa.Column("guards", sa.JSON),
    sa.Column("message", sa.Text),
    sa.Column("actor", ACTOR, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    # The rules (grace and stages) under which the run queued the warning window's warnings:
    # set in the night's own transaction, so only on runs that committed a night. The next run
    # examines only what changed since this one when its rules are the same (see
    # number_changes).
    sa.Column("window_rules", sa.String(64)),
    sa.CheckConstraint(one_of("outcome", RunOutcome), name="outcome"),
)
sa.Index(None, runs.c.as_of)

imports = sa.Table(
    "imports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source", sa.String(1024), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=False),
    sa.Column("rows_read", sa.Integer, nullable=False),
    sa.Column("rows_applied", sa.Integer, nullable=False),
    sa.Column("rows_ignored", sa.Integer, nullable=False),
    sa.Column("rows_rejected", sa.Integer, nullable=False),
    # The moment up to which the feed declares itself complete, if it says so.
    sa.Column("watermark", UtcDateTime),
    sa.Column("actor", ACTOR, nullable=False),
    sa.CheckConstraint(one_of("kind", ImportKind), name="kind"),
)

numbers = sa.Table(
    "numbers",
    metadata,
    sa.Column("msisdn", MSISDN, primary_key=True),
    # Owner, language and validity end belong to the current ownership; all three are empty
    # while the number sits in the resale pool.
    sa.Column("owner_id", OWNER),
    sa.Column("language", sa.String(2)),
    sa.Column("validity_end", sa.Date),
    # A cycle is the grace period of one validity end; every change that ends it counts up.
    sa.Column("cycle", sa.Integer, nullable=False, server_default="1"),
    sa.Column("on_hold", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("recycled_by_run_id", sa.Integer, sa.ForeignKey("runs.id")),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.CheckConstraint(
        "(owner_id IS NULL AND language IS NULL AND validity_end IS NULL)"
        " OR (owner_id IS NOT NULL AND language IS NOT NULL AND validity_end IS NOT NULL)",
        name="owned_fields_together",
    ),
    sa.CheckConstraint(one_of("language", Language), name="language"),
)
# The nightly run reads only owned numbers whose validity end lies near the grace boundary.
sa.Index(
    "ix_numbers_owned_validity_end",
    numbers.c.validity_end,
    sqlite_where=numbers.c.owner_id.is_not(None),
    postgresql_where=numbers.c.owner_id.is_not(None),
)
sa.Index(
    "ix_numbers_recycled_by_run_id",
    numbers.c.recycled_by_run_id,
    sqlite_where=numbers.c.recycled_by_run_id.is_not(None),
    postgresql_where=numbers.c.recycled_by_run_id.is_not(None),
)

# The numbers changed since the last night: every writer of a number's owner, language, validity
# end, cycle or hold adds the number here, in its own transaction; the next run reads the table
# and empties it. With it, a night examines inside the warning window only the numbers whose due
# stage changed since the last night (a few validity ends) and the numbers changed since, where
# it would otherwise probe a fifth of the base for warnings it already queued. Every writer
# holds the base lock, as the run does, so no change can slip between the run's read and its
# emptying. A heap without keys or indexes: the cheapest rows to write.
number_changes = sa.Table(
    "number_changes",
    metadata,
    sa.Column("msisdn", MSISDN, nullable=False),
)

ownerships = sa.Table(
    "ownerships",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # No foreign keys on the tables written by the million: their parents are never deleted
    # (the database refuses it), and each row is written from its parent (migration 0004).
    sa.Column("msisdn", MSISDN, nullable=False),
    sa.Column("owner_id", OWNER, nullable=False),
    sa.Column("language", sa.String(2), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("started_on", sa.Date, nullable=False),
    sa.Column("start_cause", sa.String(16), nullable=False),
    sa.Column("started_by", ACTOR, nullable=False),
    sa.Column("ended_at", UtcDateTime),
    sa.Column("ended_on", sa.Date),
    sa.Column("end_cause", sa.String(16)),
    sa.Column("ended_by", ACTOR),
    sa.Column("final_validity_end", sa.Date),
    sa.Column("run_id", sa.Integer),
    sa.Column("reason", sa.Text),
    # A transfer names the consent of both the owner who gives the number and the one who gets it.
    sa.Column("consent_current", sa.String(128)),
    sa.Column("consent_new", sa.String(128)),
    # Since when the subscriber file says the owner has held the number: where the records of
    # the reassigned check begin, when it is earlier than the ownership's own start.
    sa.Column("owner_since", sa.Date),
    # The approved request a transfer or a forced reinstatement carried out; one ownership per
    # request, so that one approval cannot move a number twice.
    sa.Column("request_id", sa.Integer),
    sa.CheckConstraint(one_of("start_cause", OwnershipStart), name="start_cause"),
    sa.CheckConstraint(
        f"start_cause <> '{OwnershipStart.TRANSFER}'"
        " OR (consent_current IS NOT NULL AND consent_new IS NOT NULL"
        " AND length(trim(consent_current)) > 0 AND length(trim(consent_new)) > 0)",
        name="transfer_has_both_consents",
    ),
    sa.CheckConstraint(
        f"end_cause IS NULL OR {one_of('end_cause', OwnershipEnd)}", name="end_cause"
    ),
)
sa.Index(
    "ix_ownerships_open_msisdn",
    ownerships.c.msisdn,
    unique=True,
    sqlite_where=ownerships.c.ended_at.is_(None),
    postgresql_where=ownerships.c.ended_at.is_(None),
)
sa.Index(None, ownerships.c.msisdn, ownerships.c.started_at)
sa.Index(
    "ix_ownerships_request_id",
    ownerships.c.request_id,
    unique=True,
    sqlite_where=ownerships.c.request_id.is_not(None),
    postgresql_where=ownerships.c.request_id.is_not(None),
)
# The monthly export of disconnected numbers reads ownerships by the day they ended; open
# ownerships (most rows) are left out of the index.
sa.Index(
    "ix_ownerships_ended_at",
    ownerships.c.ended_at,
    sqlite_where=ownerships.c.ended_at.is_not(None),
    postgresql_where=ownerships.c.ended_at.is_not(None),
)

topups = sa.Table(
    "topups",
    metadata,
    sa.Column("topup_id", sa.String(64), primary_key=True),
    sa.Column("msisdn", MSISDN, nullable=False),
    sa.Column("topped_up_at", UtcDateTime, nullable=False),
    sa.Column("validity_end", sa.Date, nullable=False),
    sa.Column("amount", sa.Numeric(14, 2)),
    sa.Column("import_id", sa.Integer, nullable=False),
    sa.Column("moved_validity", sa.Boolean, nullable=False),
)
sa.Index(None, topups.c.msisdn)
# The stale-feed guard asks for the newest top-up on every run.
sa.Index(None, topups.c.topped_up_at)

warnings = sa.Table(
    "warnings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("msisdn", MSISDN, nullable=False),
    # Empty for an owner's notice (see kind), as are its stage and grace end.
    sa.Column("cycle", sa.Integer),
    # Days before grace end; 0 is the final notice of the minimum-notice rule.
    sa.Column("stage", sa.Integer),
    sa.Column("owner_id", OWNER, nullable=False),
    sa.Column("language", sa.String(2), nullable=False),
    sa.Column("grace_end", sa.Date),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("encoding", sa.String(8), nullable=False),
    sa.Column("segments", sa.Integer, nullable=False),
    sa.Column("state", sa.String(12), nullable=False, server_default=WarningState.PENDING.value),
    sa.Column("queued_at", UtcDateTime, nullable=False),
    sa.Column("queued_on", sa.Date, nullable=False),
    # Empty only for the synthetic history `recycler seed` writes, which no run queued.
    sa.Column("queued_by_run_id", sa.Integer),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("lease_expires_at", UtcDateTime),
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("gateway_message_id", sa.String(64)),
    sa.Column("error_code", sa.String(32)),
    sa.Column("error_message", sa.Text),
    sa.Column("final_at", UtcDateTime),
    # The local date the warning reached a final state: the minimum-notice rule counts from it.
    sa.Column("final_on", sa.Date),
    sa.Column("cancel_reason", sa.String(32)),
    # A warning, or an owner's notice of a request (MessageKind): the notice has no cycle, no
    # stage and no grace end, so that no rule about a cycle's warnings ever counts it.
    sa.Column("kind", sa.String(16), nullable=False, server_default=MessageKind.WARNING.value),
    sa.Column("request_id", sa.Integer),
    # When the network's receipt came (delivered or undelivered), its local date, and the
    # error code of an undelivered one. The notice still counts from final_on (accepted).
    sa.Column("receipt_at", UtcDateTime),
    sa.Column("receipt_on", sa.Date),
    sa.Column("receipt_code", sa.String(32)),
    sa.UniqueConstraint("msisdn", "cycle", "stage"),
    sa.CheckConstraint(one_of("state", WarningState), name="state"),
    sa.CheckConstraint("encoding IN ('GSM-7', 'UCS-2')", name="encoding"),
    sa.CheckConstraint("stage >= 0", name="stage"),
    sa.CheckConstraint(one_of("kind", MessageKind), name="kind"),
    sa.CheckConstraint(
        f"(kind = '{MessageKind.WARNING}' AND cycle IS NOT NULL AND stage IS NOT NULL"
        " AND grace_end IS NOT NULL AND request_id IS NULL)"
        f" OR (kind = '{MessageKind.OWNER_NOTICE}' AND cycle IS NULL AND stage IS NULL"
        " AND grace_end IS NULL AND request_id IS NOT NULL)",
        name="kind_fields",
    ),
)
# Senders claim due warnings oldest first: pending ones, and those blocked on the operator's side.
sa.Index(
    "ix_warnings_due",
    warnings.c.next_attempt_at,
    sqlite_where=warnings.c.state.in_(CLAIMABLE_STATES),
    postgresql_where=warnings.c.state.in_(CLAIMABLE_STATES),
)
sa.Index(
    "ix_warnings_in_flight",
    warnings.c.lease_expires_at,
    sqlite_where=warnings.c.state == WarningState.SENDING,
    postgresql_where=warnings.c.state == WarningState.SENDING,
)
sa.Index(None, warnings.c.queued_by_run_id)
# The open warnings of a number's cycle, which ending the cycle cancels (a top-up, a recycle):
# found here without reading the cycle's settled warnings, which are most of them. Ending 62,000
# cycles read 250,000 sent warnings through the key index: 1.4-3.2 s a night at ten million.
sa.Index(
    "ix_warnings_open",
    warnings.c.msisdn,
    warnings.c.cycle,
    sqlite_where=warnings.c.state.in_(OPEN_STATES),
    postgresql_where=warnings.c.state.in_(OPEN_STATES),
)
# Owners' notices go before the night's warnings: senders claim the due ones first, by this
# index, however many warnings are due.
sa.Index(
    "ix_warnings_due_notices",
    warnings.c.next_attempt_at,
    sqlite_where=sa.and_(
        warnings.c.kind == MessageKind.OWNER_NOTICE, warnings.c.state.in_(CLAIMABLE_STATES)
    ),
    postgresql_where=sa.and_(
        warnings.c.kind == MessageKind.OWNER_NOTICE, warnings.c.state.in_(CLAIMABLE_STATES)
    ),
)
# Receipts name a message by the gateway's id for it (a Twilio SID, a Kannel reference).
sa.Index(
    "ix_warnings_gateway_message_id",
    warnings.c.gateway_message_id,
    sqlite_where=warnings.c.gateway_message_id.is_not(None),
    postgresql_where=warnings.c.gateway_message_id.is_not(None),
)
# What the senders finished lately (status's failure check, the console's nights), found
# without reading the years of history before it; a queued warning (no final_at yet) costs the
# night's insert nothing here.
sa.Index(
    "ix_warnings_final_at",
    warnings.c.final_at,
    sqlite_where=warnings.c.final_at.is_not(None),
    postgresql_where=warnings.c.final_at.is_not(None),
)
sa.Index(
    "ix_warnings_request_id",
    warnings.c.request_id,
    unique=True,
    sqlite_where=warnings.c.request_id.is_not(None),
    postgresql_where=warnings.c.request_id.is_not(None),
)

resale_pool = sa.Table(
    "resale_pool",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # No foreign keys, as on the other tables a night writes by the thousand (migration 0012):
    # numbers, ownerships and runs are never deleted, and every pool row is written from the
    # ownership it ends or starts, in the same transaction.
    sa.Column("msisdn", MSISDN, nullable=False),
    sa.Column("previous_ownership_id", sa.Integer, nullable=False),
    sa.Column("recycled_by_run_id", sa.Integer),
    sa.Column("entered_at", UtcDateTime, nullable=False),
    sa.Column("entered_on", sa.Date, nullable=False),
    sa.Column("available_from", sa.Date, nullable=False),
    sa.Column("left_at", UtcDateTime),
    sa.Column("left_on", sa.Date),
    sa.Column("left_cause", sa.String(16)),
    sa.Column("new_ownership_id", sa.Integer),
    sa.CheckConstraint(
        f"left_cause IS NULL OR {one_of('left_cause', PoolLeave)}", name="left_cause"
    ),
)
sa.Index(
    "ix_resale_pool_current_msisdn",
    resale_pool.c.msisdn,
    unique=True,
    sqlite_where=resale_pool.c.left_at.is_(None),
    postgresql_where=resale_pool.c.left_at.is_(None),
)
# Every entry of a number, past ones too: the owner-change guard asks by number whether this
# transaction recorded a number's sale or reinstatement (migration 0012).
sa.Index("ix_resale_pool_msisdn", resale_pool.c.msisdn)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("msisdn", MSISDN, sa.ForeignKey("numbers.msisdn"), nullable=False),
    sa.Column("placed_at", UtcDateTime, nullable=False),
    sa.Column("placed_by", ACTOR, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("released_at", UtcDateTime),
    sa.Column("released_by", ACTOR),
    sa.Column("release_reason", sa.Text),
)
sa.Index(
    "ix_holds_open_msisdn",
    holds.c.msisdn,
    unique=True,
    sqlite_where=holds.c.released_at.is_(None),
    postgresql_where=holds.c.released_at.is_(None),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("event_type", sa.String(40), nullable=False),
    # Deliberately no foreign keys: the record must outlive whatever it describes.
    sa.Column("msisdn", MSISDN),
    sa.Column("actor", ACTOR, nullable=False),
    sa.Column("run_id", sa.Integer),
    sa.Column("owner_id", OWNER),
    sa.Column("cycle", sa.Integer),
    sa.Column("stage", sa.Integer),
    sa.Column("warning_id", sa.Integer),
    sa.Column("validity_end_before", sa.Date),
    sa.Column("validity_end_after", sa.Date),
    sa.Column("reason", sa.Text),
    sa.Column("details", sa.JSON),
)
sa.Index(None, audit_events.c.msisdn, audit_events.c.id)
# The run's "already deferred in this cycle?" probe, one per number, whatever the history.
sa.Index(
    "ix_audit_events_deferrals",
    audit_events.c.msisdn,
    audit_events.c.cycle,
    sqlite_where=audit_events.c.event_type == AuditEvent.RECYCLE_DEFERRED,
    postgresql_where=audit_events.c.event_type == AuditEvent.RECYCLE_DEFERRED,
)
sa.Index(
    "ix_audit_events_run_id",
    audit_events.c.run_id,
    sqlite_where=audit_events.c.run_id.is_not(None),
    postgresql_where=audit_events.c.run_id.is_not(None),
)

# A request to take a number from the owner who has it (a transfer, or a forced reinstatement),
# with its evidence: append-only. What became of it is its decision, a row of its own.
transfer_requests = sa.Table(
    "transfer_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("msisdn", MSISDN, sa.ForeignKey("numbers.msisdn"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    # The ownership the request would end: approval needs it still to be the open one.
    sa.Column("ownership_id", sa.Integer, sa.ForeignKey("ownerships.id"), nullable=False),
    sa.Column("from_owner", OWNER, nullable=False),
    sa.Column("to_owner", OWNER, nullable=False),
    sa.Column("to_language", sa.String(2), nullable=False),
    # A reinstatement gives the number back to the owner of this earlier ownership ...
    sa.Column("previous_ownership_id", sa.Integer, sa.ForeignKey("ownerships.id")),
    # ... with this validity end (empty: the one that owner had).
    sa.Column("validity_end", sa.Date),
    sa.Column("consent_current", sa.String(128)),
    sa.Column("consent_new", sa.String(128)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("requested_by", ACTOR, nullable=False),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("requested_on", sa.Date, nullable=False),  # local: the per-day limit counts it
    sa.Column("cooloff_until", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.CheckConstraint(one_of("kind", RequestKind), name="kind"),
    sa.CheckConstraint(one_of("to_language", Language), name="to_language"),
    sa.CheckConstraint(
        f"kind <> '{RequestKind.TRANSFER}'"
        " OR (consent_current IS NOT NULL AND consent_new IS NOT NULL"
        " AND length(trim(consent_current)) > 0 AND length(trim(consent_new)) > 0)",
        name="transfer_has_both_consents",
    ),
    sa.CheckConstraint(
        f"kind <> '{RequestKind.REINSTATEMENT}' OR previous_ownership_id IS NOT NULL",
        name="reinstatement_names_owner",
    ),
    sa.CheckConstraint("from_owner <> to_owner", name="another_owner"),
    sa.CheckConstraint("cooloff_until >= requested_at AND expires_at > requested_at", name="times"),
)
sa.Index(None, transfer_requests.c.msisdn, transfer_requests.c.id)
sa.Index(None, transfer_requests.c.requested_by, transfer_requests.c.requested_on)

# The one decision on a request (unique: of two people deciding at once, exactly one wins).
transfer_decisions = sa.Table(
    "transfer_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "request_id",
        sa.Integer,
        sa.ForeignKey("transfer_requests.id"),
        nullable=False,
        unique=True,
    ),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("decided_at", UtcDateTime, nullable=False),
    sa.Column("decided_by", ACTOR, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    # An approval although the owner's notice failed for good: why that is acceptable.
    sa.Column("notice_failed", sa.Text),
    sa.CheckConstraint(one_of("decision", RequestDecision), name="decision"),
)

api_clients = sa.Table(
    "api_clients",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(128), nullable=False),
    # Argon2id: the secret itself is shown once, when the client is added, and kept nowhere.
    sa.Column("secret_hash", sa.String(256), nullable=False),
    sa.Column("scopes", sa.String(256), nullable=False),  # space-separated
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("created_by", ACTOR, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
    sa.Column("revoked_by", ACTOR),
)

# Every check a client made of the reassigned API: append-only, like the audit events.
api_checks = sa.Table(
    "api_checks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("msisdn", MSISDN, nullable=False),
    sa.Column("specified_date", sa.Date, nullable=False),
    sa.Column("recycled", sa.Boolean),  # the answer; empty when the check was refused
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("code", sa.String(32)),
    sa.Column("correlator", sa.String(256), nullable=False),
    # The API's role may add checks but not read them back, and RETURNING is a read.
    implicit_returning=False,
)
sa.Index(None, api_checks.c.msisdn, api_checks.c.id)
sa.Index(None, api_checks.c.client_id, api_checks.c.occurred_at)

# The people of the console (issue 14). Passwords and sessions are kept only as hashes.
staff = sa.Table(
    "staff",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(256), nullable=False),  # Argon2id
    # Set by `staff add` and `staff reset`: the password printed then must be changed first.
    sa.Column("password_is_temporary", sa.Boolean, nullable=False),
    sa.Column("totp_secret", sa.String(64), nullable=False),
    sa.Column("totp_required", sa.Boolean, nullable=False),
    sa.Column("totp_last_step", sa.BigInteger),  # a code is good once
    sa.Column("failed_sign_ins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("created_by", ACTOR, nullable=False),
    sa.Column("disabled_at", UtcDateTime),
    sa.Column("disabled_by", ACTOR),
    sa.CheckConstraint(one_of("role", StaffRole), name="role"),
)

staff_sessions = sa.Table(
    "staff_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # SHA-256, hex
    sa.Column("staff_id", sa.Integer, sa.ForeignKey("staff.id"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    sa.Column("ended_at", UtcDateTime),
)
sa.Index(None, staff_sessions.c.staff_id)


# Every final delivery receipt the API was given (Twilio's status callbacks, Kannel's dlr-url),
# kept before anything else happens to it, and applied to its message by the senders
# (jobs/sending/receipts.py): the API itself never reads or changes a warning.
delivery_receipts = sa.Table(
    "delivery_receipts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("received_on", sa.Date, nullable=False),
    sa.Column("gateway", sa.String(16), nullable=False),
    sa.Column("message_id", sa.String(64), nullable=False),
    # The gateway's own word (Twilio's MessageStatus, Kannel's DLR type).
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error_code", sa.String(32)),
    # Set by the sender that dealt with it, with the warning it named (none: an unknown id).
    sa.Column("applied_at", UtcDateTime),
    sa.Column("warning_id", sa.Integer),
    sa.CheckConstraint(one_of("outcome", DeliveryOutcome), name="outcome"),
    # The API may add receipts but not read them: no RETURNING of the new id.
    implicit_returning=False,
)
sa.Index(None, delivery_receipts.c.message_id, delivery_receipts.c.id)
# The receipts no sender has dealt with yet: a handful, whatever the table's size.
sa.Index(
    "ix_delivery_receipts_waiting",
    delivery_receipts.c.id,
    sqlite_where=delivery_receipts.c.applied_at.is_(None),
    postgresql_where=delivery_receipts.c.applied_at.is_(None),
)

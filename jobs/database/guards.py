"""Rules the database itself enforces, whoever writes to it: recycler, or a person with SQL.

- Audit events are append-only: no UPDATE, DELETE or TRUNCATE.
- An ownership record is history once ended: never deleted, never rewritten, only ended once.
- A number's owner changes only when the same transaction writes an ownership record naming a
  permitted cause: a recycle (the ownership ended by ``recycle`` and the number entered the pool),
  a sale from the pool, a transfer (which, by a CHECK constraint, names both consents), or a
  reinstatement. A held number is never recycled, sold or transferred.

PostgreSQL checks the last rule at commit (a deferred constraint trigger), recognising what the
transaction wrote by the row versions' ``xmin``. SQLite has neither deferred triggers nor
transaction ids, so there the rule is checked statement by statement against the ownership
records as they stand; recycler writes the ownership record before it changes the owner.

These statements are versioned: a migration that changes them adds new ones here.
"""

from __future__ import annotations

__all__ = [
    "POSTGRESQL_V1",
    "POSTGRESQL_V1_DROP",
    "SQLITE_V1",
    "SQLITE_V1_DROP",
]

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

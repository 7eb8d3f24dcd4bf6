-- Least-privilege PostgreSQL roles for recycler.
--
-- Run as a superuser (or the database's owner) in the recycler database, with psql:
--   1. once before the first `recycler db upgrade`: it creates the roles and the schema;
--   2. again after every `recycler db upgrade`: it grants on the tables the migration created.
-- It is idempotent. Passwords are set apart (ALTER ROLE … PASSWORD), never in this file.
--
--   recycler_owner   owns the schema; only `recycler db upgrade` connects as it.
--   recycler_job     what the daemon, `run`, `send`, `import` and `seed` connect as: reads and
--                    writes the data, may add audit events but never change or delete one.
--   recycler_reader  read-only: reports, customer care, `status` and `number`.
--   recycler_api     what `recycler api` connects as: reads numbers, their ownerships and the
--                    API's clients, adds a record of every check and every delivery receipt;
--                    nothing else (the senders apply the receipts to the warnings).

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'recycler_owner') THEN
        CREATE ROLE recycler_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'recycler_job') THEN
        CREATE ROLE recycler_job LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'recycler_reader') THEN
        CREATE ROLE recycler_reader LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'recycler_api') THEN
        CREATE ROLE recycler_api LOGIN;
    END IF;
END
$roles$;

CREATE SCHEMA IF NOT EXISTS recycler AUTHORIZATION recycler_owner;

-- Every recycler role finds the tables in the recycler schema, and nowhere else.
ALTER ROLE recycler_owner SET search_path = recycler;
ALTER ROLE recycler_job SET search_path = recycler;
ALTER ROLE recycler_reader SET search_path = recycler;
ALTER ROLE recycler_api SET search_path = recycler;

-- Nobody else may use the schema.
REVOKE ALL ON SCHEMA recycler FROM PUBLIC;
GRANT USAGE ON SCHEMA recycler TO recycler_job, recycler_reader, recycler_api;

-- Tables a future migration creates: readable at once, writable once this file is applied again.
ALTER DEFAULT PRIVILEGES FOR ROLE recycler_owner IN SCHEMA recycler
    GRANT SELECT, INSERT ON TABLES TO recycler_job;
ALTER DEFAULT PRIVILEGES FOR ROLE recycler_owner IN SCHEMA recycler
    GRANT SELECT ON TABLES TO recycler_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE recycler_owner IN SCHEMA recycler
    GRANT USAGE, SELECT ON SEQUENCES TO recycler_job;

-- The tables that exist now.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA recycler TO recycler_job;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA recycler TO recycler_job;
GRANT SELECT ON ALL TABLES IN SCHEMA recycler TO recycler_reader;

-- The audit trail, the record of checks and the transfer requests are append-only for the job: it may add to them,
-- never rewrite or remove.
DO $audit$
BEGIN
    IF to_regclass('recycler.audit_events') IS NOT NULL THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON recycler.audit_events FROM recycler_job;
    END IF;
    IF to_regclass('recycler.api_checks') IS NOT NULL THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON recycler.api_checks FROM recycler_job;
    END IF;
    -- The four-eyes requests and their decisions: evidence, kept as written.
    IF to_regclass('recycler.transfer_requests') IS NOT NULL THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON recycler.transfer_requests,
            recycler.transfer_decisions FROM recycler_job;
    END IF;
    -- Nor may the job rewrite history that `alembic` keeps.
    IF to_regclass('recycler.alembic_version') IS NOT NULL THEN
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON recycler.alembic_version FROM recycler_job;
    END IF;
END
$audit$;

-- The night empties the list of numbers changed since the last night in one step (TRUNCATE,
-- under the base lock every writer takes), rather than deleting row by row.
DO $changes$
BEGIN
    IF to_regclass('recycler.number_changes') IS NOT NULL THEN
        GRANT TRUNCATE ON recycler.number_changes TO recycler_job;
    END IF;
END
$changes$;

-- The API answers banks and records each answer: it reads what the answer needs (and the schema
-- version, checked at start), and adds checks. It cannot change a number or see the warnings.
DO $api$
BEGIN
    IF to_regclass('recycler.api_checks') IS NOT NULL THEN
        GRANT SELECT ON recycler.numbers, recycler.ownerships, recycler.api_clients,
            recycler.alembic_version TO recycler_api;
        GRANT INSERT ON recycler.api_checks TO recycler_api;
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA recycler TO recycler_api;
    END IF;
    IF to_regclass('recycler.delivery_receipts') IS NOT NULL THEN
        GRANT INSERT ON recycler.delivery_receipts TO recycler_api;
    END IF;
END
$api$;

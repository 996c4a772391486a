"""make the audit log append-only

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00

The database itself refuses to change audit rows, so a bug or a stray SQL session cannot
quietly rewrite history (``paulyops audit verify`` would still notice, but only later):

* **PostgreSQL**: statement triggers on ``audit_logs`` raise on UPDATE, DELETE and TRUNCATE
  unless the transaction-local setting ``paulyops.audit_purge`` is ``on``.
  ``paulyops_audit_purge(chain, through_seq)`` is the one privileged path: a ``SECURITY
  DEFINER`` function that deletes a chain's prefix only when a purge checkpoint for exactly
  that row and hash exists. Where the connected role may create roles, a ``paulyops_app``
  role (NOLOGIN) is created, or reused when it exists, with SELECT/INSERT/UPDATE/DELETE on
  every table except the two audit tables (SELECT and INSERT only) and EXECUTE on the purge
  function. Without that right this step is skipped. ``paulyops_audit_lock_head`` serves
  the append path: the chain's advisory lock and head read in one round trip.
* **SQLite**: ``BEFORE UPDATE`` and ``BEFORE DELETE`` triggers ``RAISE(ABORT)``. A trigger on
  a main-schema table cannot consult a TEMP table, so the purge service drops the delete
  trigger, deletes and recreates it inside its one write transaction (SQLite DDL is
  transactional: a failure restores the trigger). Nothing here guards against someone with
  write access to the file; verification and signed checkpoints catch what they do.

Triggers, functions and roles are invisible to Alembic autogenerate, so the models and the
schema still compare equal. A later ``batch_alter_table("audit_logs")`` on SQLite rebuilds
the table and drops its triggers: such a migration must create them again.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# --- PostgreSQL ---------------------------------------------------------------------------

PG_GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION paulyops_audit_logs_guard() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF coalesce(current_setting('paulyops.audit_purge', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_logs is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'retention purge goes through paulyops audit purge';
END
$fn$
"""

PG_TRIGGERS = (
    """
    CREATE TRIGGER audit_logs_append_only
    BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION paulyops_audit_logs_guard()
    """,
    """
    CREATE TRIGGER audit_logs_no_truncate
    BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION paulyops_audit_logs_guard()
    """,
)

# The append path's lock and head read in one round trip. Volatile, so the SELECT takes a
# new snapshot after the lock is granted and sees the previous holder's committed row.
PG_LOCK_HEAD_FUNCTION = """
CREATE OR REPLACE FUNCTION paulyops_audit_lock_head(
    p_ns integer, p_key integer, p_chain text, OUT seq bigint, OUT row_hash text
)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(p_ns, p_key);
    SELECT l.seq, l.row_hash INTO seq, row_hash
      FROM audit_logs l WHERE l.chain = p_chain ORDER BY l.seq DESC LIMIT 1;
END
$fn$
"""

# SECURITY DEFINER runs with the migration role's rights, so an application role without
# DELETE on audit_logs can still purge, but only a prefix that a purge checkpoint covers
# (the checkpoint's signature is checked by `paulyops audit verify`, not here).
PG_PURGE_FUNCTION = """
CREATE OR REPLACE FUNCTION paulyops_audit_purge(p_chain text, p_through_seq bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
DECLARE
    purged bigint;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM audit_checkpoints c JOIN audit_logs l
          ON l.chain = c.chain AND l.seq = c.seq AND l.row_hash = c.head_hash
         WHERE c.chain = p_chain AND c.kind = 'purge' AND c.seq = p_through_seq
    ) THEN
        RAISE EXCEPTION 'no purge checkpoint for chain % at seq %', p_chain, p_through_seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM set_config('paulyops.audit_purge', 'on', true);
    DELETE FROM audit_logs WHERE chain = p_chain AND seq <= p_through_seq;
    GET DIAGNOSTICS purged = ROW_COUNT;
    PERFORM set_config('paulyops.audit_purge', 'off', true);
    RETURN purged;
END
$fn$
"""

# Best effort and idempotent: create the role only when allowed, reuse it when it exists,
# and swallow a lost race with another database's migration (roles are cluster-wide).
PG_APP_ROLE = """
DO $do$
DECLARE
    schema_name text := current_schema();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paulyops_app')
       AND EXISTS (SELECT 1 FROM pg_roles
                    WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
        BEGIN
            CREATE ROLE paulyops_app NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paulyops_app') THEN
        RAISE NOTICE 'role paulyops_app not created: this role may not create roles';
        RETURN;
    END IF;
    BEGIN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO paulyops_app', current_database());
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO paulyops_app', schema_name);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I '
                       'TO paulyops_app', schema_name);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                       'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO paulyops_app',
                       schema_name);
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_logs, audit_checkpoints FROM paulyops_app;
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM paulyops_app;
        GRANT EXECUTE ON FUNCTION paulyops_audit_purge(text, bigint) TO paulyops_app;
    EXCEPTION WHEN insufficient_privilege OR undefined_object THEN
        RAISE NOTICE 'privileges for paulyops_app not granted: %', SQLERRM;
    END;
END
$do$
"""

PG_DROP_APP_ROLE = """
DO $do$
DECLARE
    schema_name text := current_schema();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paulyops_app') THEN
        RETURN;
    END IF;
    BEGIN
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I '
                       'REVOKE ALL ON TABLES FROM paulyops_app', schema_name);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM paulyops_app', schema_name);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM paulyops_app', schema_name);
        EXECUTE format('REVOKE ALL ON DATABASE %I FROM paulyops_app', current_database());
        DROP ROLE paulyops_app;
    EXCEPTION
        -- Another database on this server still grants it something, or we may not drop it.
        WHEN dependent_objects_still_exist OR insufficient_privilege OR undefined_object THEN
            RAISE NOTICE 'role paulyops_app kept: %', SQLERRM;
    END;
END
$do$
"""

# --- SQLite -------------------------------------------------------------------------------

SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER audit_logs_no_update BEFORE UPDATE ON audit_logs
    BEGIN
        SELECT RAISE(ABORT, 'audit_logs is append-only: UPDATE refused');
    END
    """,
    """
    CREATE TRIGGER audit_logs_no_delete BEFORE DELETE ON audit_logs
    BEGIN
        SELECT RAISE(ABORT, 'audit_logs is append-only: DELETE refused');
    END
    """,
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_GUARD_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
        op.execute(PG_LOCK_HEAD_FUNCTION)
        op.execute(PG_PURGE_FUNCTION)
        op.execute("REVOKE ALL ON FUNCTION paulyops_audit_purge(text, bigint) FROM PUBLIC")
        op.execute(PG_APP_ROLE)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_DROP_APP_ROLE)
        op.execute("DROP FUNCTION IF EXISTS paulyops_audit_purge(text, bigint)")
        op.execute("DROP FUNCTION IF EXISTS paulyops_audit_lock_head(integer, integer, text)")
        op.execute("DROP TRIGGER IF EXISTS audit_logs_no_truncate ON audit_logs")
        op.execute("DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs")
        op.execute("DROP FUNCTION IF EXISTS paulyops_audit_logs_guard()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_logs_no_delete")
        op.execute("DROP TRIGGER IF EXISTS audit_logs_no_update")

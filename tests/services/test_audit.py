"""The audit log: hash chain, append-only guards, checkpoints, verify, export and purge."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, event, select, text
from sqlalchemy.exc import DBAPIError

from paulyops.core.db import migrate
from paulyops.core.db.engine import Database
from paulyops.core.db.models import INSTANCE_CHAIN, AuditCheckpoint, AuditLog
from paulyops.core.errors import ConfigError, NotFoundError, SpecValidationError
from paulyops.core.logging import correlation_scope
from paulyops.core.settings import new_instance_key
from paulyops.services import audit
from tests.conftest import truncate_all

ORG = "org_01JTESTAUDIT0000000000000"


# --- helpers ------------------------------------------------------------------------------


def clear_audit_rows(db: Database) -> None:
    """Empty audit_logs through the privileged path, so the fixture's TRUNCATE may run."""
    if db.dialect != "postgresql":
        return  # every SQLite test has its own database file
    with db.engine.begin() as conn:
        conn.execute(text("SET LOCAL paulyops.audit_purge = 'on'"))
        conn.execute(text("DELETE FROM audit_logs"))


@contextlib.contextmanager
def bypassing_guard(db: Database) -> Iterator[Connection]:
    """Yield a connection that can change audit rows, as someone with raw database access."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("SET LOCAL paulyops.audit_purge = 'on'"))
            yield conn
            return
        triggers = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
            {"t": "audit_logs"},
        ).all()
        for name, _sql in triggers:
            conn.execute(text(f'DROP TRIGGER "{name}"'))
        yield conn
        for _name, sql in triggers:
            conn.execute(text(sql))


def add_rows(db: Database, count: int, chain: str = ORG) -> list[AuditLog]:
    """Append ``count`` rows to ``chain``."""
    return [
        audit.append(
            db,
            chain=chain,
            action="thing.updated",
            actor_type="user",
            actor_id="usr_01",
            target_type="thing",
            target_id=f"thing_{i}",
            changes={"n": i},
        )
        for i in range(count)
    ]


def rehash_from(conn: Connection, chain: str, first_seq: int) -> None:
    """Recompute row_hash and prev_hash from ``first_seq`` on, as a careful attacker would."""
    rows = conn.execute(
        select(*[getattr(AuditLog, c) for c in audit.EXPORT_COLUMNS])
        .where(AuditLog.chain == chain, AuditLog.seq >= first_seq - 1)
        .order_by(AuditLog.seq)
    ).mappings()
    prev: str | None = None
    for row in rows:
        if row["seq"] < first_seq:
            prev = row["row_hash"]
            continue
        values = {**row, "prev_hash": prev}
        new_hash = audit.compute_row_hash(values)
        conn.execute(
            text("UPDATE audit_logs SET prev_hash = :p, row_hash = :h WHERE id = :id"),
            {"p": prev, "h": new_hash, "id": row["id"]},
        )
        prev = new_hash


def problem_of(db: Database, pub, chain: str = ORG) -> audit.Problem:
    """Verify one chain, expect it broken, and return its first problem."""
    report = audit.verify(db, pub, chain=chain)
    assert not report.is_ok
    (chain_report,) = report.chains
    assert chain_report.problem is not None
    return chain_report.problem


@pytest.fixture
def audit_db(db: Database) -> Iterator[Database]:
    """The ``db`` fixture, with audit rows cleared afterwards (PostgreSQL refuses TRUNCATE)."""
    yield db
    clear_audit_rows(db)


@pytest.fixture
def key() -> str:
    """A fresh instance key (base64url Ed25519 seed)."""
    return new_instance_key()


@pytest.fixture
def pub(key):
    """The public half of ``key``."""
    return audit.verifying_key(key)


# --- the chain ----------------------------------------------------------------------------


def test_hash_covers_every_column_except_row_hash():
    """The canonical form covers every audit_logs column but row_hash, nothing more."""
    columns = {c.name for c in AuditLog.__table__.columns}
    assert set(audit.HASHED_COLUMNS) == columns - {"row_hash"}


def test_appended_rows_form_a_chain_from_genesis(audit_db, pub):
    """Rows get seq 1..N, the first links to 64 zeros, each next to the previous hash."""
    rows = add_rows(audit_db, 5)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == "0" * 64
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.row_hash
    report = audit.verify(audit_db, pub)
    assert report.is_ok
    assert [(c.chain, c.status, c.rows_checked) for c in report.chains] == [(ORG, "ok", 5)]


def test_row_hash_is_sha256_of_sorted_json_with_utc_microseconds(audit_db):
    """row_hash = sha256 of the sorted, compact JSON of the row; created_at ends in Z."""
    (row,) = add_rows(audit_db, 1)
    with audit_db.session() as session:
        stored = session.get(AuditLog, row.id)
        canonical = audit.canonical_row({c: getattr(stored, c) for c in audit.EXPORT_COLUMNS})
    doc = json.loads(canonical)
    assert list(doc) == sorted(doc)
    assert "row_hash" not in doc
    assert doc["created_at"].endswith("Z")
    assert len(doc["created_at"].split(".")[1]) == len("123456Z")
    assert hashlib.sha256(canonical).hexdigest() == stored.row_hash
    assert b" " not in canonical.replace(b"thing.updated", b"")


def test_chains_are_independent(audit_db, pub):
    """Each organization and the instance chain number their rows separately."""
    add_rows(audit_db, 2, chain=ORG)
    (instance_row,) = add_rows(audit_db, 1, chain=INSTANCE_CHAIN)
    assert instance_row.seq == 1
    report = audit.verify(audit_db, pub)
    assert [c.chain for c in report.chains] == [INSTANCE_CHAIN, ORG]
    assert report.is_ok


def test_record_redacts_secrets_before_hashing(audit_db, pub):
    """Secret keys and secret-looking values in changes are stored redacted, hash intact."""
    row = audit.append(
        audit_db,
        chain=ORG,
        action="storage.configured",
        actor_type="user",
        actor_id="usr_01",
        changes={"password": "hunter2", "note": "Bearer abcdefghijklmnop", "bucket": "b1"},
    )
    assert row.changes == {"password": "[REDACTED]", "note": "[REDACTED]", "bucket": "b1"}
    assert audit.verify(audit_db, pub).is_ok


def test_record_takes_the_correlation_id_and_joins_the_callers_transaction(audit_db):
    """record() stamps the current correlation id and rolls back with its caller."""
    with correlation_scope("corr-123"):
        (row,) = add_rows(audit_db, 1)
    assert row.correlation_id == "corr-123"

    def record_then_fail() -> None:
        with audit_db.write_session() as session:
            audit.record(session, chain=ORG, action="x.y", actor_type="system", actor_id=None)
            raise RuntimeError("caller fails after recording")

    with pytest.raises(RuntimeError):
        record_then_fail()
    with audit_db.session() as session:
        assert session.scalars(select(AuditLog.seq)).all() == [1]


def test_record_rejects_values_too_long_for_their_column(audit_db):
    """A too-long field is refused with a message naming it, on every database alike."""
    with pytest.raises(SpecValidationError, match=r"audit\.action: expected at most 80"):
        audit.append(audit_db, chain=ORG, action="a" * 81, actor_type="user", actor_id="u")


# --- append-only guards -------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_logs SET action = 'forged'", "DELETE FROM audit_logs"],
)
def test_database_refuses_to_change_audit_rows(audit_db, statement):
    """A plain UPDATE or DELETE of audit_logs fails in the database itself."""
    add_rows(audit_db, 2)
    with pytest.raises(DBAPIError, match="append-only"), audit_db.engine.begin() as conn:
        conn.execute(text(statement))
    with audit_db.session() as session:
        assert session.scalars(select(AuditLog.action)).all() == ["thing.updated"] * 2


def test_migration_downgrade_removes_the_guard_and_upgrade_restores_it(audit_db):
    """downgrade to 0001 lifts the triggers; upgrading again puts them back."""
    add_rows(audit_db, 1)
    migrate.downgrade(audit_db, "0001")
    try:
        with audit_db.engine.begin() as conn:
            conn.execute(text("UPDATE audit_logs SET outcome = 'failure'"))
    finally:
        migrate.upgrade(audit_db)
    with pytest.raises(DBAPIError, match="append-only"), audit_db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_logs SET outcome = 'success'"))


# --- verify names what was done -----------------------------------------------------------


def test_verify_names_an_edited_row(audit_db, pub):
    """Changing one field of row 4 is reported as 'edited' at seq 4 with its id."""
    rows = add_rows(audit_db, 6)
    with bypassing_guard(audit_db) as conn:
        conn.execute(text("UPDATE audit_logs SET actor_id = 'usr_evil' WHERE seq = 4"))
    problem = problem_of(audit_db, pub)
    assert (problem.kind, problem.seq, problem.id) == ("edited", 4, rows[3].id)
    assert rows[3].id in problem.message


def test_verify_names_a_deleted_middle_row(audit_db, pub):
    """Deleting row 3 is reported as 'missing' at seq 3."""
    rows = add_rows(audit_db, 5)
    with bypassing_guard(audit_db) as conn:
        conn.execute(text("DELETE FROM audit_logs WHERE seq = 3"))
    problem = problem_of(audit_db, pub)
    assert (problem.kind, problem.seq) == ("missing", 3)
    assert "row seq 3 missing" in problem.message
    assert rows[3].id in problem.message


def test_verify_names_a_deleted_row_hidden_by_renumbering(audit_db, pub):
    """Deleting row 3 and shifting later seqs down is still reported as missing at seq 3."""
    add_rows(audit_db, 5)
    with bypassing_guard(audit_db) as conn:
        conn.execute(text("DELETE FROM audit_logs WHERE seq = 3"))
        for seq in (4, 5):
            conn.execute(
                text("UPDATE audit_logs SET seq = :n WHERE seq = :o"), {"n": seq - 1, "o": seq}
            )
    problem = problem_of(audit_db, pub)
    assert (problem.kind, problem.seq) == ("missing", 3)


def test_verify_names_a_forged_row_inserted_in_the_middle(audit_db, pub):
    """A correctly hashed row slipped in at seq 3 (later rows shifted) is 'inserted' at 3."""
    rows = add_rows(audit_db, 5)
    forged = {
        "id": "aud_FORGED",
        "chain": ORG,
        "seq": 3,
        "created_at": rows[1].created_at + timedelta(microseconds=1),
        "actor_type": "user",
        "actor_id": "usr_evil",
        "action": "thing.updated",
        "target_type": None,
        "target_id": None,
        "outcome": "success",
        "client_address": None,
        "correlation_id": None,
        "changes": {},
        "prev_hash": rows[1].row_hash,
    }
    forged["row_hash"] = audit.compute_row_hash(forged)
    with bypassing_guard(audit_db) as conn:
        for seq in (5, 4, 3):
            conn.execute(
                text("UPDATE audit_logs SET seq = :n WHERE seq = :o"), {"n": seq + 1, "o": seq}
            )
        conn.execute(AuditLog.__table__.insert().values(**forged))
    problem = problem_of(audit_db, pub)
    assert (problem.kind, problem.seq, problem.id) == ("inserted", 3, "aud_FORGED")


def test_verify_names_a_forged_row_appended_outside_the_service(audit_db, pub):
    """A row added by hand that does not link to the head is 'inserted', with its id."""
    rows = add_rows(audit_db, 3)
    forged = {
        **{c: getattr(rows[-1], c) for c in audit.EXPORT_COLUMNS},
        "id": "aud_FORGED",
        "seq": 4,
        "prev_hash": "f" * 64,
    }
    forged["row_hash"] = audit.compute_row_hash(forged)
    with audit_db.engine.begin() as conn:  # INSERT is allowed: the log is append-only
        conn.execute(AuditLog.__table__.insert().values(**forged))
    problem = problem_of(audit_db, pub)
    assert (problem.kind, problem.seq, problem.id) == ("inserted", 4, "aud_FORGED")


def test_verify_names_reordered_rows(audit_db, pub):
    """Swapping the seqs of rows 3 and 5 is reported as 'reordered' at seq 3."""
    rows = add_rows(audit_db, 6)
    with bypassing_guard(audit_db) as conn:
        conn.execute(text("UPDATE audit_logs SET seq = 1000 WHERE seq = 3"))
        conn.execute(text("UPDATE audit_logs SET seq = 3 WHERE seq = 5"))
        conn.execute(text("UPDATE audit_logs SET seq = 5 WHERE seq = 1000"))
    problem = problem_of(audit_db, pub)
    assert (problem.kind, problem.seq, problem.id) == ("reordered", 3, rows[4].id)
    assert "written as seq 5" in problem.message


def test_verify_reports_truncation_after_a_checkpoint(audit_db, key, pub):
    """Deleting the newest rows after a signed checkpoint reads 'truncated after seq X'."""
    add_rows(audit_db, 8)
    audit.checkpoint(audit_db, key, ORG)
    with bypassing_guard(audit_db) as conn:
        conn.execute(text("DELETE FROM audit_logs WHERE seq > 5"))
    problem = problem_of(audit_db, pub)
    assert (problem.kind, problem.seq) == ("truncated", 6)
    assert "truncated after seq 5" in problem.message


def test_verify_reports_truncation_even_after_new_appends(audit_db, key, pub):
    """Rows appended after a truncation do not hide it: the signed head no longer matches."""
    add_rows(audit_db, 8)
    audit.checkpoint(audit_db, key, ORG)
    with bypassing_guard(audit_db) as conn:
        conn.execute(text("DELETE FROM audit_logs WHERE seq > 5"))
    time.sleep(0.002)  # the new rows are written strictly after the checkpoint
    add_rows(audit_db, 4)
    problem = problem_of(audit_db, pub)
    assert (problem.kind, problem.seq) == ("truncated", 6)
    assert "truncated after seq 5" in problem.message


def test_verify_catches_a_rehashed_chain_through_its_checkpoint(audit_db, key, pub):
    """Editing row 3 and recomputing every later hash still fails at the signed head."""
    rows = add_rows(audit_db, 6)
    audit.checkpoint(audit_db, key, ORG)
    with bypassing_guard(audit_db) as conn:
        conn.execute(text("UPDATE audit_logs SET actor_id = 'usr_evil' WHERE seq = 3"))
        rehash_from(conn, ORG, 3)
    problem = problem_of(audit_db, pub)
    assert (problem.kind, problem.seq, problem.id) == ("rewritten", 6, rows[5].id)


def test_verify_rejects_a_tampered_checkpoint(audit_db, key, pub):
    """A checkpoint whose signed fields were changed is a 'bad_checkpoint'."""
    add_rows(audit_db, 3)
    cp = audit.checkpoint(audit_db, key, ORG)
    with audit_db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_checkpoints SET seq = 2 WHERE id = :id"), {"id": cp.id})
    problem = problem_of(audit_db, pub)
    assert (problem.kind, problem.id) == ("bad_checkpoint", cp.id)
    assert "signature does not verify" in problem.message


def test_verify_rejects_a_checkpoint_signed_by_another_key(audit_db, pub):
    """Only checkpoints signed by a trusted key count; others are reported."""
    add_rows(audit_db, 2)
    audit.checkpoint(audit_db, new_instance_key(), ORG)
    problem = problem_of(audit_db, pub)
    assert problem.kind == "bad_checkpoint"
    assert "unknown key" in problem.message


def test_checkpoint_needs_the_instance_key(audit_db, settings):
    """Without PAULYOPS_INSTANCE_KEY a checkpoint fails with a message naming it."""
    add_rows(audit_db, 1)
    keyless = settings.model_copy(update={"instance_key": None})
    with pytest.raises(ConfigError, match="PAULYOPS_INSTANCE_KEY"):
        audit.checkpoint(audit_db, keyless, ORG)


def test_checkpoint_of_an_unknown_chain_is_not_found(audit_db, key):
    """A chain with no rows has no head to sign."""
    with pytest.raises(NotFoundError, match="org_nope"):
        audit.checkpoint(audit_db, key, "org_nope")


# --- concurrency --------------------------------------------------------------------------


def test_concurrent_appends_never_fork_the_chain(audit_db, pub):
    """20 threads appending at once yield seq 1..20, each linked to the one before."""
    start = threading.Barrier(20)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            start.wait()
            audit.append(
                audit_db,
                chain=ORG,
                action="race.run",
                actor_type="system",
                actor_id=None,
                changes={"i": i},
            )
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with audit_db.session() as session:
        rows = session.scalars(select(AuditLog).order_by(AuditLog.seq)).all()
    assert [r.seq for r in rows] == list(range(1, 21))
    assert len({r.prev_hash for r in rows}) == 20
    assert sorted(r.changes["i"] for r in rows) == list(range(20))
    assert audit.verify(audit_db, pub).is_ok


# --- retention purge ----------------------------------------------------------------------


def test_purge_deletes_the_old_prefix_and_verify_still_passes(audit_db, key, pub):
    """Purging rows 1-3 leaves a signed purge checkpoint; the chain from seq 4 verifies."""
    old = add_rows(audit_db, 3)
    time.sleep(0.002)
    cutoff = datetime.now(UTC)
    add_rows(audit_db, 3)
    result = audit.purge(audit_db, key, chain=ORG, before=cutoff)
    assert (result.purged, result.through_seq) == (3, 3)
    assert result.checkpoint is not None
    assert (result.checkpoint.kind, result.checkpoint.head_hash) == ("purge", old[-1].row_hash)
    report = audit.verify(audit_db, pub)
    assert report.is_ok
    assert (report.chains[0].first_seq, report.chains[0].rows_checked) == (4, 3)
    assert add_rows(audit_db, 1)[0].seq == 7
    assert audit.verify(audit_db, pub).is_ok


def test_purge_of_every_row_lets_the_chain_continue(audit_db, key, pub):
    """After purging a whole chain, the next row links to the purge checkpoint's head."""
    rows = add_rows(audit_db, 3)
    result = audit.purge(audit_db, key, chain=ORG, before=datetime.now(UTC) + timedelta(days=1))
    assert result.purged == 3
    assert audit.verify(audit_db, pub).is_ok
    (row,) = add_rows(audit_db, 1)
    assert (row.seq, row.prev_hash) == (4, rows[-1].row_hash)
    assert audit.verify(audit_db, pub).is_ok


def test_purge_with_nothing_old_enough_changes_nothing(audit_db, key):
    """A cutoff before the first row purges nothing and writes no checkpoint."""
    add_rows(audit_db, 2)
    result = audit.purge(audit_db, key, chain=ORG, before=datetime(2000, 1, 1, tzinfo=UTC))
    assert (result.purged, result.through_seq, result.checkpoint) == (0, None, None)


def test_deleting_old_rows_without_purge_is_reported(audit_db, pub):
    """Rows removed from the start of a chain without a purge checkpoint are 'missing'."""
    add_rows(audit_db, 4)
    with bypassing_guard(audit_db) as conn:
        conn.execute(text("DELETE FROM audit_logs WHERE seq <= 2"))
    problem = problem_of(audit_db, pub)
    assert (problem.kind, problem.seq) == ("missing", 1)


# --- export -------------------------------------------------------------------------------


def test_export_jsonl_signs_a_checkpoint_and_writes_verifiable_rows(audit_db, key, pub):
    """Each JSON line holds the row; sha256 of it without row_hash is row_hash."""
    rows = add_rows(audit_db, 3)
    out = io.StringIO()
    result = audit.export(audit_db, key, fmt="jsonl", out=out)
    assert result.rows == 3
    assert [(cp.chain, cp.kind, cp.seq) for cp in result.checkpoints] == [(ORG, "export", 3)]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["id"] for line in lines] == [r.id for r in rows]
    for line in lines:
        body = {k: v for k, v in line.items() if k != "row_hash"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canonical.encode()).hexdigest() == line["row_hash"]
    assert audit.verify(audit_db, pub).chains[0].checkpoints_checked == 1


def test_export_csv_has_a_header_and_json_changes(audit_db, key):
    """CSV export has the export columns as header and changes as a JSON string."""
    add_rows(audit_db, 2)
    out = io.StringIO(newline="")
    audit.export(audit_db, key, fmt="csv", out=out)
    records = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert list(records[0]) == list(audit.EXPORT_COLUMNS)
    assert [json.loads(r["changes"]) for r in records] == [{"n": 0}, {"n": 1}]
    assert records[0]["client_address"] == ""


def test_export_filters_by_chain_and_since(audit_db, key):
    """--org limits export to one chain and --since to rows created from that time."""
    add_rows(audit_db, 2, chain=INSTANCE_CHAIN)
    first = add_rows(audit_db, 2)
    time.sleep(0.002)
    since = datetime.now(UTC)
    later = add_rows(audit_db, 2)
    out = io.StringIO()
    result = audit.export(audit_db, key, chain=ORG, since=since, out=out)
    ids = [json.loads(line)["id"] for line in out.getvalue().splitlines()]
    assert ids == [r.id for r in later]
    assert first[0].id not in ids
    assert [cp.chain for cp in result.checkpoints] == [ORG]


def test_export_of_an_unknown_chain_is_not_found(audit_db, key):
    """Exporting a chain with no rows fails instead of writing an empty file."""
    with pytest.raises(NotFoundError):
        audit.export(audit_db, key, chain="org_nope", out=io.StringIO())


# --- PostgreSQL only ----------------------------------------------------------------------


@pytest.fixture
def pg_db(pg_database_url: str) -> Iterator[Database]:
    """A PostgreSQL database (skipped when none is configured), emptied afterwards."""
    database = Database(pg_database_url)
    yield database
    clear_audit_rows(database)
    truncate_all(database)
    database.close()


def test_postgres_refuses_truncate_of_the_audit_log(pg_db):
    """TRUNCATE audit_logs fails unless the purge switch is on."""
    add_rows(pg_db, 1)
    with pytest.raises(DBAPIError, match="append-only: TRUNCATE"), pg_db.engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_logs"))


def test_postgres_app_role_appends_and_purges_but_cannot_delete(pg_db, key, pub):
    """paulyops_app has no UPDATE/DELETE on audit rows, yet appends and purges via the function."""
    with pg_db.engine.connect() as conn:
        privileges = conn.execute(
            text(
                "SELECT has_table_privilege('paulyops_app', 'audit_logs', 'UPDATE'),"
                " has_table_privilege('paulyops_app', 'audit_logs', 'DELETE'),"
                " has_table_privilege('paulyops_app', 'audit_logs', 'INSERT'),"
                " has_table_privilege('paulyops_app', 'organizations', 'UPDATE')"
            )
        ).one()
    assert tuple(privileges) == (False, False, True, True)

    app_db = Database(pg_db.url)

    @event.listens_for(app_db.engine, "connect")
    def _as_app_role(dbapi_conn, _record) -> None:
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SET ROLE paulyops_app")
        dbapi_conn.commit()

    try:
        add_rows(app_db, 3)
        with pytest.raises(DBAPIError, match="permission denied"):
            clear_audit_rows(app_db)  # the setting alone is not enough without DELETE
        with pytest.raises(DBAPIError, match="no purge checkpoint"), app_db.engine.begin() as conn:
            conn.execute(text("SELECT paulyops_audit_purge(:c, 3)"), {"c": ORG})
        result = audit.purge(app_db, key, chain=ORG, before=datetime.now(UTC) + timedelta(days=1))
        assert result.purged == 3
    finally:
        app_db.close()
    assert audit.verify(pg_db, pub).is_ok
    with pg_db.session() as session:
        kinds = session.scalars(select(AuditCheckpoint.kind)).all()
    assert kinds == ["purge"]

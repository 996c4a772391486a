"""The job store: claims, leases, heartbeats, retries with backoff, the reaper, dead jobs.

Runs on SQLite and on PostgreSQL (when configured), like every ``db`` test.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from paulyops.core.db.models import AgentInstallation, AuditLog, Job, JobInput, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError, SpecValidationError
from paulyops.services.actor import CLI
from paulyops.services.agents import jobs
from paulyops.services.agents.jobs import JobPolicy, JobSpec
from paulyops.services.agents.runtime import MAX_BATCH
from tests.support.jobs import make_installation

POLICY = JobPolicy(lease_s=30, max_attempts=3, retry_base_s=0, retry_max_s=0)


def _enqueue(db, org_id, inst_id, count=1, *, actor=None, policy=POLICY, data=b"one two"):
    with db.write_session() as session:
        made = jobs.enqueue(
            OrgScope(session, org_id),
            inst_id,
            [JobSpec(name=f"in{i}.txt", data=data) for i in range(count)],
            policy=policy,
            actor=actor,
        )
        return [job.id for job in made]


def _job(db, job_id):
    with db.session() as session:
        return session.get(Job, job_id)


def _expire_leases(db):
    with db.write_session() as session:
        session.execute(
            update(Job)
            .where(Job.status == "running")
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def test_claim_takes_one_installations_batch(db):
    """A claim leases at most MAX_BATCH due jobs, all of one installation, oldest first."""
    org, first = make_installation(db, "one")
    org2, second = make_installation(db, "two")
    ids = _enqueue(db, org, first, MAX_BATCH + 3)
    other = _enqueue(db, org2, second, 2)
    claim = jobs.claim(db, owner="w1", policy=POLICY)
    assert claim is not None
    assert claim.installation_id == first
    assert claim.job_ids == ids[:MAX_BATCH]
    assert {job.attempt for job in claim.jobs} == {1}
    rest = jobs.claim(db, owner="w2", policy=POLICY)
    assert rest is not None
    assert rest.job_ids == ids[MAX_BATCH:]
    last = jobs.claim(db, owner="w3", policy=POLICY)
    assert last is not None
    assert last.job_ids == other
    assert jobs.claim(db, owner="w4", policy=POLICY) is None
    row = _job(db, ids[0])
    assert row.status == "running"
    assert row.lease_owner == "w1"
    assert row.attempts == 1


def test_claim_by_task_ids_prefers_them_and_fills_the_batch(db):
    """A claim for given job ids takes those first and fills up with their installation's queue."""
    org, inst = make_installation(db)
    ids = _enqueue(db, org, inst, 4)
    claim = jobs.claim(db, owner="w", policy=POLICY, job_ids=[ids[3]], limit=2)
    assert claim is not None
    assert set(claim.job_ids) == {ids[3], ids[0]}


def test_a_job_completes_at_most_once(db):
    """Only the lease holder completes; a second completion (or a stale owner) changes nothing."""
    org, inst = make_installation(db)
    (job_id,) = _enqueue(db, org, inst)
    claim = jobs.claim(db, owner="w1", policy=POLICY)
    assert claim is not None
    assert not jobs.complete(db, job_id, owner="intruder", result={"x": 1})
    assert jobs.complete(db, job_id, owner="w1", result={"x": 1}, duration_ms=5)
    assert not jobs.complete(db, job_id, owner="w1", result={"x": 2})
    row = _job(db, job_id)
    assert row.status == "succeeded"
    assert row.result == {"x": 1}
    assert row.lease_owner is None
    with db.session() as session:  # the staged bytes go with a finished job
        assert session.scalars(select(JobInput).where(JobInput.job_id == job_id)).all() == []


def test_failures_back_off_then_end_dead_with_the_reason(db):
    """A failed attempt waits for its backoff; after max_attempts the job is dead, saying why."""
    org, inst = make_installation(db)
    slow = JobPolicy(lease_s=30, max_attempts=2, retry_base_s=60, retry_max_s=600)
    (job_id,) = _enqueue(db, org, inst, policy=slow)
    claim = jobs.claim(db, owner="w", policy=slow)
    assert claim is not None
    before = utcnow()
    outcome = jobs.fail(db, job_id, owner="w", error="boom", policy=slow)
    assert outcome is not None
    assert outcome.state == "failed"
    assert outcome.next_attempt_at >= before + timedelta(seconds=59)
    assert jobs.claim(db, owner="w", policy=slow) is None  # not due yet
    with db.write_session() as session:
        session.execute(update(Job).values(next_attempt_at=utcnow()))
    again = jobs.claim(db, owner="w", policy=slow)
    assert again is not None
    assert again.jobs[0].attempt == 2
    outcome = jobs.fail(db, job_id, owner="w", error="boom again", policy=slow)
    assert outcome is not None
    assert outcome.state == "dead"
    row = _job(db, job_id)
    assert row.status == "dead"
    assert row.error == "dead after 2 attempts: boom again"
    assert jobs.claim(db, owner="w", policy=slow) is None


def test_backoff_doubles_up_to_the_cap():
    """Each further attempt waits twice as long, never longer than the cap."""
    policy = JobPolicy(retry_base_s=10, retry_max_s=50)
    assert [policy.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 40, 50]
    assert policy.heartbeat_s == policy.lease_s / 3


def test_reaper_retries_expired_leases_and_a_worker_killer_ends_dead(db):
    """A job whose worker dies every time (OOM) is retried, then dead: never an endless loop."""
    org, inst = make_installation(db)
    (job_id,) = _enqueue(db, org, inst)
    for attempt in range(1, POLICY.max_attempts + 1):
        claim = jobs.claim(db, owner=f"w{attempt}", policy=POLICY)
        assert claim is not None
        assert claim.jobs[0].attempt == attempt
        assert jobs.reap(db, policy=POLICY).retried == []  # lease still valid: untouched
        _expire_leases(db)  # the worker was killed: no heartbeat, no completion
        report = jobs.reap(db, policy=POLICY)
        if attempt < POLICY.max_attempts:
            assert report.retried == [job_id]
        else:
            assert report.dead == [job_id]
    row = _job(db, job_id)
    assert row.status == "dead"
    assert "dead after 3 attempts" in row.error
    assert "stopped heartbeating" in row.error
    assert jobs.claim(db, owner="again", policy=POLICY) is None
    # The killed worker's late result is refused.
    assert not jobs.complete(db, job_id, owner="w3", result={})


def test_heartbeat_extends_only_our_leases(db):
    """A heartbeat moves our lease forward and reports jobs we no longer hold."""
    org, inst = make_installation(db)
    ids = _enqueue(db, org, inst, 2)
    claim = jobs.claim(db, owner="w", policy=POLICY)
    assert claim is not None
    _expire_leases(db)
    assert sorted(jobs.heartbeat(db, ids, owner="w", policy=POLICY)) == sorted(ids)
    assert _job(db, ids[0]).lease_expires_at > utcnow() + timedelta(seconds=20)
    assert jobs.reap(db, policy=POLICY).retried == []
    assert jobs.heartbeat(db, ids, owner="other", policy=POLICY) == []


def test_release_hands_jobs_back_at_once(db):
    """A graceful stop hands unstarted jobs back with their attempt returned."""
    org, inst = make_installation(db)
    ids = _enqueue(db, org, inst, 2)
    claim = jobs.claim(db, owner="w", policy=POLICY)
    assert claim is not None
    assert sorted(jobs.release(db, ids, owner="w", started=False)) == sorted(ids)
    row = _job(db, ids[0])
    assert row.status == "queued"
    assert row.attempts == 0
    assert row.lease_owner is None
    again = jobs.claim(db, owner="w2", policy=POLICY)
    assert again is not None
    assert again.jobs[0].attempt == 1


def test_concurrent_claimers_never_share_a_job(db):
    """Eight threads claiming at once each get distinct jobs, and every job is claimed once."""
    org, inst = make_installation(db)
    org2, inst2 = make_installation(db, "other")
    ids = _enqueue(db, org, inst, 60) + _enqueue(db, org2, inst2, 60)
    got: list[list[str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claimer(n: int) -> None:
        try:
            while True:
                claim = jobs.claim(db, owner=f"w{n}", policy=POLICY, limit=3)
                if claim is None:
                    return
                with lock:
                    got.append(claim.job_ids)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    flat = [job_id for batch in got for job_id in batch]
    assert sorted(flat) == sorted(ids)
    assert len(flat) == len(set(flat))


def test_enqueue_rules(db):
    """Inputs need a path or bytes (50 MB at most); quarantined agents take no jobs.

    Manual runs are audited, others are not.
    """
    org, inst = make_installation(db)
    with db.write_session() as session, pytest.raises(SpecValidationError):
        jobs.enqueue(OrgScope(session, org), inst, [JobSpec(name="x")], policy=POLICY)
    too_big = JobSpec(name="big.bin", data=b"\0" * (jobs.MAX_STAGED_BYTES + 1))
    with db.write_session() as session, pytest.raises(SpecValidationError, match="50 MB"):
        jobs.enqueue(OrgScope(session, org), inst, [too_big], policy=POLICY)
    (job_id,) = _enqueue(db, org, inst, actor=CLI)
    with db.session() as session:
        row = session.scalars(select(AuditLog).where(AuditLog.action == "agent.run")).one()
        assert row.target_id == inst
        assert job_id in str(row.changes)
    _enqueue(db, org, inst)  # not manual: no audit row
    with db.session() as session:
        assert (
            len(session.scalars(select(AuditLog).where(AuditLog.action == "agent.run")).all()) == 1
        )
    with db.write_session() as session:
        session.execute(update(AgentInstallation).values(status="quarantined"))
    with pytest.raises(ConflictError, match="quarantined"):
        _enqueue(db, org, inst)


def test_queue_stats_count_due_running_and_dead(db):
    """Queue stats report waiting jobs, the oldest one's age, running and dead jobs."""
    org, inst = make_installation(db)
    _enqueue(db, org, inst, 3)
    claim = jobs.claim(db, owner="w", policy=POLICY, limit=1)
    assert claim is not None
    stats = jobs.queue_stats(db)
    assert stats.depth == 2
    assert stats.running == 1
    assert stats.dead == 0
    assert stats.oldest_age_s is not None
    assert stats.oldest_age_s >= 0
    jobs.fail(db, claim.job_ids[0], owner="w", error="x", policy=POLICY, retry=False)
    assert jobs.queue_stats(db).dead == 1


def test_dispatch_happens_after_commit_only(db):
    """The dispatcher hears of new jobs once their transaction commits, never on rollback."""
    org, inst = make_installation(db)
    heard: list[tuple[str, list[str]]] = []
    jobs.set_dispatcher(db, lambda installation, ids: heard.append((installation, list(ids))))
    try:
        with db.write_session() as session:
            jobs.enqueue(OrgScope(session, org), inst, [JobSpec("a", data=b"x")], policy=POLICY)
            session.rollback()
        assert heard == []
        ids = _enqueue(db, org, inst)
        assert heard == [(inst, ids)]
    finally:
        jobs.set_dispatcher(db, None)


def test_cancel_stops_a_job_and_discards_a_late_result(db):
    """A cancelled running job cannot be completed by its worker afterwards; finished ones stay."""
    org, inst = make_installation(db)
    (job_id,) = _enqueue(db, org, inst)
    claim = jobs.claim(db, owner="w", policy=POLICY)
    assert claim is not None
    with db.write_session() as session:
        jobs.cancel(OrgScope(session, org), job_id, actor=CLI)
    assert not jobs.complete(db, job_id, owner="w", result={})
    assert _job(db, job_id).status == "cancelled"
    with db.write_session() as session, pytest.raises(ConflictError, match="already cancelled"):
        jobs.cancel(OrgScope(session, org), job_id, actor=CLI)


def test_requeue_after_release_makes_waiting_jobs_due_and_dispatched(db):
    """Jobs that waited through a quarantine are due at once and dispatched again."""
    org, inst = make_installation(db)
    ids = _enqueue(db, org, inst, 2)
    heard: list[list[str]] = []
    jobs.set_dispatcher(db, lambda _inst, job_ids: heard.append(list(job_ids)))
    try:
        with db.write_session() as session:
            assert jobs.requeue_installation(OrgScope(session, org), inst) == 2
    finally:
        jobs.set_dispatcher(db, None)
    assert [sorted(batch) for batch in heard] == [sorted(ids)]
    assert _job(db, ids[0]).dispatched_at is None

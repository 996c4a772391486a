"""The embedded runner: woken by enqueue, resumes after a restart, stops gracefully."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from paulyops.core.db.models import Job, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.services.agents import jobs
from paulyops.services.agents.execute import JobExecutor, no_settings
from paulyops.services.agents.jobs import JobPolicy, JobSpec
from paulyops.services.agents.scheduler import Scheduler, acquire_lease
from paulyops.workers.embedded import EmbeddedRunner
from tests.support.jobs import SubprocessRunner, make_installation

POLICY = JobPolicy(lease_s=3, max_attempts=3, retry_base_s=0, retry_max_s=0)


@pytest.fixture
def executor(db, tmp_path):
    return JobExecutor(
        db,
        runner=SubprocessRunner(),
        settings_provider=no_settings,
        data_dir=tmp_path / "data",
        policy=POLICY,
    )


def _enqueue(db, org, inst, *texts):
    with db.write_session() as session:
        specs = [JobSpec(name=f"in{i}.txt", data=t.encode()) for i, t in enumerate(texts)]
        return [j.id for j in jobs.enqueue(OrgScope(session, org), inst, specs, policy=POLICY)]


def _wait_for(db, ids, states, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            found = {j.id: j.status for j in session.scalars(select(Job).where(Job.id.in_(ids)))}
        if all(found.get(i) in states for i in ids):
            return found
        time.sleep(0.05)
    raise AssertionError(f"jobs did not reach {states}: {found}")


def test_enqueue_wakes_a_sleeping_runner(db, executor):
    """With a 60 s safety sweep, a new job still starts at once: the enqueue woke the thread."""
    org, inst = make_installation(db)
    runner = EmbeddedRunner(db, executor, policy=POLICY, concurrency=2, sweep_s=60)
    runner.start()
    try:
        time.sleep(0.3)  # both threads found nothing and sleep now
        start = time.monotonic()
        ids = _enqueue(db, org, inst, "wake up")
        _wait_for(db, ids, {"succeeded"})
        assert time.monotonic() - start < 10
    finally:
        runner.stop()


def test_jobs_left_by_a_previous_run_are_picked_up(db, executor):
    """Queued jobs, and running ones whose worker died (lease expired), run after a restart."""
    org, inst = make_installation(db)
    queued, orphan = _enqueue(db, org, inst, "left queued", "was running")
    dead_worker = jobs.claim(db, owner="old-process", policy=POLICY, job_ids=[orphan], limit=1)
    assert dead_worker.job_ids == [orphan]
    with db.write_session() as session:  # the old process died: no heartbeats since
        session.execute(
            update(Job)
            .where(Job.id == orphan)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    scheduler = Scheduler(db, owner="new-process", lease_s=3, tick_s=0.2)
    scheduler.register("jobs.reap", interval_s=0.2, run=lambda: jobs.reap(db, policy=POLICY))
    runner = EmbeddedRunner(db, executor, policy=POLICY, concurrency=1, sweep_s=0.5)
    scheduler.start()
    runner.start()
    try:
        _wait_for(db, [queued, orphan], {"succeeded"})
    finally:
        runner.stop()
        scheduler.stop()
    with db.session() as session:
        assert session.get(Job, orphan).attempts == 2  # the dead worker's claim counted


def test_graceful_stop_finishes_short_batches_and_hands_long_ones_back(db, executor):
    """Stop waits for running batches up to the grace, then hands the rest back to the queue."""
    org, inst = make_installation(db)
    (quick,) = _enqueue(db, org, inst, "sleep:0.5")
    runner = EmbeddedRunner(db, executor, policy=POLICY, concurrency=1)
    runner.start()
    _wait_for(db, [quick], {"running"})
    assert runner.stop(grace_s=15) == []
    assert _wait_for(db, [quick], {"succeeded"}, timeout=1)

    org2, inst2 = make_installation(db, "slow")
    (slow,) = _enqueue(db, org2, inst2, "sleep:2")
    runner = EmbeddedRunner(db, executor, policy=POLICY, concurrency=1)
    runner.start()
    _wait_for(db, [slow], {"running"})
    assert runner.stop(grace_s=0.3) == [slow]
    with db.session() as session:
        job = session.get(Job, slow)
        assert job.status == "queued"
        assert job.lease_owner is None
    time.sleep(2.5)  # the abandoned run ends; its late result must not complete the job
    with db.session() as session:
        assert session.get(Job, slow).status == "queued"


def test_only_one_scheduler_leads(db):
    """Two processes' schedulers: one leads; when it stops, the other takes over."""
    ran: list[str] = []
    first = Scheduler(db, owner="a", lease_s=5)
    second = Scheduler(db, owner="b", lease_s=5)
    first.register("t", interval_s=0, run=lambda: ran.append("a"))
    second.register("t", interval_s=0, run=lambda: ran.append("b"))
    first.tick()
    second.tick()
    assert ran == ["a"]
    assert first.is_leader
    assert not second.is_leader
    first.stop()  # gives the lease up
    second.tick()
    assert ran == ["a", "b"]
    assert not acquire_lease(db, owner="a", lease_s=5)

"""Running a claimed batch: outcomes recorded per job, events, quarantine, the batch hook."""

from __future__ import annotations

from sqlalchemy import select, update

from paulyops.core import metrics
from paulyops.core.db.models import AgentEvent, AgentInstallation, AgentPackage, AuditLog, Job
from paulyops.core.db.scoped import OrgScope
from paulyops.services.agents import jobs
from paulyops.services.agents.execute import JobExecutor, no_settings
from paulyops.services.agents.jobs import JobPolicy, JobSpec
from tests.support.jobs import SubprocessRunner, make_installation

POLICY = JobPolicy(lease_s=30, max_attempts=2, retry_base_s=0, retry_max_s=0)


def _executor(db, tmp_path, runner=None, **kwargs):
    return JobExecutor(
        db,
        runner=runner or SubprocessRunner(),
        settings_provider=no_settings,
        data_dir=tmp_path / "data",
        policy=POLICY,
        **kwargs,
    )


def _enqueue(db, org, inst, *texts, path=None):
    with db.write_session() as session:
        specs = [JobSpec(name=f"in{i}.txt", data=t.encode()) for i, t in enumerate(texts)]
        if path is not None:
            specs.append(JobSpec(name="local.txt", path=str(path)))
        return [j.id for j in jobs.enqueue(OrgScope(session, org), inst, specs, policy=POLICY)]


def _jobs(db, ids):
    with db.session() as session:
        rows = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(ids)))}
    return [rows[i] for i in ids]


def _events(db, inst):
    with db.session() as session:
        return [
            e.kind
            for e in session.scalars(
                select(AgentEvent)
                .where(AgentEvent.installation_id == inst)
                .order_by(AgentEvent.created_at, AgentEvent.id)
            )
        ]


def test_a_batch_runs_once_and_records_each_outcome(db, tmp_path):
    """One runner start serves the batch; successes store results, failures retry."""
    org, inst = make_installation(db)
    local = tmp_path / "local.txt"
    local.write_text("from the local disk")
    ids = _enqueue(db, org, inst, "three little words", "fail", path=local)
    runner = SubprocessRunner()
    hook_calls = []
    executor = _executor(db, tmp_path, runner, on_batch_finished=lambda *a: hook_calls.append(a))
    claim = jobs.claim(db, owner="w", policy=POLICY)
    before = metrics.AGENT_RUNS.labels("succeeded")._value.get()
    report = executor.run(claim)
    assert len(runner.requests) == 1
    assert [item.attempt for item in runner.requests[0].items] == [1, 1, 1]
    assert report.succeeded == [ids[0], ids[2]]
    assert report.failed == [ids[1]]
    ok, failed, local_job = _jobs(db, ids)
    assert ok.status == "succeeded"
    assert ok.result["data"]["words"] == 3
    assert local_job.result["data"]["words"] == 4
    assert failed.status == "failed"
    assert "asked to fail" in failed.error
    assert _events(db, inst) == ["run.started", "run.failed"]
    assert hook_calls == [(inst, 2, 1)]
    assert metrics.AGENT_RUNS.labels("succeeded")._value.get() == before + 2
    # The package came from the database into this machine's cache, named by its sha256.
    assert (tmp_path / "data" / "agents" / "cache").is_dir()
    assert not list((tmp_path / "data" / "agents" / "work").iterdir())


def test_consecutive_failures_quarantine_the_installation(db, tmp_path):
    """After N consecutive failed jobs the installation is quarantined, evented and audited."""
    org, inst = make_installation(db)
    executor = _executor(db, tmp_path, quarantine_after=3)
    _enqueue(db, org, inst, "fail", "ok then", "fail")
    executor.run(jobs.claim(db, owner="w", policy=POLICY))
    with db.session() as session:
        assert session.get(AgentInstallation, inst).failure_count == 1  # a success broke the streak
    _enqueue(db, org, inst, "fail", "fail")
    executor.run(jobs.claim(db, owner="w", policy=POLICY, job_ids=None))
    with db.session() as session:
        installation = session.get(AgentInstallation, inst)
        assert installation.status == "quarantined"
        assert "consecutive failed runs" in installation.last_error
        audit = session.scalars(
            select(AuditLog).where(AuditLog.action == "agent.quarantined")
        ).one()
        assert audit.target_id == inst
    assert "quarantined" in _events(db, inst)
    # Quarantined: its queued jobs wait, nothing is claimed.
    assert jobs.claim(db, owner="w", policy=POLICY) is None


def test_a_modified_stored_archive_quarantines_and_hands_jobs_back(db, tmp_path):
    """An archive that no longer matches its sha256 quarantines the agent; its jobs wait."""
    org, inst = make_installation(db)
    (job_id,) = _enqueue(db, org, inst, "hello")
    with db.write_session() as session:
        session.execute(update(AgentPackage).values(sha256="0" * 64))
    runner = SubprocessRunner()
    report = _executor(db, tmp_path, runner).run(jobs.claim(db, owner="w", policy=POLICY))
    assert report.quarantined
    assert report.released == [job_id]
    assert runner.requests == []
    (job,) = _jobs(db, [job_id])
    assert job.status == "queued"
    assert job.attempts == 0
    with db.session() as session:
        assert "no longer matches" in session.get(AgentInstallation, inst).last_error


def test_a_result_after_the_lease_was_lost_is_discarded(db, tmp_path):
    """A batch whose lease was reaped meanwhile cannot complete the job (someone else has it)."""
    org, inst = make_installation(db)
    (job_id,) = _enqueue(db, org, inst, "hello")

    def stealing_runner(request):
        with db.write_session() as session:  # the lease is taken over by another worker
            session.execute(update(Job).values(lease_owner="someone-else"))
        return SubprocessRunner()(request)

    report = _executor(db, tmp_path, stealing_runner).run(jobs.claim(db, owner="w", policy=POLICY))
    assert report.discarded == [job_id]
    assert report.succeeded == []
    (job,) = _jobs(db, [job_id])
    assert job.status == "running"
    assert job.lease_owner == "someone-else"


def test_a_crashing_batch_fails_every_job_with_the_reason(db, tmp_path):
    """An agent process that dies fails the jobs it left, with the batch's reason."""
    org, inst = make_installation(db)
    ids = _enqueue(db, org, inst, "exit", "never reached")
    report = _executor(db, tmp_path).run(jobs.claim(db, owner="w", policy=POLICY))
    assert sorted(report.failed) == sorted(ids)
    assert all("exited with 3" in job.error for job in _jobs(db, ids))


def test_a_storage_input_is_fetched_through_its_connection_and_checked(db, tmp_path):
    """A ``storage`` source is read by the worker through the backend; a changed file is refused."""
    import hashlib

    from paulyops.core.db.models import StorageConfig

    org, inst = make_installation(db)
    store = tmp_path / "store"
    (store / "inbox").mkdir(parents=True)
    (store / "inbox" / "a.txt").write_text("four words right here")
    with db.write_session() as session:
        scope = OrgScope(session, org)
        conn = scope.add(
            StorageConfig(
                name="local",
                provider="local",
                settings={"path": str(store)},
                backup_strategy="local",
                retention_days=30,
                status="connected",
            )
        )
        session.flush()
        good = hashlib.sha256(b"four words right here").hexdigest()
        specs = [
            JobSpec(
                name="a.txt",
                source={
                    "kind": "storage",
                    "connection": conn.id,
                    "path": "inbox/a.txt",
                    "sha256": sha,
                },
            )
            for sha in (good, "0" * 64)
        ]
        ids = [j.id for j in jobs.enqueue(scope, inst, specs, policy=POLICY)]
    report = _executor(db, tmp_path).run(jobs.claim(db, owner="w", policy=POLICY))
    assert report.succeeded == [ids[0]]
    ok, changed = _jobs(db, ids)
    assert ok.result["data"]["words"] == 4
    assert "content changed since it was found" in changed.error

"""Celery: `paulyops worker` subprocesses against the real Redis and RabbitMQ run real jobs.

Each test uses its own queue name; a killed worker's job comes back through its lease
(and, on Redis, its message after the 10 s visibility timeout) and completes once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from paulyops.cli.main import app as cli
from paulyops.core.db.engine import Database
from paulyops.core.db.models import Job
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConfigError
from paulyops.services.agents import jobs
from paulyops.services.agents.jobs import JobPolicy, JobSpec
from paulyops.workers.celery_app import check_timeouts, create_celery, dispatcher_for
from paulyops.workers.runtime import TEST_RUNNER_ENV
from tests.conftest import (
    AMQP_URL,
    PG_URL,
    REDIS_URL,
    fresh_secrets,
    make_settings,
    truncate_all,
)
from tests.support.jobs import make_installation

REPO = Path(__file__).resolve().parents[2]
PAULYOPS = Path(sys.executable).with_name("paulyops")
NO_AMQP = "RabbitMQ not configured: set PAULYOPS_TEST_AMQP_URL (CI does)"
NO_REDIS = "Redis not configured: set PAULYOPS_TEST_REDIS_URL (CI does)"


@pytest.fixture(params=["redis", "amqp"])
def broker(request):
    url = REDIS_URL if request.param == "redis" else AMQP_URL
    if not url:
        pytest.skip(NO_REDIS if request.param == "redis" else NO_AMQP)
    return url


def _env(tmp_path: Path, db_url: str, broker: str, queue: str) -> dict[str, str]:
    return {
        "PAULYOPS_ENV": "test",
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": broker,
        "PAULYOPS_CELERY_QUEUE": queue,
        "PAULYOPS_JOB_LEASE_S": "3",
        "PAULYOPS_JOB_RETRY_BASE_S": "0",
        "PAULYOPS_JOB_MAX_ATTEMPTS": "3",
        "PAULYOPS_REDIS_VISIBILITY_TIMEOUT_S": "10",
        "PAULYOPS_CELERY_TASK_TIME_LIMIT_S": "8",
        "PAULYOPS_WORKER_GRACE_S": "15",
        **fresh_secrets(),
    }


class Workers:
    """Start and stop `paulyops worker` subprocesses for one test."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: list = []

    def start(self, **extra: str) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        log = (self.tmp_path / f"worker{n}.log").open("wb")
        self.files.append(log)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PAULYOPS_", "DATABASE"))},
            **self.env,
            **extra,
            "PAULYOPS_HOME": str(self.tmp_path / f"w{n}"),
            TEST_RUNNER_ENV: "tests.support.jobs:run_batch",
            "PYTHONPATH": str(REPO),
        }
        (self.tmp_path / f"w{n}").mkdir()
        proc = subprocess.Popen(
            [str(PAULYOPS), "worker", "-c", "2"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.tmp_path.glob("worker*.log"))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        for log in self.files:
            log.close()


@pytest.fixture
def one_db_url(request, tmp_path):
    """PostgreSQL when configured (what several workers share in production), else SQLite.

    The store's claims are tested on both (tests/services/agents); the worker
    subprocesses are slow to start, so they run against one database.
    """
    if not PG_URL:
        path = tmp_path / "paulyops.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("pg_database_url")
    yield url
    cleanup = Database(url)
    truncate_all(cleanup)
    cleanup.close()


@pytest.fixture
def one_db(one_db_url):
    database = Database(one_db_url)
    database.connect(attempts=3)
    yield database
    database.close()


@pytest.fixture
def setup(tmp_path, one_db, one_db_url, broker):
    db, db_url = one_db, one_db_url
    queue = f"paulyops-test-{uuid.uuid4().hex[:10]}"
    env = _env(tmp_path, db_url, broker, queue)
    settings = make_settings(tmp_path / "server", **env)
    app = create_celery(settings)
    jobs.set_dispatcher(db, dispatcher_for(app, db, settings))
    workers = Workers(tmp_path, env)
    yield db, workers
    jobs.set_dispatcher(db, None)
    workers.stop()
    # Our queue only: the broker is shared. Already gone is fine.
    with app.connection_for_write() as conn, contextlib.suppress(Exception):
        conn.default_channel.queue_delete(queue)


def _enqueue(db, org, inst, *texts):
    with db.write_session() as session:
        specs = [JobSpec(name=f"in{i}.txt", data=t.encode()) for i, t in enumerate(texts)]
        made = jobs.enqueue(OrgScope(session, org), inst, specs, policy=JobPolicy(max_attempts=3))
        return [j.id for j in made]


def _wait(db, ids, states, workers, timeout=40.0):
    deadline = time.monotonic() + timeout
    found = {}
    while time.monotonic() < deadline:
        with db.session() as session:
            found = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(ids)))}
        if all(found[i].status in states for i in ids):
            return [found[i] for i in ids]
        time.sleep(0.1)
    raise AssertionError(
        f"not {states}: {[(j.id, j.status, j.error) for j in found.values()]}\n{workers.logs()}"
    )


def test_a_worker_runs_real_jobs_and_finishes_them_on_sigterm(setup):
    """Jobs go through the broker to a worker and succeed; SIGTERM is a warm shutdown.

    The job running when SIGTERM arrives finishes within the grace period, and the
    worker exits cleanly.
    """
    db, workers = setup
    org, inst = make_installation(db)
    proc = workers.start()
    ids = _enqueue(db, org, inst, "one", "one two", "one two three")
    done = _wait(db, ids, {"succeeded"}, workers)
    assert [job.result["data"]["words"] for job in done] == [1, 2, 3]
    (job_id,) = _enqueue(db, org, inst, "sleep:1.5")
    _wait(db, [job_id], {"running"}, workers)
    proc.send_signal(signal.SIGTERM)
    (finished,) = _wait(db, [job_id], {"succeeded"}, workers, timeout=20)
    assert finished.attempts == 1
    assert proc.wait(20) == 0


def test_kill_9_mid_job_retries_and_completes_exactly_once(setup):
    """A worker killed mid-job: the job is retried by another worker and succeeds once."""
    db, workers = setup
    org, inst = make_installation(db)
    first = workers.start()
    (job_id,) = _enqueue(db, org, inst, "sleep:2")
    (running,) = _wait(db, [job_id], {"running"}, workers)
    assert running.attempts == 1
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    workers.start()
    (done,) = _wait(db, [job_id], {"succeeded"}, workers, timeout=60)
    assert done.attempts == 2
    assert done.result["data"]["attempt"] == 2
    # The killed run's message comes back (Redis: after its 10 s visibility timeout) and
    # finds nothing to claim: the record stays completed once, by the second attempt.
    time.sleep(11 if "redis" in workers.env["CELERY_BROKER_URL"] else 1)
    with db.session() as session:
        again = session.get(Job, job_id)
    assert again.status == "succeeded"
    assert again.attempts == 2
    assert again.finished_at == done.finished_at


def test_worker_refuses_a_visibility_timeout_below_the_task_limit(tmp_path, monkeypatch):
    """On Redis the visibility timeout must exceed the task time limit, or the worker says why."""
    env = {
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "PAULYOPS_REDIS_VISIBILITY_TIMEOUT_S": "60",
        "PAULYOPS_CELERY_TASK_TIME_LIMIT_S": "120",
    }
    settings = make_settings(tmp_path, **env)
    with pytest.raises(ConfigError, match="VISIBILITY_TIMEOUT_S"):
        check_timeouts(settings)
    for name, value in {"PAULYOPS_ENV": "test", **fresh_secrets(), **env}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 4
    assert "must be longer than PAULYOPS_CELERY_TASK_TIME_LIMIT_S" in result.output


def test_rabbitmq_consumer_timeout_must_exceed_the_task_limit(tmp_path):
    """RabbitMQ cannot report its consumer_timeout: the stated one must exceed the limit."""
    settings = make_settings(
        tmp_path,
        CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//",
        PAULYOPS_AMQP_CONSUMER_TIMEOUT_S="600",
        PAULYOPS_CELERY_TASK_TIME_LIMIT_S="900",
    )
    with pytest.raises(ConfigError, match="consumer_timeout"):
        check_timeouts(settings)
    ok = make_settings(tmp_path, CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:5672//")
    check_timeouts(ok)  # the defaults: 1800 s > 900 s


def test_worker_without_a_broker_explains_the_embedded_default(tmp_path, monkeypatch):
    """No CELERY_BROKER_URL: the worker refuses and says jobs run inside the server."""
    for name, value in {"PAULYOPS_ENV": "test", **fresh_secrets()}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 4
    assert "inside `paulyops serve`" in result.output

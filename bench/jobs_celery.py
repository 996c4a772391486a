"""Jobs per second through Celery on Redis, next to a bare Celery task running the same no-op.

One run, both sides on the same Redis (``PAULYOPS_TEST_REDIS_URL`` or ``--broker``), each
with one worker process (threads pool, ``--concurrency`` threads):

* ``bare``      ``bench/_celery_bare.py``: one task per job that runs the no-op agent child
  (``python3 -I``, the test suite's subprocess runner) and counts itself in Redis;
* ``paulyops``  ``paulyops worker`` on a SQLite instance: ``--jobs`` jobs enqueued one by
  one (each its own transaction and task), claimed with a lease, the package unpacked from
  the database into the cache, the same child run per batch, outcomes committed. A task
  claims up to 20 due jobs of the agent, so later tasks may find their job already done.

jobs/s = jobs / (first enqueue → last job finished). Ratio paulyops / bare (aim >= 0.8).
The real sandbox is not used (its own bench compares it with a bare start). Measures
only; no asserts.

    PAULYOPS_TEST_REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/jobs_celery.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import fresh_secrets  # noqa: E402
from tests.support.jobs import make_installation, package_bytes  # noqa: E402

from paulyops.core.db import migrate  # noqa: E402  # after the path tweak above
from paulyops.core.db.engine import Database  # noqa: E402
from paulyops.core.db.models import Job  # noqa: E402
from paulyops.core.db.scoped import OrgScope  # noqa: E402
from paulyops.core.settings import load_settings  # noqa: E402
from paulyops.services.agents import jobs  # noqa: E402
from paulyops.services.agents.jobs import JobPolicy, JobSpec  # noqa: E402
from paulyops.services.agents.unpack import unpack  # noqa: E402
from paulyops.workers.celery_app import create_celery, dispatcher_for  # noqa: E402

BIN = Path(sys.executable).parent


def _wait_ready(log: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "ready." in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise SystemExit(f"worker exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise SystemExit("worker not ready in 60 s")


def bare(broker: str, n: int, concurrency: int, root: Path) -> float:
    import hashlib

    archive = package_bytes()
    package_dir = unpack(archive, hashlib.sha256(archive).hexdigest(), root / "bare-cache")
    sample = root / "in.txt"
    sample.write_text("no op")
    queue, counter = f"bench-bare-{uuid.uuid4().hex[:8]}", f"bench:{uuid.uuid4().hex}"
    env = {**os.environ, "BENCH_BROKER_URL": broker, "BENCH_QUEUE": queue}
    env["BENCH_COUNTER_KEY"] = counter
    env["PYTHONPATH"] = str(REPO)
    log = root / "bare.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "bench._celery_bare",
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--queues={queue}",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=WARNING",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            os.environ.update(BENCH_BROKER_URL=broker, BENCH_QUEUE=queue, BENCH_COUNTER_KEY=counter)
            from bench import _celery_bare

            time.sleep(3)  # the bare worker prints "ready" only at INFO
            r = redis.Redis.from_url(broker)
            start = time.perf_counter()
            for _ in range(n):
                _celery_bare.noop.delay(str(package_dir), str(sample))
            while int(r.get(counter) or 0) < n:
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
            r.delete(counter)
        finally:
            proc.terminate()
            proc.wait(30)
    return n / elapsed


def paulyops(broker: str, n: int, concurrency: int, root: Path) -> float:
    home = root / "instance"
    home.mkdir()
    queue = f"bench-paulyops-{uuid.uuid4().hex[:8]}"
    env = {
        "PAULYOPS_ENV": "test",
        "PAULYOPS_HOME": str(home),
        "DATABASE_URL": f"sqlite:///{home / 'paulyops.db'}",
        "CELERY_BROKER_URL": broker,
        "PAULYOPS_CELERY_QUEUE": queue,
        "PAULYOPS_TEST_AGENT_RUNNER": "tests.support.jobs:run_batch",
        **fresh_secrets(),
    }
    db = Database(env["DATABASE_URL"])
    migrate.upgrade(db)
    db.connect()
    org, inst = make_installation(db)
    settings = load_settings(root=home, environ=env)
    jobs.set_dispatcher(db, dispatcher_for(create_celery(settings), db, settings))
    log = root / "paulyops.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "paulyops"), "worker", "-c", str(concurrency)],
            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(log, proc)
            policy = JobPolicy()
            start = time.perf_counter()
            for _ in range(n):
                with db.write_session() as session:
                    jobs.enqueue(
                        OrgScope(session, org),
                        inst,
                        [JobSpec(name="in.txt", data=b"no op")],
                        policy=policy,
                    )
            while True:
                with db.session() as session:
                    done = session.scalar(
                        select(func.count()).select_from(Job).where(Job.status == "succeeded")
                    )
                if done >= n:
                    break
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
        finally:
            proc.terminate()
            proc.wait(60)
            jobs.set_dispatcher(db, None)
            db.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", default=os.environ.get("PAULYOPS_TEST_REDIS_URL"))
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    if not args.broker:
        raise SystemExit("set PAULYOPS_TEST_REDIS_URL or pass --broker redis://...")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bare_rate = bare(args.broker, args.jobs, args.concurrency, root)
        ours = paulyops(args.broker, args.jobs, args.concurrency, root)
    print(f"jobs: {args.jobs}  worker threads: {args.concurrency}  cpus: {os.cpu_count()}")
    print(f"bare Celery task        {bare_rate:7.1f} jobs/s")
    print(f"paulyops worker         {ours:7.1f} jobs/s")
    print(f"ratio paulyops/bare: {ours / bare_rate:.2f}  (aim >= 0.8)")


if __name__ == "__main__":
    main()

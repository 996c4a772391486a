"""Latency of a queued no-op agent job through the embedded runner, next to running it directly.

One run, two sides, paired round by round:

* ``direct``   ``subprocess.run`` of the same isolated-mode child the runner starts (the
  test suite's subprocess runner, ``tests/support/jobs.py``: the package's entrypoint in
  ``python3 -I``), fed the same one-item request;
* ``queued``   enqueue one job (a committed transaction on SQLite, the input staged in the
  database) and wait for the embedded runner to claim it, unpack the package from the
  cache, run that child, and commit the outcome (timed to ``on_batch_finished``).

The ratio is the median of queued / direct per round (aim <= 1.5). The real sandbox
(bubblewrap) is not used: the sandbox's own bench compares it with a bare start. Measures
only; no asserts.

    .venv/bin/python bench/jobs_embedded.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.jobs import CHILD, SubprocessRunner, make_installation  # noqa: E402

from paulyops.core.db import migrate  # noqa: E402  # after the path tweak above
from paulyops.core.db.engine import Database  # noqa: E402
from paulyops.core.db.scoped import OrgScope  # noqa: E402
from paulyops.services.agents import jobs  # noqa: E402
from paulyops.services.agents.execute import JobExecutor, no_settings  # noqa: E402
from paulyops.services.agents.jobs import JobPolicy, JobSpec  # noqa: E402
from paulyops.workers.embedded import EmbeddedRunner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = Database(f"sqlite:///{root / 'paulyops.db'}")
        migrate.upgrade(db)
        db.connect()
        org, inst = make_installation(db)
        finished = threading.Event()
        policy = JobPolicy(lease_s=60)
        executor = JobExecutor(
            db,
            runner=SubprocessRunner(),
            settings_provider=no_settings,
            data_dir=root / "data",
            policy=policy,
            on_batch_finished=lambda *_: finished.set(),
        )
        runner = EmbeddedRunner(db, executor, policy=policy, concurrency=1, sweep_s=60)
        runner.start()
        sample = root / "in.txt"
        sample.write_text("no op")
        package_dir = None
        queued, direct, ratios = [], [], []
        for n in range(args.rounds + 2):  # two warm-up rounds
            finished.clear()
            start = time.perf_counter()
            with db.write_session() as session:
                jobs.enqueue(
                    OrgScope(session, org),
                    inst,
                    [JobSpec(name="in.txt", data=b"no op")],
                    policy=policy,
                )
            finished.wait(30)
            q = time.perf_counter() - start
            if package_dir is None:
                package_dir = next((root / "data" / "agents" / "cache").iterdir())
            payload = json.dumps(
                {
                    "entrypoint": "agent:handle",
                    "items": [{"jobId": "j", "attempt": 1, "path": str(sample)}],
                }
            )
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-I", "-c", CHILD, str(package_dir)],
                input=payload,
                capture_output=True,
                text=True,
                check=True,
            )
            d = time.perf_counter() - start
            if n >= 2:
                queued.append(q)
                direct.append(d)
                ratios.append(q / d)
        runner.stop()
        db.close()
    print(f"rounds: {args.rounds}  cpus: {os.cpu_count()}")
    print(f"direct subprocess.run  p50 {statistics.median(direct) * 1000:7.1f} ms")
    print(f"queued embedded job    p50 {statistics.median(queued) * 1000:7.1f} ms")
    print(f"ratio queued/direct (paired median): {statistics.median(ratios):.2f}  (aim <= 1.5)")


if __name__ == "__main__":
    main()

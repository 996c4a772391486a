"""The bare side of bench/jobs_celery.py: a Celery app whose task runs the same no-op child.

Configured like PaulyOps' (acks_late, prefetch 1, JSON, threads pool); counts finished
tasks in a Redis key so the bench can wait for them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis
from celery import Celery

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.jobs import CHILD  # noqa: E402  # after the path tweak above

BROKER = os.environ["BENCH_BROKER_URL"]
COUNTER = os.environ["BENCH_COUNTER_KEY"]
app = Celery("bare", broker=BROKER)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue=os.environ["BENCH_QUEUE"],
    broker_connection_retry_on_startup=True,
)
_redis = redis.Redis.from_url(BROKER)


@app.task(name="bare.noop")
def noop(package_dir: str, sample: str) -> None:
    """Run the no-op agent child once, then count it."""
    payload = json.dumps(
        {"entrypoint": "agent:handle", "items": [{"jobId": "j", "attempt": 1, "path": sample}]}
    )
    subprocess.run(
        [sys.executable, "-I", "-c", CHILD, package_dir],
        input=payload,
        capture_output=True,
        text=True,
        check=True,
    )
    _redis.incr(COUNTER)

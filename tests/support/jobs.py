"""Job-test helpers: an installed test agent and a small real batch runner.

The runner is not the sandbox (``services/agents/sandbox`` is): it runs the package's
entrypoint in a ``python3 -I`` subprocess, one process per batch, and reads one JSON
result line per item back, which is all the job layer needs to be tested for real.

The test agent reacts to its input's text: ``fail`` raises, ``sleep:N`` sleeps N seconds,
``exit`` kills its own process (a batch failure); anything else returns its word count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AgentInstallation, AgentPackage, Organization
from paulyops.services.agents.runtime import ItemOutcome, RunOutcome, RunRequest
from paulyops.services.marketplace.build import assemble

MANIFEST = """\
id = "acme.words"
name = "Words"
version = "1.0.0"
description = "Counts words."
publisher = "acme"
license = "MIT"
entrypoint = "agent:handle"
capabilities = []

[compatibility]
paulyops = ">=0.1"

[handles]
mediaTypes = ["text/plain"]
documentClasses = ["other"]
"""

AGENT = b"""\
import os
import time


def handle(ctx, item):
    with open(item["path"], encoding="utf-8") as fh:
        text = fh.read()
    if text.startswith("sleep:"):
        time.sleep(float(text.split(":", 1)[1]))
    if text == "fail":
        raise RuntimeError("asked to fail")
    if text == "exit":
        os._exit(3)
    return {"words": len(text.split()), "attempt": item["attempt"], "jobId": item["jobId"]}
"""

# Runs inside the child: import the entrypoint, answer one JSON line per item.
CHILD = """\
import importlib, json, sys, traceback
sys.path.insert(0, sys.argv[1])
request = json.loads(sys.stdin.read())
module, _, func = request["entrypoint"].partition(":")
handle = getattr(importlib.import_module(module), func)
for item in request["items"]:
    try:
        out = {"jobId": item["jobId"], "ok": True, "result": handle(None, item)}
    except Exception as err:
        out = {"jobId": item["jobId"], "ok": False, "error": f"{type(err).__name__}: {err}"}
    print(json.dumps(out), flush=True)
"""


def package_bytes() -> bytes:
    """Return the canonical archive of the test agent."""
    return assemble({"manifest.toml": MANIFEST.encode(), "agent.py": AGENT})


def make_installation(
    db: Database, slug: str = "acme", *, status: str = "enabled"
) -> tuple[str, str]:
    """Create an organization with the test agent installed; return (org id, installation id)."""
    import hashlib

    archive = package_bytes()
    with db.write_session() as session:
        org = Organization(
            slug=slug,
            name=slug.title(),
            industry="other",
            compliance_level="basic",
            size="1-10",
            rbac_model="simple",
            spec_hash="0" * 64,
        )
        session.add(org)
        session.flush()
        package = session.query(AgentPackage).filter_by(agent_id="acme.words").first()
        if package is None:
            package = AgentPackage(
                agent_id="acme.words",
                version="1.0.0",
                name="Words",
                publisher="acme",
                manifest={"id": "acme.words", "entrypoint": "agent:handle", "version": "1.0.0"},
                source="upload",
                sha256=hashlib.sha256(archive).hexdigest(),
                checksums_sha256="0" * 64,
                size=len(archive),
                signature_state="unsigned",
                archive=archive,
            )
            session.add(package)
            session.flush()
        inst = AgentInstallation(
            organization_id=org.id,
            agent_id="acme.words",
            package_id=package.id,
            version="1.0.0",
            status=status,
            granted_permissions=[],
        )
        session.add(inst)
        session.flush()
        return org.id, inst.id


class SubprocessRunner:
    """A real :class:`~paulyops.services.agents.runtime.BatchRunner` for tests.

    Records every request it ran (``requests``), so tests can look at batches.
    """

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.requests: list[RunRequest] = []

    def __call__(self, request: RunRequest) -> RunOutcome:
        """Run the batch in one ``python3 -I`` child and return one outcome per item."""
        self.requests.append(request)
        return run_batch(request, timeout=self.timeout)


def run_batch(request: RunRequest, *, timeout: float = 60.0) -> RunOutcome:
    """Run ``request`` in one isolated-mode child process (see the module docstring)."""
    payload = {
        "entrypoint": request.entrypoint,
        "items": [
            {"jobId": item.job_id, "attempt": item.attempt, "path": str(item.source)}
            for item in request.items
        ],
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, str(request.package_dir)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = (time.perf_counter() - start) * 1000
    answers = {}
    for line in proc.stdout.splitlines():
        doc = json.loads(line)
        answers[doc["jobId"]] = doc
    error = None if proc.returncode == 0 else f"agent process exited with {proc.returncode}"
    items = []
    for item in request.items:
        doc = answers.get(item.job_id)
        if doc is None:
            items.append(ItemOutcome(item.job_id, ok=False, error=error or "no answer"))
        elif doc["ok"]:
            items.append(ItemOutcome(item.job_id, ok=True, result={"data": doc["result"]}))
        else:
            items.append(ItemOutcome(item.job_id, ok=False, error=doc["error"]))
    return RunOutcome(
        items=items, mode="insecure", error=error, exit_code=proc.returncode, duration_ms=elapsed
    )

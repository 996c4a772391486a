"""The cost of a sandboxed agent start: a no-op batch against a bare interpreter start.

Three figures, measured back to back in each round (paired, so a busy moment on this
shared machine hits all of them):

* ``bare``     ``/usr/bin/python3 -I -c pass`` through ``subprocess.run`` with pipes
  (the baseline: the least any agent run costs);
* ``imports``  the same interpreter importing what every agent start imports (the
  bootstrap's modules and ``paulyops.sdk``), outside any sandbox;
* ``wrapped``  the bare command under prlimit + setpriv + bubblewrap with the run's
  namespaces and seccomp filter (what the layers cost by themselves);
* ``sandbox``  ``run_batch`` of a one-item batch of a no-op agent, start to finish:
  slot uid, run folder, staged input, bootstrap, ``paulyops.sdk`` import, protocol v1
  line validated, run folder removed.

Prints each median and ``sandbox / bare`` (aim <= 2x). Measures only; no asserts.
Needs bubblewrap (and root for the slot uid), as in CI.

    .venv/bin/python bench/sandbox_noop.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from paulyops.services.agents.runtime import RunItem, RunRequest
from paulyops.services.agents.sandbox import SandboxConfig, run_batch, sandbox_status
from paulyops.services.agents.sandbox import _command as cmdline
from paulyops.services.agents.sandbox._config import DEFAULT_LIMITS
from paulyops.services.agents.sandbox._seccomp import filter_fd
from paulyops.services.agents.sandbox._staging import runtime_dir
from paulyops.services.agents.unpack import unpack
from paulyops.services.marketplace.build import build_package

PYTHON = "/usr/bin/python3"
MANIFEST = """\
format = 1
id = "bench.noop"
name = "No-op"
version = "0.1.0"
description = "Does nothing."
publisher = "bench"
license = "MIT"
entrypoint = "agent:handle"

[compatibility]
paulyops = ">=0.1,<1"
python = ">=3.11"
platforms = ["linux"]
"""
AGENT = """\
from paulyops.sdk import Context, Item, Result


def handle(ctx: Context, item: Item) -> Result:
    return Result(data={})
"""


def _timed(func: object) -> float:
    start = time.perf_counter()
    func()  # type: ignore[operator]
    return (time.perf_counter() - start) * 1000


def main() -> None:
    """Run the rounds and print the medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="paulyops-bench-sandbox-", dir="/var/tmp"))
    work.chmod(0o755)
    try:
        config = SandboxConfig(root=work / "root", uid_range=(62200, 62207))
        status = sandbox_status(config)
        print(f"sandbox mode: {status.mode}, layers: {', '.join(status.layers)}")
        if status.mode != "bubblewrap":
            print(f"not comparable without bubblewrap: {status.reason}")
            return
        src = work / "src"
        src.mkdir()
        (src / "manifest.toml").write_text(MANIFEST)
        (src / "agent.py").write_text(AGENT)
        data = build_package(src)
        package = unpack(data, hashlib.sha256(data).hexdigest(), work / "packages")
        source = work / "input.txt"
        source.write_text("hello\n")
        request = RunRequest(
            organization_id="bench",
            installation_id="bench",
            agent_id="bench.noop",
            version="0.1.0",
            package_dir=package,
            entrypoint="agent:handle",
            items=[RunItem("job-1", 1, source, "input.txt", "text/plain", 6)],
        )

        def bare() -> None:
            subprocess.run([PYTHON, "-I", "-c", "pass"], capture_output=True, check=True)

        lib = runtime_dir(config.root)
        imports_code = (
            f"import sys; sys.path.insert(0, {str(lib)!r}); "
            "import json, logging, importlib, resource, traceback; import paulyops.sdk"
        )

        def imports() -> None:
            subprocess.run([PYTHON, "-I", "-c", imports_code], capture_output=True, check=True)

        def wrapped() -> None:
            fd = filter_fd(deny_inet=False)
            facts = status.facts
            assert facts.bwrap
            assert facts.setpriv
            assert facts.prlimit
            cmd = [
                *cmdline.rlimit_prefix(facts.prlimit, DEFAULT_LIMITS),
                *cmdline.drop_privileges(facts.setpriv, config.uid_range[0]),
                facts.bwrap,
                *cmdline.base_bwrap_args(Path(PYTHON)),
                "--add-seccomp-fd",
                str(fd),
                "--",
                PYTHON,
                "-I",
                "-c",
                "pass",
            ]
            try:
                subprocess.run(
                    cmd, capture_output=True, check=True, pass_fds=(fd,), env={"PATH": "/usr/bin"}
                )
            finally:
                os.close(fd)

        def sandboxed() -> None:
            outcome = run_batch(request, config=config)
            assert outcome.items[0].ok, outcome.items[0].error

        for warm in (bare, imports, wrapped, sandboxed):
            warm()
        times: dict[str, list[float]] = {"bare": [], "imports": [], "wrapped": [], "sandbox": []}
        ratios = []
        for _ in range(args.rounds):
            b = _timed(bare)
            times["imports"].append(_timed(imports))
            w = _timed(wrapped)
            s = _timed(sandboxed)
            times["bare"].append(b)
            times["wrapped"].append(w)
            times["sandbox"].append(s)
            ratios.append(s / b)
        for name, values in times.items():
            print(f"{name:8s} median {statistics.median(values):7.1f} ms  (min {min(values):.1f})")
        print(
            f"sandbox / bare: {statistics.median(ratios):.2f}x paired median "
            f"({min(ratios):.2f}-{max(ratios):.2f}); aim <= 2x"
        )
        print(f"load average: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

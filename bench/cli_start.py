"""Time ``paulyops setup --quick`` against ``paulyops --version`` and print the ratio.

Both run as subprocesses, alternating, in a fresh temporary instance root each round
(SQLite, no Redis: the embedded defaults a newcomer gets). Prints the median wall time
and the median CPU time (user + system, which a loaded machine distorts less) of each,
the ratios, and how many modules each imports. The aim (issue 10, item 12): setup
--quick at most 4x the CLI's bare start.

By default it measures the environment of this checkout (``.venv``). With
``--fresh-clone`` it first clones the committed HEAD into a temporary folder and installs
it the way ``./scripts/start`` does (``scripts/_bootstrap.sh`` + ``uv sync --frozen
--no-dev``, bytecode compiled), then measures that install, so what it prints is what a
newcomer gets. ``PYTHONDONTWRITEBYTECODE=1`` is set in every run (containers commonly set
it): nothing is compiled on the fly, only what the install compiled counts.

    .venv/bin/python bench/cli_start.py [--rounds 5] [--fresh-clone]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AIM = 4.0
# Environment a developer's shell may carry that would point the bench at a real instance.
LEAKY = (
    "DATABASE_URL",
    "REDIS_URL",
    "PAULYOPS_HOME",
    "PAULYOPS_DATA_DIR",
    "ENCRYPTION_KEY",
    "ENCRYPTION_KEYS_PREVIOUS",
    "SESSION_SECRET",
    "JWT_SECRET",
    "PAULYOPS_INSTANCE_KEY",
)
COUNT_MODULES = (
    "import atexit, sys; atexit.register(lambda: print(len(sys.modules), file=sys.stderr))"
)


def clean_env(**extra: str) -> dict[str, str]:
    """Return the environment without a developer's instance settings."""
    env = {key: value for key, value in os.environ.items() if key not in LEAKY}
    env.update({"PAULYOPS_ENV": "development", "PYTHONDONTWRITEBYTECODE": "1", **extra})
    return env


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Run ``args``; return (wall seconds, CPU seconds). Fails loudly on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(  # our own CLI, arguments built here
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit {result.returncode}):\n{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def setup_args(cli: Path, root: Path) -> list[str]:
    """Return the ``setup --quick`` command for a fresh instance root."""
    return [
        str(cli),
        "setup",
        "--quick",
        "--org-name",
        "Bench",
        "--owner-email",
        "owner@bench.example",
        "--owner-name",
        "Bench Owner",
        "--dir",
        str(root),
    ]


def modules_imported(python: Path, argv: list[str], env: dict[str, str], cwd: Path) -> int:
    """Return how many modules the CLI holds at exit for ``argv``."""
    code = f"{COUNT_MODULES}; import sys; sys.argv = {['paulyops', *argv]!r}; "
    code += "from paulyops.cli.main import app; app()"
    result = subprocess.run(  # our own CLI, arguments built here
        [str(python), "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    return int(result.stderr.strip().splitlines()[-1])


def fresh_clone(into: Path) -> Path:
    """Clone HEAD into ``into`` and install it as ``./scripts/start`` does; return the root."""
    clone = into / "paulyops"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    # The same commands as scripts/start, without starting the server.
    install = '. scripts/_bootstrap.sh && "$UV" sync --frozen --no-dev --quiet && compile_project'
    start = time.perf_counter()
    subprocess.run(["sh", "-c", install], cwd=clone, check=True, env=clean_env())
    print(f"fresh clone installed in {time.perf_counter() - start:.1f} s")
    return clone


def measure(checkout: Path, rounds: int) -> None:
    """Print the medians and ratios for the install in ``checkout``."""
    cli = checkout / ".venv" / "bin" / "paulyops"
    python = checkout / ".venv" / "bin" / "python"
    env = clean_env()
    work = Path(tempfile.mkdtemp(prefix="paulyops-bench-cli-"))
    version: list[tuple[float, float]] = []
    setup: list[tuple[float, float]] = []
    try:
        timed([str(cli), "--version"], env, work)  # warm the page cache once
        for number in range(rounds):
            version.append(timed([str(cli), "--version"], env, work))
            setup.append(timed(setup_args(cli, work / f"root-{number}"), env, work))
        imports_version = modules_imported(python, ["--version"], env, work)
        imports_setup = modules_imported(
            python, setup_args(cli, work / "root-count")[1:], env, work
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    v_wall = statistics.median(w for w, _ in version)
    v_cpu = statistics.median(c for _, c in version)
    s_wall = statistics.median(w for w, _ in setup)
    s_cpu = statistics.median(c for _, c in setup)
    print(f"rounds:                  {rounds}")
    print(f"paulyops --version:      {v_wall:.2f} s wall, {v_cpu:.2f} s CPU, ", end="")
    print(f"{imports_version} modules")
    print(f"paulyops setup --quick:  {s_wall:.2f} s wall, {s_cpu:.2f} s CPU, ", end="")
    print(f"{imports_setup} modules")
    print(f"ratio (wall):            {s_wall / v_wall:.1f}x")
    print(f"ratio (CPU):             {s_cpu / v_cpu:.1f}x   (aim <= {AIM:.0f}x)")


def main() -> int:
    """Parse the arguments, prepare the install if asked, and measure."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--fresh-clone", action="store_true", help="clone HEAD and install it like scripts/start"
    )
    args = parser.parse_args()
    if args.fresh_clone:
        with tempfile.TemporaryDirectory(prefix="paulyops-bench-clone-") as tmp:
            measure(fresh_clone(Path(tmp)), args.rounds)
    else:
        if not (REPO / ".venv" / "bin" / "paulyops").exists():
            print("no .venv in this checkout: run ./scripts/start or ./scripts/test first")
            return 2
        measure(REPO, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

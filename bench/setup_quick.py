"""Time ``paulyops setup --quick`` plus a health check, against CLI start-up in the same run.

Runs, as subprocesses, in a fresh temporary instance root each round:

1. ``paulyops setup --quick --org-name Bench --owner-email a@b.co --owner-name A --dir ROOT``
2. ``paulyops health --json`` with ``PAULYOPS_HOME=ROOT`` (must exit 0: a healthy instance)

and, as the baseline, ``paulyops version`` (the CLI's own start-up cost). Prints the
seconds of each and the ratio of setup + health to the baseline. Measures only; no
asserts. When ``paulyops setup`` is not available yet, says so and exits 2.

    uv run python bench/setup_quick.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Environment a developer's shell may carry that would point the bench at a real instance.
LEAKY = (
    "DATABASE_URL",
    "REDIS_URL",
    "PAULYOPS_HOME",
    "PAULYOPS_DATA_DIR",
    "ENCRYPTION_KEY",
    "SESSION_SECRET",
    "JWT_SECRET",
    "PAULYOPS_INSTANCE_KEY",
)


def paulyops() -> list[str]:
    """Return the command that runs the CLI of this checkout's environment."""
    found = shutil.which("paulyops")
    return [found] if found else [sys.executable, "-m", "paulyops.cli.main"]


def clean_env(**extra: str) -> dict[str, str]:
    """Return the environment without a developer's instance settings."""
    env = {key: value for key, value in os.environ.items() if key not in LEAKY}
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``args`` and return (seconds, result)."""
    start = time.perf_counter()
    result = subprocess.run(  # our own CLI, arguments built here
        args, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return time.perf_counter() - start, result


def has_setup(env: dict[str, str]) -> bool:
    """Return whether this checkout's CLI has ``setup --quick``."""
    _, result = run([*paulyops(), "setup", "--help"], env)
    return result.returncode == 0 and "--quick" in result.stdout


def one_round(env: dict[str, str]) -> tuple[float, float, float] | None:
    """Return (baseline, setup, health) seconds for one fresh root, or None on failure."""
    baseline, _ = run([*paulyops(), "version"], env)
    root = Path(tempfile.mkdtemp(prefix="paulyops-bench-setup-"))
    try:
        setup_args = [
            *paulyops(),
            "setup",
            "--quick",
            "--org-name",
            "Bench",
            "--owner-email",
            "a@b.co",
            "--owner-name",
            "A",
            "--dir",
            str(root),
        ]
        setup_s, setup = run(setup_args, env)
        if setup.returncode != 0:
            print(f"setup failed (exit {setup.returncode}):\n{setup.stderr[-2000:]}")
            return None
        health_s, health = run(
            [*paulyops(), "health", "--json"], {**env, "PAULYOPS_HOME": str(root)}
        )
        if health.returncode != 0:
            print(f"health check failed (exit {health.returncode}):\n{health.stdout[-2000:]}")
            return None
        return baseline, setup_s, health_s
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    """Run the rounds and print the medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = clean_env(PAULYOPS_ENV="development")
    if not has_setup(env):
        print(
            "`paulyops setup --quick` is not available in this checkout yet "
            "(the setup command is still being written); nothing to measure."
        )
        return 2
    rounds = [r for r in (one_round(env) for _ in range(args.rounds)) if r is not None]
    if not rounds:
        print("no successful round")
        return 1
    baseline = statistics.median(r[0] for r in rounds)
    setup = statistics.median(r[1] for r in rounds)
    health = statistics.median(r[2] for r in rounds)
    total = setup + health
    print(f"rounds:                 {len(rounds)}")
    print(f"baseline (version):     {baseline:.2f} s")
    print(f"setup --quick:          {setup:.2f} s")
    print(f"health --json:          {health:.2f} s")
    print(f"setup + healthy:        {total:.2f} s")
    print(f"ratio to baseline:      {total / baseline:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``paulyops --version`` and ``paulyops.__version__``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

import paulyops
from paulyops.cli.main import app

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_version_matches_pyproject() -> None:
    """The literal ``__version__`` is the version pyproject.toml releases."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert paulyops.__version__ == project["version"]


def test_version_flag_and_command_print_the_version() -> None:
    """``paulyops --version`` (the flag newcomers try first) and ``paulyops version`` agree."""
    runner = CliRunner()
    for args in (["--version"], ["version"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.output.strip() == paulyops.__version__


def test_import_reads_no_distribution_metadata() -> None:
    """Importing the package does not load importlib.metadata (it scans site-packages)."""
    code = "import sys, paulyops; print('importlib.metadata' in sys.modules)"
    out = subprocess.run(  # the test's own interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"

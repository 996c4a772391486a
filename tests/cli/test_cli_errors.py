"""Domain errors are translated once, at the command groups, for every command."""

from __future__ import annotations

import typer
from typer.main import get_group
from typer.testing import CliRunner

from paulyops.cli.context import CommandGroup
from paulyops.cli.main import app


def _groups(group):
    yield group
    for command in group.commands.values():
        if hasattr(command, "commands"):
            yield from _groups(command)


def test_every_command_group_translates_domain_errors():
    """Every group of the paulyops tree is a CommandGroup, so no command can leak a
    traceback for a PaulyOpsError: each becomes one message and its exit code."""
    groups = list(_groups(get_group(app)))
    assert len(groups) > 5
    assert all(isinstance(group, CommandGroup) for group in groups), [
        group.name for group in groups if not isinstance(group, CommandGroup)
    ]


def test_a_domain_error_becomes_a_message_and_its_exit_code(tmp_path, monkeypatch):
    """A command that raises a domain error (here a ConfigError: a test instance without
    secrets) exits with that error's code and one message naming the setting."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    result = CliRunner().invoke(app, ["user", "reset-password", "nobody@example.com"])
    assert result.exit_code == 4, result.output
    assert "error: ENCRYPTION_KEY" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit | typer.Exit)

"""``paulyops db``: upgrade, current, downgrade on the configured database."""

from __future__ import annotations

from typer.testing import CliRunner

from paulyops.cli.main import app


def test_db_commands_round_trip(tmp_path, monkeypatch):
    """upgrade creates the schema, current reports it, downgrade base empties it."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "paulyops.db").exists()
    result = runner.invoke(app, ["db", "current"])
    assert result.exit_code == 0
    assert "up to date" in result.output
    result = runner.invoke(app, ["db", "downgrade", "base"])
    assert result.exit_code == 0, result.output
    assert "base (empty)" in result.output
    result = runner.invoke(app, ["db", "current"])
    assert "behind" in result.output


def test_bad_setting_gives_clear_error_and_exit_code(tmp_path, monkeypatch):
    """A malformed DATABASE_URL exits non-zero with a message naming the variable."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    result = CliRunner().invoke(app, ["db", "current"])
    assert result.exit_code == 4
    assert "DATABASE_URL" in result.output


def test_serve_refuses_several_workers_without_redis(tmp_path, monkeypatch):
    """serve --workers 2 without REDIS_URL is refused with the reason."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    result = CliRunner().invoke(app, ["serve", "--workers", "2"])
    assert result.exit_code == 4
    assert "REDIS_URL" in result.output

"""``paulyops agents run | logs``, registered on a Typer app as cli/agents.py will register them."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from paulyops.cli import jobs as jobs_cli
from paulyops.cli.context import CommandGroup
from paulyops.services.agents.execute import JobExecutor, no_settings
from paulyops.services.agents.jobs import JobPolicy
from paulyops.workers.embedded import EmbeddedRunner
from paulyops.workers.runtime import TEST_RUNNER_ENV
from tests.conftest import fresh_secrets
from tests.support.jobs import SubprocessRunner, make_installation


@pytest.fixture
def agents_app() -> typer.Typer:
    app = typer.Typer(cls=CommandGroup)
    jobs_cli.register(app)
    return app


@pytest.fixture
def env(tmp_path, db_url):
    return {
        **fresh_secrets(),
        "PAULYOPS_HOME": str(tmp_path),
        "PAULYOPS_ENV": "test",
        "DATABASE_URL": db_url,
    }


def test_run_queues_a_job_and_logs_lists_it(agents_app, env, db, tmp_path):
    """`run` stages the file and queues a job; `logs` lists the agent's runs."""
    make_installation(db)
    sample = tmp_path / "note.txt"
    sample.write_text("hello there")
    result = CliRunner().invoke(
        agents_app, ["run", "acme.words", "--input", str(sample), "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.output)
    assert job["status"] == "queued"
    assert job["input"] == "note.txt"
    listed = CliRunner().invoke(agents_app, ["logs", "acme.words", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [j["id"] for j in json.loads(listed.output)] == [job["id"]]


def test_run_wait_prints_the_result(agents_app, env, db, tmp_path, monkeypatch):
    """`run --wait` prints the outcome, whether it or a running server (here: embedded
    threads) claims the job; without a broker the command runs it itself if it can."""
    monkeypatch.setenv(TEST_RUNNER_ENV, "tests.support.jobs:run_batch")
    make_installation(db)
    policy = JobPolicy(lease_s=30)
    executor = JobExecutor(
        db,
        runner=SubprocessRunner(),
        settings_provider=no_settings,
        data_dir=tmp_path / "worker-data",
        policy=policy,
    )
    runner = EmbeddedRunner(db, executor, policy=policy, concurrency=1, sweep_s=0.2)
    runner.start()
    try:
        sample = tmp_path / "note.txt"
        sample.write_text("one two three")
        result = CliRunner().invoke(
            agents_app, ["run", "acme.words", "--input", str(sample), "--wait"], env=env
        )
    finally:
        runner.stop()
    assert result.exit_code == 0, result.output
    assert "succeeded after 1 attempt(s)" in result.output
    assert '"words": 3' in result.output
    table = CliRunner().invoke(agents_app, ["logs", "acme.words", "--limit", "5"], env=env)
    assert "succeeded" in table.output


def test_run_names_what_is_wrong(agents_app, env, db, tmp_path):
    """An unknown agent or a missing file exits 5 with the reason."""
    make_installation(db)
    missing = CliRunner().invoke(agents_app, ["run", "acme.nope", "--input", __file__], env=env)
    assert missing.exit_code == 5
    assert "no agent 'acme.nope' is installed" in missing.output
    nofile = CliRunner().invoke(
        agents_app, ["run", "acme.words", "--input", str(tmp_path / "nope.txt")], env=env
    )
    assert nofile.exit_code == 5
    assert "no such file" in nofile.output

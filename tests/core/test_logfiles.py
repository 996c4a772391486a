"""Log files: one rotating private JSON file per server process, read back by `paulyops logs`."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core import logfiles
from paulyops.core.errors import ConfigError
from paulyops.core.logging import (
    LogFile,
    configure_logging,
    correlation_scope,
    flush_logs,
    get_logger,
    parse_debug,
)
from paulyops.core.settings import load_settings


@pytest.fixture
def restore_logging():
    yield
    configure_logging(level="INFO", json_lines=False)
    for name in ("paulyops.demo", "paulyops"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def _line(when: datetime, level: str, event: str, **fields: object) -> str:
    stamp = when.isoformat().replace("+00:00", "Z")
    return json.dumps({"timestamp": stamp, "level": level, "event": event, **fields}) + "\n"


T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("background", [False, True])
def test_server_file_gets_json_lines_while_console_shows_text(
    tmp_path, restore_logging, background
):
    """The file is JSON (with the correlation id, redacted), private, whatever the console shows."""
    console = io.StringIO()
    target = LogFile(tmp_path / "data" / "logs" / "server-1.log")
    configure_logging(stream=console, background=background, log_file=target)
    with correlation_scope("req-42"):
        get_logger("paulyops.demo").info("hello", password="hunter2-hunter2")
    flush_logs()
    configure_logging(level="INFO", json_lines=False)  # closes the file handler
    lines = [json.loads(line) for line in target.path.read_text().splitlines()]
    assert lines[-1]["event"] == "hello"
    assert lines[-1]["correlation_id"] == "req-42"
    assert "hunter2" not in target.path.read_text()
    assert "hello" in console.getvalue()
    assert not console.getvalue().lstrip().startswith("{")
    assert target.path.stat().st_mode & 0o777 == 0o600
    assert target.path.parent.stat().st_mode & 0o777 == 0o700
    assert target.path.parent.parent.stat().st_mode & 0o777 == 0o700  # created with it


def test_file_rotates_at_its_size_and_keeps_the_backups(tmp_path, restore_logging):
    """Past max_bytes the file rolls to .1, .2 ...; never more than `backups` of them."""
    target = LogFile(tmp_path / "server-7.log", max_bytes=2_000, backups=2)
    configure_logging(stream=io.StringIO(), log_file=target)
    log = get_logger("paulyops.demo")
    for n in range(200):
        log.info("line", n=n, padding="x" * 40)
    configure_logging(level="INFO", json_lines=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["server-7.log", "server-7.log.1", "server-7.log.2"]
    assert all((tmp_path / n).stat().st_mode & 0o777 == 0o600 for n in names)
    entries = logfiles.read_entries(tmp_path)
    numbers = [e.fields["n"] for e in entries]
    assert numbers == sorted(numbers)
    assert numbers[-1] == 199


def test_debug_selects_everything_or_named_loggers(tmp_path, restore_logging):
    """`*` logs every debug line; a name logs only its own subtree at DEBUG."""
    assert parse_debug("*") == (True, [])
    assert parse_debug("1") == (True, [])
    assert parse_debug("0") == (False, [])
    assert parse_debug("paulyops.web, sqlalchemy.engine") == (
        False,
        ["paulyops.web", "sqlalchemy.engine"],
    )
    assert parse_debug("paulyops.*") == (False, ["paulyops"])
    with pytest.raises(ValueError, match="logger names"):
        parse_debug("paulyops web;rm")
    out = io.StringIO()
    configure_logging(level="INFO", json_lines=True, stream=out, debug="paulyops.demo")
    get_logger("paulyops.demo").debug("wanted")
    get_logger("paulyops.other").debug("unwanted")
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events == ["wanted"]


def test_debug_settings_accept_the_briefs_debug_variable(tmp_path, monkeypatch):
    """DEBUG=* (the brief) and PAULYOPS_DEBUG both work; a malformed value names the variable."""
    monkeypatch.setenv("DEBUG", "*")
    assert load_settings(root=tmp_path).debug == "*"
    monkeypatch.delenv("DEBUG")
    monkeypatch.setenv("PAULYOPS_DEBUG", "not a logger")
    with pytest.raises(ConfigError, match="PAULYOPS_DEBUG"):
        load_settings(root=tmp_path)


def test_entries_merge_across_processes_and_filter(tmp_path):
    """Lines of every file merge by time; level, request id and since filter them."""
    (tmp_path / "server-1.log").write_text(
        _line(T0, "info", "a", correlation_id="r1")
        + _line(T0 + timedelta(minutes=2), "error", "c", correlation_id="r2")
        + "{not json\n"
    )
    (tmp_path / "server-2.log.1").write_text(
        _line(T0 + timedelta(minutes=1), "warning", "b", correlation_id="r1")
    )
    (tmp_path / "other.txt").write_text(_line(T0, "critical", "ignored"))
    events = [e.event for e in logfiles.read_entries(tmp_path)]
    assert events == ["a", "b", "c"]
    warn = logfiles.Filter(level=logfiles.parse_level("warn"))
    assert [e.event for e in logfiles.read_entries(tmp_path, warn)] == ["b", "c"]
    one = logfiles.Filter(request_id="r1")
    assert [e.event for e in logfiles.read_entries(tmp_path, one)] == ["a", "b"]
    later = logfiles.Filter(since=logfiles.parse_since("2026-12-01T09:01:30"))
    assert [e.event for e in logfiles.read_entries(tmp_path, later)] == ["c"]
    assert logfiles.parse_since("10m", now=T0) == T0 - timedelta(minutes=10)
    with pytest.raises(ValueError, match="10m, 2h, 1d"):
        logfiles.parse_since("yesterday")


def test_follow_yields_complete_new_lines_and_survives_rotation(tmp_path):
    """Follow prints what is appended, waits for a half-written line, rereads a rotated file."""
    live = tmp_path / "server-1.log"
    live.write_text(_line(T0, "info", "old"))

    def append(text: str) -> None:
        with live.open("a") as handle:
            handle.write(text)

    def rotate() -> None:
        live.rename(tmp_path / "server-1.log.1")
        live.write_text(_line(T0, "info", "x"))

    steps = [
        lambda: append(_line(T0, "info", "new") + '{"timestamp": "2026'),
        lambda: append('-12-01T09:00:00Z", "event": "joined"}\n'),
        rotate,
    ]
    rounds = iter(range(len(steps) + 1))

    def sleep(_seconds: float) -> None:
        n = next(rounds)
        if n < len(steps):
            steps[n]()

    seen = []
    for entry in logfiles.follow(tmp_path, sleep=sleep, stop=lambda: len(seen) >= 3):
        seen.append(entry.event)
    assert seen == ["new", "joined", "x"]


def test_old_files_of_stopped_processes_are_removed(tmp_path):
    """Files of dead processes past the retention go; live processes' files stay."""
    dead = tmp_path / "server-999999.log.1"
    mine = tmp_path / f"server-{os.getpid()}.log"
    recent = tmp_path / "server-999998.log"
    for path in (dead, mine, recent):
        path.write_text("")
    old = time.time() - 30 * 86400
    os.utime(dead, (old, old))
    os.utime(mine, (old, old))
    assert logfiles.remove_old_files(tmp_path, retention_days=14) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, recent.name])


def test_logs_command_prints_filters_and_explains_bad_options(tmp_path, monkeypatch):
    """`paulyops logs` shows merged lines; bad --level/--since are named; empty says where."""
    monkeypatch.setenv("PAULYOPS_HOME", str(tmp_path))
    runner = CliRunner()
    empty = runner.invoke(app, ["logs"])
    assert empty.exit_code == 0
    assert "No matching log lines" in empty.output
    logs = tmp_path / "data" / "logs"
    logs.mkdir(parents=True)
    (logs / "server-5.log").write_text(
        _line(T0, "info", "request", correlation_id="abc", path="/api/x")
        + _line(T0, "error", "request_crashed", correlation_id="def", exception="Traceback...")
    )
    shown = runner.invoke(app, ["logs", "--request-id", "def"])
    assert shown.exit_code == 0, shown.output
    assert "request_crashed" in shown.output
    assert "Traceback..." in shown.output
    assert "/api/x" not in shown.output
    as_json = runner.invoke(app, ["logs", "--json", "--level", "error"])
    assert [json.loads(line)["event"] for line in as_json.output.splitlines()] == [
        "request_crashed"
    ]
    bad = runner.invoke(app, ["logs", "--level", "loud", "--since", "1x"])
    assert bad.exit_code == 3
    assert "--level" in bad.output
    assert "--since" in bad.output


def test_server_log_file_is_per_process_and_can_be_turned_off(tmp_path, monkeypatch):
    """The file is named for this process in the data dir; PAULYOPS_LOG_FILE=0 turns it off."""
    settings = load_settings(root=tmp_path)
    target = logfiles.server_log_file(settings)
    assert target is not None
    assert target.path == Path(tmp_path / "data" / "logs" / f"server-{os.getpid()}.log")
    monkeypatch.setenv("PAULYOPS_LOG_FILE", "0")
    assert logfiles.server_log_file(load_settings(root=tmp_path)) is None

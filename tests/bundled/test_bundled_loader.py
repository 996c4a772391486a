"""Bundled agents: validated at every load like any package; an edited one is "modified"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.errors import NotFoundError
from paulyops.services.marketplace.bundled import (
    agent_folders,
    bundled_root,
    load_agent,
    load_all,
    stale_checksums,
    trusted_agents,
    write_checksums,
)
from paulyops.services.marketplace.manifest import RESERVED_PREFIX

FOLDERS = agent_folders()


def test_there_are_bundled_agents_and_each_id_has_the_reserved_prefix() -> None:
    names = [folder.name for folder in FOLDERS]
    assert "file_processor" in names
    for agent in load_all():
        assert agent.manifest is not None
        assert agent.manifest.id.startswith(RESERVED_PREFIX)
        assert agent.manifest.id == RESERVED_PREFIX + agent.folder.name.replace("_", "-")


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_committed_checksums_are_current(folder: Path) -> None:
    """Fails when a bundled agent changed without its CHECKSUMS.

    Fix: ``paulyops package checksums src/paulyops/bundled``.
    """
    assert not stale_checksums(folder), (
        f"{folder}/CHECKSUMS is stale: run `paulyops package checksums src/paulyops/bundled`"
    )


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_each_bundled_agent_passes_every_check_unsigned(folder: Path) -> None:
    agent = load_agent(folder)
    assert agent.state == "bundled", agent.reason
    assert agent.is_trusted
    assert [c.name for c in agent.report.checks] == [
        "archive",
        "checksums",
        "manifest",
        "signature",
        "compatibility",
        "dependencies",
    ]
    assert all(c.is_ok for c in agent.report.checks)
    assert "bundled with PaulyOps" in agent.report.checks[3].message
    assert len(agent.sha256) == 64


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the file-processor folder, to edit."""
    dest = tmp_path / "bundled" / "file_processor"
    shutil.copytree(
        bundled_root() / "file_processor", dest, ignore=shutil.ignore_patterns("__pycache__")
    )
    return dest


def test_the_copy_loads_as_bundled(copy: Path) -> None:
    assert load_agent(copy).state == "bundled"


def test_an_edited_file_is_modified_and_not_trusted(copy: Path) -> None:
    agent_py = copy / "agent.py"
    agent_py.write_text(agent_py.read_text() + "\nimport os  # edited\n")
    agent = load_agent(copy)
    assert agent.state == "modified"
    assert not agent.is_trusted
    assert "agent.py" in agent.reason
    assert trusted_agents(copy.parent) == []
    assert [a.state for a in load_all(copy.parent)] == ["modified"]


def test_an_added_file_is_modified(copy: Path) -> None:
    (copy / "extra.py").write_text("x = 1\n")
    agent = load_agent(copy)
    assert agent.state == "modified"
    assert "extra.py" in agent.reason


def test_an_edited_manifest_is_modified(copy: Path) -> None:
    manifest = copy / "manifest.toml"
    manifest.write_text(
        manifest.read_text().replace("capabilities = []", 'capabilities = ["network"]')
    )
    assert load_agent(copy).state == "modified"


def test_a_missing_checksums_file_is_modified(copy: Path) -> None:
    (copy / "CHECKSUMS").unlink()
    agent = load_agent(copy)
    assert agent.state == "modified"
    assert "CHECKSUMS" in agent.reason


def test_a_broken_manifest_with_fresh_checksums_is_invalid(copy: Path) -> None:
    manifest = copy / "manifest.toml"
    manifest.write_text(manifest.read_text().replace('version = "0.1.0"', 'version = "one"'))
    write_checksums(copy)
    agent = load_agent(copy)
    assert agent.state == "invalid"
    assert "version" in agent.reason
    assert not agent.is_trusted


def test_regenerating_checksums_makes_an_edit_load_again(copy: Path) -> None:
    (copy / "agent.py").write_text((copy / "agent.py").read_text() + "\n# edited\n")
    assert stale_checksums(copy)
    write_checksums(copy)
    assert not stale_checksums(copy)
    assert load_agent(copy).state == "bundled"


def test_package_checksums_command_checks_and_writes(copy: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["package", "checksums", str(copy.parent), "--check"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    (copy / "agent.py").write_text((copy / "agent.py").read_text() + "\n# edited\n")
    result = runner.invoke(app, ["package", "checksums", str(copy.parent), "--check"])
    assert result.exit_code == 1
    assert "stale" in result.output
    assert stale_checksums(copy)
    result = runner.invoke(app, ["package", "checksums", str(copy)])
    assert result.exit_code == 0, result.output
    assert "written" in result.output
    assert load_agent(copy).state == "bundled"


def test_package_checksums_refuses_a_folder_without_agents(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["package", "checksums", str(tmp_path)])
    assert result.exit_code != 0
    assert "no manifest.toml" in result.output


def test_a_modified_bundled_agent_is_not_listed(
    db, copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The marketplace listing leaves out a bundled agent whose files were edited."""
    from paulyops.services.marketplace import bundled, listing

    with db.session() as session:
        assert [a.id for a in listing.search_agents(session, listing.SearchAgents())] == [
            "paulyops.document-classifier",
            "paulyops.file-processor",
        ]
    monkeypatch.setattr(bundled, "bundled_root", lambda: copy.parent)
    (copy / "agent.py").write_text((copy / "agent.py").read_text() + "\n# edited\n")
    with db.session() as session:
        assert listing.search_agents(session, listing.SearchAgents()) == []
        with pytest.raises(NotFoundError):
            listing.agent_detail(session, "paulyops.file-processor")

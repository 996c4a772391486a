"""The setup wizard driven through a real pseudo-terminal: errors, Back, summary, success."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect
import pytest

from paulyops.core.db.engine import Database
from paulyops.core.db.models import Organization

DOWN = "\x1b[B"
ENTER = "\r"
CLEAR_LINE = "\x15"  # Ctrl-U
TIMEOUT = 20
# Terminal control sequences may sit between any two characters of what is on screen.
ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def loose(text: str) -> re.Pattern[str]:
    """Return a pattern for ``text`` as shown on screen, styling sequences allowed anywhere."""
    return re.compile(ANSI.join(re.escape(char) for char in text))


def spawn(root: Path, *extra: str) -> pexpect.spawn:
    """Start `paulyops setup --dir ROOT [EXTRA]` in a pseudo-terminal (no cursor queries)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PAULYOPS_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        {"PROMPT_TOOLKIT_NO_CPR": "1", "PAULYOPS_ENV": "test", "TERM": "xterm", "COLUMNS": "160"}
    )
    return pexpect.spawn(
        sys.executable,
        ["-m", "paulyops.cli.main", "setup", "--dir", str(root), *extra],
        env=env,
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(50, 160),
    )


def answer(child: pexpect.spawn, prompt: str, keys: str = ENTER) -> None:
    """Wait for ``prompt`` on screen, then type ``keys``."""
    child.expect(loose(prompt))
    child.send(keys)


@pytest.mark.slow
def test_wizard_validates_goes_back_confirms_and_sets_up(tmp_path):
    """A typo shows the suggestion, Back keeps answers, the summary confirms, the org exists."""
    root = tmp_path / "instance"
    child = spawn(root)
    try:
        child.expect(loose("Step 1 of 8"))
        answer(child, "Organization name", "Acme Finance" + ENTER)
        # The list starts at its top (nothing pre-selected): Agriculture -> Legal -> Finance.
        answer(child, "Industry", DOWN * 2 + ENTER)
        answer(child, "suggests soc2")  # compliance level: keep the template's suggestion
        answer(child, "Organization size")
        answer(child, "Admin contact")  # optional: Enter leaves it unset
        answer(child, "Time zone", "Europe/Berln" + ENTER)
        child.expect(loose("did you mean 'Europe/Berlin'?"))
        child.send(CLEAR_LINE + "Europe/Berlin" + ENTER)
        answer(child, "Owner email", "olga@acme.example" + ENTER)
        answer(child, "Owner name", "Olga Owner" + ENTER)

        child.expect(loose("Step 2 of 8"))
        answer(child, "Storage providers")
        answer(child, "Backup strategy", DOWN + ENTER)  # hybrid (template) -> ← Back
        child.expect(loose("Step 1 of 8"))
        answer(child, "Organization name: Acme Finance")  # the answer was kept
        for prompt in (
            "Industry",
            "Compliance level",
            "Organization size",
            "Admin contact",
            "Time zone",
            "Owner email",
            "Owner name",
        ):
            answer(child, prompt)

        child.expect(loose("Step 2 of 8"))
        answer(child, "Storage providers")
        answer(child, "Backup strategy")
        answer(child, "Document retention (days)")

        child.expect(loose("Step 3 of 8"))
        answer(child, "Roles model")
        child.expect(loose("required by the soc2 preset"))
        answer(child, "Audit retention (days)", CLEAR_LINE + "100" + ENTER)
        child.expect(loose("requires dataRetention to be at least 365"))
        child.send(CLEAR_LINE + "400" + ENTER)
        answer(child, "Encryption level")
        answer(child, "two-factor")

        child.expect(loose("Step 4 of 8"))
        answer(child, "Default agents")
        answer(child, "best matching agent")
        answer(child, "Confidence threshold")
        answer(child, "Monitor agent runs")

        child.expect(loose("Step 5 of 8"))
        # Which services are offered depends on the machine: take the embedded defaults.
        while True:
            index = child.expect(
                [
                    loose("Which should PaulyOps use?"),
                    loose("Use it for sessions"),
                    loose("write these files?"),
                ]
            )
            child.send(ENTER)
            if index == 2:
                break
        child.expect(loose("Organization setup completed successfully"))
        child.expect(loose("/set-password?token="))
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before

    db = Database(f"sqlite:///{root / 'data' / 'paulyops.db'}")
    try:
        with db.session() as session:
            [org] = session.query(Organization).all()
            assert (org.slug, org.industry, org.compliance_level) == (
                "acme-finance",
                "finance",
                "soc2",
            )
            assert org.settings["timezone"] == "Europe/Berlin"
    finally:
        db.close()
    assert (root / "configs" / "setup.json").is_file()


@pytest.mark.slow
def test_quick_setup_on_a_terminal_asks_for_the_owner(tmp_path):
    """``setup --quick --org-name Acme`` (as the README says) asks for the owner's details."""
    root = tmp_path / "instance"
    child = spawn(root, "--quick", "--org-name", "Acme")
    try:
        answer(child, "Owner email", "admin@acme.local" + ENTER)
        answer(child, "Owner name", "Olga Owner" + ENTER)
        child.expect(loose("Organization setup completed successfully"))
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    assert (root / "configs" / "setup.json").is_file()

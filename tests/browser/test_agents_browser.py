"""The agents console in real Chromium: install with its grant, settings, previews, integrity.

The organization is made through the wizard, the publisher key trusted with
``paulyops marketplace trust add``, two versions of an agent with a secret setting and a
second agent uploaded through the console; the first is installed through the preview and
its "Grant these and install" button. Each page and each preview is then checked at phone
and desktop width (axe, no sideways scroll, no CSP or script error, the secret never on a
page). Screenshots: ``agents-<page>-<phone|desktop>.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from paulyops.core.security.signatures import generate_key, save_public_key
from paulyops.services.marketplace.build import assemble
from tests.browser.conftest import (
    OWNER,
    Instance,
    PageProblems,
    complete_wizard,
    horizontal_overflow,
    shot,
)
from tests.browser.test_accessibility import AXE, audit
from tests.browser.test_console_browser import sign_in
from tests.services.agents.helpers import SECRET, files

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ContextFactory = Callable[..., BrowserContext]


def _packages(tmp_path: Path, instance: Instance) -> list[Path]:
    key = generate_key()
    public = tmp_path / "acme.pub"
    save_public_key(key.public_key(), public, publisher="acme")
    trusted = instance.cli("marketplace", "trust", "add", str(public))
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    out = []
    for name, manifest in (
        ("hello-1.0.0", {}),
        (
            "hello-1.1.0",
            {"version": "1.1.0", "capabilities": ["alerts:raise", "secrets:apiKey", "network"]},
        ),
        ("second-1.0.0", {"agent_id": "acme.second", "capabilities": ["outputs:write"]}),
    ):
        path = tmp_path / f"{name}.pauly"
        path.write_bytes(assemble(files(**manifest), key))  # type: ignore[arg-type]
        out.append(path)
    return out


def _install_hello(page: Page, instance: Instance, packages: list[Path]) -> None:
    for package in packages:
        page.goto(instance.base_url + "/console/marketplace/upload")
        page.set_input_files("#f-file", str(package))
        page.get_by_role("button", name="Upload and verify").click()
        expect(page.get_by_text("every check passed")).to_be_visible()
    page.goto(instance.base_url + "/console/marketplace/agents/acme.hello")
    page.select_option("#f-install-version", "1.0.0")
    page.get_by_role("button", name="Install…").click()
    expect(page.get_by_role("heading", name="Install Hello 1.0.0")).to_be_visible()
    page.get_by_role("button", name="Grant these and install").click()
    page.wait_for_url("**/console/agents/acme.hello")
    expect(page.get_by_text("Installed acme.hello 1.0.0")).to_be_visible()
    page.fill("#f-setting-apiKey", SECRET)
    page.fill("#f-setting-threshold", "7")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()


@pytest.mark.timeout(600)  # the wizard, three uploads, seven pages at two widths, each audited
def test_agents_pages_at_phone_and_desktop_width(
    fresh_instance: Instance, new_context: ContextFactory, screenshots: Path, tmp_path: Path
):
    """Install through the grant, then every agents page and preview fits and passes axe."""
    setup = new_context("desktop").new_page()
    complete_wizard(setup, fresh_instance)
    setup.context.close()
    packages = _packages(tmp_path, fresh_instance)
    setup = new_context("desktop").new_page()
    seen = PageProblems(setup)
    sign_in(setup, fresh_instance, OWNER["email"], OWNER["password"])
    _install_hello(setup, fresh_instance, packages)
    problems = list(seen.messages)
    setup.context.close()
    # A changed file in this machine's copy: the integrity page reports it, with Repair.
    # (lib/words.py is acme.hello's own; the bundled default agents have none.)
    changed = next((fresh_instance.root / "data" / "agents" / "cache").glob("*/lib/words.py"))
    changed.write_text("print('changed')\n", encoding="utf-8")

    for viewport in ("desktop", "phone"):
        page = new_context(viewport, bypass_csp=AXE.is_file()).new_page()
        seen = PageProblems(page)
        sign_in(page, fresh_instance, OWNER["email"], OWNER["password"])

        def check(name: str, page: Page = page, viewport: str = viewport) -> None:
            shot(page, screenshots, f"agents-{name}-{viewport}")
            where = f"agents {name} at {viewport} width"
            if problem := horizontal_overflow(page, where):
                problems.append(problem)
            if AXE.is_file():
                problems.extend(audit(page, where))
            if SECRET in page.content():
                problems.append(f"{where}: the secret is on the page")

        page.goto(fresh_instance.base_url + "/console/agents")
        expect(page.get_by_role("link", name="Agents", exact=True)).to_have_attribute(
            "aria-current", "page"
        )
        check("list")
        page.goto(fresh_instance.base_url + "/console/agents/acme.hello")
        expect(page.get_by_text("1.1.0 available").first).to_be_visible()
        check("agent")
        page.fill("#f-setting-threshold", "-1")
        page.get_by_role("button", name="Save settings").click()
        expect(page.locator("#f-setting-threshold-error")).to_contain_text("minimum")
        check("settings-error")
        page.goto(fresh_instance.base_url + "/console/agents/acme.hello")
        page.select_option("#f-update-version", "1.1.0")
        page.get_by_role("button", name="Review the change…").click()
        expect(page.get_by_role("button", name="Grant these and update")).to_be_visible()
        check("update-preview")
        page.get_by_role("link", name="Cancel").click()
        page.get_by_role("button", name=re.compile("^Uninstall…")).click()
        expect(page.get_by_text("Its history stays")).to_be_visible()
        check("uninstall-preview")
        page.goto(fresh_instance.base_url + "/console/agents/integrity")
        expect(page.get_by_text("modified: lib/words.py")).to_be_visible()
        check("integrity")
        page.goto(fresh_instance.base_url + "/console/marketplace/agents/acme.second")
        page.get_by_role("button", name="Install…").click()
        expect(
            page.get_by_text("Save new files back into the organization's storage.")
        ).to_be_visible()
        check("install-preview")
        page.get_by_role("link", name="Cancel").click()
        page.wait_for_url("**/console/marketplace/agents/acme.second")
        problems.extend(seen.messages)

    # Repair from the integrity page puts the file back.
    page = new_context("desktop").new_page()
    sign_in(page, fresh_instance, OWNER["email"], OWNER["password"])
    page.goto(fresh_instance.base_url + "/console/agents/integrity")
    page.get_by_role("button", name=re.compile("^Repair acme.hello")).click()
    expect(page.get_by_text("re-extracted acme.hello 1.0.0")).to_be_visible()
    assert changed.read_bytes().startswith(b"def count")

    # Revoking the installed version quarantines it: the page says why, and that it cannot
    # be released (only uninstalled and installed again in another version).
    revoked = fresh_instance.cli(
        "marketplace",
        "trust",
        "revoke",
        "--agent",
        "acme.hello",
        "--version",
        "1.0.0",
        "--reason",
        "a bug that leaks data",
    )
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    for viewport in ("desktop", "phone"):
        page = new_context(viewport, bypass_csp=AXE.is_file()).new_page()
        seen = PageProblems(page)
        sign_in(page, fresh_instance, OWNER["email"], OWNER["password"])
        page.goto(fresh_instance.base_url + "/console/agents/acme.hello")
        expect(page.get_by_text("a bug that leaks data")).to_be_visible()
        expect(page.get_by_text("so it cannot be released")).to_be_visible()
        expect(page.get_by_role("button", name="Review the release…")).to_have_count(0)
        shot(page, screenshots, f"agents-quarantined-{viewport}")
        if problem := horizontal_overflow(page, f"quarantined agent at {viewport} width"):
            problems.append(problem)
        if AXE.is_file():
            problems.extend(audit(page, f"quarantined agent at {viewport} width"))
        problems.extend(seen.messages)
    assert problems == []

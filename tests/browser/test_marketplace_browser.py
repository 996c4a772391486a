"""The marketplace console in real Chromium: upload, browse, details, at phone and desktop.

The organization is made through the wizard, the publisher key trusted with
``paulyops marketplace trust add`` against the same instance, and the package uploaded
through the console's form. Screenshots: ``marketplace-<page>-<phone|desktop>.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from paulyops.core.security.signatures import generate_key, save_public_key
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
from tests.services.marketplace.packages import signed_package

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ContextFactory = Callable[..., BrowserContext]


def test_marketplace_pages_at_phone_and_desktop_width(
    fresh_instance: Instance, new_context: ContextFactory, screenshots: Path, tmp_path: Path
):
    """Upload a package in the form, then browse and read it: no sideways scroll, no axe issue."""
    setup = new_context("desktop").new_page()
    complete_wizard(setup, fresh_instance)
    setup.context.close()
    key = generate_key()
    public = tmp_path / "acme.pub"
    save_public_key(key.public_key(), public, publisher="acme")
    trusted = fresh_instance.cli("marketplace", "trust", "add", str(public))
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    package = tmp_path / "acme.hello-1.0.0.pauly"
    package.write_bytes(signed_package(key))

    problems: list[str] = []
    for viewport in ("desktop", "phone"):
        # axe is injected as a script: CSP is bypassed for this context only.
        page = new_context(viewport, bypass_csp=AXE.is_file()).new_page()
        seen = PageProblems(page)
        sign_in(page, fresh_instance, OWNER["email"], OWNER["password"])
        page.goto(fresh_instance.base_url + "/console/marketplace/upload")
        if viewport == "desktop":
            page.set_input_files("#f-file", str(package))
            page.get_by_role("button", name="Upload and verify").click()
            page.wait_for_url("**/console/marketplace/agents/acme.hello")
            expect(page.get_by_text("every check passed")).to_be_visible()
            page.goto(fresh_instance.base_url + "/console/marketplace/upload")
        shot(page, screenshots, f"marketplace-upload-{viewport}")
        if AXE.is_file():
            problems.extend(audit(page, f"upload at {viewport} width"))
        for name, path in (
            ("browse", "/console/marketplace"),
            ("search", "/console/marketplace?q=words&capability=alerts%3Araise"),
            ("agent", "/console/marketplace/agents/acme.hello"),
        ):
            response = page.goto(fresh_instance.base_url + path)
            assert response is not None
            assert response.status == 200, f"{path}: {response.status}"
            shot(page, screenshots, f"marketplace-{name}-{viewport}")
            if problem := horizontal_overflow(page, f"{path} at {viewport} width"):
                problems.append(problem)
            if AXE.is_file():
                problems.extend(audit(page, f"{path} at {viewport} width"))
        expect(
            page.get_by_text("Raise alerts that people in the organization are told about.")
        ).to_be_visible()
        problems.extend(seen.messages)
    assert problems == []

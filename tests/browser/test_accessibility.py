"""Every page passes an axe-core audit at phone and desktop width: no serious or critical issue.

axe-core is fetched by ``scripts/ensure-test-deps`` (npm registry, into the git-ignored
``.test-deps/``) and injected with Playwright. The pages' Content Security Policy forbids
injected scripts, so the audit's browser context bypasses CSP (other browser tests keep it
on and fail on any CSP violation). Each page is screenshotted as
``a11y-<page>-<phone|desktop>.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.browser.conftest import (
    OWNER,
    WIZARD_STEPS,
    Instance,
    create_organization,
    fill_organization,
    fill_owner,
    next_step,
    shot,
    submit_owner,
)
from tests.support.server import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ContextFactory = Callable[..., BrowserContext]

ENSURE = REPO_ROOT / "scripts" / "ensure-test-deps"
_VERSION = re.search(r'^AXE_VERSION="([^"]+)"', ENSURE.read_text(encoding="utf-8"), re.M)
assert _VERSION, "scripts/ensure-test-deps names no AXE_VERSION"
AXE = REPO_ROOT / ".test-deps" / f"axe-core-{_VERSION.group(1)}" / "axe.min.js"
BLOCKING = ("serious", "critical")
# Rules axe ships but leaves off by default (tagged experimental) that we want: a control's
# accessible name must contain its visible text (WCAG 2.5.3, speech input users say it).
EXTRA_RULES = {"label-content-name-mismatch": {"enabled": True}}
CONSOLE_PAGES = (
    "console",
    "members",
    "invitations",
    "roles",
    "storage",
    "agents",
    "agents/integrity",
    "security",
    "audit",
)


def audit(page: Page, name: str) -> list[str]:
    """Run axe-core on the page; return its serious and critical violations, one line each."""
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "async (rules) => await axe.run(document, {resultTypes: ['violations'], rules})",
        EXTRA_RULES,
    )
    return [
        f"{name}: {v['id']} ({v['impact']}) {v['help']}: "
        + "; ".join(" ".join(node["target"]) for node in v["nodes"][:6])
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


def sign_in(page: Page, instance: Instance) -> None:
    """Sign in as the owner through ``/sign-in``."""
    page.goto(instance.base_url + "/sign-in")
    page.fill("input[name=email]", OWNER["email"])
    page.fill("input[type=password]", OWNER["password"])
    page.locator("form:has(input[type=password]) [type=submit]").first.click()
    page.wait_for_url(re.compile(r"/console"))


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_every_page_passes_axe(
    viewport: str, fresh_instance: Instance, new_context: ContextFactory, screenshots: Path
) -> None:
    """The wizard's pages, sign-in, an error page and every console page: no serious issue."""
    if not AXE.is_file():
        pytest.skip(f"axe-core not at {AXE}: run scripts/ensure-test-deps (CI does)")
    instance = fresh_instance
    page = new_context(viewport, bypass_csp=True).new_page()
    found: list[str] = []

    def check(name: str) -> None:
        shot(page, screenshots, f"a11y-{name}-{viewport}")
        found.extend(audit(page, f"{name} at {viewport} width"))

    page.goto(instance.base_url + "/setup")
    check("setup-unlock")
    page.fill("#token", instance.token)
    page.get_by_role("button", name="Unlock setup").click()
    page.wait_for_url(re.compile(r"/setup/owner$"))
    check("setup-owner")
    fill_owner(page)
    submit_owner(page)
    fill_organization(page)
    for step, following in zip(WIZARD_STEPS, [*WIZARD_STEPS[1:], "review"], strict=True):
        check(f"setup-{step}")
        next_step(page, following)
    check("setup-review")
    create_organization(page)
    check("setup-done")

    signed_in = new_context(viewport, bypass_csp=True).new_page()
    page = signed_in
    page.goto(instance.base_url + "/sign-in")
    check("sign-in")
    page.goto(instance.base_url + "/set-password?token=not-a-real-token")
    check("set-password-invalid")
    page.goto(instance.base_url + "/no-such-page")
    check("error-404")
    sign_in(page, instance)
    for name in CONSOLE_PAGES:
        path = "/console" if name == "console" else f"/console/{name}"
        response = page.goto(instance.base_url + path)
        assert response is not None
        assert response.status == 200, f"GET {path} answered {response.status}"
        check(f"console-{name.replace('/', '-')}")

    # An agent's page with a few runs: its figures, the duration chart, the runs table.
    sample = instance.root / "invoice.txt"
    sample.write_text("Invoice 42\nTotal: 19.99 EUR\n", encoding="utf-8")
    for _ in range(2):
        ran = instance.cli(
            "agents", "run", "paulyops.file-processor", "--input", str(sample), "--wait"
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
    response = page.goto(instance.base_url + "/console/agents/paulyops.file-processor")
    assert response is not None
    assert response.status == 200
    assert page.locator("svg.run-chart").count() == 1
    check("console-agent-runs")

    # An invitation: the page that shows its link once, then the link's own page.
    page.goto(instance.base_url + "/console/members")
    page.fill("#f-email", "new.person@example.com")
    page.fill("#f-name", "New Person")
    page.get_by_role("button", name="Create invitation link").click()
    page.wait_for_load_state()
    check("console-members-invited")
    link = page.locator("code.secret").first.inner_text()
    assert "/invitation?token=" in link, link
    visitor = new_context(viewport, bypass_csp=True).new_page()
    page = visitor
    parts = urlsplit(link)  # the link names the public URL; this server has its own port
    page.goto(f"{instance.base_url}{parts.path}?{parts.query}")
    check("invitation-new-account")
    assert found == [], "\n".join(found)

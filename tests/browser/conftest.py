"""Browser fixtures: one Chromium per session, real ``paulyops serve`` instances, helpers.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``scripts/ensure-test-deps``);
Playwright never downloads a browser here. Without it every browser test skips with that
reason. Each server runs as a subprocess in its own temporary instance root
(``PAULYOPS_ENV=test``, SQLite, generous rate limits) so the tests see exactly what an
operator's browser sees: real cookies, CSP, redirects and static files.

Screenshots go to ``<repo>/artifacts/screenshots/`` (git-ignored), named
``wizard-<step>-<phone|desktop>.png``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.conftest import fresh_secrets
from tests.support.server import REPO_ROOT, ServerProcess, running_server, server_env

CHROMIUM = Path("/usr/bin/chromium")
NO_CHROMIUM = f"Chromium not installed at {CHROMIUM}: run scripts/ensure-test-deps (CI does)"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 800}
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
# The browser drives many requests quickly; the strict defaults would get in the way.
RATE_LIMITS = (
    "signin=1000/minute,signin_account=1000/minute,onboarding_setup=1000/hour,"
    "onboarding_validate=10000/minute,api=10000/minute"
)
TIMEOUT_MS = 15_000

OWNER = {"name": "Ada Lovelace", "email": "ada@example.com", "password": "a long and quiet harbour"}
ORG = {"name": "Acme Bakery", "industry": "retail", "size": "11-50"}
WIZARD_STEPS = ("organization", "storage", "security", "agents")


# --- instances --------------------------------------------------------------------------


@dataclass
class Instance:
    """A running ``paulyops serve`` in its own instance root, with its setup token."""

    server: ServerProcess
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    token: str = ""

    @property
    def base_url(self) -> str:
        return self.server.url

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``paulyops ARGS`` against this instance (same root and secrets)."""
        env = {**server_env(self.root, self.server.port, self.env), "COLUMNS": "200"}
        return subprocess.run(
            [sys.executable, "-m", "paulyops.cli.main", *args],
            cwd=self.root,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _read_token(root: Path, server: ServerProcess, *, timeout: float = 30.0) -> str:
    """Wait for the setup token the first-run hook writes once the instance is ready."""
    path = root / "data" / "setup-token"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and (text := path.read_text(encoding="utf-8").strip()):
            return text
        if server.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no setup token in {path} after {timeout}s:\n{server.output}")


@pytest.fixture(scope="session")
def launch_instance() -> Callable[[Path], Any]:
    """Return a context manager factory: a fresh server in ``root`` (stopped afterwards)."""
    import contextlib

    @contextlib.contextmanager
    def launch(root: Path) -> Iterator[Instance]:
        env = {**fresh_secrets(), "PAULYOPS_RATE_LIMITS": RATE_LIMITS}
        with running_server(root, env=env) as server:
            yield Instance(server=server, root=root, env=env, token=_read_token(root, server))

    return launch


@pytest.fixture
def fresh_instance(tmp_path: Path, launch_instance: Callable[[Path], Any]) -> Iterator[Instance]:
    """A server of its own, not set up yet (for tests that finish the wizard)."""
    with launch_instance(tmp_path / "instance") as instance:
        yield instance


@pytest.fixture(scope="module")
def unset_instance(
    tmp_path_factory: pytest.TempPathFactory, launch_instance: Callable[[Path], Any]
) -> Iterator[Instance]:
    """A server shared by a module's tests that never finish the wizard."""
    with launch_instance(tmp_path_factory.mktemp("instance")) as instance:
        yield instance


# --- the browser ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the whole session."""
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """Return a factory of browser contexts (closed after the test); ``viewport`` by name."""
    made: list[BrowserContext] = []

    def make(viewport: str = "desktop", **kwargs: Any) -> BrowserContext:
        context = browser.new_context(viewport=VIEWPORTS[viewport], **kwargs)
        context.set_default_timeout(TIMEOUT_MS)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The directory screenshots are saved to (created on demand)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


# --- page problems the browser reports -------------------------------------------------------


class PageProblems:
    """Collect JavaScript errors and console errors (CSP violations show up there)."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("pageerror", lambda error: self.messages.append(f"page error: {error}"))
        page.on(
            "console",
            lambda msg: (
                self.messages.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" and not _expected_console_error(msg.text)
                else None
            ),
        )


def _expected_console_error(text: str) -> bool:
    # Chromium logs every 4xx answer to a navigation or fetch; the tests assert those.
    return "Failed to load resource" in text


# --- driving the wizard ------------------------------------------------------------------


def shot(page: Page, directory: Path, name: str) -> None:
    """Save a full-page screenshot ``<name>.png``."""
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def horizontal_overflow(page: Page, where: str) -> str | None:
    """Say how the page is wider than the viewport (sideways scrolling on phones), if it is."""
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth, "
        "Array.from(document.querySelectorAll('body *')).filter("
        "e => e.getBoundingClientRect().right > window.innerWidth + 1).slice(0, 5).map("
        "e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + "
        "(e.className && typeof e.className === 'string' ? '.' + e.className : ''))]"
    )
    scroll_width, viewport_width, wide = widths
    if scroll_width <= viewport_width:
        return None
    return (
        f"{where}: page is {scroll_width}px wide in a {viewport_width}px viewport; "
        f"elements past the right edge: {wide}"
    )


def assert_no_horizontal_scroll(page: Page, where: str) -> None:
    """The page must fit the viewport's width (no sideways scrolling on phones)."""
    problem = horizontal_overflow(page, where)
    assert problem is None, problem


def unlock(page: Page, instance: Instance) -> None:
    """Open the instance at ``/`` and unlock the wizard with the setup token."""
    page.goto(instance.base_url + "/")
    page.wait_for_url(re.compile(r"/setup$"))
    page.fill("#token", instance.token)
    page.get_by_role("button", name="Unlock setup").click()
    page.wait_for_url(re.compile(r"/setup/owner$"))


def fill_owner(page: Page, *, confirm: str | None = None) -> None:
    """Fill the owner step (``confirm`` overrides the repeated password)."""
    page.fill("#owner-name", OWNER["name"])
    page.fill("#owner-email", OWNER["email"])
    page.fill("#password", OWNER["password"])
    page.fill("#password-confirm", OWNER["password"] if confirm is None else confirm)


def submit_owner(page: Page) -> None:
    """Submit the owner step and wait for the organization step."""
    page.get_by_role("button", name="Next: Organization").click()
    page.wait_for_url(re.compile(r"/setup/organization$"))


def fill_organization(page: Page) -> None:
    """Fill the organization step: name, industry (a select) and size (radios)."""
    page.fill("#organization-name", ORG["name"])
    page.select_option("#organization-industry", ORG["industry"])
    page.check(f"input[name='organization.size'][value='{ORG['size']}']")


def next_step(page: Page, expect: str) -> None:
    """Press Next and wait for ``/setup/<expect>``."""
    page.locator("button[name=action][value=next]").click()
    page.wait_for_url(re.compile(rf"/setup/{expect}$"))


def org_slug(page: Page) -> str:
    """Read the organization's slug from the review page's summary."""
    text = page.locator("dl.summary dd").first.inner_text()
    match = re.search(r"\(([a-z0-9-]+)\)", text)
    assert match, f"no slug in the review summary: {text!r}"
    return match.group(1)


def create_organization(page: Page) -> None:
    """Press "Create my PaulyOps" on the review page and wait for the result page."""
    page.get_by_role("button", name="Create my PaulyOps").click()
    page.wait_for_url(re.compile(r"/setup/done$"))


def complete_wizard(
    page: Page,
    instance: Instance,
    *,
    viewport: str = "desktop",
    directory: Path | None = None,
    overflow: list[str] | None = None,
) -> str:
    """Go from ``/`` to ``/setup/done``; screenshot every step when ``directory`` is set.

    With ``overflow``, every page is checked for sideways scrolling and the problems are
    appended there (the flow goes on, so one report names every page that is too wide).
    Returns the organization's slug.
    """

    def visit(step: str) -> None:
        if directory is not None:
            shot(page, directory, f"wizard-{step}-{viewport}")
        if overflow is not None:
            problem = horizontal_overflow(page, f"/setup {step} at {viewport} width")
            if problem:
                overflow.append(problem)

    page.goto(instance.base_url + "/")
    page.wait_for_url(re.compile(r"/setup$"))
    visit("unlock")
    page.fill("#token", instance.token)
    page.get_by_role("button", name="Unlock setup").click()
    page.wait_for_url(re.compile(r"/setup/owner$"))
    fill_owner(page)
    visit("owner")
    submit_owner(page)
    fill_organization(page)
    steps = [*WIZARD_STEPS[1:], "review"]
    for step, following in zip(WIZARD_STEPS, steps, strict=True):
        visit(step)
        next_step(page, following)
    slug = org_slug(page)
    visit("review")
    create_organization(page)
    visit("done")
    return slug


__all__ = [
    "DESKTOP",
    "NO_CHROMIUM",
    "ORG",
    "OWNER",
    "PHONE",
    "Instance",
    "PageProblems",
    "assert_no_horizontal_scroll",
    "complete_wizard",
    "create_organization",
    "fill_organization",
    "fill_owner",
    "horizontal_overflow",
    "next_step",
    "org_slug",
    "shot",
    "submit_owner",
    "unlock",
]

"""The console in real Chromium: what a Viewer sees, and what the server refuses them.

Needs the console pages (``web/pages/console/``: ``/sign-in``, ``/console``,
``/console/members``). The organization is created through the wizard in the browser, the
Viewer through ``paulyops user create`` against the same instance.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import OWNER, Instance, PageProblems, complete_wizard, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ContextFactory = Callable[..., BrowserContext]

VIEWER = {
    "name": "Vic Viewer",
    "email": "vic@example.com",
    "password": "a quiet lamp by the window",
}
ADMIN_CONTROL = re.compile(r"remove|invite|delete|change role", re.IGNORECASE)


@dataclass
class SetUpInstance:
    """An instance with an organization, its owner and a Viewer."""

    instance: Instance
    slug: str


@pytest.fixture
def set_up_instance(fresh_instance: Instance, new_context: ContextFactory) -> SetUpInstance:
    """Finish the wizard in the browser, then add a Viewer with the CLI."""
    page = new_context("desktop").new_page()
    slug = complete_wizard(page, fresh_instance)
    page.context.close()
    result = fresh_instance.cli(
        "user",
        "create",
        "--email",
        VIEWER["email"],
        "--name",
        VIEWER["name"],
        "--org",
        slug,
        "--role",
        "Viewer",
        "--password-stdin",
        stdin=VIEWER["password"] + "\n",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return SetUpInstance(fresh_instance, slug)


def sign_in(page: Page, instance: Instance, email: str, password: str) -> None:
    """Sign in through ``/sign-in`` (a pre-session form with its CSRF token)."""
    response = page.goto(instance.base_url + "/sign-in")
    assert response is not None
    assert response.status == 200, f"GET /sign-in answered {response.status}"
    form = page.locator("form:has(input[type=password])")
    expect(form.locator("input[name=csrf_token]")).to_have_count(1)
    form.locator("input[type=email], input[name=email]").first.fill(email)
    form.locator("input[type=password]").first.fill(password)
    form.locator("[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/console"))


def members_page(page: Page, instance: Instance) -> None:
    response = page.goto(instance.base_url + "/console/members")
    assert response is not None
    assert response.status == 200, f"GET /console/members answered {response.status}"


def test_viewer_sees_no_admin_actions_and_forging_one_is_refused(
    set_up_instance: SetUpInstance, new_context: ContextFactory, screenshots: Path
) -> None:
    """A Viewer gets no remove or invite controls, and a forged removal post answers 403."""
    instance = set_up_instance.instance

    # The owner sees a removal form for the Viewer: that is the URL to forge.
    owner = new_context("desktop").new_page()
    sign_in(owner, instance, OWNER["email"], OWNER["password"])
    members_page(owner, instance)
    viewer_row = owner.locator("tr, li").filter(has_text=VIEWER["email"])
    expect(viewer_row.first).to_be_visible()
    removal = viewer_row.locator("form").filter(
        has=owner.get_by_role("button", name=re.compile("remove", re.IGNORECASE))
    )
    expect(removal).to_have_count(1)
    action = removal.get_attribute("action")
    assert action, "the removal form has no action"
    fields = removal.evaluate(
        "f => Object.fromEntries(Array.from(new FormData(f).entries())"
        ".filter(([k, v]) => k !== 'csrf_token' && typeof v === 'string'))"
    )

    # The Viewer: same page, no admin controls at all.
    page = new_context("desktop").new_page()
    problems = PageProblems(page)
    sign_in(page, instance, VIEWER["email"], VIEWER["password"])
    members_page(page, instance)
    shot(page, screenshots, "console-members-viewer-desktop")
    expect(page.locator("main")).to_contain_text(VIEWER["email"])
    expect(page.get_by_role("button", name=ADMIN_CONTROL)).to_have_count(0)
    expect(page.get_by_role("link", name=ADMIN_CONTROL)).to_have_count(0)
    expect(page.locator("form[action*='remove'], form[action*='invite']")).to_have_count(0)

    # Forged with the Viewer's own valid token (scraped from a hidden input): 403.
    token = page.locator("input[type=hidden][name=csrf_token]").first.get_attribute("value")
    assert token, "no CSRF token on the Viewer's page"
    url = action if action.startswith("http") else instance.base_url + action
    response = page.request.post(url, form={**fields, "csrf_token": token}, max_redirects=0)
    assert response.status == 403, f"forged removal answered {response.status}"

    # Nothing changed: the owner still sees the Viewer as a member.
    members_page(owner, instance)
    expect(owner.locator("main")).to_contain_text(VIEWER["email"])
    assert problems.messages == []

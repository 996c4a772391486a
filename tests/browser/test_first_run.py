"""The first-run wizard in real Chromium: desktop, phone, live and server-side validation,
no JavaScript, CSRF from another site, and keyboard use."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import (
    OWNER,
    PHONE,
    Instance,
    PageProblems,
    assert_no_horizontal_scroll,
    complete_wizard,
    create_organization,
    fill_organization,
    fill_owner,
    next_step,
    shot,
    submit_owner,
    unlock,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ContextFactory = Callable[..., BrowserContext]


def _open_console(page: Page, instance: Instance) -> None:
    """From the result page, follow the link to the console home page."""
    with page.expect_navigation() as navigation:
        page.get_by_role("link", name="Go to the console").click()
    response = navigation.value
    assert response is not None
    assert page.url == instance.base_url + "/console", page.url
    assert response.status == 200, f"GET /console answered {response.status}"
    heading = page.locator("main h1")
    expect(heading).to_be_visible()
    assert "Something went wrong" not in heading.inner_text()
    assert "can't do that" not in heading.inner_text()


def test_first_run_desktop(
    fresh_instance: Instance, new_context: ContextFactory, screenshots: Path
) -> None:
    """At 1280 px the wizard goes from unlock to the console home page, screenshot per step."""
    page = new_context("desktop").new_page()
    problems = PageProblems(page)
    complete_wizard(page, fresh_instance, viewport="desktop", directory=screenshots)
    expect(page.locator(".flash-success, .flash-info").first).to_be_visible()
    _open_console(page, fresh_instance)
    shot(page, screenshots, "console-home-desktop")
    assert page.locator("main svg").count() >= 1, "the console home page shows no chart"
    assert problems.messages == []


def test_first_run_phone(
    fresh_instance: Instance, new_context: ContextFactory, screenshots: Path
) -> None:
    """At 360 px every wizard step fits the screen (no sideways scroll) and setup completes."""
    page = new_context("phone").new_page()
    problems = PageProblems(page)
    too_wide: list[str] = []
    complete_wizard(
        page, fresh_instance, viewport="phone", directory=screenshots, overflow=too_wide
    )
    assert page.evaluate("window.innerWidth") == PHONE["width"]
    assert too_wide == [], "\n".join(too_wide)
    _open_console(page, fresh_instance)
    shot(page, screenshots, "console-home-phone")
    assert_no_horizontal_scroll(page, "/console at phone width")
    assert problems.messages == []


def test_invalid_field_shown_inline_then_corrected(
    unset_instance: Instance, new_context: ContextFactory, screenshots: Path
) -> None:
    """Retention 0 days is flagged next to the field while typing and after submit; 30 passes."""
    page = new_context("desktop").new_page()
    problems = PageProblems(page)
    unlock(page, unset_instance)
    fill_owner(page)
    submit_owner(page)
    fill_organization(page)
    next_step(page, "storage")

    field = page.locator("#storage-retentionDays")
    error = page.locator("span.error[data-error-for='storage.retentionDays']")
    # Live validation (app.js asks POST /api/onboarding/validate while typing).
    with page.expect_response("**/api/onboarding/validate") as answered:
        field.fill("0")
    assert answered.value.status == 200
    expect(error).not_to_be_empty()
    expect(field).to_have_attribute("aria-invalid", "true")
    live_message = error.inner_text()
    shot(page, screenshots, "wizard-storage-live-error-desktop")

    # The server says the same on submit, re-rendering the step with the value kept.
    with page.expect_response(lambda r: r.request.method == "POST" and "/setup/storage" in r.url):
        page.locator("button[name=action][value=next]").click()
    page.wait_for_load_state()
    assert page.url.endswith("/setup/storage")
    expect(error).to_have_text(live_message)
    expect(field).to_have_value("0")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()  # app.js moves focus to the first invalid field
    shot(page, screenshots, "wizard-storage-server-error-desktop")

    # Corrected, the message goes away while typing and Next moves on.
    field.fill("30")
    expect(error).to_be_empty()
    expect(field).not_to_have_attribute("aria-invalid", "true")
    next_step(page, "security")
    page.goto(unset_instance.base_url + "/setup/storage")
    expect(page.locator("#storage-retentionDays")).to_have_value("30")
    assert problems.messages == []


def test_wizard_without_javascript(
    fresh_instance: Instance, new_context: ContextFactory, screenshots: Path
) -> None:
    """With JavaScript off the wizard completes; server errors come back with the values kept."""
    page = new_context("desktop", java_script_enabled=False).new_page()
    unlock(page, fresh_instance)

    # Owner: the repeated password differs -> 422 with name and e-mail kept.
    fill_owner(page, confirm="something else entirely")
    with page.expect_response(lambda r: r.request.method == "POST") as answered:
        page.get_by_role("button", name="Next: Organization").click()
    assert answered.value.status == 422
    expect(page.locator("#password-confirm-error")).to_have_text("the passwords differ")
    expect(page.locator("#password-confirm")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#owner-name")).to_have_value(OWNER["name"])
    expect(page.locator("#owner-email")).to_have_value(OWNER["email"])
    shot(page, screenshots, "wizard-owner-nojs-error-desktop")
    fill_owner(page)
    submit_owner(page)

    # Organization: no industry chosen -> 422 next to the select, the name kept.
    page.fill("#organization-name", "Acme Bakery")
    page.check("input[name='organization.size'][value='11-50']")
    with page.expect_response(lambda r: r.request.method == "POST") as answered:
        page.locator("button[name=action][value=next]").click()
    assert answered.value.status == 422
    expect(page.locator("span.error[data-error-for='organization.industry']")).not_to_be_empty()
    expect(page.locator("#organization-industry")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#organization-name")).to_have_value("Acme Bakery")
    expect(page.locator("input[name='organization.size'][value='11-50']")).to_be_checked()
    shot(page, screenshots, "wizard-organization-nojs-error-desktop")

    page.select_option("#organization-industry", "retail")
    next_step(page, "storage")
    next_step(page, "security")
    # Back works without JavaScript too, and keeps what was saved.
    page.locator("button[name=action][value=back]").click()
    page.wait_for_url(re.compile(r"/setup/storage$"))
    next_step(page, "security")
    next_step(page, "agents")
    next_step(page, "review")
    expect(page.locator("main")).to_contain_text("Acme Bakery")
    create_organization(page)
    expect(page.get_by_role("link", name="Go to the console")).to_be_visible()


# --- CSRF ---------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # stdlib's signature
        pass


@pytest.fixture
def attacker_site(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A tiny web server on another port (and another site: ``localhost``)."""
    root = tmp_path / "attacker"
    root.mkdir()
    handler = partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_cross_site_form_post_is_refused(
    unset_instance: Instance, new_context: ContextFactory, attacker_site: tuple[Path, int]
) -> None:
    """A form auto-posted from another site, or a post without the token, gets 403, no change."""
    page = new_context("desktop").new_page()
    unlock(page, unset_instance)
    fill_owner(page)
    submit_owner(page)

    target = unset_instance.base_url + "/setup/owner"
    root, port = attacker_site
    (root / "attack.html").write_text(
        f"""<!doctype html><title>Win a prize</title>
<form id="f" method="post" action="{target}">
  <input name="owner.name" value="Mallory">
  <input name="owner.email" value="mallory@evil.test">
  <input name="password" value="mallory owns this now">
  <input name="password_confirm" value="mallory owns this now">
</form>
<script>document.getElementById("f").submit();</script>
""",
        encoding="utf-8",
    )
    # The victim, with a live setup session, visits the attacker's page (another site).
    with page.expect_response(lambda r: r.url == target and r.request.method == "POST") as posted:
        page.goto(f"http://localhost:{port}/attack.html")
    assert posted.value.status == 403, posted.value.status

    # Same cookie, same origin, but no CSRF token (or a made-up one): 403 as well.
    forged = {
        "owner.name": "Mallory",
        "owner.email": "mallory@evil.test",
        "password": "mallory owns this now",
        "password_confirm": "mallory owns this now",
    }
    for extra in ({}, {"csrf_token": "not-the-token"}):
        response = page.request.post(target, form={**forged, **extra}, max_redirects=0)
        assert response.status == 403, (extra, response.status)

    page.goto(target)
    expect(page.locator("#owner-name")).to_have_value(OWNER["name"])
    expect(page.locator("#owner-email")).to_have_value(OWNER["email"])


# --- keyboard --------------------------------------------------------------------------------


def _focus_ring(page: Page) -> dict[str, str]:
    return page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return {id: document.activeElement.id, tag: document.activeElement.tagName,"
        " text: document.activeElement.textContent.trim(),"
        " outline: s.outlineStyle, shadow: s.boxShadow}; }"
    )


def test_unlock_page_keyboard_only(unset_instance: Instance, new_context: ContextFactory) -> None:
    """On the unlock page Tab reaches the token input then the submit button, both visibly."""
    page = new_context("desktop").new_page()
    page.goto(unset_instance.base_url + "/setup")
    expect(page.locator("#token")).to_be_focused()  # autofocus
    # Start from the heading, as after reading the page, then use only the keyboard.
    page.locator("#unlock-title").click()
    page.keyboard.press("Tab")
    focused = _focus_ring(page)
    assert focused["id"] == "token", focused
    assert focused["shadow"] != "none" or focused["outline"] != "none", focused
    page.keyboard.type(unset_instance.token)
    page.keyboard.press("Tab")
    focused = _focus_ring(page)
    assert focused["tag"] == "BUTTON", focused
    assert focused["text"] == "Unlock setup", focused
    assert focused["shadow"] != "none" or focused["outline"] != "none", focused
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/setup/owner$"))
    # The skip link is the first stop from the top of the page, and visible when focused.
    page.goto(unset_instance.base_url + "/setup/owner")
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None
    assert box["x"] >= 0, f"the focused skip link is off screen: {box}"

"""Every preset rule operator is enforced in both wizards, not only eq, gte and in.

The packaged presets use eq, gte and in; these tests swap in a preset whose rules use all
six operators, and check that the form plan, the web wizard's page and submit, and the
terminal wizard's choices and validation each refuse what the rules refuse.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paulyops.cli.setup import Wizard
from paulyops.core.settings import load_settings
from paulyops.services.actor import SYSTEM
from paulyops.services.onboarding.firstrun import ensure_setup_token
from paulyops.services.onboarding.form import plan_step
from paulyops.services.onboarding.templates import Operator, Rule, load_presets
from tests.services.onboarding.scripted import Attempts, ScriptedPrompts

PASSWORD = "a-long-and-unusual-passphrase-91"
RULES: list[dict[str, Any]] = [
    {"field": "security.rbacModel", "operator": "ne", "value": "simple"},
    {"field": "security.dataRetention", "operator": "gte", "value": 400},
    {"field": "security.dataRetention", "operator": "lte", "value": 3000},
    {"field": "security.encryptionLevel", "operator": "not_in", "value": ["standard"]},
    {"field": "security.auditLogging", "operator": "ne", "value": False},
    {"field": "security.requireAdmin2fa", "operator": "eq", "value": True},
    {"field": "storage.backupStrategy", "operator": "in", "value": ["cloud", "hybrid"]},
    {"field": "agents.confidenceThreshold", "operator": "ne", "value": 0.5},
]
ORG = {"organization": {"name": "Acme", "industry": "other", "complianceLevel": "basic"}}


def test_the_rules_use_every_operator():
    """The swapped-in preset covers each operator the preset format allows."""
    assert {rule["operator"] for rule in RULES} == set(Operator.__args__)  # type: ignore[attr-defined]


@pytest.fixture
def strict_basic() -> Iterator[None]:
    """Give the basic preset rules with every operator, for the duration of one test."""
    presets = load_presets()
    original = presets["basic"]
    rules = [
        Rule.model_validate({**rule, "reason": f"test rule {i}"}) for i, rule in enumerate(RULES)
    ]
    presets["basic"] = original.model_copy(update={"enforced": rules})
    try:
        yield
    finally:
        presets["basic"] = original


def test_form_plan_carries_every_operator(strict_basic):
    """ne/not_in/in disable choices, gte/lte bound numbers, eq and ne lock booleans."""
    security = plan_step("security", ORG)
    rbac = {c.value: c.disabled for c in security.field("security.rbacModel").choices}
    assert rbac == {"simple": True, "granular": False, "enterprise": False}
    encryption = security.field("security.encryptionLevel")
    assert [c.value for c in encryption.choices if c.disabled] == ["standard"]
    retention = security.field("security.dataRetention")
    assert (retention.minimum, retention.maximum) == (400, 3000)
    for path in ("security.auditLogging", "security.requireAdmin2fa"):
        item = security.field(path)
        assert (item.locked, item.value) == (True, True), path
        assert "Required by the basic preset" in (item.lock_reason or "")
    backup = plan_step("storage", ORG).field("storage.backupStrategy")
    assert [c.value for c in backup.choices if c.disabled] == ["local"]
    threshold = plan_step("agents", ORG).field("agents.confidenceThreshold")
    assert threshold.excluded == (0.5,)


# --- the web wizard --------------------------------------------------------------------


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def _post(client, step: str, data: dict[str, Any]):
    page = client.get(f"/setup/{step}")
    return client.post(
        f"/setup/{step}",
        data={**data, "action": "next", "csrf_token": _csrf(page.text)},
        follow_redirects=False,
    )


@pytest.fixture
def wizard(client, strict_basic):
    """A web wizard past the owner and organization steps (basic preset, strict rules)."""
    instance = client.app.state.instance
    token = ensure_setup_token(instance.db, instance.settings.data_dir, actor=SYSTEM, force=True)
    page = client.get("/setup")
    client.post("/setup", data={"token": token, "csrf_token": _csrf(page.text)})
    owner = {
        "owner.email": "pat@acme.example.com",
        "owner.name": "Pat Owner",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
    }
    assert _post(client, "owner", owner).status_code == 303
    organization = {f"organization.{k}": v for k, v in ORG["organization"].items()}
    assert _post(client, "organization", organization).status_code == 303
    return client


def _input(html: str, element_id: str) -> str:
    match = re.search(rf'<input id="{element_id}"[^>]*>', html) or re.search(
        rf'<input type="[a-z]+" id="{element_id}"[^>]*>', html
    )
    assert match, element_id
    return match.group(0)


def _radio(html: str, name: str, value: str) -> str:
    match = re.search(rf'<input type="radio" [^>]*name="{name}" value="{value}"[^>]*>', html)
    assert match, (name, value)
    return match.group(0)


def test_web_page_shows_every_operator(wizard):
    """The security, storage and agents pages disable, bound and lock what the rules refuse."""
    security = wizard.get("/setup/security").text
    assert " disabled" in _radio(security, "security.rbacModel", "simple")
    assert " disabled" not in _radio(security, "security.rbacModel", "granular")
    assert " disabled" in _radio(security, "security.encryptionLevel", "standard")
    retention = _input(security, "security-dataRetention")
    assert 'min="400"' in retention
    assert 'max="3000"' in retention
    for element in ("security-auditLogging", "security-requireAdmin2fa"):
        box = _input(security, element)
        assert " checked" in box, element
        assert " disabled" in box, element
    storage = wizard.get("/setup/storage").text
    assert " disabled" in _radio(storage, "storage.backupStrategy", "local")
    agents = wizard.get("/setup/agents").text
    assert "Required by the basic preset" in agents


GOOD_SECURITY = {
    "security.rbacModel": "granular",
    "security.auditLogging": "on",
    "security.dataRetention": "800",
    "security.encryptionLevel": "enhanced",
    "security.requireAdmin2fa": "on",
}


@pytest.mark.parametrize(
    ("step", "change", "field"),
    [
        ("security", {"security.rbacModel": "simple"}, "security.rbacModel"),  # ne
        ("security", {"security.dataRetention": "399"}, "security.dataRetention"),  # gte
        ("security", {"security.dataRetention": "3001"}, "security.dataRetention"),  # lte
        ("security", {"security.encryptionLevel": "standard"}, "security.encryptionLevel"),
        ("security", {"security.auditLogging": ""}, "security.auditLogging"),  # ne false
        ("security", {"security.requireAdmin2fa": ""}, "security.requireAdmin2fa"),  # eq
        ("storage", {"storage.backupStrategy": "local"}, "storage.backupStrategy"),  # in
        ("agents", {"agents.confidenceThreshold": "0.5"}, "agents.confidenceThreshold"),
    ],
)
def test_web_submit_refuses_what_each_operator_refuses(wizard, step, change, field):
    """A posted answer that breaks a rule is a 422 naming the field (a tampered form too)."""
    base: dict[str, Any] = {
        "security": GOOD_SECURITY,
        "storage": {"storage.providers": "local", "storage.backupStrategy": "cloud"},
        "agents": {"agents.defaultAgents": "file-processor", "agents.confidenceThreshold": "0.8"},
    }[step]
    data = {key: value for key, value in {**base, **change}.items() if value != ""}
    response = _post(wizard, step, data)
    assert response.status_code == 422, response.text[-500:]
    assert f'data-error-for="{field}">the basic compliance preset' in response.text
    assert _post(wizard, step, base).status_code == 303


# --- the terminal wizard ---------------------------------------------------------------


def _terminal(tmp_path: Path, script: dict[str, Any]) -> tuple[Wizard, ScriptedPrompts]:
    root = tmp_path / "instance"
    root.mkdir(exist_ok=True)
    settings = load_settings(root=root, environ={"PAULYOPS_ENV": "test"})
    prompts = ScriptedPrompts(script)
    wizard = Wizard(root, settings, {}, prompts=prompts)
    wizard.draft["organization"] = dict(ORG["organization"])
    return wizard, prompts


def test_terminal_refuses_what_each_operator_refuses(strict_basic, tmp_path, capsys):
    """Disabled choices, refused numbers and locked answers, as in the web wizard."""
    wizard, prompts = _terminal(
        tmp_path,
        {
            "Roles model": "granular",
            "Audit retention (days)": Attempts(("399", "3001", "800")),
            "Encryption level": "fips",
            "Backup strategy": "hybrid",
            "Confidence threshold": Attempts(("0.5", "0.8")),
        },
    )
    wizard._security()
    wizard._storage()
    wizard._agents()
    disabled = {
        title: [c.value for c in choices if c.disabled]
        for title, choices in prompts.offered.items()
    }
    assert disabled["Roles model:"] == ["simple"]  # ne
    assert disabled["Encryption level:"] == ["standard"]  # not_in
    assert disabled["Backup strategy:"] == ["local"]  # in
    refused = [(title, attempt) for title, attempt, _message in prompts.refused]
    assert refused == [
        ("Audit retention (days):", "399"),  # gte
        ("Audit retention (days):", "3001"),  # lte
        ("Confidence threshold:", "0.5"),  # ne on a number
    ]
    assert all("basic compliance preset" in message for *_, message in prompts.refused)
    # eq and ne on booleans leave one answer: shown, not asked.
    assert wizard.draft["security"]["auditLogging"] is True
    assert wizard.draft["security"]["requireAdmin2fa"] is True
    assert "Require 2FA for admins" not in " ".join(prompts.asked)
    shown = capsys.readouterr().out
    assert "Audit logging: on (required by the basic preset)" in shown
    assert "Require 2FA for admins: on (required by the basic preset)" in shown
    assert wizard.draft["security"]["dataRetention"] == 800
    assert wizard.draft["agents"]["confidenceThreshold"] == 0.8

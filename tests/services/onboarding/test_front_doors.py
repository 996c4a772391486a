"""The four front doors yield the same SetupSpec for the same answers (STYLE.md, Tests).

The terminal wizard (driven through its prompt layer), the web wizard (its forms filled
as a browser would submit them), ``POST /api/onboarding/setup`` and ``setup --config``
must end in one spec: same canonical hash, so the same organization.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from paulyops.cli.main import app as cli_app
from paulyops.cli.setup import run_wizard
from paulyops.core.db.models import Organization
from paulyops.core.settings import load_settings
from paulyops.services.actor import SYSTEM
from paulyops.services.onboarding.firstrun import ensure_setup_token
from paulyops.services.onboarding.form import ANSWER_STEPS, plan_step
from paulyops.services.onboarding.spec import SetupSpec, parse_spec
from tests.services.onboarding.scripted import ScriptedPrompts

PASSWORD = "a-long-and-unusual-passphrase-91"
OWNER = {"email": "pat@acme.example.com", "name": "Pat Owner"}

# Every answer given explicitly, storage credentials partly entered.
EXPLICIT: dict[str, Any] = {
    "organization": {
        "name": "Acme Finance",
        "industry": "finance",
        "complianceLevel": "soc2",
        "size": "11-50",
        "adminContact": "it@acme.example.com",
        "timezone": "Europe/Berlin",
    },
    "storage": {
        "providers": ["local", {"type": "s3", "bucket": "acme-docs", "region": "eu-central-1"}],
        "backupStrategy": "cloud",
        "retentionDays": 400,
    },
    "security": {
        "rbacModel": "enterprise",
        "auditLogging": True,
        "dataRetention": 800,
        "encryptionLevel": "fips",
        "requireAdmin2fa": False,
    },
    "agents": {
        "defaultAgents": ["file-processor", "data-analyzer"],
        "autoRouting": False,
        "confidenceThreshold": 0.75,
        "monitoringEnabled": False,
    },
    "owner": OWNER,
}
# Only what has no default: the healthcare template and enterprise preset fill the rest,
# and the wizards must show (and submit) exactly what they fill.
MINIMAL: dict[str, Any] = {
    "organization": {"name": "Acme Clinic", "industry": "healthcare"},
    "owner": OWNER,
}
ANSWERS = {"explicit": EXPLICIT, "minimal": MINIMAL}


# --- the terminal wizard, through its prompt layer --------------------------------------


def _terminal_script(answers: Mapping[str, Any]) -> dict[str, Any]:
    """Map wire answers to the titles the wizard asks (titles from the form plan)."""
    script: dict[str, Any] = {}
    for step in (*ANSWER_STEPS, "owner"):
        plan = plan_step(step, {})
        for key, value in (answers.get(step) or {}).items():
            item = plan.field(f"{step}.{key}")
            if item.kind == "providers":
                script[item.title] = [p if isinstance(p, str) else p["type"] for p in value]
                settings = [p for p in value if isinstance(p, dict) and len(p) > 1]
                if settings:
                    script[
                        "Enter connection settings now? (credentials can also be added later)"
                    ] = True
                for provider in settings:
                    for setting in next(
                        p for p in plan.providers if p.type == provider["type"]
                    ).settings:
                        script[setting.title] = provider.get(setting.key, "")
            elif item.kind == "bool":
                script[item.question] = value
            else:
                script[item.title] = value if isinstance(value, list) else str(value)
    return script


def through_terminal(answers: Mapping[str, Any], tmp_path: Path) -> SetupSpec:
    """Answer the terminal wizard's questions; return the spec it confirms."""
    root = tmp_path / "terminal"
    root.mkdir()
    settings = load_settings(root=root, environ={"PAULYOPS_ENV": "test"})
    prompts = ScriptedPrompts(_terminal_script(answers))
    outcome = run_wizard(root, settings, {}, yes=True, prompts=prompts)
    assert outcome is not None
    # Every answer of every step was asked, in the plan's words.
    for step in ANSWER_STEPS:
        for item in plan_step(step, answers).fields:
            wanted = item.question if item.kind == "bool" else item.title
            assert wanted in prompts.asked or item.locked, (wanted, prompts.asked)
    return outcome.spec


# --- the web wizard, as a browser submits its forms --------------------------------------


class _FormReader(HTMLParser):
    """Collect what a browser would submit from the first POST form of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._select: tuple[str, bool] | None = None
        self._options: list[tuple[str, bool, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        name = attr.get("name")
        if tag == "input" and name and "disabled" not in attr:
            kind = attr.get("type", "text")
            if kind in {"checkbox", "radio"}:
                if "checked" in attr:
                    value = attr.get("value")
                    self.fields.append((name, "on" if value is None else value))
            elif kind != "submit":
                self.fields.append((name, attr.get("value") or ""))
        elif tag == "select" and name:
            self._select, self._options = (name, "disabled" in attr), []
        elif tag == "option" and self._select is not None:
            self._options.append((attr.get("value") or "", "selected" in attr, "disabled" in attr))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select is not None:
            name, disabled = self._select
            enabled = [o for o in self._options if not o[2]]
            chosen = [o for o in enabled if o[1]] or enabled[:1]
            if not disabled and chosen:
                self.fields.append((name, chosen[0][0]))
            self._select = None


def _browser_form(html: str) -> dict[str, list[str]]:
    reader = _FormReader()
    reader.feed(html)
    form: dict[str, list[str]] = {}
    for name, value in reader.fields:
        form.setdefault(name, []).append(value)
    return form


def _fill(form: dict[str, list[str]], step: str, answers: Mapping[str, Any]) -> None:
    """Change the form as a person would to give ``answers`` (wire form) for ``step``."""
    for key, value in answers.items():
        path = f"{step}.{key}"
        if key == "providers":
            form[path] = [p if isinstance(p, str) else p["type"] for p in value]
            for provider in value:
                for setting, text in provider.items() if isinstance(provider, dict) else []:
                    if setting != "type":
                        form[f"{path}.{provider['type']}.{setting}"] = [str(text)]
        elif isinstance(value, bool):
            if value:
                form[path] = ["on"]
            else:
                form.pop(path, None)
        elif isinstance(value, list):
            form[path] = [str(item) for item in value]
        else:
            form[path] = [str(value)]


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def through_web(answers: Mapping[str, Any], client: Any) -> str:
    """Walk the web wizard; return the created organization's spec hash."""
    instance = client.app.state.instance
    token = ensure_setup_token(instance.db, instance.settings.data_dir, actor=SYSTEM, force=True)
    page = client.get("/setup")
    client.post("/setup", data={"token": token, "csrf_token": _csrf(page.text)})
    page = client.get("/setup/owner")
    owner = {
        "owner.email": answers["owner"]["email"],
        "owner.name": answers["owner"]["name"],
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "csrf_token": _csrf(page.text),
    }
    assert client.post("/setup/owner", data=owner, follow_redirects=False).status_code == 303
    for step in ANSWER_STEPS:
        page = client.get(f"/setup/{step}")
        assert page.status_code == 200, page.text
        form = _browser_form(page.text)
        _fill(form, step, answers.get(step) or {})
        form["action"] = ["next"]
        sent = client.post(f"/setup/{step}", data=form, follow_redirects=False)
        assert sent.status_code == 303, (
            step,
            re.findall(r"data-error-for=\"([^\"]+)\">([^<]+)<", sent.text),
            form,
        )
    page = client.get("/setup/review")
    done = client.post(
        "/setup/review", data={"csrf_token": _csrf(page.text)}, follow_redirects=False
    )
    assert done.headers["location"] == "/setup/done", done.text[-2000:]
    return _spec_hash(instance.db)


# --- the API and the config file ---------------------------------------------------------


def through_api(answers: Mapping[str, Any], client: Any) -> str:
    """POST the answers as the body of /api/onboarding/setup; return the org's spec hash."""
    instance = client.app.state.instance
    token = ensure_setup_token(instance.db, instance.settings.data_dir, actor=SYSTEM, force=True)
    response = client.post(
        "/api/onboarding/setup", json=answers, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text
    return _spec_hash(instance.db)


def through_config_file(answers: Mapping[str, Any], tmp_path: Path) -> str:
    """Run ``setup --config FILE --dry-run``; return the spec hash it prints."""
    root = tmp_path / "config"
    root.mkdir()
    path = tmp_path / "setup.json"
    path.write_text(json.dumps(answers), encoding="utf-8")
    result = CliRunner().invoke(
        cli_app, ["setup", "--dir", str(root), "--config", str(path), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    match = re.search(r"Spec hash\s+([0-9a-f]{64})", result.output)
    assert match, result.output
    return match.group(1)


def _spec_hash(db: Any) -> str:
    with db.session() as session:
        [org] = session.query(Organization).all()
        return str(org.spec_hash)


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("COLUMNS", "200")


@pytest.mark.parametrize("case", sorted(ANSWERS))
@pytest.mark.parametrize("door", ["terminal", "web", "api", "config"])
def test_every_front_door_yields_the_same_setupspec(case, door, client, tmp_path):
    """The same answers give the same spec (canonical hash) through each front door."""
    answers = copy.deepcopy(ANSWERS[case])
    expected = parse_spec(answers)
    if door == "terminal":
        spec = through_terminal(answers, tmp_path)
        assert spec.to_wire() == expected.to_wire()
        assert spec.to_wire(include_secrets=True) == expected.to_wire(include_secrets=True)
        got = spec.canonical_hash()
    elif door == "web":
        got = through_web(answers, client)
    elif door == "api":
        got = through_api(answers, client)
    else:
        got = through_config_file(answers, tmp_path)
    assert got == expected.canonical_hash()


def test_the_explicit_answers_differ_from_every_default():
    """Each explicit answer differs from what the template and preset would fill.

    Otherwise a front door that ignored that answer would still pass the test above.
    """
    filled = parse_spec(
        {"organization": {"name": "Acme Finance", "industry": "finance"}, "owner": OWNER}
    ).to_wire()
    given = parse_spec(EXPLICIT).to_wire()
    for step in ANSWER_STEPS:
        for key in EXPLICIT[step]:
            # The name and industry have no default; soc2 leaves audit logging no choice.
            if key not in {"name", "industry", "complianceLevel", "auditLogging"}:
                assert given[step][key] != filled[step][key], f"{step}.{key}"

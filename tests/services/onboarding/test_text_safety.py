"""Every text field of SetupSpec refuses unpaired surrogates and bidi controls, at every door.

A lone UTF-16 surrogate cannot be encoded for the database, a file or a response (setup
crashed with a 500 and the CLI left ``.env.local`` and a migrated database behind); a bidi
override makes ``"\\u202eemcA"`` display as "Acme".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from paulyops.cli.main import app
from paulyops.core.db.models import Organization
from paulyops.core.errors import SpecValidationError
from paulyops.services.actor import SYSTEM
from paulyops.services.onboarding.firstrun import ensure_setup_token
from paulyops.services.onboarding.spec import BIDI_CONTROLS, parse_spec, validate_partial

OWNER = {"email": "olga@acme.example", "name": "Olga Owner"}
BASE = {"organization": {"name": "Acme", "industry": "other"}, "owner": OWNER}


def _with(path: str, value: object) -> dict[str, object]:
    """Return BASE with the wire ``path`` set to ``value``."""
    spec = json.loads(json.dumps(BASE))
    parts = path.split(".")
    node = spec
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return spec


TEXT_FIELDS = [
    ("organization.name", "Acme {}"),
    ("organization.timezone", "Europe/Berlin{}"),
    ("organization.adminContact", "it{}@acme.example"),
    ("owner.name", "Olga {}"),
    ("owner.email", "olga{}@acme.example"),
]
BAD = ["\ud800", "\udcff", "\u202e", "\u2066", "\u2069", "\u202a"]


@pytest.mark.parametrize(("path", "template"), TEXT_FIELDS)
@pytest.mark.parametrize("bad", BAD, ids=[f"U+{ord(c):04X}" for c in BAD])
def test_parse_spec_refuses_unsafe_text_naming_the_field(path, template, bad):
    """Each text field refuses a lone surrogate or bidi control with an error on that field."""
    with pytest.raises(SpecValidationError) as caught:
        parse_spec(_with(path, template.format(bad)))
    [error] = [e for e in caught.value.errors if e.field == path]
    assert f"U+{ord(bad):04X}" in error.message


def test_reversed_name_is_refused_not_displayed_as_acme():
    """The brief's example: '\\u202eemcA' (which displays as 'Acme') is refused."""
    with pytest.raises(SpecValidationError) as caught:
        parse_spec(_with("organization.name", "\u202eemcA"))
    assert [e.field for e in caught.value.errors] == ["organization.name"]
    assert "bidirectional" in caught.value.errors[0].message


def test_nested_and_list_fields_are_checked_too():
    """Storage settings, secrets and list items name their exact path."""
    cases = {
        "storage.providers.0.path": {"type": "local", "path": "/srv/\ud800"},
        "storage.providers.0.secretAccessKey": {"type": "s3", "secretAccessKey": "k\u202eey"},
        "storage.providers.0.clientId": {"type": "google-drive", "clientId": "id\u2067"},
    }
    for path, provider in cases.items():
        with pytest.raises(SpecValidationError) as caught:
            parse_spec({**BASE, "storage": {"providers": [provider]}})
        assert path in [e.field for e in caught.value.errors], path
        assert "k\u202eey" not in str(caught.value)  # a secret is never echoed
    with pytest.raises(SpecValidationError) as caught:
        parse_spec({**BASE, "agents": {"defaultAgents": ["file-processor", "x\u202e"]}})
    assert "agents.defaultAgents.1" in [e.field for e in caught.value.errors]


def test_wizard_steps_refuse_it_too():
    """validate_partial (both wizards' step check) gives the same field error."""
    errors = validate_partial({"owner": {**OWNER, "name": "Olga\ud800"}}, "owner")
    assert [e.field for e in errors] == ["owner.name"]


def test_ordinary_unicode_still_passes():
    """Accents, right-to-left scripts and emoji are fine: only the controls are refused."""
    for name in ("Café Müller", "שלום בע״מ", "شركة أكمي", "Acme 🚀", "株式会社アクメ"):
        assert parse_spec(_with("organization.name", name)).organization.name == name
    assert len(BIDI_CONTROLS) == 9


# --- the API -------------------------------------------------------------------------------


@pytest.fixture
def setup_token(client):
    instance = client.app.state.instance
    token = ensure_setup_token(instance.db, instance.settings.data_dir, actor=SYSTEM, force=True)
    assert token is not None
    return token


@pytest.mark.parametrize("bad", ["\ud800", "\u202e"], ids=["surrogate", "bidi"])
def test_api_setup_answers_422_naming_the_field(client, setup_token, bad):
    """POST /api/onboarding/setup answers 422 in the one error shape; nothing is created."""
    # json.dumps escapes the surrogate as "\\ud800", as a hostile client would send it.
    body = json.dumps(_with("organization.name", f"emcA{bad}"))
    response = client.post(
        "/api/onboarding/setup",
        content=body,
        headers={"Authorization": f"Bearer {setup_token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["success"] is False
    assert [e["field"] for e in payload["errors"]] == ["organization.name"]
    with client.app.state.instance.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Organization)) == 0


def test_api_validate_names_the_field(client):
    """POST /api/onboarding/validate reports the field (the wizard's live check)."""
    body = {"step": "owner", "spec": {"owner": {**OWNER, "name": "Olga\ud800"}}}
    response = client.post(
        "/api/onboarding/validate",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["success"] is False
    assert [e["field"] for e in payload["errors"]] == ["owner.name"]


def test_web_owner_step_refuses_it(client, setup_token):
    """The web wizard's owner form re-renders with the error (422), nothing kept."""
    import re

    def token(page: str) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match
        return match.group(1)

    page = client.get("/setup")
    unlocked = client.post("/setup", data={"token": setup_token, "csrf_token": token(page.text)})
    assert unlocked.status_code == 200, unlocked.text
    response = client.post(
        "/setup/owner",
        data={
            "owner.email": OWNER["email"],
            "owner.name": "\u202eaglO",
            "password": "a-long-and-unusual-passphrase-91",
            "password_confirm": "a-long-and-unusual-passphrase-91",
            "csrf_token": token(unlocked.text),
        },
    )
    assert response.status_code == 422
    assert "bidirectional" in response.text


# --- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PAULYOPS_ENV", "test")
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "instance"
    path.mkdir()
    return path


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("bad", ["\udcff", "\u202e"], ids=["surrogate", "bidi"])
def test_cli_quick_refuses_it_and_writes_nothing(root, bad):
    """setup --quick with such a name exits 1 naming the field; the root stays empty."""
    result = CliRunner().invoke(
        app,
        [
            "setup",
            "--quick",
            "--dir",
            str(root),
            "--org-name",
            f"Acme{bad}",
            "--owner-email",
            OWNER["email"],
            "--owner-name",
            OWNER["name"],
        ],
    )
    assert result.exit_code != 0
    assert "organization.name" in result.output
    assert "Traceback" not in result.output
    assert _leftovers(root) == []


def test_cli_config_refuses_it_and_writes_nothing(root, tmp_path):
    """setup --config with a JSON '\\ud800' escape exits 1 naming the field, writes nothing."""
    config = tmp_path / "acme.json"
    config.write_text(json.dumps(_with("owner.name", "Olga\ud800")), encoding="utf-8")
    result = CliRunner().invoke(app, ["setup", "--config", str(config), "--dir", str(root)])
    assert result.exit_code != 0
    assert "owner.name" in result.output
    assert _leftovers(root) == []
    other = tmp_path / "edited"
    (other / "configs").mkdir(parents=True)
    (other / "configs" / "setup.json").write_text(config.read_text(), encoding="utf-8")
    check = CliRunner().invoke(app, ["validate", "config", "--dir", str(other)])
    assert check.exit_code != 0
    assert "owner.name" in check.output

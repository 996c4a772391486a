"""The manifest model: its rules, the vocabularies it checks, its published schema."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paulyops.services.ingestion.vocabulary import (
    DOCUMENT_CLASSES,
    is_media_type_pattern,
    media_type_matches,
)
from paulyops.services.marketplace.capabilities import CAPABILITIES, describe, is_capability
from paulyops.services.marketplace.errors import ManifestError
from paulyops.services.marketplace.manifest import (
    Manifest,
    manifest_json_schema,
    parse_manifest,
    parse_version,
)
from tests.services.marketplace.packages import manifest_text

BUNDLED = Path(__file__).resolve().parents[3] / "src" / "paulyops" / "bundled"


def _with(text: str, **changes: str) -> str:
    for old, new in changes.items():
        text = text.replace(old, new)
    return text


def _error(text: str, *, bundled: bool = False) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, bundled=bundled)
    return caught.value


def test_a_valid_manifest_parses_with_its_defaults() -> None:
    """The example manifest parses; unset tables get their documented defaults."""
    manifest = parse_manifest(manifest_text())
    assert manifest.id == "acme.hello"
    assert manifest.compatibility.python == ">=3.11"
    assert manifest.compatibility.platforms == ["linux"]
    assert manifest.resources.cpu_seconds is None
    assert manifest.entry_module == "agent"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({'id = "acme.hello"': 'id = "Acme.Hello"'}, "id", "lowercase ASCII"),
        ({'id = "acme.hello"': 'id = "acme"'}, "id", "publisher.name"),
        ({'version = "1.0.0"': 'version = "1.0"'}, "version", "semantic version"),
        ({'version = "1.0.0"': 'version = "1.0.0-foo"'}, "version", "alpha, beta or rc"),
        ({'entrypoint = "agent:handle"': 'entrypoint = "agent"'}, "entrypoint", "module:function"),
        ({'paulyops = ">=0.1"': 'paulyops = "newest"'}, "compatibility.paulyops", "version range"),
        ({'"alerts:raise"': '"alerts:raise", "shell"'}, "capabilities", "unknown capability"),
        ({'"alerts:raise"': '"secrets:token"'}, "manifest", "no settings field marked secret"),
        ({'"text/plain"': '"text/evil"'}, "handles.mediaTypes", "unknown media type"),
        ({'["other"]': '["memo"]'}, "handles.documentClasses", "unknown document class"),
        ({'license = "MIT"': 'license = "MIT"\nhomepage = "x"'}, "homepage", "unknown field"),
        ({'publisher = "acme"': 'publisher = "other"'}, "manifest", "must start with"),
    ],
)
def test_a_broken_field_is_named_with_its_reason(
    change: dict[str, str], field: str, reason: str
) -> None:
    """Each rule failure names the field (camelCase, as written) and why."""
    err = _error(_with(manifest_text(), **change))
    assert err.errors[0].field == field
    assert reason in err.errors[0].message


def test_the_paulyops_prefix_is_reserved_for_bundled_agents() -> None:
    """`paulyops.*` ids validate only when the package is bundled."""
    text = manifest_text(agent_id="paulyops.hello")
    assert "reserved" in _error(text).errors[0].message
    assert parse_manifest(text, bundled=True).id == "paulyops.hello"


def test_a_secret_capability_must_name_a_secret_setting() -> None:
    """`secrets:<field>` is accepted when the settings schema marks that field secret."""
    text = _with(manifest_text(), **{'"alerts:raise"': '"secrets:token"'}) + (
        '\n[settings]\ntype = "object"\n[settings.properties.token]\n'
        'type = "string"\nsecret = true\n'
    )
    manifest = parse_manifest(text)
    assert manifest.secret_settings() == ["token"]


def test_not_toml_and_not_utf8_are_one_message_each() -> None:
    """Broken TOML and non-UTF-8 bytes name manifest.toml and the reason."""
    assert "not valid TOML" in _error("id = ").message
    with pytest.raises(ManifestError, match="not UTF-8"):
        parse_manifest(b"\xff\xfe")


def test_every_catalog_class_and_media_type_is_in_the_vocabulary() -> None:
    """The bundled agents' `handles` (their manifests: the one source) use the vocabulary."""
    manifests = sorted(BUNDLED.glob("*/manifest.toml"))
    assert manifests
    for path in manifests:
        agent = tomllib.loads(path.read_text(encoding="utf-8"))
        for cls in agent["handles"]["documentClasses"]:
            assert cls in DOCUMENT_CLASSES, cls
        for media in agent["handles"]["mediaTypes"]:
            assert is_media_type_pattern(media), media
    assert "other" in DOCUMENT_CLASSES


def test_media_type_wildcards_match() -> None:
    """`*/*` matches everything, `image/*` only images."""
    assert media_type_matches("*/*", "text/csv")
    assert media_type_matches("image/*", "image/png")
    assert not media_type_matches("image/*", "text/plain")
    assert not is_media_type_pattern("nope/*")


def test_every_capability_has_plain_words() -> None:
    """The console can describe every capability, including `secrets:<field>`."""
    for name in CAPABILITIES:
        assert describe(name)
    assert "api_key" in describe("secrets:api_key")
    assert not is_capability("storage:read")
    assert not is_capability("secrets:")


def test_json_schema_is_camel_case_and_closed() -> None:
    """The published schema uses the manifest's own keys and forbids unknown ones."""
    schema = manifest_json_schema()
    assert schema["additionalProperties"] is False
    assert {"id", "entrypoint", "compatibility", "capabilities"} <= set(schema["properties"])
    assert "mediaTypes" in schema["$defs"]["Handles"]["properties"]


@given(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.sampled_from(["", "-rc.1"]))
def test_semver_versions_order_like_packaging(major: int, minor: int, patch: int, pre: str) -> None:
    """Every semver version the manifest accepts parses and a pre-release sorts first."""
    version = parse_version(f"{major}.{minor}.{patch}{pre}")
    assert version <= parse_version(f"{major}.{minor}.{patch}")


@given(st.dictionaries(st.sampled_from(sorted(Manifest.model_fields)), st.text(max_size=5)))
def test_arbitrary_tables_never_crash_the_parser(table: dict[str, str]) -> None:
    """Any table is either a manifest or a ManifestError with at least one named field."""
    errors: list[object] = []
    try:
        parse_manifest(table)
    except ManifestError as err:
        errors = [e.field for e in err.errors]
        assert all(errors)
        assert errors

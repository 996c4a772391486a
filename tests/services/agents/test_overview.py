"""The settings form of the console, from a JSON Schema: every field type, back to a command."""

from __future__ import annotations

from paulyops.core.errors import FieldError
from paulyops.services.agents.overview import (
    SettingsField,
    parse_settings_form,
    setting_errors,
    shown_values,
)
from paulyops.services.commands import invalid

FIELDS = [
    SettingsField(
        name="apiKey",
        label="API key",
        type="string",
        description="",
        secret=True,
        secret_state="set",
    ),
    SettingsField(name="title", label="Title", type="string", description="", value="old"),
    SettingsField(name="limit", label="Limit", type="integer", description="", value=3),
    SettingsField(name="ratio", label="Ratio", type="number", description=""),
    SettingsField(name="verbose", label="Verbose", type="boolean", description="", value=True),
    SettingsField(name="mode", label="Mode", type="string", description="", enum=["fast", 2]),
    SettingsField(name="tags", label="Tags", type="array", description="", editable=False),
]


def test_each_type_is_converted_and_only_changes_are_sent():
    """Numbers, enums and booleans get their JSON type; unchanged and empty secrets are left out."""
    command, errors = parse_settings_form(
        FIELDS,
        {"apiKey": "", "title": "old", "limit": "4", "ratio": "0.5", "mode": "2", "tags": "x"},
        set(),
    )
    assert errors == {}
    # verbose was not sent (an unchecked box): false; title unchanged; the secret kept.
    assert command.settings == {"limit": 4, "ratio": 0.5, "verbose": False, "mode": 2}
    assert command.unset == []


def test_empty_fields_unset_and_a_secret_is_cleared_only_on_request():
    """An emptied plain field goes back to its default; the secret goes only when ticked."""
    command, errors = parse_settings_form(
        FIELDS, {"title": "", "limit": " ", "verbose": "on"}, {"apiKey"}
    )
    assert errors == {}
    assert command.settings == {}
    assert sorted(command.unset) == ["apiKey", "limit", "title"]


def test_bad_values_name_their_field_and_the_typed_values_are_kept():
    """A word in a number field, NaN, or a value outside the enum: one error per field."""
    form = {"limit": "many", "ratio": "nan", "mode": "slow", "title": "new", "apiKey": "s3cret!"}
    _command, errors = parse_settings_form(FIELDS, form, set())
    assert set(errors) == {"limit", "ratio", "mode"}
    assert "whole number" in errors["limit"]
    shown = shown_values(FIELDS, form)
    assert shown["title"] == "new"
    assert shown["limit"] == "many"
    assert shown["apiKey"] is None  # a secret is never shown again


def test_schema_errors_map_to_the_form_fields():
    """``settings.limit`` from the lifecycle is the form's ``limit``; no field is the form's."""
    err = invalid([FieldError("settings.limit", "too big"), FieldError("settings", "bad")])
    assert setting_errors(err) == {"limit": "too big", "form": "bad"}

"""Form hints from a command's JSON Schema: bounds, choices, defaults, labels.

A console form shows the rules of the command it posts (a number's range, a choice's
values) as its model declares them, so a bound changes in one place: the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class FormField:
    """What a form input shows of one command field."""

    title: str
    description: str
    default: Any = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    choices: list[str] = field(default_factory=list)

    @property
    def bounds(self) -> dict[str, Any]:
        """The input's ``min``/``max`` attributes (only the bounds the field has)."""
        out: dict[str, Any] = {}
        if self.minimum is not None:
            out["min"] = self.minimum
        if self.maximum is not None:
            out["max"] = self.maximum
        return out

    @property
    def hint(self) -> str:
        """``"<min> to <max>. <description>"``, or just the description."""
        if self.minimum is not None and self.maximum is not None:
            return f"{self.minimum} to {self.maximum}. {self.description}".strip()
        return self.description


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """Merge a property with the definition it refers to (enums live in ``$defs``)."""
    ref = prop.get("$ref") or next(
        (item["$ref"] for item in prop.get("allOf", []) if "$ref" in item), None
    )
    if not isinstance(ref, str):
        return prop
    target = schema.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {})
    return {**target, **prop}


def form_fields(model: type[BaseModel]) -> dict[str, FormField]:
    """Return the form hints of every field of ``model``, by Python name."""
    schema = model.model_json_schema(by_alias=True)
    properties: dict[str, Any] = schema.get("properties", {})
    out: dict[str, FormField] = {}
    for name, info in model.model_fields.items():
        prop = _resolve(schema, properties.get(info.alias or name, {}))
        out[name] = FormField(
            title=str(prop.get("title", name)),
            description=str(prop.get("description", "")),
            default=prop.get("default"),
            minimum=prop.get("minimum"),
            maximum=prop.get("maximum"),
            choices=[str(value) for value in prop.get("enum", [])],
        )
    return out


__all__ = ["FormField", "form_fields"]

"""Views: what a use case returns for display, shaped so the JSON API can send it as is.

A view that an API route returns unchanged subclasses :class:`View` (read-only, camelCase
on the wire); the route's response model is a subclass that only names it for OpenAPI,
so the fields are declared once, in the service.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class View(BaseModel):
    """Base of a view the API sends: camelCase on the wire, read-only, read from attributes."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, from_attributes=True
    )


__all__ = ["View"]

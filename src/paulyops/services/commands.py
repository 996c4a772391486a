"""Command models: the one typed input of every use case, shared by every front door.

A use case is one function taking the scope, a command and the actor; it validates, changes
state and writes its own audit row. Its command is a :class:`Command` subclass declared next
to it in the service. The JSON API takes the command as its body, the console parses its
form into it, the CLI builds it from options: bounds, choices and hints come from the
model's JSON Schema, so each rule lives once.

A bad command raises :class:`CommandError` (a
:class:`~paulyops.core.errors.SpecValidationError`) whose field errors name the wire path
(camelCase), through the one translation of pydantic errors in
:func:`paulyops.services.onboarding.errors.field_errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from paulyops.core.errors import FieldError, SpecValidationError
from paulyops.services.onboarding.errors import dedupe, field_errors


class Command(BaseModel):
    """Base of every use-case input: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class CommandError(SpecValidationError):
    """A command breaks one or more rules; ``errors`` names each field."""


C = TypeVar("C", bound=BaseModel)


def command_error(err: ValidationError, model: type[BaseModel]) -> CommandError:
    """Translate a pydantic error raised by ``model`` into the one error shape."""
    errors = field_errors(err, model)
    return invalid(errors or [FieldError("", "the input is not valid")])


def invalid(errors: list[FieldError]) -> CommandError:
    """Return the error for ``errors``, its message naming the first few fields."""
    unique = dedupe(errors)
    first = unique[0]
    message = f"{first.field}: {first.message}" if first.field else first.message
    if len(unique) > 1:
        message += f" (and {len(unique) - 1} more)"
    return CommandError(message, unique)


def parse(model: type[C], data: Mapping[str, Any]) -> C:
    """Validate ``data`` (wire or Python names) into ``model``.

    Raises:
        CommandError: a field breaks a rule; each problem names its field.
    """
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        raise command_error(err, model) from None


__all__ = ["Command", "CommandError", "command_error", "invalid", "parse"]

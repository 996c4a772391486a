"""Onboarding errors, and the one translation of pydantic errors into field errors.

Every problem with a setup answer becomes one :class:`~paulyops.core.errors.FieldError`
whose ``field`` is the path as on the wire (camelCase, dot-separated, list indexes
included: ``storage.providers.0.bucket``), whose message names the expected and the
received value, with ``allowed`` for choices and ``suggestion`` for misspellings.
Secret values are never echoed back.

The onboarding service raises::

    SpecValidationError (core)
    └── SetupSpecError     the setup answers break one or more rules

Validators in :mod:`.spec` raise :func:`choice_error` and :func:`custom_error`; the
``ctx`` keys they set (``allowed``, ``suggestion``, ``subpath``, ``fieldErrors``) are read
back here, so no validator has to know about the wire format.
"""

from __future__ import annotations

import difflib
import math
import types
from collections.abc import Collection, Iterable, Mapping, Sequence
from enum import Enum
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from paulyops.core.errors import FieldError, SpecValidationError

# How much of a received value a message repeats; enough to recognise a typo, not a dump.
MAX_SHOWN_CHARS = 60
# How many problems the summary message lists before "... and N more".
MAX_SUMMARY_ERRORS = 5
# difflib's default; low enough for "fiannce" -> "finance", high enough to stay quiet on junk.
SUGGESTION_CUTOFF = 0.6

# ctx keys of custom errors (see module docstring).
CTX_ALLOWED = "allowed"
CTX_SUGGESTION = "suggestion"
CTX_SUBPATH = "subpath"
CTX_FIELD_ERRORS = "fieldErrors"
CTX_COMPLETE = "complete"

Loc = tuple[str | int, ...]


class SetupSpecError(SpecValidationError):
    """The setup answers break one or more rules; ``errors`` names each field."""


def spec_error(errors: Sequence[FieldError]) -> SetupSpecError:
    """Return the error for ``errors``, with a summary message that lists the first few."""
    unique = dedupe(errors)
    shown = [f"{e.field or '(body)'}: {e.message}" for e in unique[:MAX_SUMMARY_ERRORS]]
    more = len(unique) - len(shown)
    summary = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
    noun = "problem" if len(unique) == 1 else "problems"
    return SetupSpecError(f"invalid setup ({len(unique)} {noun}): {summary}", unique)


def dedupe(errors: Iterable[FieldError]) -> list[FieldError]:
    """Return ``errors`` without repeats (same field and message), in their first order."""
    seen: dict[tuple[str, str], FieldError] = {}
    for error in errors:
        seen.setdefault((error.field, error.message), error)
    return list(seen.values())


def suggest(value: object, choices: Iterable[str]) -> str | None:
    """Return the choice closest to a misspelt ``value``, or None when nothing is close."""
    if not isinstance(value, str) or not value.strip():
        return None
    by_folded = {choice.casefold(): choice for choice in choices}
    folded = value.strip().casefold()
    if folded in by_folded:
        return by_folded[folded]
    matches = difflib.get_close_matches(folded, list(by_folded), n=1, cutoff=SUGGESTION_CUTOFF)
    return by_folded[matches[0]] if matches else None


def show(value: object) -> str:
    """Render a received value for a message: short, wire-flavoured, never a whole object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        text = str(value) if abs(value) < 10**MAX_SHOWN_CHARS else "a very large number"
        return text
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        if len(value) > MAX_SHOWN_CHARS:
            return repr(value[:MAX_SHOWN_CHARS] + "...")
        return repr(value)
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a value of type {type(value).__name__}"


def choice_error(value: object, allowed: Sequence[str], *, noun: str = "") -> PydanticCustomError:
    """Return the error for a value that is not one of ``allowed``.

    Args:
        value: the value received.
        allowed: the accepted values, in the order a form would list them.
        noun: what a choice is, for the message (``"an agent"``); default ``"one of"``.
    """
    hint = suggest(value, allowed)
    listed = ", ".join(allowed)
    expected = f"{noun} ({listed})" if noun else f"one of {listed}"
    message = f"expected {expected}, got {show(value)}"
    if hint is not None:
        message += f"; did you mean {hint!r}?"
    return custom_error(
        "invalid_choice", message, allowed=list(allowed), suggestion=hint, complete=True
    )


def custom_error(
    kind: str,
    message: str,
    *,
    allowed: Sequence[str] | None = None,
    suggestion: str | None = None,
    subpath: Loc = (),
    field_errors: Sequence[FieldError] = (),
    complete: bool = True,
) -> PydanticCustomError:
    """Return a pydantic error that :func:`field_errors` turns back into field errors.

    Args:
        kind: the error type, e.g. ``"duplicate_provider"``.
        message: the message, already naming expected and received values (``complete``).
        allowed: the allowed values, when the field is a choice.
        suggestion: the closest allowed value.
        subpath: where below the validated value the problem is (e.g. ``(1, "name")``).
        field_errors: ready field errors with absolute paths (cross-field rules).
        complete: whether ``message`` already names the received value.
    """
    ctx: dict[str, object] = {
        # The message is passed as a context value, not as the template, so braces in
        # user input can never be taken for placeholders.
        "message": message,
        CTX_ALLOWED: list(allowed) if allowed is not None else None,
        CTX_SUGGESTION: suggestion,
        CTX_SUBPATH: tuple(subpath),
        CTX_FIELD_ERRORS: tuple(field_errors),
        CTX_COMPLETE: complete,
    }
    return PydanticCustomError(kind, "{message}", ctx)


def field_errors(
    err: ValidationError | Sequence[ErrorDetails],
    model: type[BaseModel],
    *,
    prefix: Loc = (),
    skip: Collection[str] = (),
) -> list[FieldError]:
    """Translate a pydantic error raised by ``model`` into field errors with wire paths.

    Args:
        err: the error from ``model.model_validate``, or its details (as FastAPI's
            ``RequestValidationError.errors()`` gives them, the ``body`` prefix removed).
        model: the model that was validated (walked to name fields and choices).
        prefix: the wire path of ``model`` inside the whole spec, e.g. ``("storage",)``.
        skip: error types to leave out (the caller reports them another way).
    """
    out: list[FieldError] = []
    details = err.errors(include_url=False) if isinstance(err, ValidationError) else err
    for detail in details:
        if detail["type"] in skip:
            continue
        ctx = detail.get("ctx") or {}
        ready = ctx.get(CTX_FIELD_ERRORS)
        if ready:
            out.extend(error for error in ready if isinstance(error, FieldError))
            continue
        out.append(_one_error(detail, model, prefix))
    return dedupe(out)


# --- internals ---------------------------------------------------------------------------


class _Resolved:
    """Where a pydantic ``loc`` points in a model: the wire path and what is there."""

    def __init__(self) -> None:
        self.parts: list[str | int] = []
        self.parent: type[BaseModel] | None = None
        self.annotation: object = None
        # A field declared ``repr=False`` (a password, a one-time code) is never echoed.
        self.hidden = False


def _one_error(detail: ErrorDetails, model: type[BaseModel], prefix: Loc) -> FieldError:
    ctx = detail.get("ctx") or {}
    loc = tuple(detail["loc"]) + tuple(ctx.get(CTX_SUBPATH) or ())
    where = _resolve(model, loc)
    kind = detail["type"]
    received = detail.get("input")
    allowed: list[str] | None = None
    hint: str | None = None
    parts = [*prefix, *where.parts]

    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else ""
        known = _aliases(where.parent) if where.parent is not None else []
        hint = suggest(name, known)
        message = f"unknown field {name!r}"
        if hint is not None:
            message += f"; did you mean {hint!r}?"
        allowed = known or None
    elif kind in {"union_tag_invalid", "union_tag_not_found"}:
        discriminator = str(ctx.get("discriminator", "'type'")).strip("'\"")
        parts.append(discriminator)
        allowed = _union_tags(where.annotation) or None
        if kind == "union_tag_not_found":
            message = "is required"
        else:
            tag = ctx.get("tag")
            hint = suggest(tag, allowed or [])
            message = f"expected one of {', '.join(allowed or [])}, got {show(tag)}"
            if hint is not None:
                message += f"; did you mean {hint!r}?"
    elif kind == "missing":
        message = "is required"
        allowed = _choices_of(where.annotation)
    else:
        # Our own errors (custom_error) carry their finished message.
        message = str(detail["msg"]) if CTX_COMPLETE in ctx else _message(detail)
        if ctx.get(CTX_ALLOWED) is not None:
            allowed = [str(item) for item in ctx[CTX_ALLOWED]]
        else:
            allowed = _choices_of(where.annotation)
        hint = ctx.get(CTX_SUGGESTION)
        if not ctx.get(CTX_COMPLETE) and not where.hidden and not _is_secret(where.annotation):
            message += f", got {show(received)}"
    return FieldError(
        field=".".join(str(part) for part in parts),
        message=message,
        allowed=allowed,
        suggestion=hint if isinstance(hint, str) else None,
    )


# pydantic's EmailStr wraps email-validator's reason in this prefix.
_EMAIL_PREFIX = "value is not a valid email address: "

_MESSAGES: dict[str, str] = {
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "dict_type": "expected an object",
    "list_type": "expected a list",
    "string_type": "expected text",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "invalid_key": "expected text as the field name",
    "string_unicode": "expected valid unicode text",
}


def _message(detail: ErrorDetails) -> str:
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "less_than_equal": ("at most", "le"),
        "greater_than": ("more than", "gt"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"expected {words} {ctx.get(key)}"
    lengths = {
        "string_too_short": ("at least", "min_length", "characters"),
        "string_too_long": ("at most", "max_length", "characters"),
        "too_short": ("at least", "min_length", "items"),
        "too_long": ("at most", "max_length", "items"),
    }
    if kind in lengths:
        words, key, unit = lengths[kind]
        return f"expected {words} {ctx.get(key)} {unit}"
    text = str(detail["msg"]).removeprefix("Value error, ")
    reason = text.removeprefix(_EMAIL_PREFIX)
    if reason != text:
        return f"expected an email address like 'admin@example.com' ({reason.rstrip('.')})"
    return text[:1].lower() + text[1:]


def _resolve(model: type[BaseModel], loc: Loc) -> _Resolved:
    where = _Resolved()
    annotation: object = model
    for item in loc:
        annotation = _unwrap(annotation)
        if isinstance(item, int):
            where.parts.append(item)
            annotation = _item_type(annotation)
            continue
        members = _model_members(annotation)
        if len(members) > 1:
            tagged = _member_with_tag(members, item)
            if tagged is not None:
                # Discriminated unions put the tag into ``loc``; it is not a wire field.
                annotation = tagged
                continue
        if len(members) == 1:
            where.parent = members[0]
            info = _field(members[0], item)
            if info is not None:
                name, field = info
                where.parts.append(field.alias or name)
                where.hidden = where.hidden or field.repr is False
                annotation = field.annotation
                continue
        where.parts.append(item)
        annotation = None
    where.annotation = annotation
    return where


def _unwrap(annotation: object) -> object:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin in {Union, types.UnionType}:
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _item_type(annotation: object) -> object:
    if get_origin(annotation) in {list, tuple, set, frozenset, Sequence}:
        args = get_args(annotation)
        return args[0] if args else None
    return None


def _model_members(annotation: object) -> list[type[BaseModel]]:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in {Union, types.UnionType}:
        found: list[type[BaseModel]] = []
        for arg in get_args(annotation):
            found.extend(_model_members(arg))
        return found
    return []


def _literal_values(annotation: object) -> list[str]:
    annotation = _unwrap(annotation)
    if get_origin(annotation) is Literal:
        return [str(arg) for arg in get_args(annotation)]
    return []


def _member_with_tag(members: list[type[BaseModel]], tag: str) -> type[BaseModel] | None:
    for member in members:
        for field in member.model_fields.values():
            if tag in _literal_values(field.annotation):
                return member
    return None


def _union_tags(annotation: object) -> list[str]:
    tags: list[str] = []
    for member in _model_members(annotation):
        for field in member.model_fields.values():
            values = _literal_values(field.annotation)
            if len(values) == 1:
                tags.extend(values)
                break
    return tags


def _field(model: type[BaseModel], key: str) -> tuple[str, FieldInfo] | None:
    for name, field in model.model_fields.items():
        if key in {name, field.alias}:
            return name, field
    return None


def _aliases(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _choices_of(annotation: object) -> list[str] | None:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(member.value) for member in annotation]
    values = _literal_values(annotation)
    return values or None


def _is_secret(annotation: object) -> bool:
    annotation = _unwrap(annotation)
    return isinstance(annotation, type) and issubclass(annotation, SecretStr | SecretBytes)


__all__ = [
    "SetupSpecError",
    "choice_error",
    "custom_error",
    "dedupe",
    "field_errors",
    "show",
    "spec_error",
    "suggest",
]

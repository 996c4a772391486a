"""Parse untrusted JSON within the API's caps: size, nesting depth and integer length.

The same caps hold for a request body and for a ``setup --config`` file:

* at most :data:`MAX_BODY_BYTES` bytes;
* arrays and objects nested at most :data:`MAX_JSON_DEPTH` deep, counted on the raw
  text before parsing (a parser would exhaust its recursion first,
  :func:`json_nesting_depth`);
* integers of at most :data:`MAX_INTEGER_DIGITS` digits. Python refuses to convert longer
  digit strings (its int-str conversion limit) with a ``ValueError`` in the middle of
  parsing; :func:`oversized_integer` finds such a number and names its field instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from paulyops.core.errors import ConfigError, FieldError, SpecValidationError

# Default request body limit; routes that take uploads get their own (the web layer's
# ``path_limits``).
MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
# Strings (with escapes) or a bracket: brackets inside strings do not count as nesting.
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
# Python's default int-str conversion limit (sys.int_info.default_max_str_digits); no field
# of PaulyOps needs a fraction of it, and past it json.loads raises ValueError.
MAX_INTEGER_DIGITS = 4300
_LONG_DIGITS = re.compile(rb"\d{%d}" % (MAX_INTEGER_DIGITS + 1))


class _LongInteger:
    """Stands in for an integer too long to convert, so its place can be named."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _LongInteger:
    digits = len(text.lstrip("-"))
    return _LongInteger(digits) if digits > MAX_INTEGER_DIGITS else int(text)


def _path_of(parts: list[str]) -> str:
    return ".".join(parts) if parts else "body"


def oversized_integer(raw: bytes) -> FieldError | None:
    """Return the error of the first integer longer than :data:`MAX_INTEGER_DIGITS`.

    The field is the wire path (``organization.size``, ``items.0``; ``body`` for a bare
    number). Cheap for ordinary bodies: the text is parsed only when it holds a digit run
    that long. Malformed JSON returns ``None`` (the JSON parser reports it).
    """
    if not _LONG_DIGITS.search(raw):
        return None
    try:
        value = json.loads(raw, parse_int=_parse_int)
    except ValueError:
        return None
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, _LongInteger):
            field = _path_of(path)
            return FieldError(
                field,
                f"expected a number of at most {MAX_INTEGER_DIGITS} digits, "
                f"got {item.digits} digits",
            )
        if isinstance(item, dict):
            stack.extend((child, [*path, str(key)]) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((child, [*path, str(i)]) for i, child in reversed(list(enumerate(item))))
    return None


def too_deep_message(max_depth: int) -> str:
    """Return the message for a JSON body nested deeper than ``max_depth``."""
    return f"body: JSON is nested deeper than the allowed {max_depth} levels"


def json_nesting_depth(raw: bytes) -> int:
    """Return the deepest nesting of arrays and objects in a JSON text, without parsing it.

    Parsing first would let a hostile body exhaust the parser's recursion; this only
    counts brackets outside strings.
    """
    if raw.count(b"[") + raw.count(b"{") == 0:
        return 0
    depth = deepest = 0
    for match in _JSON_TOKENS.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def json_depth_ok(value: Any, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether a parsed JSON value nests arrays and objects at most ``max_depth`` deep."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth + 1 > max_depth:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def check_json_body(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise when a raw JSON body nests deeper than ``max_depth``.

    Raises:
        SpecValidationError: on the field ``body``.
    """
    if json_nesting_depth(raw) > max_depth:
        message = too_deep_message(max_depth)
        raise SpecValidationError(message, [FieldError("body", message)])


def parse_json_document(raw: bytes, *, source: str, max_depth: int) -> Any:
    """Parse ``raw`` (a file's bytes) as JSON within the caps above.

    The size is the caller's to check. Messages start with ``source``.

    Args:
        raw: the document.
        source: the file name, for messages.
        max_depth: deepest nesting of arrays and objects allowed.

    Raises:
        ConfigError: nested too deep, or not valid JSON (``source:line:column``).
        SpecValidationError: an integer too long, naming its field.
    """
    if json_nesting_depth(raw) > max_depth:
        raise ConfigError(f"{source}: JSON is nested deeper than the allowed {max_depth} levels")
    too_long = oversized_integer(raw)
    if too_long is not None:
        raise SpecValidationError(f"{source}: {too_long.field}: {too_long.message}", [too_long])
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{source}:{err.lineno}:{err.colno}: not valid JSON: {err.msg}") from None
    except (ValueError, RecursionError) as err:  # e.g. bytes that are not UTF-8
        raise ConfigError(f"{source}: not valid JSON ({type(err).__name__})") from None


__all__ = [
    "MAX_BODY_BYTES",
    "MAX_INTEGER_DIGITS",
    "MAX_JSON_DEPTH",
    "check_json_body",
    "json_depth_ok",
    "json_nesting_depth",
    "oversized_integer",
    "parse_json_document",
    "too_deep_message",
]

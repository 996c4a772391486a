"""Make user-supplied text safe: allowlisted HTML, plain text, and file names.

:func:`sanitize_html` keeps a small set of formatting tags (nh3, the Rust ``ammonia``
sanitizer): no scripts, styles, event handlers, images or embedded content, and links
only to ``http``, ``https`` and ``mailto`` addresses, opened with
``rel="noopener noreferrer"``. Its output may be rendered unescaped.

:func:`plain_text` removes all markup and decodes entities. Its output is *text*: a
template must still escape it (Jinja does by default).

:func:`safe_filename` turns an uploaded file's name into one that is safe to store and
to show: no directories, no control characters, no hidden or reserved names.

.. versionadded:: 0.1
"""

from __future__ import annotations

import html
import re
import unicodedata
from pathlib import PurePosixPath

import nh3

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "p",
        "br",
        "strong",
        "em",
        "ul",
        "ol",
        "li",
        "a",
        "code",
        "pre",
        "blockquote",
        "h3",
        "h4",
        "h5",
        "h6",
    }
)
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {"a": {"href", "title"}}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})
# Tags whose *content* goes too: dropping only the tag would leave script source or CSS
# as visible text.
CLEAN_CONTENT_TAGS: frozenset[str] = frozenset(
    {"script", "style", "template", "iframe", "object", "embed", "noscript", "textarea"}
)
# Longest stored file name in bytes (the common file-system limit).
MAX_FILENAME_BYTES = 255
# Windows device names that cannot be file names on a Windows share, with any extension.
_RESERVED_NAMES = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{n}" for n in range(1, 10)}
    | {f"lpt{n}" for n in range(1, 10)}
)
_UNSAFE_FILENAME_CHARS = re.compile(r"[^\w.\- ()]+")
_REPEATS = re.compile(r"([_ ])\1+")
# plain_text decodes entities and strips again until nothing changes; inputs nested
# deeper than this (entity-encoded markup inside entity-encoded markup ...) lose their
# remaining "<", ">" and "&" instead.
_MAX_PLAIN_PASSES = 8
# sanitize_html re-sanitizes until stable; real input settles in one or two passes.
_MAX_HTML_PASSES = 4

_html_cleaner = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    clean_content_tags=set(CLEAN_CONTENT_TAGS),
    attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
    url_schemes=set(URL_SCHEMES),
    # Relative links would resolve against PaulyOps itself (e.g. a state-changing GET).
    url_relative="deny",
    link_rel="noopener noreferrer",
    strip_comments=True,
)
_text_cleaner = nh3.Cleaner(
    tags=set(),
    clean_content_tags=set(CLEAN_CONTENT_TAGS),
    attributes={},
    strip_comments=True,
)


def sanitize_html(text: str) -> str:
    """Return ``text`` with only the allowlisted tags, attributes and link schemes.

    The result is stable: sanitizing it again changes nothing. (One pass is not always:
    dropping a tag can leave a nesting, such as ``<h3>`` in ``<h3>``, that the next parse
    rearranges, so passes repeat until nothing changes.)
    """
    current = str(_html_cleaner.clean(text))
    for _ in range(_MAX_HTML_PASSES):
        again = str(_html_cleaner.clean(current))
        if again == current:
            return current
        current = again
    # Pathological nesting that keeps moving: keep its text only, which is stable.
    return str(_html_cleaner.clean(html.escape(plain_text(text), quote=False)))


def plain_text(text: str) -> str:
    """Return ``text`` without any markup, entities decoded (escape it when rendering)."""
    current = text
    for _ in range(_MAX_PLAIN_PASSES):
        stripped = html.unescape(str(_text_cleaner.clean(current)))
        if stripped == current:
            return stripped
        current = stripped
    # Still changing: drop the characters markup and entities are made of, so the result
    # is stable (idempotent) and holds no tag.
    return re.sub(r"[<>&]", "", current)


def safe_filename(name: str, *, default: str = "file") -> str:
    """Return a safe base name for ``name``: no path, no control or odd characters.

    Keeps letters (any script), digits, spaces, ``.``, ``-``, ``_`` and parentheses;
    drops leading dots (no hidden files, no ``..``); prefixes Windows device names
    (``CON``, ``LPT1`` ...); keeps the extension when shortening to 255 bytes.

    Args:
        name: the name as sent by a browser or client.
        default: the name to use when nothing safe is left.
    """
    name = unicodedata.normalize("NFKC", name)
    name = name.replace("\\", "/")
    name = PurePosixPath(name).name if "/" in name else name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_FILENAME_CHARS.sub("_", name)
    name = _REPEATS.sub(r"\1", name)
    name = name.strip(" ._")
    if not name:
        name = default
    if name.lower().split(".")[0].rstrip() in _RESERVED_NAMES:
        name = "_" + name
    return _shorten(name)


def _shorten(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_FILENAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, dot, ext = name, "", ""
    budget = MAX_FILENAME_BYTES - len((dot + ext).encode("utf-8"))
    encoded = stem.encode("utf-8")[:budget]
    shortened = encoded.decode("utf-8", "ignore").rstrip(" ._")
    return (shortened or "file") + dot + ext


__all__ = [
    "ALLOWED_ATTRIBUTES",
    "ALLOWED_TAGS",
    "URL_SCHEMES",
    "plain_text",
    "safe_filename",
    "sanitize_html",
]

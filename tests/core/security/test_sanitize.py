"""Sanitizing user HTML, plain text and file names."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from paulyops.core.security.sanitize import plain_text, safe_filename, sanitize_html


class _Tags(HTMLParser):
    """Collect every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def _tags(markup: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    return parser.tags


_CONTROL = re.compile(r"[\x00-\x20\x7f]+")

# Pieces attackers use, for hypothesis to combine.
_PIECES = [
    "<script>",
    "</script>",
    "<SCRIPT SRC=//x>",
    "<scr<script>ipt>",
    "<img src=x onerror=alert(1)>",
    "<a href='javascript:alert(1)'>",
    '<a href="JaVaScRiPt:alert(1)">',
    '<a href="jav&#x09;ascript:alert(1)">',
    '<a href=" javascript:x">',
    "<a href=//evil.example>",
    '<a href="https://ok.example/?q=1&amp;r=2" title="t" onclick="x">',
    '<a href="mailto:a@b.example">',
    "</a>",
    "<p onmouseover=x>",
    "<svg onload=alert(1)>",
    "<iframe src=x>",
    "<style>p{}</style>",
    "<!-- <script> -->",
    "<h1>",
    "<h3>",
    "<strong>",
    "<em>",
    "<ul><li>",
    "<pre><code>",
    "<blockquote>",
    "&lt;script&gt;",
    "&amp;lt;script&amp;gt;",
    "&#60;script&#62;",
    "<",
    ">",
    "&",
    '"',
    "'",
    "=",
    " ",
    "on",
    "javascript:",
    "text",
    "\x00",
    "\n",
]
html_fragments = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(_PIECES), max_size=25).map("".join),
    st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=5)), max_size=25).map("".join),
)


# --- sanitize_html -----------------------------------------------------------------------


def test_sanitize_keeps_the_allowed_formatting() -> None:
    """Paragraphs, emphasis, lists, code, quotes and h3-h6 survive unchanged."""
    markup = (
        "<p>a<br><strong>b</strong> <em>c</em></p><ul><li>d</li></ul><ol><li>e</li></ol>"
        "<pre><code>f</code></pre><blockquote>g</blockquote><h3>h</h3><h6>i</h6>"
    )
    assert sanitize_html(markup) == markup


def test_sanitize_removes_scripts_handlers_and_unsafe_links() -> None:
    """Scripts (with content), event handlers, images and non-http(s)/mailto links go."""
    dirty = (
        '<p onclick="x()">hi<script>alert(1)</script><img src=x onerror=y>'
        '<a href="javascript:alert(1)">j</a><a href="/admin/delete">r</a>'
        '<a href="data:text/html,x">d</a><h1>big</h1><style>p{}</style></p>'
    )
    assert sanitize_html(dirty) == (
        # <h1> closes the open <p> (HTML parsing rules); its text stays, the tag goes.
        '<p>hi<a rel="noopener noreferrer">j</a><a rel="noopener noreferrer">r</a>'
        '<a rel="noopener noreferrer">d</a></p>big<p></p>'
    )


def test_sanitize_keeps_safe_links_with_noopener() -> None:
    """http, https and mailto links keep href and title, and get rel=noopener noreferrer."""
    out = sanitize_html(
        '<a href="https://example.com/x?a=1&amp;b=2" title="T" target="_blank" '
        'rel="opener">x</a> <a href="mailto:a@example.com">m</a>'
    )
    assert out == (
        '<a href="https://example.com/x?a=1&amp;b=2" title="T" rel="noopener noreferrer">x</a>'
        ' <a href="mailto:a@example.com" rel="noopener noreferrer">m</a>'
    )


@settings(max_examples=500, deadline=None)
@given(html_fragments)
@example("<scr<script>ipt>alert(1)</script>")
@example('<a href="&#106;avascript:alert(1)">x</a>')
@example("<h3><table><h3>x")  # dropping <table> leaves <h3> in <h3>; a re-parse splits it
def test_sanitized_html_is_safe_and_stable(text: str) -> None:
    """No <script, no on* attribute, no javascript: link; sanitizing again changes nothing."""
    out = sanitize_html(text)
    assert "<script" not in out.lower()
    for tag, attrs in _tags(out):
        assert tag in {"p", "br", "strong", "em", "ul", "ol", "li", "a", "code", "pre"} | {
            "blockquote",
            "h3",
            "h4",
            "h5",
            "h6",
        }
        for name, value in attrs:
            assert not name.lower().startswith("on")
            if name == "href":
                url = _CONTROL.sub("", html.unescape(value or "")).lower()
                assert url.startswith(("http:", "https:", "mailto:")), url
    assert sanitize_html(out) == out


# --- plain_text --------------------------------------------------------------------------


def test_plain_text_strips_markup_and_decodes_entities() -> None:
    """Tags go (script and style with their content); entities become characters."""
    assert plain_text("<p>Tom &amp; <b>Jerry</b><script>x()</script></p> 1 &lt; 2") == (
        "Tom & Jerry 1 < 2"
    )
    assert plain_text("&lt;script&gt;alert(1)&lt;/script&gt;ok") == "ok"


@settings(max_examples=300, deadline=None)
@given(html_fragments)
def test_plain_text_holds_no_markup_and_is_stable(text: str) -> None:
    """The result has no tag, comment or <script, and stripping again changes nothing."""
    out = plain_text(text)
    assert "<script" not in out.lower()
    assert not re.search(r"<[A-Za-z!/?]", out)
    assert plain_text(out) == out


# --- safe_filename -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\invoice 2024.pdf", "invoice 2024.pdf"),
        (".htaccess", "htaccess"),
        ("..", "file"),
        ("", "file"),
        ("CON", "_CON"),
        ("lpt1.txt", "_lpt1.txt"),
        ("r\u00e9sum\u00e9 (1).pdf", "r\u00e9sum\u00e9 (1).pdf"),
        ("evil\u202egpj.exe", "evilgpj.exe"),
        ("a<b>:c|d?*.txt", "a_b_c_d_.txt"),
        ("tab\there\nnew.txt", "tabherenew.txt"),
    ],
)
def test_safe_filename_examples(name: str, expected: str) -> None:
    """Paths, hidden and reserved names, control and shell characters are neutralized."""
    assert safe_filename(name) == expected


def test_safe_filename_shortens_but_keeps_the_extension() -> None:
    """Names over 255 bytes are cut in the stem, never in the extension."""
    out = safe_filename("\u00e9" * 300 + ".pdf")
    assert out.endswith(".pdf")
    assert len(out.encode()) <= 255


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_safe_filename_is_always_a_plain_stable_name(name: str) -> None:
    """Never empty, no separator or control character, no leading dot, <= 255 bytes, stable."""
    out = safe_filename(name)
    assert out
    assert "/" not in out
    assert "\\" not in out
    assert "\x00" not in out
    assert not out.startswith((".", " "))
    assert all(ch.isprintable() for ch in out)
    assert len(out.encode()) <= 255
    assert safe_filename(out) == out

"""``paulyops package init``: a new agent's source folder that builds, verifies and tests.

The scaffold is a complete agent against the ``paulyops.sdk`` entry contract: a manifest,
the entry module and a test of its own (``tests/`` is left out of the built package).
"""

from __future__ import annotations

from pathlib import Path

from paulyops import __version__
from paulyops.core.errors import ConflictError, FieldError
from paulyops.services.marketplace.errors import ManifestError
from paulyops.services.marketplace.manifest import AGENT_ID, RESERVED_PREFIX, parse_manifest

_MANIFEST = """\
# The agent's manifest: what it is, what it may do, where it runs.
# Reference: docs/agents/packages.md; JSON Schema: `paulyops package schema`.
id = "{id}"
name = "{title}"
version = "0.1.0"
description = "Counts the lines and words of text files."
publisher = "{publisher}"
license = "MIT"
entrypoint = "agent:handle"
industries = []
consumes = []
capabilities = []

[compatibility]
paulyops = "{paulyops_range}"
python = ">=3.11"
platforms = ["linux"]

[handles]
mediaTypes = ["text/plain", "text/markdown"]
documentClasses = ["other"]

[settings]
type = "object"

[settings.properties.max_words]
type = "integer"
description = "Report files with more words than this as long."
default = 10000
"""

_AGENT = '''\
"""{title}: counts the lines and words of a text file."""

from paulyops.sdk import Context, Item, Result


def handle(ctx: Context, item: Item) -> Result:
    """Return the line and word count of one text input."""
    text = item.read_text()
    words = len(text.split())
    limit = int(ctx.settings.get("max_words", 10000))
    return Result(
        data={{"lines": len(text.splitlines()), "words": words, "isLong": words > limit}}
    )
'''

_CONFTEST = '''\
"""Make the agent's modules importable by its tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
'''

_TEST = '''\
"""Tests of the agent, run in-process through the SDK."""

from pathlib import Path

from agent import handle

from paulyops.sdk import Context, Item


def test_handle_counts_lines_and_words(tmp_path: Path) -> None:
    """A text input gets its line and word count back as data."""
    source = tmp_path / "note.txt"
    source.write_text("hello world\\nsecond line here\\n")
    ctx = Context(agent_id="{id}", settings={{"max_words": 3}}, scratch=tmp_path,
                  outputs=tmp_path / "outputs")
    item = Item(path=source, name="note.txt", media_type="text/plain",
                size=source.stat().st_size)
    result = handle(ctx, item)
    assert result.data == {{"lines": 2, "words": 5, "isLong": True}}
'''

_README = """\
# {title} ({id})

    paulyops package build .          # writes {id}-0.1.0.pauly
    paulyops package verify {id}-0.1.0.pauly --allow-unsigned
    python -m pytest tests            # the agent's own tests
"""


def _paulyops_range() -> str:
    major, minor = (int(part) for part in __version__.split(".")[:2])
    upper = f"{major + 1}" if major else f"0.{minor + 1}" if minor else "1"
    return f">={major}.{minor},<{upper}"


def scaffold_agent(agent_id: str, dest: Path) -> list[Path]:
    """Write a new agent's source folder at ``dest``; return the files written.

    Raises:
        ManifestError: ``agent_id`` is not ``publisher.name`` or uses the reserved prefix.
        ConflictError: ``dest`` exists and is not empty.
    """
    if not AGENT_ID.fullmatch(agent_id) or agent_id.startswith(RESERVED_PREFIX):
        message = (
            f"the prefix {RESERVED_PREFIX!r} is reserved for bundled agents"
            if agent_id.startswith(RESERVED_PREFIX)
            else f"expected 'publisher.name' in lowercase ASCII, got {agent_id!r}"
        )
        raise ManifestError(f"id: {message}", [FieldError(field="id", message=message)])
    if dest.exists() and any(dest.iterdir()):
        raise ConflictError(f"{dest}: exists and is not empty; pick another --dir")
    publisher, _, short = agent_id.partition(".")
    values = {
        "id": agent_id,
        "publisher": publisher,
        "title": short.replace("-", " ").capitalize(),
        "paulyops_range": _paulyops_range(),
    }
    files = {
        "manifest.toml": _MANIFEST,
        "agent.py": _AGENT,
        "README.md": _README,
        "tests/conftest.py": _CONFTEST,
        "tests/test_agent.py": _TEST,
    }
    rendered = {name: text.format(**values) for name, text in files.items()}
    parse_manifest(rendered["manifest.toml"])  # the scaffold must always be valid
    written = []
    for name, text in rendered.items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


__all__ = ["scaffold_agent"]

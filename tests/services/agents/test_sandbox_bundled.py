"""The bundled file-processor runs once through the real sandbox."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from paulyops.services.agents.sandbox import SandboxConfig
from paulyops.services.agents.unpack import unpack
from paulyops.services.marketplace.build import build_package

from .conftest import make_runner

# Slot uids of the tests' range are shared: checks that no process of that range is left
# behind hold only when no other sandbox test runs at the same time.
pytestmark = pytest.mark.xdist_group("sandbox-uids")

BUNDLED = Path(__file__).resolve().parents[3] / "src" / "paulyops" / "bundled" / "file_processor"


def test_file_processor_runs_in_the_sandbox(
    bwrap_config: SandboxConfig, build_agent: Callable[..., Path], sandbox_root: Path
) -> None:
    """A CSV goes in; its media type, columns and text come back as a v1 result."""
    data = build_package(BUNDLED)
    package = unpack(data, hashlib.sha256(data).hexdigest(), sandbox_root / "packages")
    run = make_runner(bwrap_config, build_agent, sandbox_root)
    outcome = run(
        "",
        package=package,
        content=b"name,amount\nalpha,1\nbeta,2\n",
        name="totals.csv",
        trusted=True,
        settings={"maxTextChars": 1000},
    )
    assert outcome.error is None, outcome.error
    item = outcome.items[0]
    assert item.ok, item.error
    assert item.result is not None
    result = item.result["data"]
    assert result["mediaType"] == "text/csv"
    assert "alpha" in result["text"]


CLASSIFIER = BUNDLED.parent / "document_classifier"


def test_document_classifier_runs_in_the_sandbox(
    bwrap_config: SandboxConfig, build_agent: Callable[..., Path], sandbox_root: Path
) -> None:
    """A purchase order's text goes in; its class, confidence and top-2 come back."""
    data = build_package(CLASSIFIER)
    package = unpack(data, hashlib.sha256(data).hexdigest(), sandbox_root / "packages")
    run = make_runner(bwrap_config, build_agent, sandbox_root)
    outcome = run(
        "",
        package=package,
        content=b"PURCHASE ORDER\nPO number 4711\nShip to: warehouse 3\nQuantity ordered: 12\n",
        name="po.txt",
        trusted=True,
    )
    assert outcome.error is None, outcome.error
    item = outcome.items[0]
    assert item.ok, item.error
    assert item.result is not None
    result = item.result["data"]
    assert result["label"] == "purchase-order"
    assert next(t["label"] for t in result["top2"]) == "purchase-order"
    assert item.result["confidence"] == result["confidence"]

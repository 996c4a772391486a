"""The agent SDK: imports nothing else of PaulyOps; results have the protocol v1 form."""

from __future__ import annotations

import ast
from pathlib import Path

import paulyops.sdk as sdk


def test_the_sdk_imports_only_the_standard_library() -> None:
    """Agent code gets nothing of PaulyOps through the SDK, and needs no third-party library."""
    tree = ast.parse(Path(sdk.__file__).read_text(encoding="utf-8"))
    modules = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ] + [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    allowed = {"__future__", "logging", "collections.abc", "dataclasses", "pathlib", "typing"}
    assert set(modules) <= allowed, modules


def test_a_result_has_the_typed_parts_of_protocol_v1() -> None:
    """to_wire names every part in camelCase and keeps charts as data."""
    result = sdk.Result(
        data={"total": 3},
        alerts=[sdk.Alert("warning", "late invoice")],
        series=[sdk.SeriesPoint("temp", "2026-01-01T00:00:00Z", 21.5, unit="C")],
        charts=[sdk.Chart("bar", "Totals", ["a"], [1.0])],
        report_section="<p>ok</p>",
    )
    wire = result.to_wire()
    assert wire["protocol"] == 1
    assert set(wire) == {
        "protocol",
        "data",
        "files",
        "alerts",
        "series",
        "charts",
        "reportSection",
        "confidence",
    }
    assert wire["charts"][0] == {"kind": "bar", "title": "Totals", "labels": ["a"], "values": [1.0]}

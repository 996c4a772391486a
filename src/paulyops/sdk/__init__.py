"""The agent entry contract (protocol v1): ``handle(ctx, item) -> Result``.

Agent code imports only this module (and the libraries its manifest declares); it imports
nothing else of PaulyOps, and nothing outside the standard library, so an agent runs in
its sandbox with nothing but its own package and the platform's interpreter.

The host calls the manifest's ``entrypoint`` once per input with a :class:`Context` (the
granted settings, earlier results it may read, its scratch and outputs folders) and an
:class:`Item` (the input file, staged read-only, and its metadata). The agent returns a
:class:`Result` of typed parts; the host stores each part (it never lets the agent touch
the database, storage or network itself).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PROTOCOL_VERSION = 1

Severity = Literal["info", "warning", "critical"]
ChartKind = Literal["line", "bar", "pie", "table"]


@dataclass(frozen=True, slots=True)
class Item:
    """One input: a file staged read-only (0444) and what the host knows about it."""

    path: Path
    name: str
    media_type: str
    size: int
    document_class: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def read_bytes(self) -> bytes:
        """Return the input's content."""
        return self.path.read_bytes()

    def read_text(self, encoding: str = "utf-8") -> str:
        """Return the input's content as text."""
        return self.path.read_text(encoding=encoding)


@dataclass(frozen=True, slots=True)
class PriorResult:
    """An earlier result of the same organization (given only with ``results:read``)."""

    agent_id: str
    kind: str
    created_at: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Context:
    """What a run is given besides its input."""

    agent_id: str
    settings: Mapping[str, Any]
    scratch: Path
    outputs: Path
    results: Sequence[PriorResult] = ()
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("agent"))


@dataclass(frozen=True, slots=True)
class OutputFile:
    """A file the agent wrote under ``ctx.outputs`` for the host to store (``outputs:write``)."""

    path: str
    media_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert for the organization's people (``alerts:raise``)."""

    severity: Severity
    message: str
    code: str | None = None


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One measurement over time (``series:write``); ``at`` is an ISO 8601 timestamp."""

    series: str
    at: str
    value: float
    unit: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chart:
    """Chart data; the server draws every chart (agents never send markup)."""

    kind: ChartKind
    title: str
    labels: Sequence[str]
    values: Sequence[float]


@dataclass(slots=True)
class Result:
    """What a run returns: typed parts, each optional."""

    data: Mapping[str, Any] | None = None
    files: list[OutputFile] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    series: list[SeriesPoint] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    report_section: str | None = None
    confidence: float | None = None

    def to_wire(self) -> dict[str, Any]:
        """Return the protocol v1 JSON form (camelCase keys)."""
        return {
            "protocol": PROTOCOL_VERSION,
            "data": dict(self.data) if self.data is not None else None,
            "files": [{"path": f.path, "mediaType": f.media_type} for f in self.files],
            "alerts": [
                {"severity": a.severity, "message": a.message, "code": a.code} for a in self.alerts
            ],
            "series": [
                {
                    "series": p.series,
                    "at": p.at,
                    "value": p.value,
                    "unit": p.unit,
                    "labels": dict(p.labels),
                }
                for p in self.series
            ],
            "charts": [
                {
                    "kind": c.kind,
                    "title": c.title,
                    "labels": list(c.labels),
                    "values": list(c.values),
                }
                for c in self.charts
            ],
            "reportSection": self.report_section,
            "confidence": self.confidence,
        }


Handler = Callable[[Context, Item], Result]

__all__ = [
    "PROTOCOL_VERSION",
    "Alert",
    "Chart",
    "Context",
    "Handler",
    "Item",
    "OutputFile",
    "PriorResult",
    "Result",
    "SeriesPoint",
]

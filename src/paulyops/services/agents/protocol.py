"""Protocol v1, host side: the request a sandboxed agent reads and the lines it writes.

The host writes one :class:`BatchRequest` as JSON on the agent's stdin; the agent (the
bootstrap in ``sandbox/bootstrap.py``) answers with one :class:`ItemLine` per item on
stdout, in the request's order, and logs on stderr. Everything read back is validated
here: a line that is not JSON, does not match the models, names an unexpected job or
comes out of order is a :class:`ProtocolViolationError`, which fails the batch with that
reason. A result line longer than :data:`MAX_LINE_BYTES` fails only its item (the rest
of the line is discarded unread). ``reportSection`` is sanitized with nh3 on the way in.

The wire format is documented in ``docs/agents/protocol.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from paulyops.core.errors import SandboxError
from paulyops.core.security.sanitize import sanitize_html

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1024 * 1024
"""One item's result line; longer fails that item (``result larger than 1 MiB``)."""
MAX_STDOUT_BYTES = 32 * 1024 * 1024
"""Everything a batch may write on stdout; more is a protocol violation."""
MAX_ERROR_CHARS = 2000
MAX_PARTS = 1000


class ProtocolViolationError(SandboxError):
    """The agent wrote something protocol v1 does not allow; the batch fails."""


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


# --- the request -------------------------------------------------------------------------


class RequestItem(_Wire):
    """One input as the agent sees it (paths are inside the sandbox)."""

    job_id: str
    attempt: int = Field(ge=1)
    path: str
    outputs_dir: str
    name: str
    media_type: str
    size: int = Field(ge=0)
    document_class: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class BatchRequest(_Wire):
    """What the host writes on the agent's stdin."""

    protocol: Literal[1] = 1
    agent_id: str
    version: str
    entrypoint: str
    lib_dir: str
    package_dir: str
    scratch_dir: str
    settings: dict[str, Any] = Field(default_factory=dict)
    context: list[dict[str, Any]] = Field(default_factory=list)
    items: list[RequestItem]
    limits: dict[str, int] = Field(default_factory=dict)
    confine: dict[str, Any] | None = None

    def encode(self) -> bytes:
        """Return the request as UTF-8 JSON."""
        return self.model_dump_json(by_alias=True).encode()


# --- the results ---------------------------------------------------------------------------


class FilePart(_Wire):
    """A file the agent wrote under its outputs folder."""

    path: str = Field(min_length=1, max_length=255)
    media_type: str = Field("application/octet-stream", max_length=255)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = value.split("/")
        if value.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in value:
            raise ValueError(f"expected a relative path inside outputs/, got {value!r}")
        return value


class AlertPart(_Wire):
    """An alert for the organization's people."""

    severity: Literal["info", "warning", "critical"]
    message: str = Field(min_length=1, max_length=2000)
    code: str | None = Field(None, max_length=100)


class SeriesPart(_Wire):
    """One measurement over time."""

    series: str = Field(min_length=1, max_length=200)
    at: str
    value: float
    unit: str | None = Field(None, max_length=50)
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)

    @field_validator("at")
    @classmethod
    def _iso(cls, value: str) -> str:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value


class ChartPart(_Wire):
    """Chart data (the server draws it)."""

    kind: Literal["line", "bar", "pie", "table"]
    title: str = Field(max_length=200)
    labels: list[str] = Field(max_length=MAX_PARTS)
    values: list[float] = Field(max_length=MAX_PARTS)

    @model_validator(mode="after")
    def _same_length(self) -> ChartPart:
        if len(self.labels) != len(self.values):
            raise ValueError("labels and values must have the same length")
        return self


class ResultWire(_Wire):
    """A result: typed parts, each optional."""

    protocol: Literal[1] = 1
    data: dict[str, Any] | None = None
    files: list[FilePart] = Field(default_factory=list, max_length=MAX_PARTS)
    alerts: list[AlertPart] = Field(default_factory=list, max_length=MAX_PARTS)
    series: list[SeriesPart] = Field(default_factory=list, max_length=MAX_PARTS * 10)
    charts: list[ChartPart] = Field(default_factory=list, max_length=100)
    report_section: str | None = Field(None, max_length=200_000)
    confidence: float | None = Field(None, ge=0.0, le=1.0)

    @field_validator("report_section")
    @classmethod
    def _sanitize(cls, value: str | None) -> str | None:
        return None if value is None else sanitize_html(value)


class ItemLine(_Wire):
    """One line of the agent's stdout: the outcome of one item."""

    protocol: Literal[1]
    job_id: str
    ok: bool
    result: ResultWire | None = None
    error: str | None = Field(None, max_length=MAX_ERROR_CHARS * 2)
    duration_ms: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _outcome(self) -> ItemLine:
        if self.ok and self.result is None:
            raise ValueError("an ok line needs a result")
        if not self.ok and not self.error:
            raise ValueError("a failed line needs an error")
        return self


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "line"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_line(raw: bytes, *, expected_job: str) -> ItemLine:
    """Validate one stdout line of the agent.

    Args:
        raw: the line without its newline.
        expected_job: the job id the next line must name (lines come in request order).

    Raises:
        ProtocolViolationError: not JSON, not a v1 item line, or not the expected job.
    """
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolViolationError(
            f"protocol violation: stdout line is not JSON ({raw[:80]!r})"
        ) from None
    if not isinstance(value, dict):
        raise ProtocolViolationError("protocol violation: stdout line is not a JSON object")
    try:
        line = ItemLine.model_validate(value)
    except ValidationError as err:
        raise ProtocolViolationError(f"protocol violation: {_describe(err)}") from None
    if line.job_id != expected_job:
        raise ProtocolViolationError(
            f"protocol violation: expected the result of job {expected_job!r}, "
            f"got {line.job_id[:80]!r}"
        )
    return line


def result_dict(result: ResultWire) -> dict[str, Any]:
    """Return a validated result in its wire form (camelCase keys)."""
    return result.model_dump(by_alias=True, mode="json")


def request_items(items: Sequence[Mapping[str, Any]]) -> list[RequestItem]:
    """Validate request items built by the host (a programming error fails loudly)."""
    return [RequestItem.model_validate(item) for item in items]


__all__ = [
    "MAX_LINE_BYTES",
    "MAX_STDOUT_BYTES",
    "PROTOCOL_VERSION",
    "AlertPart",
    "BatchRequest",
    "ChartPart",
    "FilePart",
    "ItemLine",
    "ProtocolViolationError",
    "RequestItem",
    "ResultWire",
    "SeriesPart",
    "parse_line",
    "request_items",
    "result_dict",
]

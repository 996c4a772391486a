"""Export: sign a checkpoint of each chain, then stream its rows as JSON lines or CSV.

Each exported record holds :data:`~paulyops.services.audit.chain.EXPORT_COLUMNS`, so
anyone can recompute ``row_hash`` from the other fields and follow ``prev_hash``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TextIO, get_args

from sqlalchemy import select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditCheckpoint, AuditLog
from paulyops.core.errors import FieldError, SpecValidationError
from paulyops.services.audit.chain import (
    _ROW_COLUMNS,
    EXPORT_COLUMNS,
    STREAM_BATCH,
    RowValues,
    _dumps,
    _require_aware,
    format_timestamp,
)
from paulyops.services.audit.checkpoints import SigningKeySource, _checkpoint_chains

ExportFormat = Literal["jsonl", "csv"]


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What :func:`export` wrote: the row count and the checkpoint that anchors each chain."""

    rows: int
    checkpoints: list[AuditCheckpoint]


def export_record(values: RowValues) -> dict[str, Any]:
    """Return a row as exported: :data:`EXPORT_COLUMNS`, ``created_at`` as in the hash."""
    doc = {name: values[name] for name in EXPORT_COLUMNS}
    doc["created_at"] = format_timestamp(values["created_at"])
    return doc


def export(
    db: Database,
    key: SigningKeySource,
    *,
    chain: str | None = None,
    since: datetime | None = None,
    fmt: ExportFormat = "jsonl",
    out: TextIO,
) -> ExportResult:
    """Sign a checkpoint of each chain, then stream its rows up to that head to ``out``.

    ``jsonl`` writes one JSON object per row; ``csv`` a header and one line per row, with
    ``changes`` as JSON. Either way each record holds :data:`EXPORT_COLUMNS`, so anyone can
    recompute ``row_hash`` from the other fields and follow ``prev_hash``.

    Args:
        db: the database.
        key: the instance key (settings or seed) that signs the checkpoints.
        chain: one chain; default every chain.
        since: only rows created at or after this (aware) time.
        fmt: ``jsonl`` or ``csv``.
        out: a text stream (open CSV files with ``newline=""``).

    Raises:
        NotFoundError: ``chain`` was given and has no rows.
        SpecValidationError: unknown ``fmt`` or a naive ``since``.
    """
    if fmt not in get_args(ExportFormat):
        raise SpecValidationError(
            f"format: expected 'jsonl' or 'csv', got {fmt!r}",
            [FieldError("format", "unknown export format", allowed=list(get_args(ExportFormat)))],
        )
    if since is not None:
        since = _require_aware(since, "since")
    anchors = _checkpoint_chains(db, key, chain, kind="export")
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_COLUMNS)
    count = 0
    with db.session() as session:
        for cp in anchors:
            stmt = (
                select(*_ROW_COLUMNS)
                .where(AuditLog.chain == cp.chain, AuditLog.seq <= cp.seq)
                .order_by(AuditLog.seq)
                .execution_options(yield_per=STREAM_BATCH)
            )
            if since is not None:
                stmt = stmt.where(AuditLog.created_at >= since)
            for row in session.execute(stmt).mappings():
                doc = export_record(row)
                if writer is None:
                    out.write(_dumps(doc) + "\n")
                else:
                    doc["changes"] = _dumps(doc["changes"])
                    writer.writerow(["" if doc[c] is None else doc[c] for c in EXPORT_COLUMNS])
                count += 1
    return ExportResult(rows=count, checkpoints=anchors)


__all__ = ["ExportFormat", "ExportResult", "export", "export_record"]

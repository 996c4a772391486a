"""The append-only, hash-chained audit log: record, checkpoint, verify, export, purge.

Every state-changing service call appends one :class:`~paulyops.core.db.models.AuditLog`
row to its organization's chain, or to :data:`~paulyops.core.db.models.INSTANCE_CHAIN` for
events with no organization. Editing, deleting, inserting or reordering a row breaks the
chain where it happened; signed checkpoints stop a writer who recomputes every hash.

One module per concept, every public name re-exported here:

* :mod:`.chain` — a row's canonical form and hash, appending (:func:`record`,
  :func:`append`), the chains there are;
* :mod:`.checkpoints` — signing a chain's head with the instance key;
* :mod:`.verification` — :func:`verify`, its reports and diagnoses;
* :mod:`.exports` — :func:`export` as JSON lines or CSV;
* :mod:`.retention` — :func:`purge`, the retention purge;
* :mod:`.browse` — reading the log for display (filtered pages, chain look-up).
"""

from __future__ import annotations

from paulyops.services.audit.browse import (
    ActorLabel,
    AuditEntry,
    AuditFilter,
    AuditPage,
    chain_of,
    describe_actors,
    has_rows,
    list_entries,
    recent_entries,
)
from paulyops.services.audit.chain import (
    EXPORT_COLUMNS,
    GENESIS_HASH,
    HASHED_COLUMNS,
    append,
    canonical_row,
    compute_row_hash,
    format_timestamp,
    list_chains,
    record,
)
from paulyops.services.audit.checkpoints import (
    CHECKPOINT_DOMAIN,
    CheckpointKind,
    SigningKeySource,
    anchor_chains,
    checkpoint,
    checkpoint_all,
    checkpoint_key,
    checkpoint_message,
    checkpoint_unanchored,
    signer_key_id,
    signing_key,
    unanchored_chains,
    verifying_key,
    write_checkpoint,
)
from paulyops.services.audit.exports import ExportFormat, ExportResult, export, export_record
from paulyops.services.audit.retention import PurgeResult, purge
from paulyops.services.audit.verification import (
    ChainReport,
    Problem,
    ProblemKind,
    VerifyReport,
    verify,
)

__all__ = [
    "CHECKPOINT_DOMAIN",
    "EXPORT_COLUMNS",
    "GENESIS_HASH",
    "HASHED_COLUMNS",
    "ActorLabel",
    "AuditEntry",
    "AuditFilter",
    "AuditPage",
    "ChainReport",
    "CheckpointKind",
    "ExportFormat",
    "ExportResult",
    "Problem",
    "ProblemKind",
    "PurgeResult",
    "SigningKeySource",
    "VerifyReport",
    "anchor_chains",
    "append",
    "canonical_row",
    "chain_of",
    "checkpoint",
    "checkpoint_all",
    "checkpoint_key",
    "checkpoint_message",
    "checkpoint_unanchored",
    "compute_row_hash",
    "describe_actors",
    "export",
    "export_record",
    "format_timestamp",
    "has_rows",
    "list_chains",
    "list_entries",
    "purge",
    "recent_entries",
    "record",
    "signer_key_id",
    "signing_key",
    "unanchored_chains",
    "verify",
    "verifying_key",
    "write_checkpoint",
]

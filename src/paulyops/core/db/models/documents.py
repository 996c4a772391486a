"""Documents: files found in an organization's storage, their journey and routing rules."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from paulyops.core.db.models.base import Base, JsonDict, TimestampMixin, id_column, utcnow
from paulyops.core.db.models.org import OrgScoped


class Document(OrgScoped, TimestampMixin, Base):
    """One file of an organization's storage, as ingestion found it, and where it went.

    ``status`` (``services/ingestion``): ``pending`` (found, waiting for file-processor)
    -> ``extracting`` -> ``classifying`` -> ``routed`` (an agent's job is queued or ran)
    -> ``processed``; ``review`` (waiting for a person: low confidence or
    ``autoRouting: false``); ``failed`` (a step ended ``dead``, ``error`` says why);
    ``duplicate`` (same ``sha256`` as ``duplicate_of``). ``origin`` is ``source`` for the
    customer's files and ``agent`` for files PaulyOps wrote (never ingested again).
    ``result`` holds the results of the steps keyed by agent id, ``routing`` the last
    routing decision with its reason.
    """

    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_org_status", "organization_id", "status"),
        Index("ix_documents_org_sha", "organization_id", "sha256"),
        Index("ix_documents_org_path", "organization_id", "connection_id", "path"),
    )

    id: Mapped[str] = id_column("doc")
    connection_id: Mapped[str | None] = mapped_column(
        ForeignKey("storage_configs.id", ondelete="SET NULL"), index=True
    )
    path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # The source's version marker (mtime + size, ETag, Drive/Dropbox revision).
    revision: Mapped[str | None] = mapped_column(String(200))
    media_type: Mapped[str | None] = mapped_column(String(120))
    document_class: Mapped[str | None] = mapped_column(String(60))
    confidence: Mapped[float | None] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(20), default="source")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    duplicate_of: Mapped[str | None] = mapped_column(
        ForeignKey("documents.id", ondelete="SET NULL")
    )
    # The agent the document was routed to (an agent id, kept when it is uninstalled).
    agent_id: Mapped[str | None] = mapped_column(String(120))
    routing: Mapped[JsonDict | None]
    result: Mapped[JsonDict | None]
    error: Mapped[str | None] = mapped_column(Text)
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class DocumentEvent(OrgScoped, Base):
    """One step of a Document's journey (found, extracted, classified, routed, reviewed...)."""

    __tablename__ = "document_events"
    __table_args__ = (Index("ix_document_events_doc", "document_id", "at"),)

    id: Mapped[str] = id_column("dev")
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    step: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[JsonDict] = mapped_column(default=dict)
    job_id: Mapped[str | None] = mapped_column(String(40))
    actor_id: Mapped[str | None] = mapped_column(String(60))


class RoutingRule(OrgScoped, TimestampMixin, Base):
    """A person's review choice kept as a rule, applied before the classifier next time.

    A rule matches on ``match`` (any of ``pathGlob``, ``mediaType``, ``documentClass``,
    ``phrases``) and sets ``document_class`` and/or ``agent_id``.
    """

    __tablename__ = "routing_rules"

    id: Mapped[str] = id_column("rrule")
    match: Mapped[JsonDict] = mapped_column(default=dict)
    document_class: Mapped[str | None] = mapped_column(String(60))
    agent_id: Mapped[str | None] = mapped_column(String(120))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str | None] = mapped_column(String(60))
    hits: Mapped[int] = mapped_column(default=0)


class IngestCursor(OrgScoped, TimestampMixin, Base):
    """Where a connection's change feed was last read, per watched folder.

    ``cursor`` is the provider's opaque cursor (a Dropbox cursor, a Drive page token, a
    snapshot marker for local folders and S3); ``pending`` holds files seen once whose
    size/mtime must be seen unchanged again before they are taken (still being written).
    """

    __tablename__ = "ingest_cursors"
    __table_args__ = (UniqueConstraint("connection_id", "folder"),)

    id: Mapped[str] = id_column("icur")
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("storage_configs.id", ondelete="CASCADE"), index=True
    )
    folder: Mapped[str] = mapped_column(String(1024), default="")
    cursor: Mapped[str | None] = mapped_column(Text)
    pending: Mapped[JsonDict] = mapped_column(default=dict)
    last_scan_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

"""The pipeline of a new file: a Document's steps as jobs (DESIGN.md, "The pipeline of a new file").

ingest (a Document) -> ``file-processor`` (text, metadata, media type) ->
``document-classifier`` (class, confidence, top-2) -> route (``services.ingestion.routing``).

:func:`job_spec_for` turns a Document into the input of a job: a path for a local
connection (resolved through the connection's folder), a ``storage`` source the worker
fetches itself for every other provider. :func:`enqueue_step` queues one step of a
Document's journey on an installed agent, in the caller's transaction, with the
Document's id and the step in the job's metadata (``documentId``, ``step``) so that
:func:`paulyops.services.ingestion.routing.on_job_finished` can advance it.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any, Final

from paulyops.core.db.models import AgentInstallation, Document, DocumentEvent, Job, StorageConfig
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError, NotFoundError
from paulyops.services.agents import jobs
from paulyops.services.agents.jobs import JobPolicy, JobSpec
from paulyops.services.storage.backends.local import local_folder

FILE_PROCESSOR: Final = "file-processor"
DOCUMENT_CLASSIFIER: Final = "document-classifier"
# Installed for every organization with ingestion on, never routed to (DESIGN.md).
SYSTEM_AGENTS: Final = frozenset({FILE_PROCESSOR, DOCUMENT_CLASSIFIER})

# A job's ``kind`` for the steps of a Document (manual runs are ``run``).
JOB_KIND: Final = "document"

# Steps (``metadata.step`` of a job, and the Document status while it runs).
EXTRACT: Final = "extract"
CLASSIFY: Final = "classify"
HANDLE: Final = "handle"
STEP_STATUS: Final = {EXTRACT: "extracting", CLASSIFY: "classifying", HANDLE: "routed"}

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\\/]")


def step_for(agent_id: str) -> str:
    """Return the step an agent performs for a Document."""
    if agent_id == FILE_PROCESSOR:
        return EXTRACT
    if agent_id == DOCUMENT_CLASSIFIER:
        return CLASSIFY
    return HANDLE


def input_name(path: str) -> str:
    """Return the file name an agent sees for a Document's path (always a safe name)."""
    name = _UNSAFE.sub("_", PurePosixPath(path.replace("\\", "/")).name)[:255]
    return name if name not in ("", ".", "..") else "document"


def job_spec_for(
    scope: OrgScope,
    document: Document,
    *,
    data_dir: Path,
    metadata: dict[str, Any] | None = None,
) -> JobSpec:
    """Return the input of a job over ``document``.

    A local connection gives a path inside its folder (``local_folder``: an organization's
    relative folder cannot climb out of its storage); every other provider gives a
    ``{"kind": "storage", "connection", "path", "revision", "sha256"}`` source that the
    worker fetches through the connection itself (DESIGN.md, "Inputs on other machines").

    Raises:
        NotFoundError: the Document's connection is gone.
        ConflictError: a local path would leave the connection's folder.
    """
    if document.connection_id is None:
        raise NotFoundError(f"document {document.id}: its storage connection was removed")
    connection = scope.get(StorageConfig, document.connection_id)
    common: dict[str, Any] = {
        "name": input_name(document.path),
        "media_type": document.media_type or "application/octet-stream",
        "document_class": document.document_class,
        "metadata": dict(metadata or {}),
    }
    if connection.provider == "local":
        try:
            folder = local_folder(connection, data_dir)
        except ValueError as err:
            raise ConflictError(f"document {document.id}: {err}") from None
        relative = PurePosixPath(document.path.lstrip("/"))
        if ".." in relative.parts:
            raise ConflictError(f"document {document.id}: its path leaves the connection's folder")
        return JobSpec(path=str(folder / relative), **common)
    source = {
        "kind": "storage",
        "connection": connection.id,
        "path": document.path,
        "revision": document.revision,
        "sha256": document.sha256,
        "size": document.size,
    }
    return JobSpec(source=source, **common)


def installation_of(scope: OrgScope, agent_id: str) -> AgentInstallation | None:
    """Return the organization's installation of ``agent_id`` (any status), if any."""
    return scope.first(AgentInstallation, AgentInstallation.agent_id == agent_id)


def event(
    scope: OrgScope,
    document: Document,
    step: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    job_id: str | None = None,
    actor_id: str | None = None,
) -> DocumentEvent:
    """Add one step of a Document's journey, in the caller's transaction."""
    row = DocumentEvent(
        document_id=document.id,
        step=step,
        message=message,
        details=dict(details or {}),
        job_id=job_id,
        actor_id=actor_id,
    )
    scope.add(row)
    return row


def enqueue_step(
    scope: OrgScope,
    document: Document,
    agent_id: str,
    *,
    policy: JobPolicy,
    data_dir: Path,
    reason: str | None = None,
) -> Job:
    """Queue ``agent_id``'s job over ``document``, in the caller's transaction.

    Sets the job's metadata ``documentId`` and ``step``, the Document's status
    (``extracting``, ``classifying`` or ``routed``; ``agent_id`` for a routed one) and
    records a DocumentEvent. The job runs after the caller commits.

    Raises:
        NotFoundError: the agent is not installed in this organization, or the
            Document's connection is gone.
        ConflictError: the installation is not enabled.
    """
    installation = installation_of(scope, agent_id)
    if installation is None:
        raise NotFoundError(f"agent {agent_id} is not installed in this organization")
    step = step_for(agent_id)
    spec = job_spec_for(
        scope,
        document,
        data_dir=data_dir,
        metadata={"documentId": document.id, "step": step},
    )
    (job,) = jobs.enqueue(
        scope,
        installation.id,
        [spec],
        policy=policy,
        kind=JOB_KIND,
        correlation_id=document.id,
    )
    document.status = STEP_STATUS[step]
    document.error = None
    if step == HANDLE:
        document.agent_id = agent_id
    event(
        scope,
        document,
        f"{step}.queued",
        f"{agent_id} queued" + (f": {reason}" if reason else ""),
        details={"agent": agent_id, "installation": installation.id},
        job_id=job.id,
    )
    return job


__all__ = [
    "CLASSIFY",
    "DOCUMENT_CLASSIFIER",
    "EXTRACT",
    "FILE_PROCESSOR",
    "HANDLE",
    "JOB_KIND",
    "STEP_STATUS",
    "SYSTEM_AGENTS",
    "enqueue_step",
    "event",
    "input_name",
    "installation_of",
    "job_spec_for",
    "step_for",
]

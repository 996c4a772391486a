"""The review queue: a person picks a waiting Document's class or agent (audited).

A member with ``documents:review`` answers a Document in ``review`` with a class of the
vocabulary and/or an installed, enabled, routable agent. With only a class, the Document
is routed again with that class (rules skipped, the person's class trusted as confidence
1.0). With an agent, that agent's job is queued. ``remember`` keeps the choice as a
RoutingRule of the organization: it matches the file's folder as a path glob
(``folder/*``, or ``*`` at the root) plus the class the classifier guessed, and is applied
before the handles and the threshold next time (``services.ingestion.routing.route``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import Field

from paulyops.core.db.models import Document, RoutingRule, utcnow
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import ConflictError, FieldError, SpecValidationError
from paulyops.services import actor as actors
from paulyops.services.actor import Actor
from paulyops.services.agents.jobs import JobPolicy
from paulyops.services.commands import Command
from paulyops.services.ingestion import pipeline, routing
from paulyops.services.ingestion.vocabulary import is_document_class


class ReviewDocument(Command):
    """A person's answer to a Document waiting for review."""

    document_class: str | None = Field(None, max_length=60)
    agent_id: str | None = Field(None, max_length=120)
    remember: bool = False


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    """What the review did: the Document's new status, and the rule kept (if any)."""

    document_id: str
    status: str
    agent_id: str | None
    rule_id: str | None


def _invalid(field: str, message: str) -> SpecValidationError:
    return SpecValidationError(message, [FieldError(field, message)])


def review_document(
    scope: OrgScope,
    document_id: str,
    command: ReviewDocument,
    *,
    actor: Actor,
    policy: JobPolicy,
    data_dir: Path,
) -> ReviewOutcome:
    """Apply a reviewer's choice to a Document in ``review``, in the caller's transaction.

    Raises:
        NotFoundError: no such Document in this organization.
        ConflictError: the Document is not waiting for review.
        SpecValidationError: neither a class nor an agent, a class outside the vocabulary,
            or an agent that is not installed, not enabled, or a system step.
    """
    document = scope.get(Document, document_id)
    if command.document_class is None and command.agent_id is None:
        raise _invalid("documentClass", "expected a document class or an agent (or both)")
    if command.document_class is not None and not is_document_class(command.document_class):
        raise _invalid("documentClass", f"unknown document class {command.document_class!r}")
    if command.agent_id is not None:
        installation = pipeline.installation_of(scope, command.agent_id)
        if installation is None or command.agent_id in pipeline.SYSTEM_AGENTS:
            raise _invalid("agentId", f"agent {command.agent_id!r} is not installed here")
        if installation.status != "enabled":
            raise _invalid("agentId", f"agent {command.agent_id} is {installation.status}")
    if document.status != "review":
        raise ConflictError(f"document {document.id} is {document.status}, not waiting for review")
    guessed = document.document_class
    if command.document_class is not None:
        document.document_class = command.document_class
        document.confidence = 1.0
    pipeline.event(
        scope,
        document,
        "review",
        f"{actor.type} {actor.id or ''}".strip()
        + " chose "
        + ", ".join(
            part
            for part in (
                f"class {command.document_class}" if command.document_class else "",
                f"agent {command.agent_id}" if command.agent_id else "",
            )
            if part
        ),
        details={
            "documentClass": command.document_class,
            "agent": command.agent_id,
            "guessed": guessed,
        },
        actor_id=actor.id,
    )
    rule_id: str | None = None
    if command.remember:
        folder = str(PurePosixPath(document.path).parent)
        match: dict[str, object] = {"pathGlob": "*" if folder in ("", ".") else f"{folder}/*"}
        if guessed:
            match["documentClass"] = guessed
        rule = RoutingRule(
            match=match,
            document_class=command.document_class,
            agent_id=command.agent_id,
            created_by=actor.id,
        )
        scope.add(rule)
        scope.session.flush()
        rule_id = rule.id
    if command.agent_id is not None:
        pipeline.enqueue_step(
            scope,
            document,
            command.agent_id,
            policy=policy,
            data_dir=data_dir,
            reason="chosen in review",
        )
        document.routing = {
            "decision": "agent",
            "agent": command.agent_id,
            "reason": "chosen in review",
            "at": utcnow().isoformat(),
        }
    else:
        _route_reviewed(scope, document, policy=policy, data_dir=data_dir)
    actors.record(
        scope.session,
        actor,
        "document.reviewed",
        organization_id=scope.organization_id,
        target_type="document",
        target_id=document.id,
        changes={
            "documentClass": command.document_class,
            "agent": command.agent_id,
            "guessed": guessed,
            "rule": rule_id,
        },
    )
    return ReviewOutcome(document.id, document.status, document.agent_id, rule_id)


def _route_reviewed(
    scope: OrgScope, document: Document, *, policy: JobPolicy, data_dir: Path
) -> None:
    # The person's class stands: route on handles and hints only (no threshold, no rule;
    # autoRouting off does not send a reviewed document back to review).
    media = document.media_type or "application/octet-stream"
    klass = document.document_class or "other"
    found = routing.candidates(scope, media, klass)
    if not found:
        document.status = "processed"
        document.processed_at = utcnow()
        document.routing = {
            "decision": "processed",
            "reason": f"reviewed as {klass}; no enabled agent handles {media} of that class",
            "at": utcnow().isoformat(),
        }
        pipeline.event(scope, document, "route", document.routing["reason"])
        return
    _auto, _threshold, hints = routing.config(scope)
    found.sort(key=lambda agent: (routing.hint_rank(hints, agent, media, klass), agent))
    reason = f"reviewed as {klass}; {found[0]} handles it"
    pipeline.enqueue_step(
        scope, document, found[0], policy=policy, data_dir=data_dir, reason=reason
    )
    document.routing = {
        "decision": "agent",
        "agent": found[0],
        "reason": reason,
        "at": utcnow().isoformat(),
    }


def list_rules(scope: OrgScope) -> list[RoutingRule]:
    """Return the organization's routing rules, oldest first."""
    return list(
        scope.session.scalars(
            scope.select(RoutingRule).order_by(RoutingRule.created_at, RoutingRule.id)
        )
    )


def delete_rule(scope: OrgScope, rule_id: str, *, actor: Actor) -> None:
    """Delete one routing rule (audited).

    Raises:
        NotFoundError: no such rule in this organization.
    """
    rule = scope.get(RoutingRule, rule_id)
    changes = {
        "match": dict(rule.match),
        "documentClass": rule.document_class,
        "agent": rule.agent_id,
    }
    scope.delete(rule)
    scope.session.flush()
    actors.record(
        scope.session,
        actor,
        "routing_rule.deleted",
        organization_id=scope.organization_id,
        target_type="routing_rule",
        target_id=rule_id,
        changes=changes,
    )


__all__ = ["ReviewDocument", "ReviewOutcome", "delete_rule", "list_rules", "review_document"]

"""Advance a Document when one of its jobs finishes, and route it (DESIGN.md, the pipeline).

:func:`on_job_finished` runs in the executor's transaction that records the job's outcome
(``JobExecutor(on_job_finished=...)``): the job's completion and the Document's next step
commit together or not at all. ``jobs.complete``/``jobs.fail`` change a job only while its
lease is ours, so a redelivered job whose outcome was already recorded never reaches this
hook twice; the hook also ignores a step whose Document has moved on (idempotent).

Routing order: the organization's RoutingRules (a person's earlier choices), then the
enabled agent whose manifest ``handles`` the media type and class (template
``routingHints`` break ties, then the agent id). No match -> ``processed`` with
file-processor's extraction as its result. Classifier confidence below
``confidenceThreshold``, an agent result reporting low confidence, or ``autoRouting:
false`` -> ``review``. Every decision goes to ``Document.routing`` and a DocumentEvent.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.models import (
    AgentConfig,
    AgentInstallation,
    AgentPackage,
    Document,
    RoutingRule,
    utcnow,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import PaulyOpsError
from paulyops.core.logging import get_logger
from paulyops.services.agents.jobs import JobPolicy
from paulyops.services.ingestion import pipeline
from paulyops.services.ingestion.pipeline import (
    CLASSIFY,
    DOCUMENT_CLASSIFIER,
    EXTRACT,
    FILE_PROCESSOR,
    HANDLE,
    SYSTEM_AGENTS,
)
from paulyops.services.ingestion.vocabulary import is_document_class

log = get_logger("paulyops.ingestion.routing")

DEFAULT_THRESHOLD = 0.9


def _data(result: Mapping[str, Any] | None) -> dict[str, Any]:
    if not result:
        return {}
    inner = result.get("data")
    return dict(inner) if isinstance(inner, Mapping) else dict(result)


def config(scope: OrgScope) -> tuple[bool, float, list[dict[str, Any]]]:
    config = scope.first(AgentConfig)
    if config is None:
        return True, DEFAULT_THRESHOLD, []
    hints = [h for h in (config.routing_hints or {}).get("hints", []) if isinstance(h, dict)]
    return config.auto_routing, float(config.confidence_threshold), hints


def _media_matches(pattern: str, media_type: str) -> bool:
    if pattern in ("*/*", media_type):
        return True
    return pattern.endswith("/*") and media_type.split("/")[0] == pattern[:-2]


def rule_matches(rule: RoutingRule, document: Document, text: str) -> bool:
    """Whether a rule's ``match`` (all of pathGlob, mediaType, documentClass, phrases) fits."""
    match = rule.match or {}
    if not match:
        return False
    glob = match.get("pathGlob")
    if glob and not fnmatch.fnmatchcase(document.path, str(glob)):
        return False
    media = match.get("mediaType")
    if media and not _media_matches(str(media), document.media_type or ""):
        return False
    klass = match.get("documentClass")
    if klass and klass != document.document_class:
        return False
    phrases = match.get("phrases") or []
    lowered = text.lower()
    return not phrases or all(str(p).lower() in lowered for p in phrases)


def candidates(scope: OrgScope, media_type: str, document_class: str) -> list[str]:
    """Return the enabled, routable agents whose manifest handles both, by agent id."""
    rows = scope.session.execute(
        select(AgentInstallation.agent_id, AgentPackage.manifest)
        .join(AgentPackage, AgentPackage.id == AgentInstallation.package_id)
        .where(
            AgentInstallation.organization_id == scope.organization_id,
            AgentInstallation.status == "enabled",
        )
    ).all()
    found: list[str] = []
    for agent_id, manifest in rows:
        if agent_id in SYSTEM_AGENTS:
            continue
        handles = dict((manifest or {}).get("handles") or {})
        types = list(handles.get("mediaTypes") or handles.get("media_types") or [])
        classes = list(handles.get("documentClasses") or handles.get("document_classes") or [])
        if any(_media_matches(str(t), media_type) for t in types) and document_class in classes:
            found.append(str(agent_id))
    return sorted(found)


def hint_rank(hints: list[dict[str, Any]], agent: str, media: str, klass: str) -> int:
    for index, hint in enumerate(hints):
        if hint.get("agent") != agent:
            continue
        if hint.get("mediaType") not in (None, media):
            continue
        if hint.get("documentClass") not in (None, klass):
            continue
        return index
    return len(hints)


def _decide(scope: OrgScope, document: Document, decision: dict[str, Any], status_msg: str) -> None:
    decision = {**decision, "at": utcnow().isoformat()}
    document.routing = decision
    pipeline.event(scope, document, "route", status_msg, details=decision)


def _to_review(scope: OrgScope, document: Document, reason: str, **extra: Any) -> None:
    document.status = "review"
    _decide(scope, document, {"decision": "review", "reason": reason, **extra}, reason)


def _processed(scope: OrgScope, document: Document, reason: str) -> None:
    document.status = "processed"
    document.processed_at = utcnow()
    _decide(scope, document, {"decision": "processed", "reason": reason}, reason)


def route(
    scope: OrgScope,
    document: Document,
    *,
    policy: JobPolicy,
    data_dir: Path,
    use_rules: bool = True,
) -> None:
    """Route a classified Document (rules, handles, hints), or send it to review."""
    auto, threshold, hints = config(scope)
    text = str(_data((document.result or {}).get(FILE_PROCESSOR)).get("text") or "")
    ruled: str | None = None
    if use_rules:
        for rule in scope.session.scalars(
            scope.select(RoutingRule, RoutingRule.enabled.is_(True)).order_by(
                RoutingRule.created_at, RoutingRule.id
            )
        ):
            if not rule_matches(rule, document, text):
                continue
            rule.hits += 1
            ruled = rule.id
            if rule.document_class:
                document.document_class = rule.document_class
            if rule.agent_id and auto:
                reason = f"routing rule {rule.id} (a person's earlier choice)"
                decision = {"decision": "agent", "agent": rule.agent_id, "rule": rule.id}
                _enqueue(
                    scope, document, rule.agent_id, policy, data_dir, {**decision, "reason": reason}
                )
                return
            break
    klass = document.document_class or "other"
    media = document.media_type or "application/octet-stream"
    if not auto:
        _to_review(scope, document, "autoRouting is off: every classified document is reviewed")
        return
    if ruled is None and document.confidence is not None and document.confidence < threshold:
        _to_review(
            scope,
            document,
            f"classifier confidence {document.confidence:.2f} is below the threshold "
            f"{threshold:.2f}",
            confidence=document.confidence,
            threshold=threshold,
        )
        return
    found = candidates(scope, media, klass)
    if not found:
        _processed(scope, document, f"no enabled agent handles {media} documents of class {klass}")
        return
    found.sort(key=lambda agent: (hint_rank(hints, agent, media, klass), agent))
    chosen = found[0]
    why = f"{chosen} handles {media} documents of class {klass}"
    if ruled is not None:
        why += f" (class set by routing rule {ruled})"
    if len(found) > 1:
        why += f" (chosen over {', '.join(found[1:])} by the template's routing hints)"
    _enqueue(
        scope,
        document,
        chosen,
        policy,
        data_dir,
        {"decision": "agent", "agent": chosen, "candidates": found, "reason": why},
    )


def _enqueue(
    scope: OrgScope,
    document: Document,
    agent_id: str,
    policy: JobPolicy,
    data_dir: Path,
    decision: dict[str, Any],
) -> None:
    try:
        job = pipeline.enqueue_step(
            scope, document, agent_id, policy=policy, data_dir=data_dir, reason=decision["reason"]
        )
    except PaulyOpsError as err:
        _to_review(scope, document, f"{agent_id} cannot take it: {err}")
        return
    _decide(scope, document, {**decision, "job": job.id}, str(decision["reason"]))


def on_job_finished(
    session: Session,
    *,
    organization_id: str,
    agent_id: str,
    job_id: str,
    job_input: Mapping[str, Any],
    state: str,
    result: Mapping[str, Any] | None,
    error: str | None,
    policy: JobPolicy,
    data_dir: Path,
) -> None:
    """Advance the Document of a finished job (``succeeded`` or ``dead``), in ``session``."""
    meta = dict(job_input.get("metadata") or {})
    document_id, step = meta.get("documentId"), meta.get("step")
    if not isinstance(document_id, str) or step not in (EXTRACT, CLASSIFY, HANDLE):
        return
    scope = OrgScope(session, organization_id)
    document = scope.first(Document, Document.id == document_id)
    if document is None or document.status != pipeline.STEP_STATUS[step]:
        return  # deleted, or already advanced (a late duplicate)
    if state == "dead":
        document.status = "failed"
        document.error = f"{agent_id} failed: {error or 'no reason given'}"
        pipeline.event(scope, document, f"{step}.failed", document.error, job_id=job_id)
        return
    data = _data(result)
    document.result = {**(document.result or {}), agent_id: data}
    if step == EXTRACT:
        media = data.get("mediaType")
        if isinstance(media, str) and media:
            document.media_type = media
        pipeline.event(
            scope,
            document,
            "extract.done",
            f"text and metadata extracted ({document.media_type})",
            job_id=job_id,
        )
        try:
            pipeline.enqueue_step(
                scope, document, DOCUMENT_CLASSIFIER, policy=policy, data_dir=data_dir
            )
        except PaulyOpsError as err:
            document.status = "failed"
            document.error = f"{DOCUMENT_CLASSIFIER} cannot run: {err}"
            pipeline.event(scope, document, "classify.failed", document.error)
        return
    if step == CLASSIFY:
        klass = data.get("documentClass") or data.get("class")
        document.document_class = (
            klass if isinstance(klass, str) and is_document_class(klass) else "other"
        )
        confidence = data.get("confidence")
        document.confidence = float(confidence) if isinstance(confidence, int | float) else 0.0
        pipeline.event(
            scope,
            document,
            "classify.done",
            f"classified {document.document_class} ({document.confidence:.2f})",
            details={"top": data.get("top") or data.get("top2") or []},
            job_id=job_id,
        )
        route(scope, document, policy=policy, data_dir=data_dir)
        return
    # HANDLE: the routed agent's result.
    _auto, threshold, _hints = config(scope)
    confidence = data.get("confidence")
    low = data.get("lowConfidence") is True or (
        isinstance(confidence, int | float) and confidence < threshold
    )
    if low:
        _to_review(
            scope, document, f"{agent_id} reported low confidence in its result", agent=agent_id
        )
        return
    document.status = "processed"
    document.processed_at = utcnow()
    pipeline.event(scope, document, "handle.done", f"{agent_id} handled it", job_id=job_id)


__all__ = ["candidates", "config", "hint_rank", "on_job_finished", "route", "rule_matches"]

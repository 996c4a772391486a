"""The pipeline of a new file with real jobs: extract -> classify -> route, review, failures."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from paulyops.core.db.models import (
    AgentConfig,
    AgentInstallation,
    AgentPackage,
    Document,
    DocumentEvent,
    RoutingRule,
    StorageConfig,
)
from paulyops.core.db.scoped import OrgScope
from paulyops.services.agents import jobs
from paulyops.services.agents.execute import JobExecutor, no_settings
from paulyops.services.agents.jobs import JobPolicy
from paulyops.services.ingestion import pipeline
from paulyops.services.marketplace.build import assemble
from paulyops.workers.runtime import document_hook
from tests.support.jobs import SubprocessRunner, make_installation

POLICY = JobPolicy(lease_s=30, max_attempts=1, retry_base_s=0, retry_max_s=0)

# The test agents read "key=value" words from the file (the real agents are tested apart).
FILE_PROCESSOR = b"""
def handle(ctx, item):
    text = open(item["path"], encoding="utf-8").read()
    if "extract=fail" in text:
        raise RuntimeError("cannot read this file")
    return {"mediaType": "text/plain", "text": text}
"""
CLASSIFIER = b"""
def handle(ctx, item):
    words = dict(w.split("=", 1) for w in open(item["path"]).read().split() if "=" in w)
    return {"documentClass": words.get("class", "other"),
            "confidence": float(words.get("conf", "0.99")),
            "top": [[words.get("class", "other"), 0.9, ["total"]], ["receipt", 0.1, []]]}
"""
HANDLER = b"""
def handle(ctx, item):
    words = dict(w.split("=", 1) for w in open(item["path"]).read().split() if "=" in w)
    return {"handledBy": "%s", "confidence": float(words.get("agentconf", "1"))}
"""


def _install(session, org: str, agent_id: str, code: bytes, classes: list[str]) -> None:
    manifest = (
        f'id = "{agent_id}"\nname = "{agent_id}"\nversion = "1.0.0"\ndescription = "t"\n'
        'publisher = "acme"\nlicense = "MIT"\nentrypoint = "agent:handle"\ncapabilities = []\n'
        '[compatibility]\npaulyops = ">=0.1"\n'
    )
    archive = assemble({"manifest.toml": manifest.encode(), "agent.py": code})
    package = AgentPackage(
        agent_id=agent_id,
        version="1.0.0",
        name=agent_id,
        publisher="acme",
        manifest={
            "id": agent_id,
            "entrypoint": "agent:handle",
            "version": "1.0.0",
            "handles": {"mediaTypes": ["text/plain"], "documentClasses": classes},
        },
        source="upload",
        sha256=hashlib.sha256(archive).hexdigest(),
        checksums_sha256="0" * 64,
        size=len(archive),
        signature_state="unsigned",
        archive=archive,
        organization_id=org,
    )
    session.add(package)
    session.flush()
    session.add(
        AgentInstallation(
            organization_id=org,
            agent_id=agent_id,
            package_id=package.id,
            version="1.0.0",
            status="enabled",
            granted_permissions=[],
        )
    )


@pytest.fixture
def org(db, tmp_path):
    org_id, _inst = make_installation(db)
    with db.write_session() as session:
        _install(session, org_id, "file-processor", FILE_PROCESSOR, ["other", "invoice"])
        _install(session, org_id, "document-classifier", CLASSIFIER, ["other", "invoice"])
        _install(session, org_id, "acme.invoices", HANDLER % b"invoices", ["invoice"])
        _install(session, org_id, "acme.other-invoices", HANDLER % b"other", ["invoice"])
        session.add(
            AgentConfig(
                organization_id=org_id,
                confidence_threshold=0.8,
                routing_hints={"hints": [{"documentClass": "invoice", "agent": "acme.invoices"}]},
            )
        )
        (tmp_path / "files").mkdir()
        conn = StorageConfig(
            organization_id=org_id,
            name="local",
            provider="local",
            settings={"path": str(tmp_path / "files")},
            backup_strategy="local",
            retention_days=30,
        )
        session.add(conn)
        session.flush()
        return org_id, conn.id


def _ingest(db, tmp_path, org, text: str, name: str = "scan.txt") -> str:
    org_id, conn = org
    (tmp_path / "files" / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "files" / name).write_text(text)
    with db.write_session() as session:
        scope = OrgScope(session, org_id)
        doc = Document(
            connection_id=conn,
            path=name,
            size=len(text),
            sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
        scope.add(doc)
        session.flush()
        pipeline.enqueue_step(
            scope, doc, "file-processor", policy=POLICY, data_dir=tmp_path / "data"
        )
        return doc.id


def _drain(db, tmp_path) -> None:
    executor = JobExecutor(
        db,
        runner=SubprocessRunner(),
        settings_provider=no_settings,
        data_dir=tmp_path / "data",
        policy=POLICY,
        on_job_finished=document_hook(POLICY, tmp_path / "data"),
    )
    for _ in range(20):
        claim = jobs.claim(db, owner="w", policy=POLICY)
        if claim is None:
            return
        executor.run(claim)
    raise AssertionError("jobs kept coming")


def _doc(db, doc_id):
    with db.session() as session:
        doc = session.get(Document, doc_id)
        steps = [
            e.step
            for e in session.scalars(
                select(DocumentEvent)
                .where(DocumentEvent.document_id == doc_id)
                .order_by(DocumentEvent.at, DocumentEvent.id)
            )
        ]
        session.expunge(doc)
        return doc, steps


def test_a_confident_invoice_goes_to_the_hinted_agent(db, tmp_path, org):
    doc_id = _ingest(db, tmp_path, org, "class=invoice conf=0.95 total 10")
    _drain(db, tmp_path)
    doc, steps = _doc(db, doc_id)
    assert doc.status == "processed", doc.routing
    assert doc.agent_id == "acme.invoices"
    assert doc.document_class == "invoice"
    assert doc.confidence == 0.95
    assert doc.result["acme.invoices"]["handledBy"] == "invoices"
    assert "text" in doc.result["file-processor"]
    assert "routing hints" in doc.routing["reason"]
    assert steps[:3] == ["extract.queued", "extract.done", "classify.queued"]
    assert "route" in steps
    assert steps[-1] == "handle.done"


def test_low_confidence_and_no_match_and_auto_routing_off(db, tmp_path, org):
    low = _ingest(db, tmp_path, org, "class=invoice conf=0.5", "a.txt")
    nomatch = _ingest(db, tmp_path, org, "class=receipt conf=0.95", "b.txt")
    agent_low = _ingest(db, tmp_path, org, "class=invoice conf=0.95 agentconf=0.2", "c.txt")
    _drain(db, tmp_path)
    assert _doc(db, low)[0].status == "review"
    assert "below the threshold" in _doc(db, low)[0].routing["reason"]
    doc = _doc(db, nomatch)[0]
    assert doc.status == "processed"
    assert doc.routing["decision"] == "processed"
    assert _doc(db, agent_low)[0].status == "review"
    with db.write_session() as session:
        session.scalars(select(AgentConfig)).one().auto_routing = False
    off = _ingest(db, tmp_path, org, "class=invoice conf=0.99", "d.txt")
    _drain(db, tmp_path)
    assert _doc(db, off)[0].status == "review"
    assert "autoRouting" in _doc(db, off)[0].routing["reason"]


def test_a_rule_routes_before_the_handles_and_a_dead_step_fails(db, tmp_path, org):
    org_id, _conn = org
    with db.write_session() as session:
        session.add(
            RoutingRule(
                organization_id=org_id,
                match={"pathGlob": "supplier-*"},
                document_class="invoice",
                agent_id="acme.other-invoices",
            )
        )
    doc_id = _ingest(db, tmp_path, org, "class=other conf=0.3", "supplier-1.txt")
    dead = _ingest(db, tmp_path, org, "extract=fail", "broken.txt")
    _drain(db, tmp_path)
    doc = _doc(db, doc_id)[0]
    assert doc.agent_id == "acme.other-invoices"
    assert doc.status == "processed"
    assert doc.routing["rule"]
    failed = _doc(db, dead)[0]
    assert failed.status == "failed"
    assert "cannot read this file" in failed.error


def test_review_picks_a_class_remembers_a_rule_and_refuses_bad_answers(db, tmp_path, org):
    from paulyops.core.db.models import AuditLog
    from paulyops.core.errors import NotFoundError, SpecValidationError
    from paulyops.services.actor import Actor
    from paulyops.services.ingestion.review import ReviewDocument, review_document

    org_id, _conn = org
    other_org, _ = make_installation(db, "other")
    doc_id = _ingest(db, tmp_path, org, "class=invoice conf=0.5", "in/x.txt")
    _drain(db, tmp_path)
    actor = Actor("user", "usr_1")
    kwargs = {"actor": actor, "policy": POLICY, "data_dir": tmp_path / "data"}
    bad = [
        ReviewDocument(document_class="not-a-class"),
        ReviewDocument(agent_id="acme.missing"),
        ReviewDocument(agent_id="document-classifier"),
        ReviewDocument(),
    ]
    for command in bad:
        with db.write_session() as session, pytest.raises(SpecValidationError):
            review_document(OrgScope(session, org_id), doc_id, command, **kwargs)
    with db.write_session() as session, pytest.raises(NotFoundError):
        review_document(
            OrgScope(session, other_org), doc_id, ReviewDocument(document_class="invoice"), **kwargs
        )
    with db.write_session() as session:
        out = review_document(
            OrgScope(session, org_id),
            doc_id,
            ReviewDocument(document_class="invoice", remember=True),
            **kwargs,
        )
    assert out.rule_id
    _drain(db, tmp_path)
    doc, steps = _doc(db, doc_id)
    assert doc.status == "processed"
    assert doc.agent_id == "acme.invoices"
    assert "review" in steps
    with db.session() as session:
        rule = session.get(RoutingRule, out.rule_id)
        assert rule.match == {"pathGlob": "in/*", "documentClass": "invoice"}
        assert session.scalars(
            select(AuditLog).where(AuditLog.action == "document.reviewed")
        ).first()
    # Next time the rule decides before the threshold: no review.
    again = _ingest(db, tmp_path, org, "class=invoice conf=0.4", "in/y.txt")
    _drain(db, tmp_path)
    assert _doc(db, again)[0].status == "processed"
    assert _doc(db, again)[0].routing["decision"] == "agent"

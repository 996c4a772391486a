"""``paulyops ingest scan`` and ``paulyops documents list | show``."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from paulyops.cli.context import CommandGroup, console, open_instance, read_settings

if TYPE_CHECKING:
    from paulyops.services.ingestion.views import DocumentView

ingest_app = typer.Typer(cls=CommandGroup, help="Pick up new files from the storage connections.")
documents_app = typer.Typer(cls=CommandGroup, help="Documents found in storage and their journey.")

ORG_HELP = "the organization (slug or id; default: the only one)"
# Seconds between the two observations that prove a file is complete.
SETTLE_S = 2.0


def _plain(text: str) -> str:
    """Show a customer's file name without letting it steer the terminal."""
    return "".join(
        c
        if c.isprintable() and c not in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        else "\ufffd"
        for c in text
    )


@ingest_app.command("scan")
def scan(
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    settle: float = typer.Option(
        SETTLE_S, "--settle", min=0, help="seconds a file must hold still"
    ),
) -> None:
    """Run one ingestion pass over the organization's connections and print a summary."""
    from paulyops.services.agents.jobs import JobPolicy
    from paulyops.services.agents.runs import resolve_organization
    from paulyops.services.ingestion import pickup, views

    settings = read_settings()
    with open_instance(settings) as instance:
        org_id = resolve_organization(instance.db, org)
        starter = pickup.pipeline_starter(
            policy=JobPolicy.from_settings(settings), data_dir=settings.data_dir
        )
        first = views.scan_organization(
            instance.db, org_id, data_dir=settings.data_dir, settle_s=settle, starter=starter
        )
        if any(s.pending for s in first.connections.values()):
            time.sleep(settle)  # the second observation of files seen just now
            second = views.scan_organization(
                instance.db, org_id, data_dir=settings.data_dir, settle_s=settle, starter=starter
            )
        else:
            second = views.OrgScan()
    table = Table("connection", "new", "duplicates", "unchanged", "ignored", "waiting", "errors")
    for name in sorted(set(first.connections) | set(second.connections)):
        parts = [s for s in (first.connections.get(name), second.connections.get(name)) if s]
        last = parts[-1]
        table.add_row(
            name,
            str(sum(len(p.new) for p in parts)),
            str(sum(len(p.duplicates) for p in parts)),
            str(sum(p.unchanged for p in parts)),
            str(sum(p.ignored for p in parts)),
            str(last.pending),
            str(len(last.errors)),
        )
    console.print(table)
    for name, reason in sorted(first.skipped.items()):
        console.print(f"skipped {name}: {reason}", highlight=False, markup=False)


def _describe(view: DocumentView) -> dict[str, Any]:
    return {
        "id": view.id,
        "path": view.path,
        "size": view.size,
        "sha256": view.sha256,
        "mediaType": view.media_type,
        "documentClass": view.document_class,
        "confidence": view.confidence,
        "status": view.status,
        "duplicateOf": view.duplicate_of,
        "agent": view.agent_id,
        "connection": view.connection_id,
        "detectedAt": view.detected_at.isoformat(),
        "error": view.error,
    }


@documents_app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help="only Documents with this status"),
    limit: int = typer.Option(50, "--limit", min=1, max=200, help="how many to show"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    as_json: bool = typer.Option(False, "--json", help="print them as JSON"),
) -> None:
    """List the organization's Documents, newest first."""
    from paulyops.services.agents.runs import resolve_organization
    from paulyops.services.ingestion import views

    settings = read_settings()
    with open_instance(settings) as instance:
        org_id = resolve_organization(instance.db, org)
        rows, total = views.documents_page(instance.db, org_id, status=status, limit=limit)
    if as_json:
        console.print_json(json.dumps({"total": total, "items": [_describe(v) for v in rows]}))
        return
    if not rows:
        console.print("No documents yet.")
        return
    table = Table("id", "status", "type", "class", "path", "found")
    for view in rows:
        table.add_row(
            view.id,
            view.status,
            view.media_type or "",
            view.document_class or "",
            _plain(view.path),
            view.detected_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table, markup=False)


@documents_app.command("show")
def show(
    document_id: str = typer.Argument(..., help="the Document's id (doc_...)"),
    org: str | None = typer.Option(None, "--org", help=ORG_HELP),
    as_json: bool = typer.Option(False, "--json", help="print it as JSON"),
) -> None:
    """Show one Document and its journey (found, extracted, classified, routed...)."""
    from paulyops.services.agents.runs import resolve_organization
    from paulyops.services.ingestion import views

    settings = read_settings()
    with open_instance(settings) as instance:
        org_id = resolve_organization(instance.db, org)
        view = views.document_detail(instance.db, org_id, document_id)
    events = [
        {"at": e.at.isoformat(), "step": e.step, "message": e.message, "job": e.job_id}
        for e in view.events
    ]
    if as_json:
        console.print_json(json.dumps({**_describe(view), "events": events}))
        return
    for key, value in _describe(view).items():
        if value is not None:
            console.print(f"{key}: {_plain(str(value))}", highlight=False, markup=False)
    table = Table("at", "step", "message", "job")
    for event in events:
        table.add_row(
            str(event["at"]),
            str(event["step"]),
            _plain(str(event["message"])),
            str(event["job"] or ""),
        )
    console.print(table)

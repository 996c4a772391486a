"""Ingestion: changes become Documents once, completely, de-duplicated, never our own files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import Document, DocumentEvent, IngestCursor, StorageConfig
from paulyops.core.db.scoped import OrgScope
from paulyops.services.ingestion import pickup
from paulyops.services.ingestion.documents import sniff_media_type
from tests.factories import make_org
from tests.services.ingestion.localfeed import LocalFeed


def _connection(db: Database, org_id: str, **settings: object) -> str:
    with db.write_session() as session:
        row = OrgScope(session, org_id).add(
            StorageConfig(
                name="local",
                provider="local",
                settings=dict(settings),
                backup_strategy="local",
                retention_days=30,
                status="configured",
            )
        )
        session.flush()
        return row.id


def _docs(db: Database, org_id: str) -> list[Document]:
    with db.session() as session:
        return list(OrgScope(session, org_id).list(Document, order_by=Document.detected_at))


@pytest.fixture
def world(db: Database, tmp_path: Path):
    org = make_org(db, "acme")
    (tmp_path / "inbox").mkdir()
    conn = _connection(db, org.id)
    return org.id, conn, LocalFeed(tmp_path)


def test_new_file_becomes_one_document_with_its_journey(db, world):
    """A file in inbox becomes a pending Document with sha256, size, sniffed type, a found event."""
    org, conn, feed = world
    (feed.root / "inbox" / "a.pdf").write_bytes(b"%PDF-1.4 hello")
    summary = pickup.scan_connection(db, org, conn, feed, settle_s=0)
    assert len(summary.new) == 1
    [doc] = _docs(db, org)
    assert (doc.path, doc.size, doc.media_type, doc.status) == (
        "inbox/a.pdf",
        14,
        "application/pdf",
        "pending",
    )
    with db.session() as session:
        steps = session.scalars(
            select(DocumentEvent.step).where(DocumentEvent.document_id == doc.id)
        ).all()
    assert steps == ["found"]
    again = pickup.scan_connection(db, org, conn, feed, settle_s=0)
    assert again.new == []
    assert len(_docs(db, org)) == 1


def test_duplicate_content_is_marked_and_our_files_are_never_taken(db, world):
    """Same bytes elsewhere → status duplicate with duplicate_of; PaulyOps's files → nothing."""
    org, conn, feed = world
    (feed.root / "inbox" / "a.txt").write_bytes(b"same")
    (feed.root / "inbox" / "b.txt").write_bytes(b"same")
    (feed.root / "inbox" / "ours.txt").write_bytes(b"result")
    feed.ours.add("inbox/ours.txt")
    summary = pickup.scan_connection(db, org, conn, feed, settle_s=0)
    assert len(summary.new) == 1
    assert len(summary.duplicates) == 1
    assert summary.ignored == 1
    docs = {d.path: d for d in _docs(db, org)}
    assert set(docs) == {"inbox/a.txt", "inbox/b.txt"}
    assert docs["inbox/b.txt"].status == "duplicate"
    assert docs["inbox/b.txt"].duplicate_of == docs["inbox/a.txt"].id


def test_modified_file_becomes_a_new_version(db, world):
    """New content under the same path is a new Document naming the one it supersedes."""
    org, conn, feed = world
    f = feed.root / "inbox" / "a.txt"
    f.write_bytes(b"v1")
    pickup.scan_connection(db, org, conn, feed, settle_s=0)
    f.write_bytes(b"version two")
    summary = pickup.scan_connection(db, org, conn, feed, settle_s=0)
    assert len(summary.new) == 1
    old, new = _docs(db, org)
    with db.session() as session:
        found = session.scalars(
            select(DocumentEvent).where(DocumentEvent.document_id == new.id)
        ).one()
    assert found.details["supersedes"] == old.id


def test_file_still_being_written_is_not_taken(db, world):
    """A file whose size changes between observations waits until it holds still."""
    org, conn, feed = world
    f = feed.root / "inbox" / "big.csv"
    f.write_bytes(b"a,b\n1,2\n")
    pickup.read_feed(db, org, conn, "inbox", feed)
    with f.open("ab") as fh:
        fh.write(b"3,4\n")
    summary = pickup.ScanSummary()
    pickup.take_settled(db, org, conn, "inbox", feed, settle_s=0, summary=summary)
    assert summary.new == []
    assert summary.pending == 1
    summary = pickup.ScanSummary()
    pickup.take_settled(db, org, conn, "inbox", feed, settle_s=0, summary=summary)
    [doc] = _docs(db, org)
    assert doc.size == 12
    assert doc.media_type == "text/csv"


def test_failed_read_is_retried_not_lost(db, world):
    """A read that fails keeps the file pending with its error; the next pass takes it."""
    org, conn, feed = world
    (feed.root / "inbox" / "a.txt").write_bytes(b"hello")
    feed.fail_reads.add("inbox/a.txt")
    summary = pickup.scan_connection(db, org, conn, feed, settle_s=0)
    assert "inbox/a.txt" in summary.errors
    assert _docs(db, org) == []
    with db.session() as session:
        cur = session.scalars(select(IngestCursor)).one()
        assert cur.pending["inbox/a.txt"]["attempts"] == 1
        assert "timed out" in cur.pending["inbox/a.txt"]["error"]
    feed.fail_reads.clear()
    summary = pickup.scan_connection(db, org, conn, feed, settle_s=0)
    assert len(summary.new) == 1


class _CrashError(Exception):
    pass


def test_crash_between_feed_and_commit_redelivers_without_doubling(db, world, monkeypatch):
    """A crash after reading the feed, before the cursor is stored: nothing lost or doubled."""
    org, conn, feed = world
    (feed.root / "inbox" / "a.txt").write_bytes(b"one")
    real = pickup._observation

    def crash(*args, **kwargs):
        raise _CrashError

    monkeypatch.setattr(pickup, "_observation", crash)
    with pytest.raises(_CrashError):
        pickup.scan_connection(db, org, conn, feed, settle_s=0)
    monkeypatch.setattr(pickup, "_observation", real)
    with db.session() as session:
        assert session.scalars(select(IngestCursor.cursor)).one() is None
    # Crash after the Document is recorded but before the starter ran: rolled back together.
    calls = []

    def starter(scope, doc_id):
        calls.append(doc_id)
        raise _CrashError

    with pytest.raises(_CrashError):
        pickup.scan_connection(db, org, conn, feed, settle_s=0, starter=starter)
    assert _docs(db, org) == []
    summary = pickup.scan_connection(db, org, conn, feed, settle_s=0)
    assert len(summary.new) == 1
    assert len(_docs(db, org)) == 1
    assert pickup.scan_connection(db, org, conn, feed, settle_s=0).new == []


def test_other_org_never_sees_documents_and_folders_follow_settings(db, tmp_path):
    """Duplicates are per organization; a connection's own folders replace inbox."""
    a, b = make_org(db, "a"), make_org(db, "b")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.txt").write_bytes(b"shared")
    feed = LocalFeed(tmp_path)
    ca = _connection(db, a.id, folders=["in"])
    cb = _connection(db, b.id, folders=["in"])
    assert len(pickup.scan_connection(db, a.id, ca, feed, settle_s=0).new) == 1
    assert len(pickup.scan_connection(db, b.id, cb, feed, settle_s=0).new) == 1
    assert [d.status for d in _docs(db, b.id)] == ["pending"]


def test_hostile_names_are_refused_or_kept_verbatim(db, world):
    """Bidi and long names are stored as found; `..` never reaches the provider as a path."""
    org, conn, feed = world
    (feed.root / "inbox" / "a\u202etxt.exe").write_bytes(b"x1")
    (feed.root / "inbox" / ("n" * 200 + ".txt")).write_bytes(b"x2")
    pickup.scan_connection(db, org, conn, feed, settle_s=0)
    assert {d.path for d in _docs(db, org)} == {
        "inbox/a\u202etxt.exe",
        "inbox/" + "n" * 200 + ".txt",
    }
    from paulyops.services.storage.backends.base import StorageError

    with pytest.raises(StorageError):
        feed.stat("../x")


def _zip(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n in names:
            z.writestr(n, "<x/>")
    return buf.getvalue()


SNIFF_CASES = [
    (b"%PDF-1.7", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n....", "image/png"),
    (b"\xff\xd8\xff\xe0", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "image/jp2"),
    (b"\x00" * 128 + b"DICM", "application/dicom"),
    (
        _zip(["[Content_Types].xml", "word/document.xml"]),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (
        _zip(["[Content_Types].xml", "xl/workbook.xml"]),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (_zip(["a.txt"]), "application/zip"),
    (b'{"resourceType": "Patient"}', "application/fhir+json"),
    (b'{"a": 1}', "application/json"),
    (b"<?xml version='1.0'?><a/>", "application/xml"),
    (b"OFXHEADER:100\nDATA:OFXSGML", "application/x-ofx"),
    (b"a,b\n1,2\n3,4\n", "text/csv"),
    (b"# Title\n\ntext\n", "text/markdown"),
    (b"hello there\n", "text/plain"),
    (b"\x01\x00\x02", "application/octet-stream"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "Workbook".encode("utf-16-le"),
        "application/vnd.ms-excel",
    ),
]


def test_sniffer_cases_cover_the_whole_vocabulary():
    """Every media type of the vocabulary can be produced by the sniffer."""
    from paulyops.services.ingestion.vocabulary import MEDIA_TYPES

    assert {expected for _, expected in SNIFF_CASES} == set(MEDIA_TYPES)


@pytest.mark.parametrize(("data", "expected"), SNIFF_CASES)
def test_sniffer_names_each_vocabulary_type_from_content(data, expected):
    """Content, not the name, decides the media type; Office files by looking inside the zip."""
    assert sniff_media_type(data[:65536], io.BytesIO(data)) == expected


def test_new_document_without_file_processor_waits_with_the_reason(db, world, tmp_path):
    """The pipeline starter leaves a Document pending, with a 'waiting' event, when
    file-processor is not installed."""
    from paulyops.services.agents.jobs import JobPolicy

    org, conn, feed = world
    (feed.root / "inbox" / "a.txt").write_bytes(b"hello")
    policy = JobPolicy(lease_s=30, max_attempts=2, retry_base_s=0, retry_max_s=0)
    starter = pickup.pipeline_starter(policy=policy, data_dir=tmp_path / "data")
    pickup.scan_connection(db, org, conn, feed, settle_s=0, starter=starter)
    [doc] = _docs(db, org)
    assert doc.status == "pending"
    with db.session() as session:
        events = session.scalars(
            select(DocumentEvent).where(DocumentEvent.document_id == doc.id)
        ).all()
    assert [e.step for e in events] == ["found", "waiting"]
    assert "not installed" in events[1].message

"""The one vocabulary of document classes and media types.

Agent manifests' ``handles`` are checked against it, the classifier labels documents with
its classes, and routing matches on both. Document classes are the bundled catalog's
classes plus ``other`` (what the classifier says when nothing fits). Media types are the
IANA types the file sniffer can report; a manifest may also name ``type/*`` or ``*/*``.
"""

from __future__ import annotations

from typing import Final

DOCUMENT_CLASSES: Final[dict[str, str]] = {
    "generic": "Any file, processed for its text and metadata only",
    "unclassified": "A document not yet classified",
    "dataset": "Tabular or structured data",
    "spreadsheet": "A spreadsheet workbook",
    "invoice": "A supplier invoice",
    "credit-note": "A credit note against an invoice",
    "receipt": "A purchase receipt",
    "bank-statement": "A bank or card statement",
    "expense-report": "An expense report",
    "contract": "A contract",
    "nda": "A non-disclosure agreement",
    "amendment": "An amendment to a contract",
    "multispectral-image": "Multispectral drone or satellite imagery",
    "sensor-readings": "Field or environmental sensor readings",
    "machine-telemetry": "Machine telemetry export",
    "inspection-image": "A photo from a quality inspection",
    "measurement-log": "A log of measurements",
    "quality-report": "A quality report",
    "purchase-order": "A purchase order",
    "delivery-note": "A delivery note",
    "bill-of-lading": "A bill of lading",
    "inventory-count": "An inventory count",
    "stock-ledger": "A stock ledger",
    "sales-export": "A sales export",
    "pos-transactions": "Point-of-sale transactions",
    "medical-record": "A medical record",
    "lab-result": "A laboratory result",
    "referral-letter": "A referral letter",
    "report-request": "A request for a report",
    "other": "A document that fits no other class",
}

MEDIA_TYPES: Final[frozenset[str]] = frozenset(
    {
        "application/dicom",
        "application/fhir+json",
        "application/json",
        "application/octet-stream",
        "application/pdf",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/x-ofx",
        "application/xml",
        "application/zip",
        "image/jp2",
        "image/jpeg",
        "image/png",
        "image/tiff",
        "text/csv",
        "text/markdown",
        "text/plain",
    }
)

ANY_MEDIA_TYPE: Final = "*/*"


def is_document_class(name: str) -> bool:
    """Return whether ``name`` is a known document class."""
    return name in DOCUMENT_CLASSES


def is_media_type_pattern(pattern: str) -> bool:
    """Return whether a manifest may name ``pattern``: a known type, ``type/*`` or ``*/*``."""
    if pattern == ANY_MEDIA_TYPE or pattern in MEDIA_TYPES:
        return True
    major, sep, minor = pattern.partition("/")
    return sep == "/" and minor == "*" and any(t.startswith(major + "/") for t in MEDIA_TYPES)


def media_type_matches(pattern: str, media_type: str) -> bool:
    """Return whether ``media_type`` falls under ``pattern`` (wildcards allowed)."""
    if pattern == ANY_MEDIA_TYPE:
        return True
    if pattern.endswith("/*"):
        return media_type.startswith(pattern[:-1])
    return pattern == media_type


__all__ = [
    "ANY_MEDIA_TYPE",
    "DOCUMENT_CLASSES",
    "MEDIA_TYPES",
    "is_document_class",
    "is_media_type_pattern",
    "media_type_matches",
]

"""The bundled file-processor, run in-process through the SDK (``handle(ctx, item)``)."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import struct
import zipfile
from pathlib import Path

import pytest

from paulyops.bundled.file_processor import agent
from paulyops.bundled.file_processor.agent import handle, sniff
from paulyops.sdk import Context, Item, Result

AGENT_DIR = Path(agent.__file__).resolve().parent


def _run(
    tmp_path: Path, name: str, data: bytes, declared: str = "application/octet-stream", **settings
) -> dict[str, object]:
    path = tmp_path / name
    path.write_bytes(data)
    path.chmod(0o444)
    ctx = Context(
        agent_id="paulyops.file-processor",
        settings=settings,
        scratch=tmp_path / "scratch",
        outputs=tmp_path / "outputs",
    )
    result = handle(ctx, Item(path=path, name=name, media_type=declared, size=len(data)))
    assert isinstance(result, Result)
    wire = result.to_wire()
    json.dumps(wire)  # the result is JSON, as protocol v1 sends it
    assert wire["data"] is not None
    return wire["data"]


def test_text_file_gives_its_text_and_counts(tmp_path: Path) -> None:
    data = b"Hello world\nsecond line here\n"
    out = _run(tmp_path, "notes.txt", data)
    assert out["mediaType"] == "text/plain"
    assert out["text"] == "Hello world\nsecond line here\n"
    assert out["textExtraction"] == "full"
    assert out["metadata"] == {"lines": 2, "words": 5}
    assert out["size"] == len(data)
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert out["textTruncated"] is False


def test_csv_gives_delimiter_columns_and_rows(tmp_path: Path) -> None:
    data = b"date;amount;vendor\n2026-01-02;12.50;Acme\n2026-01-03;7.00;Globex\n"
    out = _run(tmp_path, "ledger.csv", data)
    assert out["mediaType"] == "text/csv"
    assert out["metadata"]["csv"] == {  # type: ignore[index]
        "delimiter": ";",
        "columns": ["date", "amount", "vendor"],
        "rows": 2,
    }


def test_json_is_recognized_by_content_and_described(tmp_path: Path) -> None:
    out = _run(tmp_path, "export", b'{"b": 1, "a": [1, 2]}')
    assert out["mediaType"] == "application/json"
    assert out["metadata"]["json"] == {  # type: ignore[index]
        "valid": True,
        "topLevel": "object",
        "keys": ["a", "b"],
    }
    arr = _run(tmp_path, "rows.json", b"[1, 2, 3]")
    assert arr["metadata"]["json"] == {"valid": True, "topLevel": "array", "length": 3}  # type: ignore[index]


def test_broken_json_named_json_reports_the_error(tmp_path: Path) -> None:
    out = _run(tmp_path, "bad.json", b'{"a": ')
    assert out["mediaType"] == "application/json"
    assert out["metadata"]["json"]["valid"] is False  # type: ignore[index]


def test_pdf_gives_metadata_only_and_says_why(tmp_path: Path) -> None:
    data = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n/Encrypt 2 0 R\n%%EOF\n"
    out = _run(tmp_path, "scan.bin", data)
    assert out["mediaType"] == "application/pdf"
    assert out["text"] is None
    assert out["textExtraction"].startswith("unsupported: no PDF library")  # type: ignore[union-attr]
    assert out["metadata"] == {"pdfVersion": "1.7", "encrypted": True}


def test_png_and_jpeg_give_their_dimensions(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 640, 480)
    out = _run(tmp_path, "photo", png + b"\x08\x02\x00\x00\x00")
    assert (out["mediaType"], out["metadata"]) == ("image/png", {"width": 640, "height": 480})
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof0 = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, 300, 200) + b"\x00" * 10
    out = _run(tmp_path, "photo.jpg", b"\xff\xd8" + app0 + sof0)
    assert (out["mediaType"], out["metadata"]) == ("image/jpeg", {"width": 200, "height": 300})


def test_office_files_are_told_apart_from_zip(tmp_path: Path) -> None:
    def zipped(*names: str) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            for name in names:
                archive.writestr(name, "x")
        return buf.getvalue()

    docx = zipped("[Content_Types].xml", "word/document.xml")
    xlsx = zipped("[Content_Types].xml", "xl/workbook.xml")
    assert sniff("a", docx).endswith("wordprocessingml.document")
    assert sniff("a", xlsx).endswith("spreadsheetml.sheet")
    assert sniff("a", zipped("readme.txt")) == "application/zip"


def test_binary_falls_back_to_name_then_declared_type(tmp_path: Path) -> None:
    blob = b"\x00\x01\x02\xfe\xff" * 10
    assert sniff("x.ofx", blob) == "application/x-ofx"
    assert sniff("x", blob, "image/tiff") == "image/tiff"
    assert sniff("x", blob, "text/plain") == "application/octet-stream"
    out = _run(tmp_path, "blob", blob)
    assert (out["mediaType"], out["text"]) == ("application/octet-stream", None)


def test_text_is_cut_at_max_text_chars(tmp_path: Path) -> None:
    out = _run(tmp_path, "long.md", b"# Title\n" + b"word " * 100, maxTextChars=10)
    assert out["mediaType"] == "text/markdown"
    assert out["text"] == "# Title\nwo"
    assert out["textTruncated"] is True
    assert out["metadata"]["words"] == 102  # type: ignore[index]  # counted before the cut


def test_a_bad_max_text_chars_setting_uses_the_default(tmp_path: Path) -> None:
    out = _run(tmp_path, "a.txt", b"abc", maxTextChars="lots")
    assert (out["text"], out["textTruncated"]) == ("abc", False)


def test_the_agent_imports_only_the_sdk_and_the_standard_library() -> None:
    """Agent code imports ``paulyops.sdk`` and nothing else of PaulyOps or outside stdlib."""
    import sys

    for source in sorted(AGENT_DIR.glob("*.py")):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                assert (
                    name == "paulyops.sdk"
                    or (top != "paulyops" and top in sys.stdlib_module_names)
                    or top == "__future__"
                ), f"{source.name} imports {name}"


@pytest.mark.parametrize("name", ["a.txt", "a.csv", "a.json", "a.md", "a.xml"])
def test_every_text_type_it_reports_is_in_the_vocabulary(name: str) -> None:
    from paulyops.services.ingestion.vocabulary import MEDIA_TYPES

    assert sniff(name, b"<?xml version='1.0'?><a/>" if name.endswith("xml") else b"x") in (
        MEDIA_TYPES
    )

"""Security headers, body size and JSON depth limits, and upload type checks."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from paulyops.core.errors import SpecValidationError
from paulyops.core.security.jsonlimits import check_json_body, json_depth_ok, json_nesting_depth
from paulyops.core.security.uploads import check_upload, sniff_media_type
from paulyops.web.limits import (
    CONTENT_SECURITY_POLICY,
    BodyLimitMiddleware,
    SecurityHeadersMiddleware,
    install_security_headers,
)

EXACT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
LIMIT = 1000


class Item(BaseModel):
    """A JSON body."""

    value: Any = None


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    @app.post("/item")
    async def item(body: Item) -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/upload/file")
    async def upload(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    @app.get("/own-csp")
    async def own_csp() -> PlainTextResponse:
        return PlainTextResponse("x", headers={"Content-Security-Policy": "default-src *"})

    @app.get("/boom")
    async def boom() -> JSONResponse:
        raise RuntimeError("boom")

    app.add_middleware(BodyLimitMiddleware, max_bytes=LIMIT, path_limits={"/upload": 10 * LIMIT})
    # Outside everything, so even the 500 page of an unhandled error carries the headers.
    install_security_headers(app)
    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A test client on a tiny app with both middlewares."""
    with TestClient(_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def _chunks(total: int, size: int = 100) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


def _assert_error_shape(body: dict[str, Any], fragment: str) -> None:
    assert body["success"] is False
    assert fragment in body["message"]
    assert isinstance(body["errors"], list)


# --- security headers --------------------------------------------------------------------


def test_csp_is_exactly_the_settled_policy() -> None:
    """The policy string matches DESIGN.md, character for character."""
    assert CONTENT_SECURITY_POLICY == EXACT_CSP


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/missing"), ("POST", "/echo"), ("GET", "/boom")]
)
def test_every_response_carries_the_security_headers(
    client: TestClient, method: str, path: str
) -> None:
    """200, 404 and 500 answers all carry CSP, nosniff, referrer, frame and COOP headers."""
    response = client.request(method, path, content=b"{}" if method == "POST" else None)
    assert response.headers["content-security-policy"] == EXACT_CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cross-origin-opener-policy"] == "same-origin"
    assert "camera=()" in response.headers["permissions-policy"]


def test_middleware_added_the_usual_way_covers_handled_responses() -> None:
    """SecurityHeadersMiddleware also works as an ordinary add_middleware middleware."""
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(SecurityHeadersMiddleware)
    with TestClient(app) as test_client:
        assert test_client.get("/ok").headers["content-security-policy"] == EXACT_CSP
        assert test_client.get("/nope").headers["x-frame-options"] == "DENY"


def test_route_cannot_loosen_the_csp(client: TestClient) -> None:
    """A route's own Content-Security-Policy is replaced, never sent twice."""
    response = client.get("/own-csp")
    assert response.headers.get_list("content-security-policy") == [EXACT_CSP]


def test_hsts_only_over_https() -> None:
    """Strict-Transport-Security is sent on HTTPS requests and never on plain HTTP."""
    app = _app()
    with TestClient(app, base_url="http://testserver") as plain:
        assert "strict-transport-security" not in plain.get("/missing").headers
    with TestClient(app, base_url="https://testserver") as secure:
        assert (
            secure.get("/missing").headers["strict-transport-security"]
            == "max-age=63072000; includeSubDomains"
        )


# --- body size -----------------------------------------------------------------------------


def test_body_within_the_limit_passes(client: TestClient) -> None:
    """A body at the limit reaches the route intact."""
    assert client.post("/echo", content=b"x" * LIMIT).text == str(LIMIT)


def test_declared_length_over_the_limit_is_413(client: TestClient) -> None:
    """A Content-Length over the limit is refused with 413 in the error shape."""
    response = client.post("/echo", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    _assert_error_shape(response.json(), f"limit is {LIMIT} bytes")
    assert response.headers["content-security-policy"] == EXACT_CSP


def test_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    """A chunked body without Content-Length is counted as it streams and refused at 413."""
    response = client.post("/echo", content=_chunks(LIMIT * 3))
    assert response.status_code == 413
    _assert_error_shape(response.json(), "too large")


def test_streamed_body_within_the_limit_passes(client: TestClient) -> None:
    """A chunked body under the limit reaches the route whole."""
    assert client.post("/echo", content=_chunks(LIMIT - 10)).text == str(LIMIT - 10)


def test_path_limits_raise_the_limit_for_their_prefix(client: TestClient) -> None:
    """Upload routes get their own, larger, limit; it is still enforced."""
    assert client.post("/upload/file", content=_chunks(5 * LIMIT)).text == str(5 * LIMIT)
    assert client.post("/upload/file", content=_chunks(11 * LIMIT)).status_code == 413


# --- JSON depth ----------------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_json_body_nested_too_deep_is_422_on_the_body_field(client: TestClient) -> None:
    """A JSON body deeper than 32 levels is refused before any parser sees it."""
    ok = client.post("/item", json={"value": _nested(31)})
    assert ok.status_code == 200
    response = client.post("/item", json={"value": _nested(32)})
    assert response.status_code == 422
    body = response.json()
    _assert_error_shape(body, "deeper than the allowed 32 levels")
    assert body["errors"][0]["field"] == "body"


def test_large_json_body_is_413(client: TestClient) -> None:
    """A JSON body over the size limit is refused with 413 even without Content-Length."""
    payload = json.dumps({"value": "x" * LIMIT}).encode()
    response = client.post(
        "/item", content=iter([payload]), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """Only real arrays and objects count; brackets and escaped quotes in strings do not."""
    assert json_nesting_depth(b'{"a": "[[[[{{{{", "b": "\\"[[["}') == 1
    assert json_nesting_depth(b"42") == 0
    check_json_body(b'["' + b"[" * 100 + b'"]', max_depth=1)
    with pytest.raises(SpecValidationError) as caught:
        check_json_body(b"[[[]]]", max_depth=2)
    assert caught.value.errors[0].field == "body"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=3), children, max_size=3)
    ),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_raw_depth_matches_the_parsed_depth(value: Any) -> None:
    """Scanning the raw text gives the same depth as walking the parsed value."""
    depth = _depth(value)
    assert json_nesting_depth(json.dumps(value).encode()) == depth
    assert json_depth_ok(value, max_depth=depth)
    assert json_depth_ok(value, max_depth=depth - 1) is (depth == 0)


def test_json_depth_ok_handles_values_deeper_than_the_recursion_limit() -> None:
    """The parsed-value check is iterative: 100 000 levels give an answer, not a crash."""
    value: Any = []
    for _ in range(100_000):
        value = [value]
    assert not json_depth_ok(value, max_depth=32)


# --- uploads ------------------------------------------------------------------------------

PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
GIF = b"GIF89a" + b"\x00" * 32
EXE = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 64
CSV = b'name,amount\nwidget,3\n"gadget, large",4\n'
TEXT = b"Dear team,\nthe invoice is attached.\nRegards\n"


def _zip() -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PDF, "application/pdf"),
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (_zip(), "application/zip"),
        (CSV, "text/csv"),
        (TEXT, "text/plain"),
        (b'{"a": [1, 2]}', "application/json"),
        (b"\xef\xbb\xbf[1]", "application/json"),
        (EXE, "application/octet-stream"),
        (b"\xff\xfe\x00\x01binary", "application/octet-stream"),
    ],
)
def test_media_type_is_sniffed_from_content(data: bytes, expected: str) -> None:
    """Magic bytes and text heuristics decide the type."""
    assert sniff_media_type(data) == expected


ALL = {"application/pdf", "image/png", "image/jpeg", "text/csv", "text/plain", "application/json"}


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (PDF, "Invoice.PDF", "application/pdf"),
        (JPEG, "photo.jpeg", "image/jpeg"),
        (CSV, "rows.csv", "text/csv"),
        (b"just one column\nsecond row\n", "rows.csv", "text/csv"),
        (CSV, "notes.txt", "text/plain"),
        (b'{"a": 1}', "data.json", "application/json"),
    ],
)
def test_upload_matching_its_extension_is_accepted(
    data: bytes, filename: str, expected: str
) -> None:
    """A file whose content matches its extension and is allowed returns its type."""
    assert check_upload(data, filename, allowed=ALL, max_bytes=10_000) == expected


@pytest.mark.parametrize(
    ("data", "filename", "fragment"),
    [
        (EXE, "invoice.pdf", "named .pdf but its content is application/octet-stream"),
        (PNG, "photo.jpg", "named .jpg but its content is image/png"),
        (TEXT, "data.json", "named .json but its content is text/plain"),
        (EXE, "tool.exe", "unsupported extension '.exe'"),
        (PDF, "invoice", "unsupported extension '(none)'"),
        (GIF, "anim.gif", "does not accept"),
        (b"", "empty.pdf", "is empty"),
        (PDF + b"x" * 10_000, "big.pdf", "too large"),
    ],
)
def test_upload_with_wrong_type_or_size_is_rejected_naming_the_file(
    data: bytes, filename: str, fragment: str
) -> None:
    """Disagreeing content, unknown or disallowed types and oversize files are refused."""
    with pytest.raises(SpecValidationError) as caught:
        check_upload(data, filename, allowed=ALL, max_bytes=10_000)
    err = caught.value
    assert fragment in err.message
    assert filename in err.message
    assert err.errors[0].field == "file"


def test_upload_error_shows_a_safe_name() -> None:
    """A hostile file name is shown in its safe form, not as sent."""
    with pytest.raises(SpecValidationError) as caught:
        check_upload(EXE, "../../<script>x.pdf", allowed=ALL, max_bytes=10_000)
    assert "<script>" not in caught.value.message
    assert "script_x.pdf" in caught.value.message

"""Protocol v1 on the host: what a result line must look like."""

from __future__ import annotations

import json

import pytest

from paulyops.sdk import Alert, Chart, OutputFile, Result, SeriesPoint
from paulyops.services.agents.protocol import (
    BatchRequest,
    ProtocolViolationError,
    RequestItem,
    parse_line,
    result_dict,
)


def _line(**fields: object) -> bytes:
    base: dict[str, object] = {"protocol": 1, "jobId": "j1", "ok": True, "durationMs": 1.5}
    base.update(fields)
    return json.dumps(base).encode()


def test_sdk_result_round_trips() -> None:
    """Every part the SDK can produce validates on the host, unchanged."""
    result = Result(
        data={"total": 3},
        files=[OutputFile("out.csv", "text/csv")],
        alerts=[Alert("warning", "late invoice", "late")],
        series=[SeriesPoint("revenue", "2026-01-01T00:00:00Z", 12.5, "EUR", {"site": "a"})],
        charts=[Chart("bar", "Revenue", ["jan"], [12.5])],
        report_section="<p>fine</p>",
        confidence=0.9,
    )
    line = parse_line(_line(result=result.to_wire()), expected_job="j1")
    assert line.result is not None
    assert result_dict(line.result) == result.to_wire()


def test_report_section_is_sanitized() -> None:
    """Markup from an agent loses scripts on the way in."""
    wire = Result(report_section="<p>x</p><script>alert(1)</script>").to_wire()
    line = parse_line(_line(result=wire), expected_job="j1")
    assert line.result is not None
    assert "script" not in (line.result.report_section or "")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_line(protocol=2, result={}), "protocol"),
        (_line(result=None), "an ok line needs a result"),
        (_line(ok=False), "a failed line needs an error"),
        (_line(jobId="other", result={}), "expected the result of job 'j1'"),
        (_line(result={"confidence": 2}), "confidence"),
        (_line(result={"files": [{"path": "../etc/passwd"}]}), "relative path"),
        (
            _line(
                result={"charts": [{"kind": "pie", "title": "t", "labels": ["a"], "values": []}]}
            ),
            "same length",
        ),
        (_line(result={"series": [{"series": "s", "at": "yesterday", "value": 1}]}), "at"),
        (_line(result={"html": "<b>"}), "html"),
    ],
)
def test_malformed_lines_are_protocol_violations(raw: bytes, reason: str) -> None:
    """Each malformed line is refused with a reason that names the problem."""
    with pytest.raises(ProtocolViolationError, match="protocol violation") as err:
        parse_line(raw, expected_job="j1")
    assert reason in err.value.message


def test_request_encodes_camel_case() -> None:
    """The request on stdin uses the protocol's camelCase names."""
    request = BatchRequest(
        agent_id="acme.x",
        version="1.0.0",
        entrypoint="agent:handle",
        lib_dir="/run/paulyops/lib",
        package_dir="/run/paulyops/package",
        scratch_dir="/run/paulyops/scratch",
        items=[
            RequestItem(
                job_id="j1",
                attempt=1,
                path="/run/paulyops/inputs/0/a.txt",
                outputs_dir="/run/paulyops/outputs/0",
                name="a.txt",
                media_type="text/plain",
                size=1,
            )
        ],
    )
    decoded = json.loads(request.encode())
    assert decoded["protocol"] == 1
    assert decoded["items"][0]["jobId"] == "j1"
    assert decoded["items"][0]["mediaType"] == "text/plain"

"""Logging: redaction of every kind of secret, correlation ids, timing and event helpers."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest
from pydantic import SecretStr

from paulyops.core.logging import (
    REDACTED,
    add_alert_hook,
    business_metric,
    carry_context,
    configure_logging,
    correlation_scope,
    get_correlation_id,
    get_logger,
    security_event,
    timed,
)

SECRETS = {
    "password": "correct horse battery staple",
    "api_key": "k3y-0123456789abcdef",
    "session_secret": "s3ss10n-s3cr3t-v4lu3-that-is-long",
    "Authorization": "Bearer abcdefghijklmnopqrstuvwxyz012345",
    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "client_secret": "dropbox-app-secret-value",
    "encryption_key": "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE",
    "totp": "123456",
    "refresh_token": "1//0gLdBbMy-refresh-token-value",
}

VALUE_SECRETS = [
    "Bearer abcdefghijklmnopqrstuvwxyz012345",
    "sk_live_51Habcdefghijklmnop",
    "rk_test_51Habcdefghijklmnop",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "pot_0123456789abcdefghijklmn",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
]


@pytest.fixture
def json_logs():
    """Configure JSON logging into a buffer and return a function reading its lines."""
    buffer = io.StringIO()
    configure_logging(level="DEBUG", json_lines=True, stream=buffer)

    def lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line]

    yield lines
    configure_logging(level="INFO", json_lines=False)


def test_secret_keys_are_redacted(json_logs):
    """Each kind of secret passed as a field is replaced, at any nesting depth."""
    log = get_logger("test")
    log.info("with_secrets", **SECRETS, nested={"credentials": {"password": "x"}, "ok": 1})
    (line,) = [item for item in json_logs() if item["event"] == "with_secrets"]
    for key in SECRETS:
        assert line[key] == REDACTED, key
    assert line["nested"]["credentials"] == REDACTED
    assert line["nested"]["ok"] == 1
    text = json.dumps(line)
    for value in SECRETS.values():
        assert value not in text


@pytest.mark.parametrize("secret", VALUE_SECRETS)
def test_secret_looking_values_are_redacted_anywhere(json_logs, secret):
    """Secret-looking values are removed from messages, fields and exceptions."""
    log = get_logger("test")
    log.info(f"message mentions {secret}", detail=f"inside {secret} text")
    try:
        raise ValueError(f"boom {secret}")
    except ValueError:
        log.exception("failed")
    text = json.dumps(json_logs())
    assert secret not in text
    assert secret.splitlines()[0] not in text or secret.startswith("-----")


def test_url_passwords_are_redacted(json_logs):
    """user:password@ in any URL is redacted; the rest of the URL stays readable."""
    get_logger("test").info("connecting", url="postgresql://app:hunter2@db.internal:5432/prod")
    text = json.dumps(json_logs())
    assert "hunter2" not in text
    assert "db.internal:5432/prod" in text


def test_secretstr_and_stdlib_logging_are_redacted(json_logs):
    """Pydantic SecretStr values and plain stdlib log records go through redaction too."""
    get_logger("test").info("s", value=SecretStr("abc"))
    logging.getLogger("thirdparty").warning("token sk_live_51Habcdefghijklmnop leaked")
    text = json.dumps(json_logs())
    assert "sk_live_51Habcdefghijklmnop" not in text
    assert "abc" not in text.replace("[REDACTED]", "")


def test_correlation_id_on_every_line_and_carried_to_threads(json_logs):
    """Lines logged in a correlation scope, also from background threads, carry its id."""
    log = get_logger("test")
    with correlation_scope("req-123456") as cid:
        log.info("in_request")
        thread = threading.Thread(target=carry_context(lambda: log.info("in_background")))
        thread.start()
        thread.join()
    log.info("outside")
    lines = {item["event"]: item for item in json_logs()}
    assert lines["in_request"]["correlation_id"] == cid
    assert lines["in_background"]["correlation_id"] == cid
    assert "correlation_id" not in lines["outside"]
    assert get_correlation_id() is None


def test_timed_logs_duration_and_failure(json_logs):
    """timed() logs the operation's duration, and marks failures as errors."""
    with timed("fast.op", org="o1"):
        pass
    with pytest.raises(RuntimeError), timed("failing.op"):
        raise RuntimeError("x")
    lines = [item for item in json_logs() if item["event"] == "timing"]
    assert lines[0]["operation"] == "fast.op"
    assert lines[0]["duration_ms"] >= 0
    assert lines[1]["outcome"] == "error"
    assert lines[1]["level"] == "warning"


def test_security_event_reaches_alert_hooks_redacted(json_logs):
    """security_event logs the event and hands a redacted payload to every alert hook."""
    received = []
    remove = add_alert_hook(received.append)
    try:
        with correlation_scope("cid-abcdefgh"):
            security_event("csrf.rejected", reason="missing", password="x")
    finally:
        remove()
    security_event("after.removal")
    assert len(received) == 1
    assert received[0]["kind"] == "csrf.rejected"
    assert received[0]["password"] == REDACTED
    assert received[0]["correlation_id"] == "cid-abcdefgh"


def test_failing_alert_hook_does_not_break_caller(json_logs):
    """An alert hook that raises is logged and does not propagate to the caller."""

    def broken(payload):
        raise RuntimeError("sink down")

    remove = add_alert_hook(broken)
    try:
        security_event("x.y")
    finally:
        remove()
    assert any(item["event"] == "alert_hook_failed" for item in json_logs())


def test_business_metric_is_logged(json_logs):
    """business_metric writes a metric line with its name and value."""
    business_metric("organization.provisioned", 1, industry="finance")
    (line,) = [item for item in json_logs() if item["event"] == "business_metric"]
    assert line["metric"] == "organization.provisioned"
    assert line["industry"] == "finance"


def test_camel_case_secret_keys_are_redacted(json_logs):
    """Wire names like secretAccessKey, clientSecret and passwordHash are redacted too."""
    get_logger("test").info(
        "wire",
        secretAccessKey="aws-secret-value-1",
        clientSecret="oauth-secret-value-2",
        appSecret="dropbox-secret-value-3",
        passwordHash="$argon2id$v=19$hash-value-4",
        csrfToken="csrf-token-value-5",
    )
    text = json.dumps(json_logs())
    for value in ("aws-secret-value-1", "oauth-secret-value-2", "dropbox-secret-value-3"):
        assert value not in text
    assert "hash-value-4" not in text
    assert "csrf-token-value-5" not in text

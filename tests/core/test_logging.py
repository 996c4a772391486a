"""Logging: redaction of every kind of secret, correlation ids, timing and event helpers."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import threading
import time

import pytest
from pydantic import SecretStr

from paulyops.core.logging import (
    REDACTED,
    add_alert_hook,
    business_metric,
    carry_context,
    configure_logging,
    correlation_scope,
    flush_logs,
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


# --- crashes, renderers and the objects that hold secrets --------------------------------------

CRASH_SECRETS = {
    "session cookie": "sess-cookie-" + "c" * 24,
    "csrf token": "csrf-token-" + "t" * 24,
    "bearer token": "pot_" + "b" * 28,
    "totp seed": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    "jwt secret": "jwt-secret-" + "j" * 40,
    "password hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$" + "h" * 20,
}


def _provision_context():
    from paulyops.services.actor import SYSTEM
    from paulyops.services.onboarding.provision import ProvisionContext

    return ProvisionContext(
        actor=SYSTEM,
        jwt_secret=CRASH_SECRETS["jwt secret"],
        public_url="http://127.0.0.1",
        data_dir=__import__("pathlib").Path("/tmp"),
        owner_password_hash=CRASH_SECRETS["password hash"],
    )


def _crash(cookie: str, csrf_token: str, depth: int = 3) -> None:
    """Raise with secrets in arguments, locals and the exception's message (via repr)."""
    bearer = CRASH_SECRETS["bearer token"]
    seed = CRASH_SECRETS["totp seed"]
    ctx = _provision_context()
    if depth:
        _crash(cookie, csrf_token, depth - 1)
    raise RuntimeError(f"provision failed for {ctx!r} ({len(bearer) + len(seed)})")


def _configure(log_format: str, background: bool) -> io.StringIO:
    buffer = io.StringIO()
    configure_logging(
        level="INFO", json_lines=log_format == "json", stream=buffer, background=background
    )
    return buffer


@pytest.fixture
def restore_logging():
    """Put the default configuration back after a test configures its own."""
    yield
    configure_logging(level="INFO", json_lines=False)


@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
@pytest.mark.parametrize("log_format", ["console", "json"])
def test_crash_tracebacks_carry_no_locals_and_no_secret(restore_logging, log_format, background):
    """A traceback logged by structlog or by a library (uvicorn's way) shows the frames and
    the error, never the locals, arguments or secret fields of anything in scope."""
    buffer = _configure(log_format, background)
    try:
        _crash(CRASH_SECRETS["session cookie"], CRASH_SECRETS["csrf token"])
    except RuntimeError as err:
        get_logger("paulyops.http").exception("request_crashed", error=type(err).__name__)
        logging.getLogger("thirdparty").error("Exception in a library", exc_info=err)
    flush_logs()
    output = buffer.getvalue()
    assert output.count("RuntimeError: provision failed") == 2
    assert "in _crash" in output
    leaked = [name for name, value in CRASH_SECRETS.items() if value in output]
    assert not leaked, output


def test_the_servers_second_copy_of_a_logged_traceback_is_dropped(restore_logging):
    """uvicorn logs a crash our 500 handler has already logged: only one traceback is written."""
    buffer = _configure("json", background=False)
    try:
        _crash("c", "t", depth=0)
    except RuntimeError as err:
        get_logger("paulyops.http").exception("request_crashed")
        logging.getLogger("uvicorn.error").error("Exception in ASGI application", exc_info=err)
    output = buffer.getvalue()
    assert output.count("RuntimeError: provision failed") == 1
    assert "request_crashed" in output


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_formatting_a_deep_traceback_costs_milliseconds(restore_logging, log_format):
    """200 frames with large locals format in well under a second (Rich with locals took
    about 20 s of CPU for one such traceback)."""
    _configure(log_format, background=False)

    def deep(n: int) -> None:
        payload = {f"key{i}": list(range(50)) for i in range(50)}
        if n:
            deep(n - 1)
        raise ValueError(f"bottom reached with {len(payload)} keys")

    try:
        deep(200)
    except ValueError:
        started = time.perf_counter()
        get_logger("test").exception("deep_crash")
        elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"{elapsed:.2f} s"


def test_background_writer_never_blocks_the_caller(restore_logging):
    """With a sink that stopped reading, logging returns at once; lines follow once it reads."""
    release = threading.Event()

    class StalledStream(io.StringIO):
        def write(self, text: str) -> int:
            release.wait(10)
            return super().write(text)

        def isatty(self) -> bool:
            return False

    stream = StalledStream()
    configure_logging(level="INFO", json_lines=True, stream=stream, background=True)
    started = time.perf_counter()
    for i in range(50):
        get_logger("test").info("while_stalled", i=i)
    try:
        _crash("c", "t", depth=0)
    except RuntimeError:
        get_logger("test").exception("crash_while_stalled")
    assert time.perf_counter() - started < 1.0
    release.set()
    flush_logs()
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events.count("while_stalled") == 50
    assert events[-1] == "crash_while_stalled"


def test_background_lines_keep_their_correlation_id_and_time(restore_logging):
    """Lines rendered on the writer thread carry the id and time of the moment they were logged."""
    buffer = _configure("json", background=True)
    with correlation_scope("cid-background-1"):
        get_logger("test").info("structlog_line")
        logging.getLogger("thirdparty").warning("stdlib line %s", "with args")
    flush_logs()
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["correlation_id"] for line in lines] == ["cid-background-1"] * 2
    assert lines[1]["event"] == "stdlib line with args"
    assert all(line["timestamp"].endswith("Z") for line in lines)


def test_logged_objects_render_redacted(json_logs):
    """An object's repr is redacted before any renderer sees it; a dataclass's secret
    fields are hidden by their names even when it forgot repr=False."""

    @dataclasses.dataclass
    class Careless:
        user: str
        password: str

    class Chatty:
        def __repr__(self) -> str:
            return "Chatty(Authorization='Bearer abcdefghijklmnopqrstuvwxyz012345')"

    get_logger("test").info("objects", careless=Careless("ann", "hunter2-secret"), chatty=Chatty())
    (line,) = [item for item in json_logs() if item["event"] == "objects"]
    text = json.dumps(line)
    assert "hunter2-secret" not in text
    assert "abcdefghijklmnopqrstuvwxyz012345" not in text
    assert line["careless"]["user"] == "ann"


def _holders(tmp_path):
    """One of each object that carries a secret, each holding values of CRASH_SECRETS."""
    from paulyops.services.auth.accounts import TotpEnrollment
    from paulyops.services.auth.invitations import CreatedInvitation
    from paulyops.services.auth.passwords import (
        ChangePasswordCommand,
        SetPasswordCommand,
        SetPasswordForm,
    )
    from paulyops.services.auth.second_factor import ConfirmTotpCommand, DisableTotpCommand
    from paulyops.services.auth.sessions import NewSession
    from paulyops.services.auth.signin import SecondFactorCommand, SignIn, SignInCommand
    from paulyops.services.auth.tokens import IssuedToken
    from paulyops.services.onboarding.provision import ProvisionResult
    from paulyops.services.onboarding.wizard import Draft
    from paulyops.web.api.admin import NewTokenOut
    from paulyops.web.api.auth import RecoveryCodesOut, SignInOut, TotpStartOut
    from paulyops.web.api.onboarding import SetupOut
    from paulyops.web.pages.setup import SetupVisit
    from tests.conftest import make_settings

    seed, cookie = CRASH_SECRETS["totp seed"], CRASH_SECRETS["session cookie"]
    csrf, bearer = CRASH_SECRETS["csrf token"], CRASH_SECRETS["bearer token"]
    link = "http://127.0.0.1/set-password?token=" + CRASH_SECRETS["jwt secret"]
    settings = make_settings(
        tmp_path,
        DATABASE_URL="postgresql://app:" + CRASH_SECRETS["jwt secret"] + "@db/prod",
        PAULYOPS_ALERT_WEBHOOK_URL="https://hooks.example/T0/" + bearer,
        JWT_SECRET=CRASH_SECRETS["jwt secret"],
    )
    return {
        "ProvisionContext": _provision_context(),
        "Settings": settings,
        "TotpEnrollment": TotpEnrollment(seed, f"otpauth://totp/x?secret={seed}"),
        "SignIn": SignIn(None, None, cookie, csrf, False),
        "NewSession": NewSession(cookie, None),
        "IssuedToken": IssuedToken(bearer, None),
        "CreatedInvitation": CreatedInvitation(None, link),
        "ProvisionResult": ProvisionResult(True, "org_1", "ok", [], True, "u", link),
        "Draft": Draft(None, {"secretAccessKey": bearer}, {"passwordHash": seed}),
        "SetupVisit": SetupVisit(None, None, None, csrf),
        "SignInCommand": SignInCommand(email="a@b.example", password=seed),
        "SecondFactorCommand": SecondFactorCommand.model_construct(code=seed),
        "ChangePasswordCommand": ChangePasswordCommand(current_password=seed, new_password=cookie),
        "ConfirmTotpCommand": ConfirmTotpCommand.model_construct(code=seed, password=cookie),
        "DisableTotpCommand": DisableTotpCommand(password=seed),
        "TotpStartOut": TotpStartOut(secret=seed, uri=f"otpauth://totp/x?secret={seed}"),
        "RecoveryCodesOut": RecoveryCodesOut(recovery_codes=[seed]),
        "SignInOut": SignInOut.model_construct(csrf_token=csrf),
        "NewTokenOut": NewTokenOut.model_construct(token=bearer),
        "SetPasswordCommand": SetPasswordCommand(token=bearer, password=seed),
        "SetPasswordForm": SetPasswordForm(token=bearer, password=seed, confirm=seed),
        "SetupOut": SetupOut.model_construct(owner_password_link=link),
    }


def test_objects_holding_secrets_never_render_them(tmp_path):
    """repr() and str() of every holder of a session cookie, CSRF token, bearer token, TOTP
    seed, password, one-time link or JWT_SECRET show none of them."""
    for name, holder in _holders(tmp_path).items():
        for text in (repr(holder), str(holder)):
            leaked = [kind for kind, value in CRASH_SECRETS.items() if value in text]
            assert not leaked, f"{name} shows {leaked}: {text}"


def test_validation_error_inputs_are_redacted_from_tracebacks(json_logs):
    """A pydantic ValidationError's message echoes the rejected input: it is redacted."""
    from pydantic import BaseModel, Field, ValidationError

    class Body(BaseModel):
        password: str = Field(max_length=8)

    value = "-".join(["far", "too", "long", "password", "value"])  # not in the source line
    try:
        Body(password=value)
    except ValidationError:
        get_logger("test").exception("invalid")
    text = json.dumps(json_logs())
    assert "far-too-long-password-value" not in text
    assert "string_too_long" in text


def test_a_full_queue_drops_lines_and_says_how_many(restore_logging, monkeypatch):
    """When the sink stops reading and the queue is full, lines are dropped (the caller
    never waits) and a later line reports the count, so nothing vanishes silently."""
    import paulyops.core.logging as logging_module

    monkeypatch.setattr(logging_module, "_QUEUE_SIZE", 5)
    release = threading.Event()

    class StalledStream(io.StringIO):
        def write(self, text: str) -> int:
            release.wait(10)
            return super().write(text)

    stream = StalledStream()
    configure_logging(level="INFO", json_lines=True, stream=stream, background=True)
    started = time.perf_counter()
    for i in range(40):
        get_logger("test").info("flood", i=i)
    assert time.perf_counter() - started < 1.0
    release.set()
    flush_logs()
    get_logger("test").info("after")
    flush_logs()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    written = sum(1 for line in lines if line["event"] == "flood")
    dropped = sum(line.get("log_lines_dropped", 0) for line in lines)
    assert dropped > 0
    assert written + dropped == 40

"""CSRF tokens: session tokens on the store with a row fallback, and pre-session tokens."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paulyops.core.errors import ConfigError, PermissionDeniedError
from paulyops.core.kv import KeyValueStore, MemoryKV, RedisKV
from paulyops.core.logging import add_alert_hook
from paulyops.core.security.csrf import (
    CsrfRejectedError,
    CsrfTokens,
    hash_token,
    is_unsafe_method,
    new_pre_session_nonce,
)
from tests.support.clock import FakeClock
from tests.support.tcpproxy import TcpProxy

SECRET = "test-session-secret-0123456789abcdef"


@pytest.fixture
def events() -> Iterator[list[Mapping[str, Any]]]:
    """Collect the security events raised during a test."""
    seen: list[Mapping[str, Any]] = []
    remove = add_alert_hook(seen.append)
    yield seen
    remove()


def _reasons(events: list[Mapping[str, Any]]) -> list[str]:
    return [e["reason"] for e in events if e["kind"] == "csrf.rejected"]


@pytest.fixture
def unreachable_kv() -> Iterator[RedisKV]:
    """A Redis store whose server cannot be reached (a proxy that resets every connection)."""
    with TcpProxy("127.0.0.1", 9, enabled=False) as proxy:
        kv = RedisKV(f"redis://127.0.0.1:{proxy.port}/0", retries=0, socket_timeout=0.5)
        yield kv
        kv.close()


# --- session tokens ----------------------------------------------------------------------


def test_issued_token_validates_for_its_session_only(kv: KeyValueStore) -> None:
    """A token is accepted for the session it was issued to, and no other."""
    tokens = CsrfTokens(kv)
    token = tokens.issue("session-a")
    assert tokens.validate("session-a", token)
    assert not tokens.validate("session-b", token)


def test_issue_rotates_and_invalidates_the_previous_token(
    kv: KeyValueStore, events: list[Mapping[str, Any]]
) -> None:
    """A new token for a session replaces the old one."""
    tokens = CsrfTokens(kv)
    old = tokens.issue("session-a")
    new = tokens.issue("session-a")
    assert old != new
    assert tokens.validate("session-a", new)
    assert not tokens.validate("session-a", old)
    assert _reasons(events) == ["mismatch"]


def test_missing_wrong_and_unissued_tokens_are_rejected_with_an_event(
    kv: KeyValueStore, events: list[Mapping[str, Any]]
) -> None:
    """Every rejection logs csrf.rejected with the reason, and never the token."""
    tokens = CsrfTokens(kv)
    token = tokens.issue("session-a")
    assert not tokens.validate("session-a", None)
    assert not tokens.validate("session-a", "")
    assert not tokens.validate("session-a", token + "x")
    assert not tokens.validate("never-issued", token)
    assert _reasons(events) == ["missing", "missing", "mismatch", "no_token_issued"]
    assert all(token not in repr(event) for event in events)


def test_revoked_token_is_rejected(kv: KeyValueStore) -> None:
    """After revoke (sign-out) the session's token no longer validates."""
    tokens = CsrfTokens(kv)
    token = tokens.issue("session-a")
    tokens.revoke("session-a")
    assert not tokens.validate("session-a", token)


def test_ensure_valid_raises_a_permission_error_naming_the_reason(kv: KeyValueStore) -> None:
    """ensure_valid raises CsrfRejectedError (a PermissionDeniedError, HTTP 403)."""
    tokens = CsrfTokens(kv)
    tokens.ensure_valid("session-a", tokens.issue("session-a"))
    with pytest.raises(PermissionDeniedError) as caught:
        tokens.ensure_valid("session-a", "forged")
    assert isinstance(caught.value, CsrfRejectedError)
    assert caught.value.reason == "mismatch"


def test_store_without_an_entry_falls_back_to_the_session_row(kv: KeyValueStore) -> None:
    """When the store lost the entry (Redis restarted), the row's hash decides."""
    tokens = CsrfTokens(kv)
    token = "token-issued-before-a-redis-restart"
    assert tokens.validate("session-a", token, fallback_hash=hash_token(token))
    assert not tokens.validate("session-a", "other", fallback_hash=hash_token(token))


def test_store_entry_wins_over_a_stale_row_hash(kv: KeyValueStore) -> None:
    """With the store reachable, a rotated-out token on the row is not accepted."""
    tokens = CsrfTokens(kv)
    old = tokens.issue("session-a")
    tokens.issue("session-a")
    assert not tokens.validate("session-a", old, fallback_hash=hash_token(old))


def test_validation_falls_back_to_the_row_while_the_store_is_down(
    unreachable_kv: RedisKV, events: list[Mapping[str, Any]]
) -> None:
    """Redis unreachable: issue still returns a token and the row's hash validates it."""
    tokens = CsrfTokens(unreachable_kv)
    token = tokens.issue("session-a")
    row_hash = hash_token(token)
    assert tokens.validate("session-a", token, fallback_hash=row_hash)
    assert tokens.validate("session-a", token, fallback_hash=lambda: row_hash)
    assert not tokens.validate("session-a", "forged", fallback_hash=row_hash)
    assert not tokens.validate("session-a", token)
    assert _reasons(events) == ["mismatch", "store_unavailable"]


def test_fallback_loader_is_called_only_when_needed(kv: KeyValueStore) -> None:
    """A callable fallback (a database read) is not called while the store answers."""
    tokens = CsrfTokens(kv)
    token = tokens.issue("session-a")

    def load() -> str | None:
        raise AssertionError("the row must not be read while the store has the token")

    assert tokens.validate("session-a", token, fallback_hash=load)


@settings(max_examples=100, deadline=None)
@given(guess=st.text(max_size=100))
def test_no_other_string_validates(guess: str) -> None:
    """Only the issued token itself is accepted, whatever else is presented."""
    tokens = CsrfTokens(MemoryKV())
    token = tokens.issue("session-a")
    assert tokens.validate("session-a", guess) is (guess == token)


# --- pre-session tokens ------------------------------------------------------------------


def test_pre_session_token_is_bound_to_its_cookie(
    kv: KeyValueStore, events: list[Mapping[str, Any]]
) -> None:
    """A pre-session token validates with its cookie value only."""
    tokens = CsrfTokens(kv, secret=SECRET)
    nonce = new_pre_session_nonce()
    token = tokens.issue_pre_session(nonce)
    assert tokens.validate_pre_session(nonce, token)
    assert not tokens.validate_pre_session(new_pre_session_nonce(), token)
    assert not tokens.validate_pre_session(None, token)
    assert not tokens.validate_pre_session(nonce, None)
    assert _reasons(events) == ["mismatch", "missing_cookie", "missing"]


def test_pre_session_token_signed_elsewhere_or_tampered_is_rejected(
    kv: KeyValueStore, events: list[Mapping[str, Any]]
) -> None:
    """A token signed with another secret, or edited, fails its signature check."""
    nonce = new_pre_session_nonce()
    foreign = CsrfTokens(kv, secret="another-secret-0123456789abcdef").issue_pre_session(nonce)
    tokens = CsrfTokens(kv, secret=SECRET)
    genuine = tokens.issue_pre_session(nonce)
    assert not tokens.validate_pre_session(nonce, foreign)
    assert not tokens.validate_pre_session(nonce, genuine[:-2] + "xx")
    with pytest.raises(CsrfRejectedError):
        tokens.ensure_valid_pre_session(nonce, foreign)
    assert _reasons(events) == ["bad_signature"] * 3


def test_pre_session_token_expires(kv: KeyValueStore, events: list[Mapping[str, Any]]) -> None:
    """A pre-session token older than its max age is rejected as expired."""
    clock = FakeClock()
    tokens = CsrfTokens(kv, secret=SECRET, pre_session_max_age=1, clock=clock)
    nonce = new_pre_session_nonce()
    token = tokens.issue_pre_session(nonce)
    clock.advance(0.9)
    assert tokens.validate_pre_session(nonce, token)
    clock.advance(1.2)
    assert not tokens.validate_pre_session(nonce, token)
    assert _reasons(events) == ["expired"]


def test_pre_session_tokens_need_the_session_secret(kv: KeyValueStore) -> None:
    """Without SESSION_SECRET, pre-session tokens are a configuration error."""
    with pytest.raises(ConfigError, match="SESSION_SECRET"):
        CsrfTokens(kv).issue_pre_session(new_pre_session_nonce())


@pytest.mark.parametrize(
    ("method", "unsafe"),
    [
        ("GET", False),
        ("head", False),
        ("OPTIONS", False),
        ("TRACE", False),
        ("POST", True),
        ("put", True),
        ("PATCH", True),
        ("DELETE", True),
    ],
)
def test_unsafe_methods_need_a_token(method: str, unsafe: bool) -> None:
    """Only methods that change state need a CSRF token."""
    assert is_unsafe_method(method) is unsafe

"""CSRF tokens: synchronizer tokens for sessions, signed tokens before a session exists.

**Session tokens.** :meth:`CsrfTokens.issue` makes a random token for a session and keeps
only its sha256 in the key-value store (keyed by a hash of the session key, with a TTL).
The caller also writes :func:`hash_token` of it to the session's database row. Each issue
replaces the previous token. :meth:`CsrfTokens.validate` compares in constant time against
the store, and against the row's hash (``fallback_hash``) when the store is unreachable or
no longer holds the session's entry (Redis restarted): forms keep working while Redis is
down (DESIGN.md, "Sessions, CSRF and Redis"). One edge: a token issued while Redis was
down reaches only the row; if Redis comes back still holding the session's older token,
that form fails once, and the token issued with the next page works. :meth:`revoke` clears
only the store: signing out must also end the session row.

**Pre-session tokens** (unlock, sign-in and owner-creation forms): a random value in an
HttpOnly cookie (:func:`new_pre_session_nonce`) plus a token in the form, signed with
``SESSION_SECRET`` and time-limited, that names the cookie's hash. A forged form from
another site has neither the cookie's value nor a way to sign a token for it.

Every rejection logs a ``csrf.rejected`` security event with the reason.

.. versionadded:: 0.1
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Literal

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from paulyops.core.errors import ConfigError, PermissionDeniedError
from paulyops.core.kv import KeyValueStore, KVUnavailableError
from paulyops.core.logging import get_logger, security_event

log = get_logger("paulyops.csrf")

# Session tokens live as long as a long working day; the session row keeps the hash for
# the session's whole life, so an expired cache entry falls back to it.
SESSION_TOKEN_TTL = 12 * 3600.0
# A pre-session form (unlock, sign-in) must be submitted within this many seconds.
PRE_SESSION_MAX_AGE = 2 * 3600
# The form field and header names the web layer reads.
FORM_FIELD = "csrf_token"
HEADER_NAME = "X-CSRF-Token"
PRE_SESSION_COOKIE = "paulyops_presession"

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_SALT = "paulyops.csrf.pre-session"
_KEY_PREFIX = "csrf:"

Reason = Literal[
    "missing",
    "mismatch",
    "no_token_issued",
    "store_unavailable",
    "expired",
    "bad_signature",
    "missing_cookie",
]
FallbackHash = str | Callable[[], str | None] | None


class CsrfRejectedError(PermissionDeniedError):
    """A state-changing request carried no valid CSRF token (HTTP 403)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            "the form has expired or did not come from this site; reload the page and try again"
        )
        self.reason = reason


def is_unsafe_method(method: str) -> bool:
    """Whether an HTTP method changes state and so needs a CSRF token."""
    return method.upper() not in _SAFE_METHODS


def hash_token(token: str) -> str:
    """Return the hex sha256 of a token: what the store and the session row keep."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_pre_session_nonce() -> str:
    """Return a random value for the pre-session cookie."""
    return secrets.token_urlsafe(32)


def _store_key(session_key: str) -> str:
    # The session key may be the cookie's secret; only its hash becomes a Redis key.
    return _KEY_PREFIX + hashlib.sha256(session_key.encode("utf-8", "surrogatepass")).hexdigest()


def _clocked_signer(clock: Callable[[], float]) -> type[TimestampSigner]:
    """Return an itsdangerous signer class that reads ``clock`` (its documented hook)."""
    if clock is time.time:
        return TimestampSigner

    class ClockedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return ClockedSigner


def _rejected(reason: Reason, *, flow: str) -> Reason:
    security_event("csrf.rejected", reason=reason, flow=flow)
    return reason


class CsrfTokens:
    """Issue and validate CSRF tokens.

    Args:
        kv: the instance's key-value store.
        secret: ``SESSION_SECRET``, which signs pre-session tokens (session tokens need
            no secret; without one the pre-session methods raise :class:`ConfigError`).
        ttl: seconds a session token stays in the store.
        pre_session_max_age: seconds a pre-session token stays valid.
        clock: the wall clock pre-session tokens are stamped and aged with (tests pass a
            fake one).

    .. versionchanged:: 0.2 ``clock``.
    """

    def __init__(
        self,
        kv: KeyValueStore,
        *,
        secret: str | bytes | Sequence[str] | None = None,
        ttl: float = SESSION_TOKEN_TTL,
        pre_session_max_age: int = PRE_SESSION_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.ttl = ttl
        self.pre_session_max_age = pre_session_max_age
        self._signer = (
            URLSafeTimedSerializer(secret, salt=_SALT, signer=_clocked_signer(clock))
            if secret
            else None
        )

    @property
    def signer(self) -> URLSafeTimedSerializer:
        """The pre-session token signer.

        Raises:
            ConfigError: no ``SESSION_SECRET`` was given.
        """
        if self._signer is None:
            raise ConfigError("pre-session CSRF tokens need SESSION_SECRET")
        return self._signer

    # --- session tokens -----------------------------------------------------------------

    def issue(self, session_key: str) -> str:
        """Return a new token for the session, replacing (invalidating) its previous one.

        Store :func:`hash_token` of the result on the session row too. When the store is
        unreachable the token is still returned: validation then uses the row's hash.
        """
        token = secrets.token_urlsafe(32)
        try:
            self.kv.set(_store_key(session_key), hash_token(token), ttl=self.ttl)
        except KVUnavailableError:
            log.warning("csrf_token_not_cached", reason="store_unavailable")
        return token

    def revoke(self, session_key: str) -> None:
        """Forget the session's token (at sign-out)."""
        try:
            self.kv.delete(_store_key(session_key))
        except KVUnavailableError:
            log.warning("csrf_token_not_revoked", reason="store_unavailable")

    def validate(
        self, session_key: str, token: str | None, *, fallback_hash: FallbackHash = None
    ) -> bool:
        """Whether ``token`` is the session's current token.

        Args:
            session_key: the session the request belongs to.
            token: the token from the form field or ``X-CSRF-Token`` header.
            fallback_hash: the hash kept on the session row (or a function that loads
                it, called only when needed); used when the store is unreachable or has
                no entry for the session.
        """
        return self._session_problem(session_key, token, fallback_hash) is None

    def ensure_valid(
        self, session_key: str, token: str | None, *, fallback_hash: FallbackHash = None
    ) -> None:
        """Raise :class:`CsrfRejectedError` unless :meth:`validate` accepts the token."""
        problem = self._session_problem(session_key, token, fallback_hash)
        if problem is not None:
            raise CsrfRejectedError(problem)

    def _session_problem(
        self, session_key: str, token: str | None, fallback_hash: FallbackHash
    ) -> Reason | None:
        if not token:
            return _rejected("missing", flow="session")
        presented = hash_token(token)
        expected: str | None
        try:
            expected = self.kv.get(_store_key(session_key))
        except KVUnavailableError:
            expected = None
            if fallback_hash is None:
                return _rejected("store_unavailable", flow="session")
        if expected is None:
            expected = fallback_hash() if callable(fallback_hash) else fallback_hash
        if not expected:
            return _rejected("no_token_issued", flow="session")
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            return _rejected("mismatch", flow="session")
        return None

    # --- pre-session tokens -------------------------------------------------------------

    def issue_pre_session(self, nonce: str) -> str:
        """Return a signed, time-limited form token bound to the pre-session cookie value."""
        if not nonce:
            raise ValueError("a pre-session token needs the pre-session cookie's value")
        return self.signer.dumps(hash_token(nonce))

    def validate_pre_session(self, nonce: str | None, token: str | None) -> bool:
        """Whether ``token`` was signed by us, is fresh, and names this cookie value."""
        return self._pre_session_problem(nonce, token) is None

    def ensure_valid_pre_session(self, nonce: str | None, token: str | None) -> None:
        """Raise :class:`CsrfRejectedError` unless :meth:`validate_pre_session` accepts."""
        problem = self._pre_session_problem(nonce, token)
        if problem is not None:
            raise CsrfRejectedError(problem)

    def _pre_session_problem(self, nonce: str | None, token: str | None) -> Reason | None:
        if not token:
            return _rejected("missing", flow="pre_session")
        if not nonce:
            return _rejected("missing_cookie", flow="pre_session")
        try:
            bound = self.signer.loads(token, max_age=self.pre_session_max_age)
        except SignatureExpired:
            return _rejected("expired", flow="pre_session")
        except BadSignature:
            return _rejected("bad_signature", flow="pre_session")
        if not isinstance(bound, str) or not hmac.compare_digest(
            bound.encode(), hash_token(nonce).encode()
        ):
            return _rejected("mismatch", flow="pre_session")
        return None


__all__ = [
    "FORM_FIELD",
    "HEADER_NAME",
    "PRE_SESSION_COOKIE",
    "CsrfRejectedError",
    "CsrfTokens",
    "hash_token",
    "is_unsafe_method",
    "new_pre_session_nonce",
]

"""The one exception hierarchy of PaulyOps.

Services raise these; each interface translates them in one place (web: status code and
the JSON error shape; CLI: a message and an exit code; workers: retry or give up)::

    PaulyOpsError
    ├── ConfigError              a setting or config file is missing or malformed
    ├── SpecValidationError      input breaks a rule (carries per-field errors)
    ├── NotFoundError            the thing does not exist (or is not visible to the caller)
    ├── PermissionDeniedError    the caller may not do this
    │   └── AuthenticationError  the caller is not who they claim (or not signed in)
    ├── ConflictError            the request clashes with existing state
    ├── RateLimitedError         too many requests; carries the retry delay
    ├── SandboxError             an agent run broke its sandbox limits
    └── ExternalServiceError     a dependency (database, Redis, Stripe, S3...) failed
        └── ServiceUnavailableError  fail-closed: the dependency is required right now
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one input field.

    Args:
        field: the field path as on the wire, dot-separated, e.g. ``organization.industry``.
        message: what is wrong, naming the expected and received value.
        allowed: the allowed values, when the field is a choice.
        suggestion: the closest allowed value to a misspelling.
    """

    field: str
    message: str
    allowed: list[str] | None = None
    suggestion: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Return the wire form, leaving out empty keys."""
        out: dict[str, object] = {"field": self.field, "message": self.message}
        if self.allowed is not None:
            out["allowed"] = list(self.allowed)
        if self.suggestion is not None:
            out["suggestion"] = self.suggestion
        return out


class PaulyOpsError(Exception):
    """Base of every error PaulyOps raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(PaulyOpsError):
    """A setting, environment variable or config file is missing or malformed."""


class SpecValidationError(PaulyOpsError):
    """Input breaks one or more rules; ``errors`` names each field."""

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.errors: list[FieldError] = list(errors or [])


class NotFoundError(PaulyOpsError):
    """The requested object does not exist, or the caller may not know that it does."""


class PermissionDeniedError(PaulyOpsError):
    """The caller is known but lacks the permission for this action."""


class AuthenticationError(PermissionDeniedError):
    """The caller could not be authenticated."""


class ConflictError(PaulyOpsError):
    """The request clashes with existing state (e.g. a slug already in use)."""


class RateLimitedError(PaulyOpsError):
    """A rate limit was hit.

    Args:
        retry_after: seconds until the next request may succeed.
    """

    def __init__(self, message: str, *, retry_after: int, limit_name: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit_name = limit_name


class SandboxError(PaulyOpsError):
    """An agent run failed inside, or was stopped by, its sandbox."""


class ExternalServiceError(PaulyOpsError):
    """A service PaulyOps depends on (database, Redis, Stripe, storage) failed."""


class ServiceUnavailableError(ExternalServiceError):
    """A required dependency is unavailable and the operation fails closed."""


__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ConflictError",
    "ExternalServiceError",
    "FieldError",
    "NotFoundError",
    "PaulyOpsError",
    "PermissionDeniedError",
    "RateLimitedError",
    "SandboxError",
    "ServiceUnavailableError",
    "SpecValidationError",
]

"""The web wizard's server-side draft: answers kept encrypted, bound to a setup session.

Unlocking with the setup token starts a *setup session* (a :class:`WebSession` of kind
``setup``) and an empty draft. Each step merges its answers into the draft; secrets typed
into the storage step (S3 keys, OAuth client secrets) live only in the encrypted draft
until provisioning stores them, encrypted again, on the storage rows. The owner's password
is hashed the moment it is entered; the draft keeps only the hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paulyops.core.db.activity import ActivityRecorder
from paulyops.core.db.models import WebSession, WizardDraft, utcnow
from paulyops.core.errors import NotFoundError, PermissionDeniedError
from paulyops.core.security.fields import read_secret_json, write_secret_json
from paulyops.services.auth import sessions
from paulyops.services.onboarding.firstrun import check_setup_token

# A draft lives as long as the setup session could: a day at most.
DRAFT_TTL = timedelta(hours=24)


@dataclass
class Draft:
    """The answers so far: the partial spec in wire form and the owner's account."""

    row: WizardDraft
    spec: dict[str, Any] = field(repr=False)  # storage credentials
    owner: dict[str, Any] = field(repr=False)  # the owner's password hash

    @property
    def setup_token_id(self) -> str | None:
        """The setup token this wizard was unlocked with."""
        return self.row.setup_token_id


def start(
    session: Session, secret: str, *, client_address: str | None, user_agent: str | None
) -> tuple[sessions.NewSession, Draft]:
    """Check the setup token and open a setup session with an empty draft.

    Raises:
        PermissionDeniedError: the instance is set up already, or the token is unknown,
            used or expired.
    """
    token = check_setup_token(session, secret.strip())
    new = sessions.create_session(
        session,
        user_id=None,
        organization_id=None,
        kind="setup",
        client_address=client_address,
        user_agent=user_agent,
    )
    row = WizardDraft(
        session_id=new.row.id, setup_token_id=token.id, expires_at=utcnow() + DRAFT_TTL
    )
    session.add(row)
    write_secret_json(row, "data", {"spec": {}, "owner": {}})
    session.flush()
    return new, Draft(row, {}, {})


def load(session: Session, web_session: WebSession) -> Draft:
    """Return the draft of a setup session.

    Raises:
        PermissionDeniedError: not a setup session, or the draft expired.
    """
    if web_session.kind != "setup":
        raise PermissionDeniedError("the setup wizard needs the setup token first")
    row = session.scalars(
        select(WizardDraft).where(WizardDraft.session_id == web_session.id)
    ).first()
    if row is None or row.expires_at <= utcnow():
        raise PermissionDeniedError("the setup wizard expired; unlock it again with the token")
    data = read_secret_json(row, "data") or {}
    return Draft(row, dict(data.get("spec") or {}), dict(data.get("owner") or {}))


def save(draft: Draft) -> None:
    """Write the draft back, encrypted."""
    write_secret_json(draft.row, "data", {"spec": draft.spec, "owner": draft.owner})


def merge_step(draft: Draft, section: str, answers: dict[str, Any]) -> None:
    """Replace one section's answers, keeping secrets the form left blank.

    Secret inputs are never shown again, so an empty secret field means "unchanged".
    """
    if section == "storage":
        old = {p.get("name") or p.get("type"): p for p in _providers(draft.spec)}
        for provider in answers.get("providers", []):
            previous = old.get(provider.get("name") or provider.get("type"), {})
            for key, value in previous.items():
                if key not in provider or provider[key] in (None, ""):
                    provider[key] = value
    draft.spec[section] = answers


def _providers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    storage = spec.get("storage") or {}
    providers = storage.get("providers") or []
    return [p for p in providers if isinstance(p, dict)]


# The setup session's row; interfaces hold it without reading the models themselves.
SetupSession = WebSession


@dataclass
class Visit:
    """A request inside the wizard: its setup session row and the draft bound to it."""

    row: WebSession
    draft: Draft


def admit(session: Session, cookie: str, *, activity: ActivityRecorder | None = None) -> Visit:
    """Return the setup session and draft a wizard request's cookie names.

    Args:
        cookie: the session cookie's value.
        activity: the instance's session activity tracker (see :mod:`..auth.sessions`).

    Raises:
        PermissionDeniedError: no live setup session (the token was not entered), or its
            draft expired.
    """
    row = sessions.resolve_session(session, cookie, activity=activity)
    if row is None or row.kind != "setup":
        raise PermissionDeniedError("enter the setup token first")
    return Visit(row, load(session, row))


def finish(session: Session, draft: Draft, row: SetupSession) -> None:
    """Delete the draft and end the setup session ``row``, once provisioning succeeded."""
    discard(session, draft)
    row.revoked_at = utcnow()


def discard(session: Session, draft: Draft) -> None:
    """Delete the draft (after provisioning, or when the wizard is abandoned)."""
    session.delete(draft.row)


def require_draft(session: Session, web_session: WebSession | None) -> Draft:
    """Return the draft for the request's session, or explain how to start.

    Raises:
        NotFoundError: there is no setup session.
    """
    if web_session is None:
        raise NotFoundError("no setup in progress; unlock the wizard with the setup token")
    return load(session, web_session)


__all__ = [
    "Draft",
    "SetupSession",
    "Visit",
    "admit",
    "discard",
    "finish",
    "load",
    "merge_step",
    "require_draft",
    "save",
    "start",
]

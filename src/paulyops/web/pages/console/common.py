"""Shared helpers of the console pages: page rendering, the signed-in user, forms and errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from paulyops.core.db import Session
from paulyops.core.db.scoped import OrgScope
from paulyops.core.errors import SpecValidationError
from paulyops.services.auth import directory, passwords, second_factor, signin
from paulyops.services.auth.permissions import PERMISSIONS, RbacModel
from paulyops.services.auth.principals import UserRow
from paulyops.services.commands import parse
from paulyops.web.auth import Principal
from paulyops.web.pages.render import (
    flash,
    redirect,
    render,
    session_form_token,
)

MAX_PASSWORD = passwords.MAX_PASSWORD
M = TypeVar("M", bound=BaseModel)


def _user(principal: Principal) -> UserRow:
    assert principal.user is not None  # every guard admits only signed-in callers
    return principal.user


def _model(session: Session, scope: OrgScope) -> RbacModel:
    return directory.rbac_model(scope)


def _snake(field: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", field.split(".")[-1]).lower()


def parse_form(model: type[M], data: Mapping[str, object]) -> M:
    """Validate a form's fields (by wire or Python name) into a use case's command.

    Raises:
        CommandError: a field breaks a rule, in the one error shape (see
            :func:`form_errors` for the form's view of it).
    """
    return parse(model, data)


def form_bounds(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Return each field's JSON Schema by wire name, for the bounds a form shows.

    Templates read ``bounds.email.maxLength`` instead of repeating a literal, so the form
    and the command refuse the same input.
    """
    properties: dict[str, dict[str, Any]] = model.model_json_schema(by_alias=True).get(
        "properties", {}
    )
    return properties


def form_errors(err: SpecValidationError) -> dict[str, str]:
    """Map a service's field errors to form input names (``roleId`` -> ``role_id``)."""
    out: dict[str, str] = {}
    for item in err.errors:
        out.setdefault(_snake(item.field) or "form", item.message)
    if not out:
        out["form"] = err.message
    return out


# The pages of other domains still import the old name.
_field_errors = form_errors


def _safe_next(value: str | None, default: str = "/console") -> str:
    """Return ``value`` if it is a local path (never another site), else ``default``."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value or any(ord(c) < 32 for c in value):
        return default
    return value


def _back(request: Request, url: str, kind: str, message: str) -> Response:
    response = redirect(url)
    flash(response, request, kind, message)
    return response


def _page(
    request: Request,
    session: Session,
    principal: Principal,
    template: str,
    *,
    active: str,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """Render a console page with the nav, the permission flags and the form token.

    The nav offers an organization switcher when the user belongs to more than one.
    """
    token = session_form_token(request, principal.web_session) if principal.web_session else ""
    organizations: list[directory.OrganizationChoice] = []
    if principal.user is not None and principal.web_session is not None:
        organizations = directory.organization_choices(session, principal.user.id)
    return render(
        request,
        template,
        status_code=status_code,
        csrf_token=token,
        principal=principal,
        me=signin.user_view(principal.user) if principal.user is not None else None,
        can={name: principal.can(name) for name in PERMISSIONS},
        active=active,
        must_enroll=bool(principal.extra.get("must_enroll_second_factor")),
        organizations=organizations if len(organizations) > 1 else [],
        **context,
    )


def _parse_date(value: str, field: str, errors: dict[str, str]) -> date | None:
    text = value.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[field] = f"expected a date like 2026-05-01, got {text[:20]!r}"
        return None


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


def _needs_enrollment(session: Session, user: UserRow, organization_id: str | None) -> bool:
    """Whether the organization requires a second factor this member has not set up yet."""
    return second_factor.enrolment_pending(session, user, organization_id)


def _member_names(scope: OrgScope) -> dict[str, str]:
    """Return the names of the organization's members by user id (for actor columns)."""
    return directory.member_names(scope)

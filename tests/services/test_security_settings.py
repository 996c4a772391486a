"""Security settings as a use case: bounds on the command, one audit row naming the change."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from paulyops.core.db.engine import Database
from paulyops.core.db.models import AuditLog
from paulyops.core.db.scoped import OrgScope
from paulyops.services.actor import Actor
from paulyops.services.commands import CommandError, parse
from paulyops.services.security_settings import (
    ABSOLUTE_HOURS,
    IDLE_MINUTES,
    UpdateSecurity,
    security_view,
    update_security,
)
from tests.factories import make_org

OWNER = Actor("user", "usr_test")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"idleMinutes": IDLE_MINUTES[0] - 1, "absoluteHours": 8}, "idleMinutes"),
        ({"idleMinutes": 30, "absoluteHours": ABSOLUTE_HOURS[1] + 1}, "absoluteHours"),
        ({"idleMinutes": "soon", "absoluteHours": 8}, "idleMinutes"),
        # An idle timeout longer than the whole session is refused on the idle field.
        ({"idleMinutes": 600, "absoluteHours": 8}, "idleMinutes"),
    ],
)
def test_update_security_refuses_out_of_bounds_timeouts(data, field):
    """Each bad timeout is named by its wire field."""
    with pytest.raises(CommandError) as caught:
        parse(UpdateSecurity, data)
    assert [item.field for item in caught.value.errors] == [field]


def test_update_security_schema_holds_the_bounds():
    """The form's min/max come from the command's JSON Schema."""
    props = UpdateSecurity.model_json_schema()["properties"]
    assert (props["idleMinutes"]["minimum"], props["idleMinutes"]["maximum"]) == IDLE_MINUTES
    bounds = (props["absoluteHours"]["minimum"], props["absoluteHours"]["maximum"])
    assert bounds == ABSOLUTE_HOURS


def test_update_security_changes_settings_with_one_audit_row(db: Database):
    """The row changes and one ``security.updated`` row records only what changed."""
    org = make_org(db, "acme")
    with db.write_session() as session:
        scope = OrgScope(session, org.id)
        before = security_view(scope)
        command = parse(
            UpdateSecurity,
            {
                "idleMinutes": "45",
                "absoluteHours": "8",
                "requireAdmin2Fa": before.require_admin_2fa,
            },
        )
        view = update_security(scope, command, actor=OWNER)
    assert (view.session_idle_minutes, view.session_absolute_hours) == (45, 8)
    with db.session() as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.action == "security.updated")).all()
    assert len(rows) == 1
    assert set(rows[0].changes) == {"session_idle_minutes", "session_absolute_hours"}

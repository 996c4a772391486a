"""A warm authenticated read on SQLite costs one statement outside any transaction."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from paulyops.core.db.scoped import OrgScope
from paulyops.services.auth import rbac, sessions, tokens
from tests.conftest import make_settings
from tests.factories import make_org


def test_warm_reads_open_no_transaction_and_still_see_a_revocation(tmp_path, db_url, db):
    """Cached principals need no BEGIN/COMMIT on SQLite; a revocation still applies next."""
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL reads the generation inside the request's transaction")
    from paulyops.web.app import create_app

    org = make_org(db, "cost")
    with db.write_session() as session:
        user_id = org.members["Admin"]
        grant = rbac.grant_for(session, org.id, user_id)
        assert grant is not None
        web = sessions.create_session(session, user_id=user_id, organization_id=org.id)
        issued = tokens.create_api_token(
            OrgScope(session, org.id),
            user_id=user_id,
            name="cost",
            permissions=["org:read"],
            holder_permissions=grant.permissions,
        )
    credentials = [
        {"Authorization": f"Bearer {issued.secret}"},
        {"Cookie": f"paulyops_session={web.token}"},
    ]
    root = tmp_path / "instance"
    root.mkdir()
    app = create_app(make_settings(root, DATABASE_URL=db_url))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert app.state.instance.ready.wait(20)
        for headers in credentials:
            assert client.get("/api/auth/me", headers=headers).status_code == 200
        statements: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:
            statements.append(statement)

        engine = app.state.instance.db.engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            for _ in range(3):
                for headers in credentials:
                    assert client.get("/api/auth/me", headers=headers).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert statements == []  # not even BEGIN: the session never took a connection
        with db.write_session() as session:
            sessions.revoke_session(session, web.row.id)
            tokens.revoke_api_token(OrgScope(session, org.id), issued.row.id)
        for headers in credentials:
            assert client.get("/api/auth/me", headers=headers).status_code == 401

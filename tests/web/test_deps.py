"""The request's session dependencies: ``DbSession`` and its write variant ``WriteSession``."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from paulyops.core.db.models import AuditLog
from paulyops.core.errors import AuthenticationError
from paulyops.services.actor import SYSTEM, record
from paulyops.web.deps import DbSession, Public, WriteSession


def _mount(client):
    router = APIRouter()

    @router.post("/api/test/refuse-read", dependencies=[Public])
    def refuse_read(session: DbSession) -> None:
        record(session, SYSTEM, "test.refused", organization_id=None, outcome="failure")
        raise AuthenticationError("refused")

    @router.post("/api/test/refuse-write", dependencies=[Public])
    def refuse_write(session: WriteSession) -> None:
        record(session, SYSTEM, "test.refused", organization_id=None, outcome="failure")
        raise AuthenticationError("refused")

    @router.get("/api/test/write-on-get", dependencies=[Public])
    def write_on_get(session: WriteSession) -> None:
        record(session, SYSTEM, "test.written", organization_id=None)

    client.app.include_router(router)


def _count(client, action):
    with client.app.state.instance.db.session() as session:
        return session.scalar(select(func.count()).where(AuditLog.action == action))


def test_write_session_keeps_what_a_refusing_use_case_recorded(client):
    """A 401 from a route on ``WriteSession`` still commits its audit row; ``DbSession``'s not."""
    _mount(client)
    assert client.post("/api/test/refuse-read").status_code == 401
    assert _count(client, "test.refused") == 0
    assert client.post("/api/test/refuse-write").status_code == 401
    assert _count(client, "test.refused") == 1


def test_write_session_commits_on_any_method(client):
    """The write variant is declared per route, whatever its method (here a GET)."""
    _mount(client)
    assert client.get("/api/test/write-on-get").status_code == 200
    assert _count(client, "test.written") == 1

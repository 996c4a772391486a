"""The auth generation moves with every principal change, and only then."""

from __future__ import annotations

from datetime import timedelta

from paulyops.core.db import generation
from paulyops.core.db.models import User, WebSession, utcnow
from paulyops.services.auth import sessions
from tests.factories import make_org


def _generation(db) -> int:
    with db.session() as session:
        return generation.read(session)


def test_revoking_a_session_moves_the_generation_at_commit(db):
    """A revocation adds one when it commits; a rolled-back one adds nothing."""
    org = make_org(db, "gen")
    with db.write_session() as session:
        row = sessions.create_session(
            session, user_id=org.members["User"], organization_id=org.id
        ).row
    before = _generation(db)
    try:
        with db.write_session() as session:
            sessions.revoke_session(session, row.id)
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert _generation(db) == before
    with db.write_session() as session:
        sessions.revoke_session(session, row.id)
    assert _generation(db) == before + 1


def test_activity_stamps_and_new_sessions_do_not_move_it(db):
    """Stamps, sign-in times and new credentials leave cached principals valid."""
    org = make_org(db, "stamps")
    before = _generation(db)
    with db.write_session() as session:
        row = sessions.create_session(
            session, user_id=org.members["User"], organization_id=org.id
        ).row
        session.flush()
        row.last_seen_at = utcnow() - timedelta(minutes=3)
        session.get(User, org.members["User"]).last_sign_in_at = utcnow()
    with db.write_session() as session:
        session.get(WebSession, row.id).last_seen_at = utcnow()
    assert _generation(db) == before


def test_a_password_change_moves_it(db):
    """Changing a user's password hash is a principal change."""
    org = make_org(db, "pw")
    before = _generation(db)
    with db.write_session() as session:
        session.get(User, org.members["User"]).password_hash = "changed"
    assert _generation(db) == before + 1


def test_the_committed_read_sees_another_process_change_at_once(db, db_url):
    """read_committed (SQLite) equals read and sees a bump another Database committed."""
    from paulyops.core.db.engine import Database

    if not db_url.startswith("sqlite"):
        assert generation.read_committed(db.engine) is None
        return
    org = make_org(db, "committed")
    with db.write_session() as session:
        row = sessions.create_session(
            session, user_id=org.members["User"], organization_id=org.id
        ).row
    assert generation.read_committed(db.engine) == _generation(db)
    before = _generation(db)
    other = Database(db_url)  # another process, say a CLI command
    try:
        with other.write_session() as session:
            sessions.revoke_session(session, row.id)
    finally:
        other.close()
    assert generation.read_committed(db.engine) == before + 1

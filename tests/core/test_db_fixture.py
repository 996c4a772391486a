"""The shared fixtures give real, migrated databases and key-value stores."""

from sqlalchemy import select

from paulyops.core.db.models import Organization


def test_db_fixture_starts_empty(db):
    """Every test starts with empty, migrated tables."""
    with db.session() as session:
        assert session.scalars(select(Organization)).all() == []


def test_kv_fixture_round_trips(kv):
    """The key-value store stores and reads back values."""
    kv.set("k", "v", ttl=10)
    assert kv.get("k") == "v"

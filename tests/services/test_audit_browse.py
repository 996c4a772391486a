"""Reading the audit log for display: filters as a command, pages of views, readable actors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from paulyops.core.db.engine import Database
from paulyops.core.db.models import INSTANCE_CHAIN
from paulyops.services import audit
from paulyops.services.audit.browse import AuditFilter, chain_of, has_rows, list_entries
from paulyops.services.commands import CommandError, parse
from tests.factories import make_org


def test_filter_names_a_bad_date_on_its_query_field():
    """A date that is not YYYY-MM-DD is an error on ``from``/``to``, as the form names them."""
    with pytest.raises(CommandError) as caught:
        parse(AuditFilter, {"from": "yesterday", "to": "2026-13-01"})
    fields = {item.field: item.message for item in caught.value.errors}
    assert fields == {
        "from": "expected a date like 2026-05-01, got 'yesterday'",
        "to": "expected a date like 2026-05-01, got '2026-13-01'",
    }


def test_filter_never_fails_on_free_text_or_page():
    """Actor and action are trimmed and cut; a page that is not a number >= 1 is the first."""
    wanted = parse(AuditFilter, {"actor": f"  {'u' * 60} ", "action": "member.", "page": "x"})
    assert (len(wanted.actor), wanted.action, wanted.page) == (40, "member.", 1)
    assert parse(AuditFilter, {"page": "-3"}).page == 1
    assert parse(AuditFilter, {"from": "2026-05-01"}).query() == {"from": "2026-05-01"}


def test_list_entries_filters_pages_and_names_actors(db: Database):
    """Pages are newest first and clamped; actors read as people, not ids."""
    org = make_org(db, "acme")
    owner = org.members["Owner"]
    for index in range(5):
        audit.append(
            db,
            chain=org.id,
            action=f"member.{'removed' if index % 2 else 'added'}",
            actor_type="user",
            actor_id=owner,
        )
    audit.append(db, chain=org.id, action="storage.created", actor_type="cli", actor_id=None)
    with db.session() as session:
        page = list_entries(session, org.id, AuditFilter(action="member."), page_size=2)
        last = list_entries(session, org.id, AuditFilter(page=99), page_size=4)
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
        none = list_entries(session, org.id, AuditFilter(date_from=tomorrow))
        assert has_rows(session, org.id)
        assert not has_rows(session, "org_nothing_here")
    assert (page.total, page.pages, page.page, page.chain_rows) == (5, 3, 1, 6)
    assert [entry.seq for entry in page.entries] == [5, 4]
    assert page.entries[0].actor.label == "Owner of acme"
    assert (last.page, [entry.seq for entry in last.entries]) == (2, [2, 1])
    newest = list_entries_first(db, org.id)
    assert (newest.action, newest.actor.label) == ("storage.created", "command line")
    assert none.total == 0


def list_entries_first(db: Database, chain: str) -> audit.AuditEntry:
    """Return the newest entry of ``chain``."""
    with db.session() as session:
        return list_entries(session, chain, AuditFilter()).entries[0]


def test_chain_of_takes_an_id_a_slug_or_instance(db: Database):
    """``--org`` names a chain by id or slug; unknown values are used as given."""
    org = make_org(db, "acme")
    assert chain_of(db, "acme") == org.id
    assert chain_of(db, org.id) == org.id
    assert chain_of(db, INSTANCE_CHAIN) == INSTANCE_CHAIN
    assert chain_of(db, "org_deleted_long_ago") == "org_deleted_long_ago"
    assert chain_of(db, None) is None

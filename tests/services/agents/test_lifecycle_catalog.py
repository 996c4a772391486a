"""Installing from a catalog: fetched, checked, stored instance-wide, then installed."""

from __future__ import annotations

from sqlalchemy import select

from paulyops.core.db.models import INSTANCE_CHAIN, AgentPackage
from paulyops.core.db.scoped import OrgScope
from paulyops.services.actor import CLI
from paulyops.services.agents import lifecycle
from paulyops.services.marketplace import catalogs
from tests.factories import make_org
from tests.services.agents.helpers import audit_actions, setup_instance
from tests.services.marketplace.test_catalogs import catalog  # noqa: F401  # a fixture


def test_a_catalog_package_is_fetched_stored_and_installed(db, catalog, tmp_path):  # noqa: F811
    setup_instance(db, catalog.author)
    org = make_org(db, "acme")
    catalog.publish("1.1.0")
    catalogs.add_source(db, "main", str(catalog.directory), CLI, root=catalog.root())
    package_id = lifecycle.fetch_from_catalog(db, "main", "acme.hello", None, actor=CLI)
    again = lifecycle.fetch_from_catalog(db, "main", "acme.hello", "1.1.0", actor=CLI)
    assert again == package_id
    with db.session() as session:
        row = session.get(AgentPackage, package_id)
        assert (row.source, row.version, row.organization_id) == ("catalog", "1.1.0", None)
        assert session.scalars(select(AgentPackage.id)).all() == [package_id]
    assert audit_actions(db, INSTANCE_CHAIN).count("marketplace.package_fetched") == 1
    with db.write_session() as session:
        done = lifecycle.install(
            OrgScope(session, org.id),
            lifecycle.InstallAgent(package_id=package_id, grant=["alerts:raise"]),
            actor=CLI,
            cache=tmp_path / "cache",
        )
    assert done.installation is not None
    assert (done.installation.source, done.installation.version) == ("catalog", "1.1.0")

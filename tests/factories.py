"""Builders for test data: organizations with seeded roles, and members of each role."""

from __future__ import annotations

from dataclasses import dataclass, field

from paulyops.core.db.engine import Database
from paulyops.core.db.models import Membership, Organization, SecurityConfig
from paulyops.core.db.scoped import OrgScope
from paulyops.core.security.passwords import PasswordHashing
from paulyops.services.auth import accounts, rbac

PASSWORD = "correct-horse-battery-staple-42"
HASHING = PasswordHashing.for_tests()


@dataclass
class OrgFixture:
    """An organization, its role ids by name and a member user id per role."""

    id: str
    slug: str
    roles: dict[str, str] = field(default_factory=dict)
    members: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    memberships: dict[str, str] = field(default_factory=dict)


def make_org(
    db: Database, slug: str, *, model: str = "simple", hashing: PasswordHashing = HASHING
) -> OrgFixture:
    """Create an organization with the model's built-in roles and one member per role."""
    with db.write_session() as session:
        org = Organization(
            slug=slug,
            name=slug.title(),
            industry="other",
            compliance_level="basic",
            size="1-10",
            rbac_model=model,
            spec_hash="0" * 64,
        )
        session.add(org)
        session.flush()
        scope = OrgScope(session, org.id)
        scope.add(
            SecurityConfig(
                audit_logging=True,
                audit_retention_days=365,
                encryption_level="standard",
            )
        )
        roles = rbac.seed_roles(scope, model)
        fixture = OrgFixture(org.id, slug, roles={name: role.id for name, role in roles.items()})
        for name, role in roles.items():
            email = f"{name.lower()}@{slug}.example.com"
            user = accounts.create_user(
                session, hashing, email=email, name=f"{name} of {slug}", password=PASSWORD
            )
            membership = scope.add(Membership(user_id=user.id, role_id=role.id))
            session.flush()
            fixture.members[name] = user.id
            fixture.emails[name] = email
            fixture.memberships[name] = membership.id
        # A plain member that tests may change or remove without losing a signed-in role.
        target = accounts.create_user(
            session, hashing, email=f"target@{slug}.example.com", name="Target", password=PASSWORD
        )
        membership = scope.add(Membership(user_id=target.id, role_id=roles["Viewer"].id))
        session.flush()
        fixture.members["target"] = target.id
        fixture.memberships["target"] = membership.id
    return fixture

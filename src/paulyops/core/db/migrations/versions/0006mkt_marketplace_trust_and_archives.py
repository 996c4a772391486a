"""marketplace: stored archives, trusted publisher keys, revocations, unsigned policy

Revision ID: 0006mkt
Revises: 0005f
Create Date: 2026-12-02 01:30:00.000000

``agent_packages`` had no writer before this revision, so its new NOT NULL columns need
no backfill. The built-in Owner and Admin roles of every existing organization gain
``marketplace:manage`` (new organizations get it from the role templates).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006mkt"
down_revision: str | None = "0005f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MANAGE = "marketplace:manage"
# The built-in roles that hold it, as in services/auth/permissions.py at this revision.
HOLDERS = ("Owner", "Admin")


def _roles() -> sa.TableClause:
    return sa.table(
        "roles",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("permissions", sa.JSON),
        sa.column("is_builtin", sa.Boolean),
    )


def _reseed(add: bool) -> None:
    roles = _roles()
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(roles.c.id, roles.c.permissions).where(
            roles.c.is_builtin.is_(True), roles.c.name.in_(HOLDERS)
        )
    ).all()
    for role_id, permissions in rows:
        current = set(permissions or [])
        wanted = current | {MANAGE} if add else current - {MANAGE}
        if wanted != current:
            conn.execute(
                roles.update().where(roles.c.id == role_id).values(permissions=sorted(wanted))
            )


def upgrade() -> None:
    with op.batch_alter_table("agent_packages", schema=None) as batch_op:
        batch_op.drop_constraint("uq_agent_packages_agent_id_version", type_="unique")
        batch_op.drop_column("checksum")
        batch_op.drop_column("archive_path")
        batch_op.add_column(sa.Column("organization_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("source", sa.String(length=20), nullable=False))
        batch_op.add_column(sa.Column("sha256", sa.String(length=64), nullable=False))
        batch_op.add_column(sa.Column("checksums_sha256", sa.String(length=64), nullable=False))
        batch_op.add_column(sa.Column("size", sa.Integer(), nullable=False))
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("key_fingerprint", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("uploaded_by", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("archive", sa.LargeBinary(), nullable=False))
        batch_op.create_foreign_key(
            batch_op.f("fk_agent_packages_organization_id_organizations"),
            "organizations",
            ["organization_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index(
            batch_op.f("ix_agent_packages_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_agent_packages_organization_id_agent_id_version"),
            ["organization_id", "agent_id", "version"],
        )
    op.create_index(
        "uq_agent_packages_instance_agent_id_version",
        "agent_packages",
        ["agent_id", "version"],
        unique=True,
        sqlite_where=sa.text("organization_id IS NULL"),
        postgresql_where=sa.text("organization_id IS NULL"),
    )

    op.create_table(
        "trusted_publisher_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("publisher", sa.String(length=120), nullable=False),
        sa.Column("added_by", sa.String(length=40), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_publisher_keys")),
        sa.UniqueConstraint(
            "fingerprint",
            "publisher",
            name=op.f("uq_trusted_publisher_keys_fingerprint_publisher"),
        ),
    )
    with op.batch_alter_table("trusted_publisher_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_trusted_publisher_keys_fingerprint"), ["fingerprint"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_trusted_publisher_keys_key_id"), ["key_id"], unique=False
        )

    op.create_table(
        "package_revocations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("key_id", sa.String(length=16), nullable=True),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("agent_id", sa.String(length=120), nullable=True),
        sa.Column("version", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("revoked_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_package_revocations")),
    )
    with op.batch_alter_table("package_revocations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_package_revocations_agent_id"), ["agent_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_package_revocations_key_fingerprint"), ["key_fingerprint"], unique=False
        )

    op.create_table(
        "marketplace_policies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("allow_unsigned", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=40), nullable=True),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_marketplace_policies_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_policies")),
        sa.UniqueConstraint(
            "organization_id", name=op.f("uq_marketplace_policies_organization_id")
        ),
    )
    with op.batch_alter_table("marketplace_policies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_marketplace_policies_organization_id"),
            ["organization_id"],
            unique=False,
        )
    _reseed(add=True)


def downgrade() -> None:
    _reseed(add=False)
    with op.batch_alter_table("marketplace_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_marketplace_policies_organization_id"))
    op.drop_table("marketplace_policies")
    with op.batch_alter_table("package_revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_package_revocations_key_fingerprint"))
        batch_op.drop_index(batch_op.f("ix_package_revocations_agent_id"))
    op.drop_table("package_revocations")
    with op.batch_alter_table("trusted_publisher_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trusted_publisher_keys_key_id"))
        batch_op.drop_index(batch_op.f("ix_trusted_publisher_keys_fingerprint"))
    op.drop_table("trusted_publisher_keys")
    op.drop_index("uq_agent_packages_instance_agent_id_version", table_name="agent_packages")
    with op.batch_alter_table("agent_packages", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_agent_packages_organization_id_agent_id_version"), type_="unique"
        )
        batch_op.drop_index(batch_op.f("ix_agent_packages_organization_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_agent_packages_organization_id_organizations"), type_="foreignkey"
        )
        for column in (
            "archive",
            "uploaded_by",
            "key_fingerprint",
            "key_id",
            "size",
            "checksums_sha256",
            "sha256",
            "source",
            "organization_id",
        ):
            batch_op.drop_column(column)
        batch_op.add_column(sa.Column("archive_path", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("checksum", sa.String(length=64), nullable=False))
        batch_op.create_unique_constraint(
            "uq_agent_packages_agent_id_version", ["agent_id", "version"]
        )

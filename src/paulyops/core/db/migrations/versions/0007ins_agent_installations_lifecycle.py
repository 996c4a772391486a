"""agent installations: grants, settings, rollback, pending updates and quarantine

The lifecycle service (services/agents/lifecycle.py) records on each installation who
granted its capabilities and when, its non-secret settings (secret ones stay in the
encrypted ``config``), the sha256 of the installed archive (its unpack cache folder),
the version an update replaced (for a rollback), how many probation runs a fresh update
still has to pass, an update waiting for a new grant, and why and since when it is
quarantined.

Revision ID: 0007ins
Revises: 0006onb
Create Date: 2026-12-02 05:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007ins"
down_revision: str | None = "0006onb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "agent_installations"


def upgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(sa.Column("granted_by", sa.String(length=60), nullable=True))
        batch_op.add_column(sa.Column("granted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("settings", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.add_column(sa.Column("package_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("previous_package_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("previous_version", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("previous_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("previous_permissions", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "probation_runs_left", sa.Integer(), nullable=False, server_default=sa.text("0")
            )
        )
        batch_op.add_column(sa.Column("pending_package_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("pending_version", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("quarantined_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("quarantined_from", sa.String(length=20), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_agent_installations_previous_package_id_agent_packages"),
            "agent_packages",
            ["previous_package_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_agent_installations_pending_package_id_agent_packages"),
            "agent_packages",
            ["pending_package_id"],
            ["id"],
            ondelete="SET NULL",
        )
    # The defaults were only for rows that existed; the models give every new row a value.
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.alter_column("settings", server_default=None)
        batch_op.alter_column("probation_runs_left", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_agent_installations_pending_package_id_agent_packages"),
            type_="foreignkey",
        )
        batch_op.drop_constraint(
            batch_op.f("fk_agent_installations_previous_package_id_agent_packages"),
            type_="foreignkey",
        )
        for name in (
            "quarantined_from",
            "quarantined_at",
            "quarantined_reason",
            "pending_version",
            "pending_package_id",
            "probation_runs_left",
            "previous_permissions",
            "previous_sha256",
            "previous_version",
            "previous_package_id",
            "package_sha256",
            "settings",
            "granted_at",
            "granted_by",
        ):
            batch_op.drop_column(name)

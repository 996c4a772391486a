"""store an organization's roles model once: organizations.rbac_model

The roles model was stored on ``organizations`` and again on ``security_configs``, and
read from both (role checks from the first, member management from the second). The
organization's column stays; the copy on its security settings goes. Downgrade puts it
back, filled from the organization.

Revision ID: 0006onb
Revises: 0006tuf
Create Date: 2026-12-02 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006onb"
down_revision: str | None = "0006tuf"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Where the two copies ever differed, member management (which read the security
    # settings' copy) and role checks disagreed; keep what role checks used.
    with op.batch_alter_table("security_configs", schema=None) as batch_op:
        batch_op.drop_column("rbac_model")


def downgrade() -> None:
    with op.batch_alter_table("security_configs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rbac_model", sa.String(length=20), nullable=True))
    op.execute(
        "UPDATE security_configs SET rbac_model = (SELECT organizations.rbac_model "
        "FROM organizations WHERE organizations.id = security_configs.organization_id)"
    )
    with op.batch_alter_table("security_configs", schema=None) as batch_op:
        batch_op.alter_column("rbac_model", existing_type=sa.String(length=20), nullable=False)

"""catalog sources: the expired metadata an operator accepted with an audited repin

Revision ID: 0006exp
Revises: 0006onb
Create Date: 2026-12-02 04:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006exp"
down_revision: str | None = "0006onb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("catalog_sources", schema=None) as batch_op:
        # Existing sources have accepted nothing: the server default fills them in.
        batch_op.add_column(
            sa.Column("accepted_expired", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("catalog_sources", schema=None) as batch_op:
        batch_op.drop_column("accepted_expired")

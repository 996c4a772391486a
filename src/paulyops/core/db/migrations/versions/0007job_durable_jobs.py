"""durable jobs: leases, heartbeats, retries; staged inputs; the scheduler's lease

``jobs`` had no writer before this revision, so its new NOT NULL columns need no backfill
beyond their server defaults.

Revision ID: 0007job
Revises: 0007ins
Create Date: 2026-12-02 04:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007job"
down_revision: str | None = "0007ins"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("agent_id", sa.String(length=120), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="run")
        )
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("dispatched_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("duration_ms", sa.Float(), nullable=True))
    # The defaults only filled existing rows; the application always sets both.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("agent_id", server_default=None)
        batch_op.alter_column("kind", server_default=None)
        batch_op.create_index(
            "ix_jobs_claim", ["installation_id", "status", "next_attempt_at"], unique=False
        )
        batch_op.create_index("ix_jobs_lease", ["status", "lease_expires_at"], unique=False)

    op.create_table(
        "job_inputs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_inputs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_job_inputs_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_inputs")),
    )
    with op.batch_alter_table("job_inputs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_inputs_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_job_inputs_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("owner", sa.String(length=120), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheduler_leases")),
    )


def downgrade() -> None:
    op.drop_table("scheduler_leases")
    with op.batch_alter_table("job_inputs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_inputs_organization_id"))
        batch_op.drop_index(batch_op.f("ix_job_inputs_job_id"))
    op.drop_table("job_inputs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_lease")
        batch_op.drop_index("ix_jobs_claim")
        for column in (
            "duration_ms",
            "dispatched_at",
            "heartbeat_at",
            "lease_expires_at",
            "lease_owner",
            "kind",
            "agent_id",
        ):
            batch_op.drop_column(column)

"""resource limits per run template, and how they were enforced on each job

Six nullable columns on ``runtemplate`` (None: the application's or the global default
applies; 0: no limit) and ``job.limits_mechanism`` (``cgroup-v1``, ``cgroup-v2``,
``rlimit``; None: the job had no limits). All nullable, so an older version keeps
working on the new schema.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

RUNTEMPLATE_COLUMNS = (
    ("memory_limit", sa.BigInteger),
    ("cpu_time_limit", sa.Integer),
    ("cpus", sa.Float),
    ("max_processes", sa.Integer),
    ("max_open_files", sa.Integer),
    ("output_limit", sa.BigInteger),
)


def upgrade() -> None:
    with op.batch_alter_table("runtemplate") as batch:
        for name, kind in RUNTEMPLATE_COLUMNS:
            batch.add_column(sa.Column(name, kind(), nullable=True))
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("limits_mechanism", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.drop_column("limits_mechanism")
    with op.batch_alter_table("runtemplate") as batch:
        for name, _ in reversed(RUNTEMPLATE_COLUMNS):
            batch.drop_column(name)

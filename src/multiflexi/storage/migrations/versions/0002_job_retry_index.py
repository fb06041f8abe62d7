"""index job.retry_of

Recovery looks for failed and lost jobs that have no retry yet; without this index each
check scans the job table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 23:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_job_retry_of", "job", ["retry_of"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_job_retry_of", table_name="job")

"""drop two indexes of job that every state change paid for and no query needed

``ix_job_status`` is the leading column of ``ix_job_status_runtemplate``: every query by
status can use that one. ``begin`` is only ever read among running jobs (which the status
index finds), never searched by itself. Each index is written at a job's claim and again
at its finish -- on PostgreSQL every index of the row, since changing an indexed column
makes the update non-HOT -- so two fewer is two fewer index writes per state change.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 19:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_job_status", table_name="job")
    op.drop_index("ix_job_begin", table_name="job")


def downgrade() -> None:
    op.create_index("ix_job_begin", "job", ["begin"], unique=False)
    op.create_index("ix_job_status", "job", ["status"], unique=False)

"""operations: what a run template does when the platform interrupts its job, and a
daemon's state (running, draining)

``runtemplate.on_interrupt``: ``requeue`` (the default) queues a job interrupted by the
platform (its executor stopped before it finished, died, or its host rebooted) again,
whatever the retry policy; ``fail`` leaves it failed or lost, for applications that
must never run twice. ``worker.state``: ``draining`` while a stopping executor waits for
its running jobs, so that ``status`` does not call it dead. Both have server defaults: an
older version that knows neither keeps working on this schema.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 23:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runtemplate") as batch:
        batch.add_column(
            sa.Column(
                "on_interrupt", sa.String(length=16), nullable=False, server_default="requeue"
            )
        )
    with op.batch_alter_table("worker") as batch:
        batch.add_column(
            sa.Column("state", sa.String(length=16), nullable=False, server_default="running")
        )


def downgrade() -> None:
    with op.batch_alter_table("worker") as batch:
        batch.drop_column("state")
    with op.batch_alter_table("runtemplate") as batch:
        batch.drop_column("on_interrupt")

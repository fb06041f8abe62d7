"""runtemplate.last_schedule_error(_at), worker.last_error(_at)

Why the scheduler could not queue a template's due job (a secret that does not open, an
application disabled or deleted, an unknown executor, a cron expression no longer
valid), and since when. Written by the scheduler when the reason appears or changes,
cleared in the transaction that next queues a job of the template; read by
``runtemplate:list``/``show``, ``status``, the metrics and Zabbix. Both nullable: an
older version ignores them.

``worker.last_error``/``last_error_at``: a daemon's last failed step or chore (the
database unreachable, a configuration file it could not re-read), written as soon as it
can be, shown by ``status`` beside the daemon.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 23:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import multiflexi.storage.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runtemplate") as batch:
        batch.add_column(sa.Column("last_schedule_error", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column(
                "last_schedule_error_at", multiflexi.storage.types.UTCDateTime(), nullable=True
            )
        )
    with op.batch_alter_table("worker") as batch:
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("last_error_at", multiflexi.storage.types.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("worker") as batch:
        batch.drop_column("last_error_at")
        batch.drop_column("last_error")
    with op.batch_alter_table("runtemplate") as batch:
        batch.drop_column("last_schedule_error_at")
        batch.drop_column("last_schedule_error")

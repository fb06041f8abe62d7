"""ids never reused on SQLite; a running job's cancel request; artifact names of any bytes

* SQLite hands out ``max(id) + 1``: after the newest job (or artifact, template,
  company ...) was deleted, the next one got its id again, and scripts, logs and job
  directories that named the old one now named another. The tables whose ids people and
  scripts use are rebuilt with ``AUTOINCREMENT`` (SQLite's own 12-step procedure,
  foreign keys off meanwhile: see ``migrations/env.py``); the highest id of each table
  at the time of the migration is remembered by ``sqlite_sequence``, so nothing from
  before it is handed out again either. PostgreSQL (sequences) and MariaDB (since
  10.2.4 the AUTO_INCREMENT counter survives a restart) never reused ids: nothing to do.
* ``job.cancel_requested`` and ``job.cancel_by``: ``job:cancel`` of a running job asks
  the executor that runs it (on any host) to stop it.
* ``artifacts.filename`` becomes TEXT (a path inside a job's directory may be longer than
  the 1,024 characters of the old column), and ``artifacts.raw_name`` keeps the exact
  bytes of a name that is not valid UTF-8.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

import multiflexi.storage.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: Rebuilt with AUTOINCREMENT on SQLite (the models say ``NEVER_REUSED``).
NEVER_REUSED = (
    "apps",
    "company",
    "credential_type",
    "credentials",
    "runtemplate",
    "user",
    "token",
    "auditlog",
    "job",
    "artifacts",
)


def _job_columns(batch: BatchOperations) -> None:
    batch.add_column(
        sa.Column("cancel_requested", multiflexi.storage.types.UTCDateTime(), nullable=True)
    )
    batch.add_column(
        sa.Column("cancel_by", sa.String(length=255), nullable=False, server_default="")
    )


def _artifact_columns(batch: BatchOperations) -> None:
    batch.alter_column(
        "filename",
        existing_type=sa.String(length=1024),
        type_=sa.Text(),
        existing_nullable=False,
    )
    batch.add_column(sa.Column("raw_name", sa.LargeBinary(), nullable=True))


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    options: dict[str, object] = (
        {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": True}} if sqlite else {}
    )
    with op.batch_alter_table("job", **options) as batch:  # type: ignore[arg-type]
        _job_columns(batch)
    with op.batch_alter_table("artifacts", **options) as batch:  # type: ignore[arg-type]
        _artifact_columns(batch)
    if sqlite:
        for table in NEVER_REUSED:
            if table in ("job", "artifacts"):
                continue
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
            ):
                pass


def downgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("raw_name")
        batch.alter_column(
            "filename",
            existing_type=sa.Text(),
            type_=sa.String(length=1024),
            existing_nullable=False,
        )
    with op.batch_alter_table("job") as batch:
        batch.drop_column("cancel_by")
        batch.drop_column("cancel_requested")

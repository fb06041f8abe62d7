"""table mf_setting: the identity of the master key that encrypted the secrets

A process whose key differs from the one that encrypted the database's secrets (another
host's data dir, a new key created by mistake) used to write secrets nobody else could
read. The first secret written now records the key's fingerprint here, and every process
compares its own key with it before it reads or writes a secret. Expand only: the
previous version ignores the table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 23:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from multiflexi.storage.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mf_setting",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mf_setting")

"""company names compared by Unicode case folding on every backend; the global job environment

``company.name_key`` holds :func:`~multiflexi.storage.models.company_name_key` of the
name under a unique index: one rule for "the same name" on SQLite, PostgreSQL and
MariaDB, enforced by the database, so two sessions cannot both create it. Before, the
check was ``lower(name)``, which SQLite applies to ASCII letters only ("Účetní" and
"účetní" were two companies there), while MariaDB's unique index on ``name`` followed
its case- and accent-insensitive collation ("Ucetni" and "Účetní" were one company
there). ``name`` itself is compared exactly now on MariaDB too (``utf8mb4_bin``).

Existing names that fold to the same key keep their rows: the later ones (by id) get no
key and are reported here; renaming one gives it its key.

``globalenv``: variables every job gets first (``global:env:set``). Its names are
compared exactly on MariaDB too: ``http_proxy`` and ``HTTP_PROXY`` are two variables.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 23:50:00
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import multiflexi.storage.types
from multiflexi.storage.models.companies import company_name_key

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

log = logging.getLogger("multiflexi.migrations")


def _exact(length: int) -> sa.types.TypeEngine[str]:
    """A string compared byte for byte on MariaDB as on the other backends."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql"
    )


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("company", sa.Column("name_key", sa.String(length=64), nullable=True))
    company = sa.table(
        "company", sa.column("id", sa.Integer), sa.column("name"), sa.column("name_key")
    )
    seen: dict[str, tuple[int, str]] = {}
    keys = []
    for company_id, name in bind.execute(
        sa.select(company.c.id, company.c.name).order_by(company.c.id)
    ):
        key = company_name_key(name)
        if key in seen:
            first_id, first_name = seen[key]
            log.warning(
                "action=migrate_company_name company_id=%s name=%r same_as_company_id=%s "
                "same_as=%r result=kept_without_name_key",
                company_id,
                name,
                first_id,
                first_name,
            )
            continue
        seen[key] = (company_id, name)
        keys.append({"b_id": company_id, "b_key": key})
    if keys:
        bind.execute(
            company.update()
            .where(company.c.id == sa.bindparam("b_id"))
            .values(name_key=sa.bindparam("b_key")),
            keys,
        )
    op.create_index("ix_company_name_key", "company", ["name_key"], unique=True)
    if bind.dialect.name == "mysql":
        op.alter_column(
            "company",
            "name",
            existing_nullable=False,
            type_=_exact(255),
            existing_type=sa.String(255),
        )
    op.create_table(
        "globalenv",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("keyword", _exact(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated", multiflexi.storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_globalenv")),
        sa.UniqueConstraint("keyword", name=op.f("uq_globalenv_keyword")),
    )


def downgrade() -> None:
    op.drop_table("globalenv")
    if op.get_bind().dialect.name == "mysql":
        op.alter_column(
            "company",
            "name",
            existing_nullable=False,
            type_=sa.String(255),
            existing_type=_exact(255),
        )
    op.drop_index("ix_company_name_key", table_name="company")
    op.drop_column("company", "name_key")

"""users, tokens, roles, company assignments, login throttling and the audit log

Tables for the REST API's users and permissions: ``token`` (only hashes of tokens),
``rbac_user_roles`` (global roles: admin), ``company_user`` (viewer/operator per company),
``login_attempt`` (throttling of failed logins), ``auditlog`` (every change, who and what).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 23:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import multiflexi.storage.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC = multiflexi.storage.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("start", UTC(), nullable=False),
        sa.Column("until", UTC(), nullable=True),
        sa.Column("last_used", UTC(), nullable=True),
        sa.Column("revoked", UTC(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_token_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_token_token_hash")),
    )
    op.create_index(op.f("ix_token_user_id"), "token", ["user_id"], unique=False)
    op.create_table(
        "rbac_user_roles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("assigned_by", sa.Integer(), nullable=True),
        sa.Column("assigned_at", UTC(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_rbac_user_roles_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rbac_user_roles")),
        sa.UniqueConstraint("user_id", "role", name=op.f("uq_rbac_user_roles_user_id_role")),
    )
    op.create_table(
        "company_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["company.id"],
            name=op.f("fk_company_user_company_id_company"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_company_user_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_company_user")),
        sa.UniqueConstraint(
            "company_id", "user_id", name=op.f("uq_company_user_company_id_user_id")
        ),
    )
    op.create_index(op.f("ix_company_user_user_id"), "company_user", ["user_id"], unique=False)
    op.create_table(
        "login_attempt",
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure", UTC(), nullable=False),
        sa.Column("locked_until", UTC(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_attempt")),
    )
    op.create_table(
        "auditlog",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auditlog")),
    )
    op.create_index("ix_auditlog_entity", "auditlog", ["entity_type", "entity_id"], unique=False)
    op.create_index(op.f("ix_auditlog_created_at"), "auditlog", ["created_at"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes (MariaDB refuses to drop an index a foreign key uses).
    for table in ("auditlog", "login_attempt", "company_user", "rbac_user_roles", "token"):
        op.drop_table(table)

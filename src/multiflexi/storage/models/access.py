"""Who may do what: API tokens, roles, company assignments, login throttling, audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from multiflexi.storage.models.base import Base
from multiflexi.storage.types import UTCDateTime, utcnow


class Token(Base):
    """An API token. Only its SHA-256 is stored; ``prefix`` lets a human tell tokens apart."""

    __tablename__ = "token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12), default="")
    name: Mapped[str] = mapped_column(String(255), default="")
    start: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class UserRole(Base):
    """A global role of a user (``admin``); upstream's ``rbac_user_roles``."""

    __tablename__ = "rbac_user_roles"
    __table_args__ = (UniqueConstraint("user_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(32))
    assigned_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CompanyUser(Base):
    """A user's role in one company: ``viewer`` or ``operator``."""

    __tablename__ = "company_user"
    __table_args__ = (UniqueConstraint("company_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginAttempt(Base):
    """Failed logins of one (login, client address) pair, for throttling."""

    __tablename__ = "login_attempt"

    key: Mapped[str] = mapped_column(String(320), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditLog(Base):
    """One change: who, when, through what, which entity, and the fields (secrets redacted)."""

    __tablename__ = "auditlog"
    __table_args__ = (Index("ix_auditlog_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    login: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str] = mapped_column(String(16), default="")
    address: Mapped[str] = mapped_column(String(64), default="")
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(16))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str] = mapped_column(Text, default="")

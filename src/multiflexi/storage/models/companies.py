"""Companies (tenants), their environment, and which applications they use."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from multiflexi.storage.models.base import NEVER_REUSED, Base
from multiflexi.storage.types import UTCDateTime, utcnow


class Company(Base):
    __tablename__ = "company"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    ic: Mapped[str] = mapped_column(String(32), default="")
    email: Mapped[str] = mapped_column(String(255), default="")
    settings: Mapped[str] = mapped_column(Text, default="")
    logo: Mapped[str] = mapped_column(Text, default="")
    server: Mapped[int] = mapped_column(Integer, default=0)
    customer: Mapped[int | None] = mapped_column(Integer, nullable=True)
    setup: Mapped[bool] = mapped_column(Boolean, default=False)
    zabbix_host: Mapped[str] = mapped_column(String(255), default="")
    created: Mapped[datetime] = mapped_column("DatCreate", UTCDateTime, default=utcnow)
    updated: Mapped[datetime | None] = mapped_column("DatUpdate", UTCDateTime, nullable=True)
    retention_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    marked_for_deletion: Mapped[bool] = mapped_column(Boolean, default=False)


class CompanyEnv(Base):
    __tablename__ = "companyenv"
    __table_args__ = (UniqueConstraint("keyword", "company_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("company.id", ondelete="CASCADE"), index=True
    )
    keyword: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text, default="")


class CompanyApp(Base):
    __tablename__ = "companyapp"
    __table_args__ = (UniqueConstraint("company_id", "app_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"))
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

"""Companies (tenants), their environment, which applications they use, and the global
job environment every company's jobs start from."""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, validates

from multiflexi.storage.models.base import NEVER_REUSED, Base
from multiflexi.storage.types import UTCDateTime, utcnow


def company_name_key(name: str) -> str:
    """What makes two company names the same: equal after Unicode case folding (Unicode's
    canonical caseless match: ``NFD(casefold(NFD(name)))``), so "Účetní s.r.o." and
    "účetní s.r.o." are one name on every backend. Stored as a SHA-256 in hex: a fixed
    size for the unique index, and no database collation can fold it any further (a
    case- and accent-insensitive MariaDB collation would take "Ucetni" for "Účetní")."""
    folded = unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())
    return hashlib.sha256(folded.encode("utf-8")).hexdigest()


class Company(Base):
    __tablename__ = "company"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Unique as it is written (byte for byte, on MariaDB too: migration
    #: 0011_company_name_key_globalenv).
    name: Mapped[str] = mapped_column(String(255), unique=True)
    #: :func:`company_name_key` of the name, kept by :meth:`_keep_name_key`; unique, so
    #: two sessions cannot both create the same name. NULL only for a name that collided
    #: when migration 0011_company_name_key_globalenv introduced the column
    #: (docs/companies-and-runtemplates.md).
    name_key: Mapped[str | None] = mapped_column(String(64), unique=True, index=True, nullable=True)
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

    @validates("name")
    def _keep_name_key(self, _key: str, name: str) -> str:
        self.name_key = company_name_key(name)
        return name


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


class GlobalEnv(Base):
    """The global job environment: variables every job gets, before any other layer
    (``global:env:set``). In the database, so every host's executor sees the same."""

    __tablename__ = "globalenv"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Compared byte for byte, on MariaDB too (migration 0011_company_name_key_globalenv):
    #: ``http_proxy`` and ``HTTP_PROXY`` are two variables.
    keyword: Mapped[str] = mapped_column(String(255), unique=True)
    value: Mapped[str] = mapped_column(Text, default="")
    updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

"""Credential types (field templates), company credentials and their bindings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from multiflexi.storage.models.base import NEVER_REUSED, Base
from multiflexi.storage.types import UTCDateTime, utcnow


class CredentialType(Base):
    """A kind of credential (e.g. AbraFlexi, FioBank) and the fields it provides."""

    __tablename__ = "credential_type"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(40), unique=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[str] = mapped_column(String(20), default="1.0")
    url: Mapped[str] = mapped_column(String(255), default="")
    logo: Mapped[str] = mapped_column(Text, default="")
    company_id: Mapped[int | None] = mapped_column(
        ForeignKey("company.id", ondelete="CASCADE"), nullable=True
    )
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CrTypeField(Base):
    __tablename__ = "crtypefield"
    __table_args__ = (UniqueConstraint("credential_type_id", "keyname"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    credential_type_id: Mapped[int] = mapped_column(
        ForeignKey("credential_type.id", ondelete="CASCADE"), index=True
    )
    keyname: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32), default="string")
    description: Mapped[str] = mapped_column(Text, default="")
    hint: Mapped[str] = mapped_column(Text, default="")
    defval: Mapped[str | None] = mapped_column(Text, nullable=True)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    secret: Mapped[bool] = mapped_column(Boolean, default=False)
    options: Mapped[Any] = mapped_column(JSON, nullable=True)


class Credential(Base):
    __tablename__ = "credentials"
    __table_args__ = (UniqueConstraint("company_id", "name"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    company_id: Mapped[int] = mapped_column(
        ForeignKey("company.id", ondelete="CASCADE"), index=True
    )
    credential_type_id: Mapped[int] = mapped_column(ForeignKey("credential_type.id"), index=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class CreData(Base):
    """A value of a credential field; secret values hold ciphertext."""

    __tablename__ = "credata"
    __table_args__ = (UniqueConstraint("credential_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32), default="string")
    value: Mapped[str] = mapped_column(Text, default="")
    is_encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    encryption_key_version: Mapped[int | None] = mapped_column(Integer, nullable=True)


class RunTplCred(Base):
    __tablename__ = "runtplcreds"
    __table_args__ = (UniqueConstraint("runtemplate_id", "credential_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    runtemplate_id: Mapped[int] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="CASCADE"), index=True
    )
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), index=True
    )

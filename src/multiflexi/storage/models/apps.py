"""Applications and what they declare: environment, artifacts, exit codes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from multiflexi.storage.models.base import NEVER_REUSED, Base
from multiflexi.storage.types import UTCDateTime, utcnow


class App(Base):
    __tablename__ = "apps"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    executable: Mapped[str] = mapped_column(String(255))
    cmdparams: Mapped[str] = mapped_column(Text, default="")
    setup: Mapped[str] = mapped_column(String(255), default="")
    deploy: Mapped[str] = mapped_column(String(255), default="")
    homepage: Mapped[str] = mapped_column(String(255), default="")
    image: Mapped[str] = mapped_column(Text, default="")
    requirements: Mapped[str] = mapped_column(Text, default="")
    ociimage: Mapped[str] = mapped_column(String(255), default="")
    version: Mapped[str] = mapped_column(String(64), default="")
    code: Mapped[str | None] = mapped_column(String(32), unique=True, nullable=True)
    uuid: Mapped[str | None] = mapped_column(String(36), unique=True, nullable=True)
    tags: Mapped[str] = mapped_column(Text, default="")
    resultfile: Mapped[str] = mapped_column(String(255), default="")
    deffile: Mapped[str] = mapped_column(String(1024), default="")
    #: Localized names/descriptions, produces/consumes, events, kubernetes and any
    #: unknown top-level keys of the definition: kept so that export gives them back.
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[datetime] = mapped_column("DatCreate", UTCDateTime, default=utcnow)
    updated: Mapped[datetime | None] = mapped_column("DatUpdate", UTCDateTime, nullable=True)

    fields: Mapped[list[ConfField]] = relationship(
        back_populates="app", cascade="all, delete-orphan", order_by="ConfField.position"
    )
    artifact_patterns: Mapped[list[AppArtifact]] = relationship(
        cascade="all, delete-orphan", order_by="AppArtifact.position"
    )
    exit_codes: Mapped[list[AppExitCode]] = relationship(
        cascade="all, delete-orphan", order_by="AppExitCode.exit_code"
    )


class ConfField(Base):
    """One declared environment variable of an application."""

    __tablename__ = "conffield"
    __table_args__ = (UniqueConstraint("app_id", "keyname"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    keyname: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255), default="")
    type: Mapped[str] = mapped_column(String(32), default="string")
    description: Mapped[str] = mapped_column(Text, default="")
    defval: Mapped[str | None] = mapped_column(Text, nullable=True)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    hint: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    secret: Mapped[bool] = mapped_column(Boolean, default=False)
    multiline: Mapped[bool] = mapped_column(Boolean, default=False)
    expiring: Mapped[bool] = mapped_column(Boolean, default=False)
    category: Mapped[str] = mapped_column(String(32), default="")
    options: Mapped[Any] = mapped_column(JSON, nullable=True)
    #: Translations and any attribute of the declaration we have no column for.
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    app: Mapped[App] = relationship(back_populates="fields")


class AppArtifact(Base):
    """A declared result file: a regular expression on paths inside the job directory."""

    __tablename__ = "app_artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(255), default="")
    path: Mapped[str] = mapped_column(String(512))
    type: Mapped[str] = mapped_column(String(128), default="file")
    description: Mapped[str] = mapped_column(Text, default="")
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AppExitCode(Base):
    """What an exit code of an application means."""

    __tablename__ = "app_exit_codes"
    __table_args__ = (UniqueConstraint("app_id", "exit_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    exit_code: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(20), default="error")
    retry: Mapped[bool] = mapped_column(Boolean, default=False)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

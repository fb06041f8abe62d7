"""Users: who launched a job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from multiflexi.storage.models.base import NEVER_REUSED, Base
from multiflexi.storage.types import UTCDateTime, utcnow


class User(Base):
    __tablename__ = "user"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(255), default="")
    firstname: Mapped[str] = mapped_column(String(64), default="")
    lastname: Mapped[str] = mapped_column(String(64), default="")
    password: Mapped[str] = mapped_column(String(255), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column("DatCreate", UTCDateTime, default=utcnow)
    saved: Mapped[datetime | None] = mapped_column("DatSave", UTCDateTime, nullable=True)

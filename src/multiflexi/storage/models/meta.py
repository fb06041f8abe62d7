"""Facts about the installation itself, kept in the database that all hosts share."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from multiflexi.storage.models.base import Base
from multiflexi.storage.types import UTCDateTime, utcnow


class Setting(Base):
    """One named value of the installation, e.g. ``master_key_fingerprint``: the identity
    of the master key that encrypted the database's secrets (never the key itself)."""

    __tablename__ = "mf_setting"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    #: Where and by whom it was written (``host pid``), for the operator.
    origin: Mapped[str] = mapped_column(String(255), default="")
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

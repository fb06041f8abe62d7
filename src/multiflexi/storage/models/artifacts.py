"""Artifacts of jobs. Content lives in the database, in chunks.

Small content sits in ``artifacts.content``; larger or streamed content is split into
``artifact_chunk`` rows so that a gigabyte moves with bounded memory.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from multiflexi.storage.models.base import NEVER_REUSED, Base
from multiflexi.storage.types import Blob, UTCDateTime, utcnow


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    #: The path relative to the job's directory, as text that can be shown: a name that
    #: is not UTF-8 has its stray bytes written ``\xff`` here and is kept whole, byte
    #: for byte, in ``raw_name``.
    filename: Mapped[str] = mapped_column(Text)
    #: The exact bytes of a name that is not valid UTF-8; None for every other name.
    raw_name: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    content: Mapped[bytes | None] = mapped_column(Blob, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: file, result, stdout or stderr
    kind: Mapped[str] = mapped_column(String(16), default="file")
    #: streaming (still being written), complete, failed (could not be stored), skipped
    #: (not a regular file: a FIFO, socket, device or link; never opened), pruned
    state: Mapped[str] = mapped_column(String(16), default="complete")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")


class ArtifactChunk(Base):
    __tablename__ = "artifact_chunk"
    __table_args__ = (UniqueConstraint("artifact_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(Blob)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

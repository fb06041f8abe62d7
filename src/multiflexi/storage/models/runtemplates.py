"""Run templates: application x company x configuration x schedule x limits x actions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from multiflexi.storage.models.base import Base
from multiflexi.storage.types import UTCDateTime, utcnow


class RunTemplate(Base):
    __tablename__ = "runtemplate"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id"), index=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"), index=True)
    name: Mapped[str] = mapped_column(String(250), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Interval code: y m w d h i (yearly ... minutely), c (cron), n (not scheduled).
    interv: Mapped[str] = mapped_column(String(1), default="n")
    cron: Mapped[str | None] = mapped_column(String(64), nullable=True)
    delay: Mapped[int] = mapped_column(Integer, default=0)
    executor: Mapped[str] = mapped_column(String(64), default="Native")
    prepared: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    last_schedule: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_schedule: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    successfull_jobs_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_jobs_count: Mapped[int] = mapped_column(Integer, default=0)
    deadline_offset: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: Seconds a job may run before it is terminated; None means no limit.
    timeout: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    retry_backoff: Mapped[str] = mapped_column(String(16), default="none")
    retry_min_gap: Mapped[int] = mapped_column(Integer, default=0)
    allow_late: Mapped[bool] = mapped_column(Boolean, default=False)
    #: forbid (one running job at a time, the default), allow, or skip (drop the new job).
    overlap: Mapped[str] = mapped_column(String(16), default="forbid")
    #: requeue (the default) or fail: what becomes of a job the platform interrupted (its
    #: executor stopped or died before the job ended); fail for apps that must not run twice.
    on_interrupt: Mapped[str] = mapped_column(
        String(16), default="requeue", server_default="requeue"
    )
    #: Mask values of secret variables echoed to stdout/stderr before storage.
    mask_secrets: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Keep the job's directory on disk after its artifacts are stored.
    keep_workdir: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Resource limits (docs/executor.md "Resource limits"): None means the application's
    #: or the global default, 0 no limit. Sizes in bytes, CPU time in seconds.
    memory_limit: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cpu_time_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cpus: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_processes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_open_files: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_limit: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: Retention overrides (days / counts); None means the global policy.
    keep_success_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    keep_failed_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    keep_last: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[datetime] = mapped_column("DatCreate", UTCDateTime, default=utcnow)
    saved: Mapped[datetime | None] = mapped_column("DatSave", UTCDateTime, nullable=True)
    #: Why the scheduler could not queue the template's due job, and since when; None
    #: once a job of it is queued again (multiflexi.scheduling.problems).
    last_schedule_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_schedule_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Configuration(Base):
    """A configuration value of a run template. Secret values are stored encrypted."""

    __tablename__ = "configuration"
    __table_args__ = (UniqueConstraint("runtemplate_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    runtemplate_id: Mapped[int] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text, default="")
    config_type: Mapped[str] = mapped_column(String(32), default="string")
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)


class ActionConfig(Base):
    """One option of an action attached to a run template for success or fail."""

    __tablename__ = "actionconfig"
    __table_args__ = (UniqueConstraint("runtemplate_id", "mode", "module", "keyname"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    runtemplate_id: Mapped[int] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="CASCADE"), index=True
    )
    mode: Mapped[str] = mapped_column(String(10))
    module: Mapped[str] = mapped_column(String(64))
    keyname: Mapped[str] = mapped_column(String(64), default="")
    value: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)


class ModConfig(Base):
    """Global default option of an action module."""

    __tablename__ = "modconfig"
    __table_args__ = (UniqueConstraint("module", "cfg"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    module: Mapped[str] = mapped_column(String(64))
    cfg: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text, default="")
    saved: Mapped[datetime] = mapped_column("DatSave", UTCDateTime, default=utcnow)

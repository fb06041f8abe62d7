"""Jobs, the queue (``schedule``), action outcomes and daemon heartbeats."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from multiflexi.storage.models.base import Base
from multiflexi.storage.types import UTCDateTime, utcnow


class JobStatus(StrEnum):
    LOADED = "loaded"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    LOST = "lost"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.LOST, JobStatus.CANCELLED}
)


class Job(Base):
    """One execution of a run template. Never changes after it ends, except by deletion."""

    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_status_runtemplate", "status", "runtemplate_id"),
        Index("ix_job_company_created", "company_id", "created"),
        Index("ix_job_retry_of", "retry_of"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id"), index=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"))
    runtemplate_id: Mapped[int | None] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="SET NULL"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.LOADED)
    #: Why a job failed, was lost or cancelled (timeout, signal, missing executable ...).
    reason: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The planned start (not-before) time.
    schedule: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    schedule_type: Mapped[str] = mapped_column(String(32), default="adhoc")
    begin: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    exitcode: Mapped[int | None] = mapped_column(Integer, nullable=True)
    signal: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Environment with provenance: a list of {name, value, source, secret}; secret values
    #: are stored as ciphertext, never in clear text.
    env: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: One-off overrides given at creation (``--env K=V``), kept for re-runs.
    overrides: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    #: The command as an argv list (secrets redacted) and as a display string.
    argv: Mapped[list[str]] = mapped_column(JSON, default=list)
    command: Mapped[str] = mapped_column(Text, default="")
    executor: Mapped[str] = mapped_column(String(64), default="Native")
    app_version: Mapped[str] = mapped_column(String(64), default="")
    launched_by: Mapped[int | None] = mapped_column(ForeignKey("user.id"), nullable=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    worker: Mapped[str] = mapped_column(String(128), default="")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    retry_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    workdir: Mapped[str] = mapped_column(String(1024), default="")
    wall_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    cpu_user: Mapped[float | None] = mapped_column(Float, nullable=True)
    cpu_system: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_rss_kb: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: How the job's resource limits were enforced: cgroup-v1, cgroup-v2 or rlimit
    #: (None: it had none).
    limits_mechanism: Mapped[str | None] = mapped_column(String(16), nullable=True)
    artifacts_pruned: Mapped[bool] = mapped_column(Boolean, default=False)
    retention_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    marked_for_deletion: Mapped[bool] = mapped_column(Boolean, default=False)


class ScheduleEntry(Base):
    """A job waiting to run, not before ``after``. Deleted when a worker claims it."""

    __tablename__ = "schedule"
    __table_args__ = (Index("ix_schedule_due", "after", "priority"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), unique=True)
    after: Mapped[datetime] = mapped_column(UTCDateTime)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# The claim's order: the first due row is found without sorting the whole queue.
Index("ix_schedule_claim", ScheduleEntry.priority.desc(), ScheduleEntry.after, ScheduleEntry.id)


class ScheduledTick(Base):
    """One scheduler tick of a run template; the unique pair makes a tick fire once."""

    __tablename__ = "scheduled_tick"
    __table_args__ = (UniqueConstraint("runtemplate_id", "tick"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    runtemplate_id: Mapped[int] = mapped_column(ForeignKey("runtemplate.id", ondelete="CASCADE"))
    tick: Mapped[datetime] = mapped_column(UTCDateTime)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobAction(Base):
    """The outcome of one post-run action of a job."""

    __tablename__ = "job_action"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String(10))
    action: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str] = mapped_column(Text, default="")
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Worker(Base):
    """A running daemon (executor or scheduler), alive while its heartbeat is fresh."""

    __tablename__ = "worker"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[str] = mapped_column(String(32), default="")
    started: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The daemon's last failed step or chore, and when (shown by ``status``).
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: running, or draining: stopping, waiting for its running jobs (it still beats).
    state: Mapped[str] = mapped_column(String(16), default="running", server_default="running")


class Lock(Base):
    """Named cluster-wide locks with an expiry (housekeeping runs once across hosts)."""

    __tablename__ = "mf_lock"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), default="")
    until: Mapped[datetime] = mapped_column(UTCDateTime)

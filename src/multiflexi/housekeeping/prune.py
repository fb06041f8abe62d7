"""Applying the retention policy: plan what goes, then delete it in small transactions.

Planning only reads: it pages through each template's jobs newest first (keyset pages on
the primary key) and asks :mod:`multiflexi.housekeeping.policy` for verdicts, so the
decision is made by pure code and a dry run is exactly the plan.

Applying deletes in bounded batches. Each batch is one short transaction (its size adapts
to stay well under a second); chunk rows, which can each hold a mebibyte, are deleted
before their job in batches of their own. Between batches on SQLite the pruner pauses as
long as the batch took, so that the executor's short writes always find the write lock
free. Only finished jobs are ever touched, and a finished job never changes again, so a
plan stays valid while new jobs arrive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from multiflexi.errors import NotFound
from multiflexi.housekeeping.policy import (
    Forced,
    JobFacts,
    RetentionPolicy,
    TemplateRetention,
    TemplateWalker,
    Verdict,
    effective_policy,
    policy_from_values,
)
from multiflexi.storage.models import (
    FINAL_STATUSES,
    Artifact,
    ArtifactChunk,
    Company,
    Job,
    JobAction,
    RunTemplate,
    ScheduleEntry,
)
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

#: Jobs read per page while planning.
PAGE = 5000
#: Ids per aggregate query while sizing a plan (well under every backend's bind limit).
SIZE_BATCH = 500
#: Jobs per delete transaction at most, and the time one transaction should stay under.
BATCH = 200
TARGET_SECONDS = 0.25
#: Chunk rows (up to 1 MiB each) per delete transaction.
CHUNK_BATCH = 32

_FINAL = [s.value for s in FINAL_STATUSES]


@dataclass(frozen=True)
class PruneRequest:
    """What to prune: command-line limits and an optional company / template scope."""

    forced: Forced = field(default_factory=Forced)
    company: str | None = None
    runtemplate_id: int | None = None


@dataclass
class PrunePlan:
    """The jobs that go and those that lose their artifacts, with what that frees."""

    delete: list[int] = field(default_factory=list)
    prune: list[int] = field(default_factory=list)
    artifact_kinds: frozenset[str] | None = None
    artifacts_deleted: int = 0
    artifacts_pruned: int = 0
    bytes_delete: int = 0
    bytes_prune: int = 0
    templates: int = 0


@dataclass
class PruneResult:
    """Counts of what a prune did (or, for a dry run, would do)."""

    dry_run: bool = False
    jobs_deleted: int = 0
    jobs_artifacts_pruned: int = 0
    artifacts_deleted: int = 0
    artifacts_pruned: int = 0
    bytes_freed: int = 0
    chunks_deleted: int = 0
    batches: int = 0
    max_batch_seconds: float = 0.0
    seconds: float = 0.0
    stopped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["max_batch_seconds"] = round(self.max_batch_seconds, 3)
        data["seconds"] = round(self.seconds, 3)
        return data


# -- planning ---------------------------------------------------------------------------


def resolve_company(session: Session, company: str | None) -> int | None:
    """The id of a company given by id or slug; None stays None."""
    if company is None:
        return None
    stmt = select(Company.id).where(
        Company.id == int(company) if company.isdigit() else Company.slug == company
    )
    found = session.scalar(stmt)
    if found is None:
        raise NotFound(f"company {company} not found")
    return int(found)


def _templates(
    session: Session, company_id: int | None, runtemplate_id: int | None
) -> dict[int, TemplateRetention]:
    stmt = select(
        RunTemplate.id,
        RunTemplate.keep_success_days,
        RunTemplate.keep_failed_days,
        RunTemplate.keep_last,
    )
    if company_id is not None:
        stmt = stmt.where(RunTemplate.company_id == company_id)
    if runtemplate_id is not None:
        stmt = stmt.where(RunTemplate.id == runtemplate_id)
    found = {row[0]: TemplateRetention(row[1], row[2], row[3]) for row in session.execute(stmt)}
    if runtemplate_id is not None and runtemplate_id not in found:
        raise NotFound(f"run template {runtemplate_id} not found")
    return found


def _pages(db: Database, template_id: int | None, company_id: int | None) -> Iterator[JobFacts]:
    """The jobs of one template (None: jobs whose template was deleted), newest first."""
    before: int | None = None
    while True:
        stmt = select(Job.id, Job.status, Job.created, Job.end, Job.artifacts_pruned)
        if template_id is None:
            stmt = stmt.where(Job.runtemplate_id.is_(None))
        else:
            stmt = stmt.where(Job.runtemplate_id == template_id)
        if company_id is not None:
            stmt = stmt.where(Job.company_id == company_id)
        if before is not None:
            stmt = stmt.where(Job.id < before)
        # A short read per page: no long-lived snapshot holds back the WAL or vacuum.
        with db.read() as session:
            rows = session.execute(stmt.order_by(Job.id.desc()).limit(PAGE)).all()
        for row in rows:
            yield JobFacts(row[0], row[1], row[2], row[3], bool(row[4]))
        if len(rows) < PAGE:
            return
        before = rows[-1][0]


def _batches(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _live_bytes() -> Any:
    """Bytes still stored: a pruned artifact keeps its size for the record, not its content."""
    return func.coalesce(func.sum(case((Artifact.state != "pruned", Artifact.size), else_=0)), 0)


def _size_plan(db: Database, plan: PrunePlan) -> None:
    with db.read() as session:
        for ids in _batches(plan.delete, SIZE_BATCH):
            count, size = session.execute(
                select(func.count(Artifact.id), _live_bytes()).where(Artifact.job_id.in_(ids))
            ).one()
            plan.artifacts_deleted += int(count)
            plan.bytes_delete += int(size)
        for ids in _batches(plan.prune, SIZE_BATCH):
            stmt = select(func.count(Artifact.id), func.coalesce(func.sum(Artifact.size), 0))
            stmt = stmt.where(*_prunable(ids, plan.artifact_kinds))
            count, size = session.execute(stmt).one()
            plan.artifacts_pruned += int(count)
            plan.bytes_prune += int(size)


def plan_prune(
    db: Database,
    settings: Settings,
    request: PruneRequest | None = None,
    *,
    now: datetime | None = None,
    base: RetentionPolicy | None = None,
) -> PrunePlan:
    """Decide, without changing anything, which jobs and artifacts the policy removes."""
    request = request or PruneRequest()
    moment = now or utcnow()
    base = base or policy_from_values(settings.raw)
    with db.read() as session:
        company_id = resolve_company(session, request.company)
        templates = _templates(session, company_id, request.runtemplate_id)
    groups: list[int | None] = list(sorted(templates))
    if request.runtemplate_id is None:
        groups.append(None)
    plan = PrunePlan(templates=len(templates))
    for group in groups:
        policy = effective_policy(
            base, templates.get(group) if group is not None else None, request.forced
        )
        plan.artifact_kinds = policy.artifact_kinds
        walker = TemplateWalker(policy, moment)
        for job in _pages(db, group, company_id):
            verdict = walker.verdict(job)
            if verdict is Verdict.DELETE:
                plan.delete.append(job.id)
            elif verdict is Verdict.PRUNE_ARTIFACTS:
                plan.prune.append(job.id)
    _size_plan(db, plan)
    return plan


# -- applying ---------------------------------------------------------------------------


def _prunable(job_ids: Sequence[int], kinds: frozenset[str] | None) -> list[Any]:
    conditions: list[Any] = [Artifact.job_id.in_(job_ids), Artifact.state != "pruned"]
    if kinds is not None:
        conditions.append(Artifact.kind.in_(sorted(kinds)))
    return conditions


def _drop_chunks(
    db: Database, job_ids: Sequence[int], kinds: frozenset[str] | None, *, all_kinds: bool
) -> int:
    """Delete the chunk rows of these jobs' artifacts, a few mebibytes per transaction."""
    deleted = 0
    conditions: list[Any] = [Artifact.job_id.in_(job_ids)]
    if not all_kinds and kinds is not None:
        conditions.append(Artifact.kind.in_(sorted(kinds)))
    while True:
        with db.read() as session:
            ids = list(
                session.scalars(
                    select(ArtifactChunk.id)
                    .join(Artifact, Artifact.id == ArtifactChunk.artifact_id)
                    .where(*conditions)
                    .limit(CHUNK_BATCH)
                )
            )
        if not ids:
            return deleted

        def drop(session: Session, ids: list[int] = ids) -> None:
            session.execute(delete(ArtifactChunk).where(ArtifactChunk.id.in_(ids)))

        db.run(drop)
        deleted += len(ids)
        if len(ids) < CHUNK_BATCH:
            return deleted


def _final_ids(session: Session, job_ids: Sequence[int]) -> list[int]:
    """Re-checked inside the transaction: never touch a job that is not finished."""
    return list(session.scalars(select(Job.id).where(Job.id.in_(job_ids), Job.status.in_(_FINAL))))


def _delete_jobs(session: Session, job_ids: Sequence[int]) -> tuple[int, int, int]:
    ids = _final_ids(session, job_ids)
    if not ids:
        return 0, 0, 0
    count, size = session.execute(
        select(func.count(Artifact.id), _live_bytes()).where(Artifact.job_id.in_(ids))
    ).one()
    art_ids = select(Artifact.id).where(Artifact.job_id.in_(ids)).scalar_subquery()
    session.execute(delete(ArtifactChunk).where(ArtifactChunk.artifact_id.in_(art_ids)))
    session.execute(delete(Artifact).where(Artifact.job_id.in_(ids)))
    session.execute(delete(JobAction).where(JobAction.job_id.in_(ids)))
    session.execute(delete(ScheduleEntry).where(ScheduleEntry.job.in_(ids)))
    session.execute(delete(Job).where(Job.id.in_(ids), Job.status.in_(_FINAL)))
    return len(ids), int(count), int(size)


def _prune_artifacts(
    session: Session, job_ids: Sequence[int], kinds: frozenset[str] | None
) -> tuple[int, int, int]:
    ids = _final_ids(session, job_ids)
    if not ids:
        return 0, 0, 0
    conditions = _prunable(ids, kinds)
    count, size = session.execute(
        select(func.count(Artifact.id), func.coalesce(func.sum(Artifact.size), 0)).where(
            *conditions
        )
    ).one()
    art_ids = select(Artifact.id).where(*conditions).scalar_subquery()
    session.execute(delete(ArtifactChunk).where(ArtifactChunk.artifact_id.in_(art_ids)))
    # The rows stay, with their size and checksum, so the record says what there was.
    session.execute(
        update(Artifact)
        .where(*conditions)
        .values(content=None, state="pruned")
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Job)
        .where(Job.id.in_(ids))
        .values(artifacts_pruned=True)
        .execution_options(synchronize_session=False)
    )
    return len(ids), int(count), int(size)


def _apply_batch(
    verdict: Verdict, job_ids: Sequence[int], kinds: frozenset[str] | None, session: Session
) -> tuple[int, int, int]:
    if verdict is Verdict.DELETE:
        return _delete_jobs(session, job_ids)
    return _prune_artifacts(session, job_ids, kinds)


#: Called after each batch with the running result; returning False stops the prune.
BatchHook = Callable[[PruneResult], bool]


def apply_prune(
    db: Database,
    plan: PrunePlan,
    *,
    batch_size: int = BATCH,
    on_batch: BatchHook | None = None,
) -> PruneResult:
    """Carry out a plan in short transactions; returns what was actually done."""
    result = PruneResult()
    started = time.monotonic()
    size = max(1, batch_size)
    pause = db.dialect == "sqlite"
    work: list[tuple[Verdict, list[int]]] = [
        (Verdict.DELETE, plan.delete),
        (Verdict.PRUNE_ARTIFACTS, plan.prune),
    ]
    for verdict, ids in work:
        pos = 0
        while pos < len(ids):
            batch = ids[pos : pos + size]
            pos += len(batch)
            result.chunks_deleted += _drop_chunks(
                db, batch, plan.artifact_kinds, all_kinds=verdict is Verdict.DELETE
            )
            t0 = time.monotonic()
            jobs, arts, freed = db.run(partial(_apply_batch, verdict, batch, plan.artifact_kinds))
            if verdict is Verdict.DELETE:
                result.jobs_deleted += jobs
                result.artifacts_deleted += arts
            else:
                result.jobs_artifacts_pruned += jobs
                result.artifacts_pruned += arts
            elapsed = time.monotonic() - t0
            result.bytes_freed += freed
            result.batches += 1
            result.max_batch_seconds = max(result.max_batch_seconds, elapsed)
            # Adapt: halve a batch that took too long, grow back while they are quick.
            if elapsed > TARGET_SECONDS and size > 10:
                size = max(10, size // 2)
            elif elapsed < TARGET_SECONDS / 4 and size < batch_size:
                size = min(batch_size, size * 2)
            if on_batch is not None and not on_batch(result):
                result.stopped = "stopped by the caller (housekeeping lock lost)"
                result.seconds = time.monotonic() - started
                return result
            if pause:
                # SQLite has one writer: leave the lock free for a while after each batch so
                # that the executor's waiting writes get in (its busy handler polls).
                time.sleep(min(max(elapsed / 2, 0.01), TARGET_SECONDS))
    result.seconds = time.monotonic() - started
    return result


def preview(plan: PrunePlan) -> PruneResult:
    """What applying ``plan`` would report, for ``--dry-run``."""
    return PruneResult(
        dry_run=True,
        jobs_deleted=len(plan.delete),
        jobs_artifacts_pruned=len(plan.prune),
        artifacts_deleted=plan.artifacts_deleted,
        artifacts_pruned=plan.artifacts_pruned,
        bytes_freed=plan.bytes_delete + plan.bytes_prune,
    )

"""Retention: which finished jobs go, which lose only their artifacts, which stay.

Pure code, no database. :func:`decide` walks the jobs of one run template newest first and
returns a :class:`Verdict` for every job it would touch; the prune service persists them.

The rules, in order:

1. A job that is not finished (``loaded``, ``scheduled``, ``running``) is never touched, and
   does not count towards "the last K".
2. The newest ``keep_last`` finished jobs of the template stay, with their artifacts.
3. The newest ``keep_failures`` failures (``failed`` or ``lost``) stay, with their artifacts.
4. Otherwise a job whose age (since it ended, or was created if it never ran) reaches its
   limit is deleted: ``success_age`` for successful jobs, ``failed_age`` for failed, lost
   and cancelled ones. ``None`` means no age limit.
5. Otherwise, when its age reaches ``artifact_age``, its artifacts are pruned (content
   deleted, rows kept) and the job record stays.

"Newest" means the highest job id: ids are handed out in creation order on every backend,
and ordering by the primary key lets the service page through millions of jobs cheaply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from multiflexi.errors import ConfigError, Invalid
from multiflexi.storage.models.jobs import FINAL_STATUSES, JobStatus

#: The artifact kinds holding a job's output; ``prune --logs`` prunes only these.
OUTPUT_KINDS = frozenset({"stdout", "stderr"})

#: Statuses that count as failures for ``keep_failures`` (a cancelled job did not fail).
FAILURE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.LOST})

#: Defaults used when the configuration does not say otherwise.
DEFAULT_SUCCESS_DAYS = 90
DEFAULT_FAILED_DAYS = 365
DEFAULT_KEEP_LAST = 10
DEFAULT_KEEP_FAILURES = 5

_AGE = re.compile(r"^\s*(\d+)\s*([mhdw]?)\s*$")
_AGE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks", "": "days"}


class Verdict(StrEnum):
    """What happens to one job."""

    KEEP = "keep"
    PRUNE_ARTIFACTS = "prune_artifacts"
    DELETE = "delete"


@dataclass(frozen=True)
class RetentionPolicy:
    """The effective retention rules for one run template."""

    success_age: timedelta | None = timedelta(days=DEFAULT_SUCCESS_DAYS)
    failed_age: timedelta | None = timedelta(days=DEFAULT_FAILED_DAYS)
    keep_last: int = DEFAULT_KEEP_LAST
    keep_failures: int = DEFAULT_KEEP_FAILURES
    #: None: artifacts live exactly as long as their job.
    artifact_age: timedelta | None = None
    #: Artifact kinds that pruning deletes; None means every kind.
    artifact_kinds: frozenset[str] | None = None
    #: False for ``prune --logs``: job records are never deleted, only their output.
    delete_jobs: bool = True


@dataclass(frozen=True)
class TemplateRetention:
    """The per-run-template overrides (``runtemplate.keep_*``); None = the global value."""

    keep_success_days: int | None = None
    keep_failed_days: int | None = None
    keep_last: int | None = None


@dataclass(frozen=True)
class Forced:
    """Limits given on the command line; they win over configuration and templates.

    ``count_only`` is upstream's ``prune --jobs/--logs --keep N``: only the newest N
    finished jobs of each template count, whatever their age and outcome.
    """

    older_than: timedelta | None = None
    keep: int | None = None
    count_only: bool = False
    logs_only: bool = False


@dataclass(frozen=True)
class JobFacts:
    """What the policy needs to know about one job."""

    id: int
    status: str
    created: datetime
    end: datetime | None = None
    artifacts_pruned: bool = False

    @property
    def finished_at(self) -> datetime:
        return self.end or self.created


def parse_age(text: str, what: str = "--older-than") -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m`` or a bare number of days."""
    match = _AGE.match(text.lower())
    if not match:
        raise Invalid(f"{what} must look like 30d, 12h, 2w or 90m, got {text!r}")
    return timedelta(**{_AGE_UNITS[match.group(2)]: int(match.group(1))})


def _setting(values: Mapping[str, str], key: str, default: int | None) -> int | None:
    raw = values.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a whole number, got {raw!r}") from None
    if number < 0:
        raise ConfigError(f"{key} must not be negative, got {number}")
    return number


def _days(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(days=value)


def policy_from_values(values: Mapping[str, str]) -> RetentionPolicy:
    """The global policy from ``MULTIFLEXI_RETENTION_*`` settings, defaults filled in."""
    return RetentionPolicy(
        success_age=_days(
            _setting(values, "MULTIFLEXI_RETENTION_SUCCESS_DAYS", DEFAULT_SUCCESS_DAYS)
        ),
        failed_age=_days(_setting(values, "MULTIFLEXI_RETENTION_FAILED_DAYS", DEFAULT_FAILED_DAYS)),
        keep_last=_setting(values, "MULTIFLEXI_RETENTION_KEEP_LAST", DEFAULT_KEEP_LAST) or 0,
        keep_failures=_setting(values, "MULTIFLEXI_RETENTION_KEEP_FAILURES", DEFAULT_KEEP_FAILURES)
        or 0,
        artifact_age=_days(_setting(values, "MULTIFLEXI_RETENTION_ARTIFACT_DAYS", None)),
    )


def effective_policy(
    base: RetentionPolicy, template: TemplateRetention | None, forced: Forced
) -> RetentionPolicy:
    """Global policy, then the template's overrides, then the command line's."""
    policy = base
    if template is not None and not forced.count_only:
        if template.keep_success_days is not None:
            policy = replace(policy, success_age=timedelta(days=template.keep_success_days))
        if template.keep_failed_days is not None:
            policy = replace(policy, failed_age=timedelta(days=template.keep_failed_days))
        if template.keep_last is not None:
            policy = replace(policy, keep_last=template.keep_last)
    if forced.count_only:
        # Upstream semantics: the newest N per template stay, everything older goes.
        age = forced.older_than or timedelta(0)
        policy = RetentionPolicy(
            success_age=age,
            failed_age=age,
            keep_last=forced.keep if forced.keep is not None else policy.keep_last,
            keep_failures=0,
            artifact_age=None,
        )
    else:
        if forced.older_than is not None:
            policy = replace(
                policy,
                success_age=forced.older_than,
                failed_age=forced.older_than,
                artifact_age=None,
            )
        if forced.keep is not None:
            policy = replace(policy, keep_last=forced.keep)
    if forced.logs_only:
        # Output goes where the job would have gone; the job record always stays.
        ages = [
            a for a in (policy.success_age, policy.failed_age, policy.artifact_age) if a is not None
        ]
        policy = replace(
            policy,
            delete_jobs=False,
            artifact_age=min(ages) if ages else timedelta(0),
            artifact_kinds=OUTPUT_KINDS,
        )
    return policy


def _age_limit(policy: RetentionPolicy, status: str) -> timedelta | None:
    return policy.success_age if status == JobStatus.SUCCESS else policy.failed_age


def _reached(limit: timedelta | None, job: JobFacts, now: datetime) -> bool:
    return limit is not None and job.finished_at <= now - limit


class TemplateWalker:
    """Decides the jobs of one template fed newest first, possibly over several pages.

    It keeps only two counters, so a template with millions of jobs is decided in pages
    with bounded memory.
    """

    def __init__(self, policy: RetentionPolicy, now: datetime) -> None:
        self.policy = policy
        self.now = now
        self.finished_seen = 0
        self.failures_seen = 0

    def verdict(self, job: JobFacts) -> Verdict:
        """The verdict for the next job, which must be older than all jobs seen so far."""
        if job.status not in FINAL_STATUSES:
            return Verdict.KEEP
        protected = self.finished_seen < self.policy.keep_last
        self.finished_seen += 1
        if job.status in FAILURE_STATUSES:
            protected = protected or self.failures_seen < self.policy.keep_failures
            self.failures_seen += 1
        if protected:
            return Verdict.KEEP
        policy = self.policy
        if policy.delete_jobs and _reached(_age_limit(policy, job.status), job, self.now):
            return Verdict.DELETE
        if not job.artifacts_pruned and _reached(policy.artifact_age, job, self.now):
            return Verdict.PRUNE_ARTIFACTS
        return Verdict.KEEP


def decide(
    jobs: Iterable[JobFacts], policy: RetentionPolicy, now: datetime
) -> Iterator[tuple[int, Verdict]]:
    """Yield ``(job id, verdict)`` for each job of one template that is not kept.

    ``jobs`` must be the template's jobs, newest first.
    """
    walker = TemplateWalker(policy, now)
    for job in jobs:
        verdict = walker.verdict(job)
        if verdict is not Verdict.KEEP:
            yield job.id, verdict

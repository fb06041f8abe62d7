"""The scheduler's step: due ticks of run-template schedules become queued jobs.

For every active run template of an enabled company and application with an interval
(``y m w d h i c``), :meth:`Scheduler.step` finds the latest tick at or before ``now``
(:mod:`.calendar`, in the configured time zone, ``delay`` added). The tick fires when it
is later than the template's reference time: the last tick fired (``last_schedule``), or
the moment the template was created or last changed, whichever is latest -- a template
set to "daily" at 15:00 waits for the next midnight instead of running at once for the
midnight that passed before it existed.

* Only the latest tick fires: ticks missed while the scheduler was down run once, not once
  each.
* A template whose previous scheduled job still waits in the queue gets no new job.
* A template that cannot become a job gets the reason in ``last_schedule_error``
  (:mod:`.problems`), written when it is new; the transaction that queues its next job
  clears it.
* Each fired tick inserts ``ScheduledTick(runtemplate_id, tick)`` in the transaction that
  creates the job. The template rows of a batch are locked first (``FOR UPDATE`` on
  PostgreSQL and MariaDB, the ``BEGIN IMMEDIATE`` write lock on SQLite), and the unique
  pair is the last guard: of two schedulers on one database, exactly one creates the job.
* Jobs are created in batches by :func:`~multiflexi.scheduling.bulk.bulk_create_jobs`
  (re-exported here), which writes the rows ``jobs.service.create_job`` would write
  (environment, argv, command, queue entry) with a few statements per batch. Ticks and
  template times are written the same way, a statement per batch; on PostgreSQL and
  MariaDB two batches run at once (:meth:`Scheduler._fire_all`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, insert, inspect, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from multiflexi import queue
from multiflexi.errors import Invalid
from multiflexi.scheduling.bulk import CreatedJob, JobRequest, bulk_create_jobs
from multiflexi.scheduling.calendar import INTERVAL_NAMES, next_fire
from multiflexi.scheduling.problems import one_line, record_errors
from multiflexi.scheduling.rows import IN_CHUNK, among
from multiflexi.secrets import Vault
from multiflexi.storage.models import App, Company, Job, RunTemplate, ScheduledTick
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.scheduler")

__all__ = ["SCHEDULE_TYPES", "JobRequest", "Scheduler", "StepResult", "bulk_create_jobs"]

#: Interval code -> the ``schedule_type`` of the jobs it creates.
SCHEDULE_TYPES: dict[str, str] = {c: n for c, n in INTERVAL_NAMES.items() if c != "n"}
SCHEDULER_TYPES = frozenset(SCHEDULE_TYPES.values())
#: Tables read and written through Core: an ORM object per row is too slow.
_TICKS = cast(Table, ScheduledTick.__table__)
_TEMPLATES = cast(Table, RunTemplate.__table__)
_JOBS = cast(Table, Job.__table__)
_APPS = cast(Table, App.__table__)
_COMPANIES = cast(Table, Company.__table__)


def _template_columns(*keys: str) -> list[Any]:
    """Columns of the template table, labelled with their attribute names: read as plain
    rows through Core, without the ORM's work per row."""
    return [inspect(RunTemplate).columns[key].label(key) for key in keys]


#: What a step reads of every scheduled template.
_SCAN = _template_columns(
    "id", "interv", "cron", "delay", "last_schedule", "next_schedule", "created", "saved",
    "last_schedule_error",
)  # fmt: skip
#: What a batch locks and reads again.
_LOCK = _template_columns(
    "id", "name", "app_id", "company_id", "executor", "active", "last_schedule", "created", "saved",
    "last_schedule_error",
)  # fmt: skip
#: Templates per transaction: big enough to be fast, small enough to keep locks short.
BATCH = 1000
#: Batches written at once on a database server (see ``Scheduler._fire_all``). Measured
#: over 10,000 templates on 2 cores: PostgreSQL is slower with 3 or 4; MariaDB, whose
#: driver spends more of this process's time per row, gains with 3 (mean 2.20 -> 1.85 s).
PARALLEL = {"pgsql": 2, "mysql": 3}
#: How far back a tick is searched for (a 29 February rule fires every 4 to 8 years).
_HORIZON = timedelta(days=366 * 9)


def latest_fire(
    interv: str, cron: str | None, at: datetime, tz: str, delay: int = 0
) -> datetime | None:
    """The latest fire time at or before ``at`` (aware UTC), or None if there is none.

    Widens a window back from ``at`` until it holds a tick, then narrows in on the last
    one: a few steps forward, then bisection (``next_fire(s) <= at`` holds exactly for
    the ``s`` before the wanted tick; ticks are whole seconds apart).
    """
    span = timedelta(minutes=2)
    while span <= _HORIZON * 4:
        low = at - span
        first = next_fire(interv, cron, low, tz, delay)
        if first is None:
            return None
        if first <= at:
            for _ in range(8):  # dense rules (minutely) end here
                following = next_fire(interv, cron, first, tz, delay)
                if following is None or following > at:
                    return first
                low, first = first, following
            high = at
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                found = next_fire(interv, cron, middle, tz, delay)
                if found is not None and found <= at:
                    low = middle
                else:
                    high = middle
            return next_fire(interv, cron, low, tz, delay)
        span *= 4
    return None


@dataclass(frozen=True)
class Ticks:
    """The latest tick at or before a moment, and the one after it."""

    latest: datetime | None
    following: datetime | None
    computed_at: datetime

    def valid_at(self, now: datetime) -> bool:
        return self.computed_at <= now and (self.following is None or now < self.following)


@dataclass(frozen=True)
class _Due:
    rt_id: int
    tick: datetime
    schedule_type: str
    following: datetime | None


@dataclass
class StepResult:
    """What one step did."""

    created: list[int] = field(default_factory=list)
    #: Templates with a due tick whose previous scheduled job still waits.
    waiting: list[int] = field(default_factory=list)
    #: Templates whose schedule cannot be evaluated (invalid cron in the database).
    invalid: list[int] = field(default_factory=list)
    #: The earliest future tick of all templates: when the next step has work.
    next_tick: datetime | None = None
    seconds: float = 0.0


def _set_schedules(
    session: Session, rows: Sequence[tuple[int, datetime | None, datetime | None]]
) -> None:
    """Set ``next_schedule`` (and ``last_schedule`` where given). Templates sharing a rule
    share the values, so one ``UPDATE ... WHERE id IN`` per distinct pair does it (an
    executemany is a round trip per row on MariaDB)."""
    groups: dict[tuple[datetime | None, datetime | None], list[int]] = defaultdict(list)
    for rt_id, last, following in rows:
        groups[(last, following)].append(rt_id)
    for (last, following), ids in groups.items():
        values: dict[str, datetime | str | None] = {"next_schedule": following}
        if last is not None:  # a job was queued: whatever kept it from being queued is over
            values.update(last_schedule=last, last_schedule_error=None, last_schedule_error_at=None)
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start : start + IN_CHUNK]
            where = among(session, _TEMPLATES.c.id, chunk)
            session.execute(update(_TEMPLATES).where(where).values(values))


def _record_ticks(session: Session, job_ids: Sequence[int]) -> None:
    """``ScheduledTick(runtemplate_id, tick=schedule, job_id)`` of each new job, copied in
    the database from the job rows rather than sent again row by row."""
    c, now = _JOBS.c, utcnow()
    for start in range(0, len(job_ids), IN_CHUNK):
        chunk = job_ids[start : start + IN_CHUNK]
        ticks = select(
            c.runtemplate_id, c.schedule, c.id, literal(now, _TICKS.c.created.type)
        ).where(among(session, c.id, chunk))
        session.execute(
            insert(_TICKS).from_select(["runtemplate_id", "tick", "job_id", "created"], ticks)
        )


def _lock_templates(session: Session, ids: Sequence[int]) -> dict[int, Any]:
    """The rows of the templates, locked against other schedulers until the commit."""
    c = _TEMPLATES.c
    stmt = select(*_LOCK).where(among(session, c.id, ids)).order_by(c.id)
    if session.get_bind().dialect.name != "sqlite":  # SQLite: BEGIN IMMEDIATE locks it all
        stmt = stmt.with_for_update()
    return {rt.id: rt for rt in session.execute(stmt).all()}


def _with_waiting_job(session: Session, ids: Sequence[int]) -> set[int]:
    """Which of the templates have a scheduled job that still waits to run."""
    stmt = select(Job.runtemplate_id).where(
        among(session, Job.runtemplate_id, ids),
        Job.status.in_(queue.WAITING),
        Job.schedule_type.in_(SCHEDULER_TYPES),
    )
    return set(session.scalars(stmt.distinct()))


def _fired_ticks(
    session: Session, ids: Sequence[int], ticks: set[datetime]
) -> set[tuple[int, datetime]]:
    """Which (template, tick) pairs have fired already."""
    stmt = select(ScheduledTick.runtemplate_id, ScheduledTick.tick).where(
        among(session, ScheduledTick.runtemplate_id, ids), ScheduledTick.tick.in_(ticks)
    )
    return {(rt_id, tick) for rt_id, tick in session.execute(stmt)}


#: What job creation imports on first use: loaded with the scheduler, so that the first
#: due tick does not wait for it.
_STEP_MODULES = (
    "croniter",  # every tick is computed with it (and dateutil, which it imports)
    "multiflexi.companies.service",
    "multiflexi.credentials.service",
    "multiflexi.executors.registry",
    "multiflexi.jobs.service",
    "multiflexi.runtemplates.service",
    "multiflexi.users",
)


def _import_step_modules() -> None:
    import importlib

    for name in _STEP_MODULES:
        importlib.import_module(name)


def _reference(last: datetime | None, created: datetime | None, saved: datetime | None) -> datetime:
    """The latest of the times given (``datetime.min`` if none is)."""
    latest: datetime | None = None
    for moment in (last, created, saved):
        if moment is not None and (latest is None or moment > latest):
            latest = moment
    return datetime.min if latest is None else latest


class Scheduler:
    """Keeps the tick cache between steps; one per scheduler daemon."""

    def __init__(self, db: Database, settings: Settings, job_hooks: list[Any] | None = None):
        from multiflexi.jobs import hooks

        self.db = db
        self.settings = settings
        self.hooks = hooks.load_hooks(settings) if job_hooks is None else job_hooks
        self._ticks: dict[tuple[str, str | None, int, str], Ticks] = {}
        #: Template -> the reason last logged: logged once, not at every step.
        self._warned: dict[int, str] = {}
        self._invalid: dict[int, str] = {}  # found by a scan, recorded after it
        self.vault = Vault.from_settings(settings, db)
        _import_step_modules()

    def ticks(self, interv: str, cron: str | None, delay: int, now: datetime) -> Ticks:
        """The ticks of a rule around ``now``; computed once per rule while valid."""
        key = (interv, cron, delay, self.settings.timezone)
        cached = self._ticks.get(key)
        if cached is not None and cached.valid_at(now):
            return cached
        tz = self.settings.timezone
        found = Ticks(
            latest_fire(interv, cron, now, tz, delay), next_fire(interv, cron, now, tz, delay), now
        )
        self._ticks[key] = found
        return found

    def step(self, now: datetime | None = None) -> StepResult:
        """Queue a job for every template with a due tick; see the module docstring."""
        started = time.monotonic()
        moment = now or utcnow()
        result = StepResult()
        due, stale = self._scan(moment, result)
        if stale:  # keep next_schedule right for `run-template:show` after edits
            self.db.run(lambda s: _set_schedules(s, stale))
        if self._invalid:
            invalid, self._invalid = self._invalid, {}
            self.db.run(lambda s: record_errors(s, invalid, moment))
        batches = [due[start : start + BATCH] for start in range(0, len(due), BATCH)]
        for jobs, blocked in self._fire_all(batches, moment):
            self._announce(jobs)
            result.created += [j.id for j in jobs]
            result.waiting += blocked
        result.seconds = time.monotonic() - started
        if result.created:
            log.info("action=scheduled jobs=%d seconds=%.3f", len(result.created), result.seconds)
        return result

    def _scan(
        self, moment: datetime, result: StepResult
    ) -> tuple[list[_Due], list[tuple[int, datetime | None, datetime | None]]]:
        """The templates with a due tick, and those whose ``next_schedule`` is stale; sets
        ``result.invalid`` and ``result.next_tick``."""
        with self.db.read() as session:
            rows = session.execute(
                select(*_SCAN)
                .join(_APPS, _APPS.c.id == _TEMPLATES.c.app_id)
                .join(_COMPANIES, _COMPANIES.c.id == _TEMPLATES.c.company_id)
                .where(
                    _TEMPLATES.c.active.is_(True),
                    _TEMPLATES.c.interv.in_(list(SCHEDULE_TYPES)),
                    _APPS.c.enabled.is_(True),
                    _COMPANIES.c.enabled.is_(True),
                )
                .order_by(_TEMPLATES.c.id)
            ).all()
        due: list[_Due] = []
        stale: list[tuple[int, datetime | None, datetime | None]] = []
        for row in rows:
            try:
                ticks = self.ticks(row.interv, row.cron, row.delay or 0, moment)
            except Invalid as exc:
                self._warn_invalid(row, exc)
                result.invalid.append(row.id)
                continue
            if ticks.following is not None and (
                result.next_tick is None or ticks.following < result.next_tick
            ):
                result.next_tick = ticks.following
            reference = _reference(row.last_schedule, row.created, row.saved)
            if ticks.latest is not None and ticks.latest > reference:
                kind = SCHEDULE_TYPES[row.interv]
                due.append(_Due(row.id, ticks.latest, kind, ticks.following))
            elif row.next_schedule != ticks.following:
                stale.append((row.id, None, ticks.following))
        return due, stale

    def _fire_all(
        self, batches: Sequence[Sequence[_Due]], now: datetime
    ) -> Iterator[tuple[list[CreatedJob], list[int]]]:
        """:meth:`_fire` each batch, results in order. On a database server
        :data:`PARALLEL` batches run at once, each in its own transaction on its own
        connection: while the server writes one, this process prepares another. (SQLite
        has one writer at a time.)"""
        parallel = PARALLEL.get(self.db.dialect, 1)
        if parallel < 2 or len(batches) < 2:
            yield from (self._fire(batch, now) for batch in batches)
            return
        with ThreadPoolExecutor(parallel, thread_name_prefix="scheduler") as pool:
            yield from pool.map(lambda batch: self._fire(batch, now), batches)

    def _announce(self, jobs: Sequence[CreatedJob]) -> None:
        """Log and emit ``created`` for committed jobs, in this thread, as create_job does."""
        from multiflexi.jobs import hooks
        from multiflexi.monitoring import counters

        if jobs:
            counters.inc("multiflexi_jobs_created", "scheduler", amount=len(jobs))
        for job in jobs:
            log.info(
                "action=create job_id=%s runtemplate_id=%s by=scheduler not_before=%s",
                job.id,
                job.runtemplate_id,
                job.schedule.isoformat(),
            )
            if self.hooks:
                hooks.emit(self.hooks, hooks.JobEvent("created", job.id, self.db, self.settings))

    def _warn_invalid(self, row: Any, exc: Invalid) -> None:
        if row.last_schedule_error != one_line(exc.message):
            self._invalid[row.id] = exc.message
        self._noted({row.id: exc.message})

    def _noted(self, reasons: Mapping[int, str]) -> None:
        """Log each template's reason once (not at every step); the record is the
        template's ``last_schedule_error``."""
        for rt_id, why in reasons.items():
            line = one_line(why)
            if self._warned.get(rt_id) != line:
                self._warned[rt_id] = line
                log.warning("action=skip_template runtemplate_id=%s error=%s", rt_id, line)

    def _fire(self, batch: Sequence[_Due], now: datetime) -> tuple[list[CreatedJob], list[int]]:
        """Create the jobs of one batch of due templates in one transaction."""

        skipped: dict[int, str] = {}

        def fire(session: Session) -> tuple[list[CreatedJob], list[int]]:
            skipped.clear()  # each attempt anew
            ids = [d.rt_id for d in batch]
            rts = _lock_templates(session, ids)
            waiting = _with_waiting_job(session, ids)
            fired = _fired_ticks(session, ids, {d.tick for d in batch})
            requests, blocked, following = [], [], {}
            for d in batch:
                rt = rts.get(d.rt_id)
                if rt is None or not rt.active:
                    continue
                if rt.id in waiting:
                    blocked.append(rt.id)
                    continue
                if (rt.id, d.tick) in fired or d.tick <= _reference(
                    rt.last_schedule, rt.created, rt.saved
                ):
                    continue  # another scheduler was first
                requests.append(JobRequest(rt, d.tick, d.schedule_type))
                following[rt.id] = d.following
            jobs = bulk_create_jobs(
                session,
                self.settings,
                requests,
                lambda rt_id, why: skipped.update({rt_id: why}),
                vault=self.vault,
            )
            # Written when the reason is new (the template's row is locked and read):
            # a template that stays broken costs no write per step.
            changed = {
                rt_id: why
                for rt_id, why in skipped.items()
                if rts[rt_id].last_schedule_error != one_line(why)
            }
            record_errors(session, changed, now)
            if jobs:
                _record_ticks(session, [j.id for j in jobs])
                _set_schedules(
                    session,
                    [(j.runtemplate_id, j.schedule, following[j.runtemplate_id]) for j in jobs],
                )
            return jobs, blocked

        try:
            done = self.db.run(fire)
        except IntegrityError:
            # A tick inserted meanwhile by a scheduler that does not lock (or a clock
            # that went back): the retry sees it and creates nothing for it.
            log.info("action=tick_conflict templates=%d", len(batch))
            done = self.db.run(fire)
        self._noted(skipped)
        for job in done[0]:
            self._warned.pop(job.runtemplate_id, None)
        return done

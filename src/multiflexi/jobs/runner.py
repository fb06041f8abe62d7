"""Running one claimed job through its lifecycle.

``perform_job`` = ``run_begin`` (environment, command line, checks; status stays
``running``) -> ``launch_job`` (the executor runs the process; output is stored as it
arrives) -> ``run_end`` (exit code, output finalised, result files preserved as
artifacts, final status and metrics committed) -> hooks (actions, monitoring).
No transaction stays open while the process runs; a heartbeat thread keeps the lease.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from multiflexi import queue
from multiflexi.errors import DatabaseError, ExecutorFault, Invalid, KeyMismatch, SecretError
from multiflexi.executors.base import ExecutionResult, LaunchSpec
from multiflexi.jobs import environment, hooks, lifecycle
from multiflexi.jobs.cancel import StopRequest
from multiflexi.jobs.context import AppFactsCache, load_context
from multiflexi.jobs.holds import job_hold
from multiflexi.jobs.leases import Lease, LeaseKeeper
from multiflexi.jobs.output import INSERT_ARTIFACT, OutputRecorder
from multiflexi.jobs.workdir import WorkdirSweeper, move_aside, remove_workdir, reusable
from multiflexi.monitoring import counters
from multiflexi.queue import Claim
from multiflexi.secrets import Vault
from multiflexi.storage.models import Artifact, ConfField, Job, JobStatus, RunTemplate, table_of
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.storage.database import Database
    from multiflexi.storage.pipeline import Executes

log = logging.getLogger("multiflexi.jobs")
_JOB, _RT = table_of(Job), table_of(RunTemplate)


class PreflightFailure(Exception):
    """A check before the process starts failed; the job ends ``failed`` with this."""

    def __init__(self, exit_code: int, reason: str) -> None:
        super().__init__(reason)
        self.exit_code = exit_code
        self.reason = reason


@dataclass
class Prepared:
    job_id: int
    app_id: int
    runtemplate_id: int | None
    spec: LaunchSpec
    executor: str
    workdir: Path
    result_file: str | None
    secrets: set[str]
    mask: bool
    keep_workdir: bool
    meanings: Sequence[lifecycle.ExitMeaning]
    patterns: Sequence[Any] = ()
    store_error: str | None = None
    has_actions: bool | None = None
    recorder: OutputRecorder | None = None


class Successor(Protocol):
    """The next job of the same thread, claimed in the transaction that commits a job's
    final status: the executor's short jobs cost one write transaction each, not two."""

    def claim(self, conn: Executes) -> None:
        """Claim it (or not) on ``conn``; runs in every attempt of the transaction. Only
        statements: ``conn`` may be a pipeline (see ``queue.finish``)."""

    def settle(self, committed: bool) -> None:
        """The transaction has ended: committed, or failed for good."""


class JobRunner:
    """Runs claimed jobs; one instance may serve many jobs, from several threads."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        cancel: threading.Event | None = None,
        job_hooks: list[Any] | None = None,
        tee: Callable[[str, bytes], None] | None = None,
        sweeper: WorkdirSweeper | None = None,
    ) -> None:
        self.tee = tee
        #: Removes finished jobs' empty directories off the job's path (an executor's);
        #: None: removed before perform_job returns, as a directory with files always is.
        self.sweeper = sweeper
        self.db = db
        self.settings = settings
        self.cancel = cancel or threading.Event()
        self.vault = Vault.from_settings(settings, db)
        self.hooks = hooks.load_hooks(settings) if job_hooks is None else job_hooks
        self.leases = LeaseKeeper(db, settings.lease_seconds)
        self.app_facts = AppFactsCache()

    # -- the whole lifecycle ----------------------------------------------------------

    def perform_job(
        self,
        claim: Claim,
        *,
        process_started: Callable[[], None] | None = None,
        process_ended: Callable[[], None] | None = None,
        successor: Successor | None = None,
        on_result: Callable[[ExecutionResult], None] | None = None,
    ) -> JobStatus:
        """Run one claimed job to its final status. ``process_started`` is called once the
        job's process has started (or has failed to), ``process_ended`` once it has ended
        (and before its output and status are stored), ``on_result`` with how it ended;
        ``successor`` claims in the transaction that stores the final status (not when
        the lease was lost or the job failed before its start)."""
        lease = self.leases.watch(claim)
        try:
            # The job's writes wait out a database outage as long as its lease protects it.
            with self.db.patient(self.settings.lease_seconds):
                try:
                    prepared = self.run_begin(claim)
                except PreflightFailure as failure:
                    if process_started is not None:
                        process_started()  # no process will start
                    return self._fail_before_start(claim, failure)
                except ExecutorFault as fault:
                    if process_started is not None:
                        process_started()
                    raise self._give_back(claim, fault) from None
                self._emit("started", claim.job_id)
                job_cancel = _AnyEvent(self.cancel, lease.lost, lease.cancel)
                result = self.launch_job(prepared, job_cancel, lease, started=process_started)
                if process_ended is not None:
                    process_ended()
                if on_result is not None:
                    on_result(result)
                return self.run_end(
                    prepared,
                    claim,
                    result,
                    lost=lease.lost.is_set(),
                    successor=successor,
                    stop=self._stop_request(result, lease),
                )
        finally:
            self.leases.release(lease)

    def _stop_request(self, result: ExecutionResult, lease: Lease) -> StopRequest | None:
        """Why the job was stopped on purpose, if it was: its cancel was asked for
        (``job:cancel``), or the process running it was interrupted (``job:run``). None
        when it ended by itself, or when its executor is stopping (the job then fails,
        "terminated: the executor was stopped")."""
        if not result.cancelled:
            return None
        if lease.cancel.is_set():
            return StopRequest(JobStatus.CANCELLED, lease.cancel_reason)
        return getattr(self.cancel, "request", None)

    # -- phases ----------------------------------------------------------------------

    def run_begin(self, claim: Claim) -> Prepared:
        """Load configuration and credentials, build the command line, check resources."""
        workdir = Path(self.settings.job_root) / str(claim.job_id)

        def prepare(session: Session) -> tuple[dict[str, Any], Prepared]:
            ctx = claim.preread or load_context(session, claim.job_id)
            if ctx is None or ctx.job.status != JobStatus.RUNNING or ctx.job.worker != claim.worker:
                raise PreflightFailure(lifecycle.EXIT_CONFIG, "job is no longer claimed")
            job, app, company, rt = ctx.job, ctx.app, ctx.company, ctx.rt
            if app is None or company is None:
                raise PreflightFailure(lifecycle.EXIT_CONFIG, "application or company deleted")
            facts = self.app_facts.get(session, app)
            overrides = environment.open_overrides(job.overrides or {}, self.vault)
            env = environment.build_env(
                environment.gather_layers(
                    session,
                    job=job,
                    app=app,
                    company=company,
                    rt=rt,
                    vault=self.vault,
                    workdir=workdir,
                    overrides=overrides,
                    fields=facts.fields,
                    empty=ctx.empty_layers,
                ),
                secret_names=facts.secret_names,
                workdir=workdir,
            )
            values = env.as_dict()
            _check_required(facts.fields, values)
            _check_inputs(facts.fields, values)
            argv = _argv(app, values)
            from multiflexi.env.cmdline import display, redact_argv

            shown = redact_argv(argv, env.secret_values())
            record = {
                "env": environment.dump_env(env, self.vault),
                "workdir": str(workdir),
                "argv": shown,
                "command": display(shown),
            }
            changed = {k: v for k, v in record.items() if getattr(job, k) != v}
            if self.sweeper is None or not self.sweeper.take(workdir, rt.id if rt else None):
                _make_workdir(workdir)
            timeout = float(rt.timeout) if rt is not None and rt.timeout else None
            from multiflexi.runtemplates.limits import job_limits

            limits = job_limits(
                self.settings.default_limits,
                facts.limits,
                rt,
                mechanism=self.settings.limits_mechanism,
                job_id=job.id,
            )
            return changed, Prepared(
                job_id=job.id,
                app_id=app.id,
                runtemplate_id=rt.id if rt else None,
                spec=LaunchSpec(
                    argv=argv,
                    env=values,
                    cwd=workdir,
                    timeout=timeout,
                    kill_grace=self.settings.kill_grace,
                    limits=limits,
                ),
                executor=job.executor,
                workdir=workdir,
                result_file=environment.result_path(values),
                secrets=env.secret_values(),
                mask=rt.mask_secrets if rt is not None else True,
                keep_workdir=self.settings.keep_job_dir or bool(rt and rt.keep_workdir),
                meanings=facts.meanings,
                patterns=facts.patterns,
                has_actions=ctx.has_actions,
            )

        try:
            # Reading only: on SQLite no write lock is held while the environment is built.
            changed, prepared = self.db.query(prepare)
        except (PreflightFailure, ExecutorFault):
            raise
        except KeyMismatch as exc:  # this host's key, not the job's secrets
            raise ExecutorFault(exc.message) from exc
        except (Invalid, SecretError) as exc:
            raise PreflightFailure(lifecycle.EXIT_CONFIG, exc.message) from exc
        except DatabaseError:
            raise  # retried for the lease's time already: the lease decides
        except Exception as exc:  # a fault of ours: the job ends now, with it, not lost later
            log.error("action=prepare_failed job_id=%s", claim.job_id, exc_info=True)
            raise PreflightFailure(
                lifecycle.EXIT_SOFTWARE,
                f"internal error preparing the job: {type(exc).__name__}: {exc}",
            ) from exc
        if changed:  # usually nothing: the job was made from the same configuration
            self.db.transact(
                lambda conn: conn.execute(
                    update(_JOB)
                    .where(_JOB.c.id == claim.job_id, _JOB.c.worker == claim.worker)
                    .values(changed)
                )
            )
        return prepared

    def launch_job(
        self,
        prepared: Prepared,
        cancel: threading.Event,
        lease: Lease | None = None,
        *,
        started: Callable[[], None] | None = None,
    ) -> ExecutionResult:
        """Start the process and store its output as it arrives; ``started`` is called
        once it runs."""
        from multiflexi.executors.registry import get_executor

        recorder = OutputRecorder(
            self.db,
            prepared.job_id,
            secrets=prepared.secrets if prepared.mask else (),
            cancel=cancel,
            tee=self.tee,
        )
        executor = get_executor(prepared.executor)
        if cancel.is_set():  # stopped before it started: no process is started at all
            prepared.recorder = recorder
            return _never_started()

        def on_start(pid: int) -> None:
            log.info("action=job_start job_id=%s pid=%s", prepared.job_id, pid)
            if lease is not None:
                lease.pid = pid  # the lease keeper records it if the job runs a while
            if started is not None:
                started()

        try:
            result = executor.launch(prepared.spec, recorder, on_start=on_start, cancel=cancel)
        except BaseException:
            recorder.close()
            raise
        # Closed by run_end: with the final status when the job left no files.
        prepared.recorder = recorder
        return result

    def run_end(
        self,
        prepared: Prepared,
        claim: Claim,
        result: ExecutionResult,
        *,
        lost: bool,
        successor: Successor | None = None,
        stop: StopRequest | None = None,
    ) -> JobStatus:
        """Preserve artifacts, then commit the final status, metrics and timings.

        Outputs are stored first, then result files, then the status, so that a finished
        job has everything. A job that left no files (most) stores its outputs and its
        status in one transaction. ``stop``: the job was stopped on purpose, and is
        recorded so (``cancelled``, who or what stopped it).
        """
        from multiflexi.artifacts.collect import has_files

        recorder = prepared.recorder
        assert recorder is not None, "launch_job() first"
        recorder.seal()
        together = not lost and not has_files(prepared.workdir, prepared.result_file)
        collection: str | None = None
        if not together:
            recorder.after_loss = lost
            recorder.close()
            collection = self._collect(prepared)
        status = lifecycle.final_status(
            result.exit_code,
            timed_out=result.timed_out,
            signal=result.signal,
            ok_codes=lifecycle.success_codes(prepared.meanings),
        )
        if result.limit_breach:  # a job stopped at a limit failed, whatever its exit code
            status = JobStatus.FAILED
        ended = status  # as the process ended: what the reason explains
        if stop is not None:
            status = stop.status
        elif collection is not None and collection.startswith(COLLECTION_FAILED):
            status = JobStatus.FAILED  # its files are not all stored: not a success
        if lost:
            log.warning("action=finish_skipped job_id=%s reason=lease_lost", claim.job_id)
            return JobStatus.LOST
        won = None
        if together:
            created: dict[str, Any] = {}
            rows = recorder.inline_rows()

            def outputs(conn: Executes) -> None:
                if rows is not None:  # the usual case: statements only, pipelined
                    conn.execute(INSERT_ARTIFACT, rows)
                    return
                assert isinstance(conn, Connection)
                created.clear()
                created.update(recorder.store_in(conn))

            reason = _reason(result, ended, prepared, recorder.error, stop, collection)
            try:
                won = self._finish(
                    claim,
                    status,
                    reason,
                    result,
                    runtemplate_id=prepared.runtemplate_id,
                    before=outputs,
                    successor=successor,
                    pipelined=rows is not None,
                )
                recorder.stored(created)
            except Exception as exc:  # outputs and status apart, as for a job with files
                log.error("action=finish_with_output_failed job_id=%s error=%s", claim.job_id, exc)
                recorder.close()
        if won is None:
            reason = _reason(result, ended, prepared, recorder.error, stop, collection)
            won = self._finish(
                claim,
                status,
                reason,
                result,
                runtemplate_id=prepared.runtemplate_id,
                successor=successor,
            )
        if not prepared.keep_workdir:
            if together and self.sweeper is not None:
                # Empty: off the next job's path, unless the template's next job takes
                # it as its own. A job's files go now, and with them the space that the
                # next job may need.
                self.sweeper.discard(prepared.workdir, prepared.runtemplate_id)
            else:
                remove_workdir(prepared.workdir)
        if not won:
            return JobStatus.LOST
        self._after_finish(claim.job_id, status, claim.worker, prepared.has_actions)
        return status

    # -- helpers ---------------------------------------------------------------------

    def _collect(self, prepared: Prepared) -> str | None:
        """Store the job's files as artifacts; returns what the job's reason must say
        about it (stopped at the budget, or failed), None when everything was taken.
        Never raises for a job's files: whatever it left, the job gets its final status."""
        from multiflexi.artifacts.collect import Budget, collect

        budget = Budget(self.settings.artifact_max_files, self.settings.artifact_max_seconds)
        try:
            done = collect(
                self.db,
                job_id=prepared.job_id,
                workdir=prepared.workdir,
                result_file=prepared.result_file,
                patterns=prepared.patterns,
                budget=budget,
            )
        except Exception as exc:
            from multiflexi.storage.database import is_transient

            if is_transient(exc) or isinstance(exc, DatabaseError):
                raise  # the database is away: the job's final write could not be made either
            log.error("action=collect_failed job_id=%s error=%r", prepared.job_id, exc)
            return f"{COLLECTION_FAILED}: {type(exc).__name__}: {exc}"
        return done.note

    def _finish(
        self,
        claim: Claim,
        status: JobStatus,
        reason: str,
        result: ExecutionResult | None,
        exit_code: int | None = None,
        runtemplate_id: int | None = None,
        *,
        before: Callable[[Executes], object] | None = None,
        successor: Successor | None = None,
        pipelined: bool = False,
    ) -> bool:
        outcome = queue.Outcome(status=status, reason=reason, end=utcnow(), exitcode=exit_code)
        if result is not None:
            outcome = queue.Outcome(
                status=status,
                reason=reason,
                end=result.ended,
                exitcode=result.exit_code,
                signal=result.signal,
                pid=result.pid,
                wall_seconds=result.wall_seconds,
                cpu_user=result.cpu_user,
                cpu_system=result.cpu_system,
                max_rss_kb=result.max_rss_kb,
                limits_mechanism=result.limits_mechanism,
            )
        then = successor.claim if successor is not None else None
        committed = False
        try:
            won = queue.finish(
                self.db,
                claim,
                outcome,
                runtemplate_id,
                before=before,
                then=then,
                pipelined=pipelined,
            )
            committed = True
        finally:
            if successor is not None:
                successor.settle(committed)
        if won:
            counters.inc("multiflexi_jobs_finished", str(status))
            if outcome.wall_seconds is not None:
                counters.observe_duration(outcome.wall_seconds)
            log.info(
                "action=finish job_id=%s status=%s exit_code=%s signal=%s duration=%s reason=%s",
                claim.job_id,
                str(status),
                outcome.exitcode,
                outcome.signal,
                None if outcome.wall_seconds is None else round(outcome.wall_seconds, 3),
                reason,
            )
        return won

    def _give_back(self, claim: Claim, fault: ExecutorFault) -> ExecutorFault:
        """Put a job this host cannot run back in the queue for another executor, with
        the reason on the job (its attempt is not used up); the fault to raise, saying
        what became of the job."""
        reason = f"requeued: {claim.worker} on {queue.HOSTNAME} cannot run jobs: {fault.message}"
        log.error("action=executor_fault job_id=%s error=%s", claim.job_id, fault.message)
        try:
            queued = queue.give_back(self.db, claim.job_id, claim.worker, reason=reason)
        except Exception as exc:  # the lease runs out and recovery requeues it
            return ExecutorFault(f"{fault.message}; job {claim.job_id} not requeued: {exc}")
        what = "queued again for another executor" if queued else "no longer ours"
        return ExecutorFault(f"{fault.message} (job {claim.job_id} {what})")

    def _fail_before_start(self, claim: Claim, failure: PreflightFailure) -> JobStatus:
        def outputs(session: Session) -> int | None:
            job = session.get(Job, claim.job_id)
            if job is None:
                return None
            have = {a.kind for a in session.query(Artifact).filter(Artifact.job_id == claim.job_id)}
            for stream in ("stdout", "stderr"):
                if stream in have:
                    continue
                body = f"multiflexi: {failure.reason}\n".encode() if stream == "stderr" else b""
                import hashlib

                session.add(
                    Artifact(
                        job_id=claim.job_id,
                        filename=f"{stream}.txt",
                        content_type="text/plain",
                        note=f"standard {'output' if stream == 'stdout' else 'error'} of the job",
                        kind=stream,
                        content=body,
                        size=len(body),
                        sha256=hashlib.sha256(body).hexdigest(),
                        created=utcnow(),
                    )
                )
            return job.runtemplate_id

        rt_id = self.db.run(outputs)
        won = self._finish(
            claim, JobStatus.FAILED, failure.reason, None, failure.exit_code, runtemplate_id=rt_id
        )
        if won:
            self._after_finish(claim.job_id, JobStatus.FAILED, claim.worker)
        return JobStatus.FAILED if won else JobStatus.LOST

    def fail_claimed(self, claim: Claim, reason: str) -> JobStatus:
        """End a job of ours that could not be run as ``failed`` with ``reason`` (and a
        ``stderr.txt`` saying so), now rather than when its lease runs out; LOST if it is
        not ours any more (or the write fails: recovery then calls it lost). A job that
        reached its final status before the fault keeps it, and that is returned."""
        try:
            status = self._fail_before_start(claim, PreflightFailure(lifecycle.EXIT_CONFIG, reason))
            if status == JobStatus.LOST:
                with self.db.read() as session:
                    job = session.get(Job, claim.job_id)
                    if job is not None and job.worker == claim.worker:
                        return JobStatus(job.status)
            return status
        except Exception as exc:
            log.error("action=fail_claimed job_id=%s error=%s", claim.job_id, exc)
            return JobStatus.LOST

    def _after_finish(
        self, job_id: int, status: JobStatus, worker: str, has_actions: bool | None = None
    ) -> None:
        if status not in (JobStatus.SUCCESS, JobStatus.CANCELLED):
            # Through recovery's lock: its sweep may be queueing the same retry.
            from multiflexi.recovery import retry_once

            retry_once(self.db, self.settings, job_id, worker)
        data: dict[str, Any] = {"status": str(status)}
        if has_actions is not None:
            data["has_actions"] = has_actions
        self._emit("finished", job_id, **data)

    def _emit(self, phase: str, job_id: int, **data: Any) -> None:
        if self.hooks:
            hooks.emit(self.hooks, hooks.JobEvent(phase, job_id, self.db, self.settings, data))


class _AnyEvent(threading.Event):
    """Set when any of the given events is set (checked on ``is_set``/``wait``)."""

    def __init__(self, *events: threading.Event) -> None:
        super().__init__()
        self._events = events

    def is_set(self) -> bool:
        return super().is_set() or any(e.is_set() for e in self._events)

    def wait(self, timeout: float | None = None) -> bool:
        if self.is_set():
            return True
        return super().wait(timeout) or self.is_set()


def schedule_retry(db: Database, settings: Settings, job_id: int) -> int | None:
    """Queue the next attempt of a failed or lost job, as its template's policy says (see
    :func:`lifecycle.next_attempt`: a job the platform interrupted runs again unless the
    template says ``on_interrupt=fail``)."""
    from multiflexi.jobs.service import create_job

    with db.read() as session:
        job = session.get(Job, job_id)
        rt = session.get(RunTemplate, job.runtemplate_id) if job and job.runtemplate_id else None
        if job is None or rt is None or not rt.active:
            return None
        if job_hold(session, job.id) is not None:  # company or application disabled
            return None
        interrupted = lifecycle.is_interruption(job.status, job.reason)
        delay = lifecycle.next_attempt(
            attempt=job.attempt,
            interrupted=interrupted,
            before=_interruptions_before(session, job),
            on_interrupt=rt.on_interrupt,
            max_attempts=rt.max_attempts,
            backoff=rt.retry_backoff,
            min_gap=rt.retry_min_gap,
        )
        overrides = environment.open_overrides(
            job.overrides or {}, Vault.from_settings(settings, db)
        )
    if delay is None:
        return None
    retry = create_job(
        db,
        settings,
        runtemplate_id=rt.id,
        overrides=overrides,
        at=utcnow() + delay,
        schedule_type="retry",
        executor=job.executor,
        attempt=job.attempt + 1,
        retry_of=job.id,
    )
    counters.inc("multiflexi_job_retries", "true" if interrupted else "false")
    log.info(
        "action=retry job_id=%s retry_job_id=%s attempt=%s interrupted=%s not_before=%s",
        job_id,
        retry.id,
        job.attempt + 1,
        interrupted,
        (utcnow() + delay).isoformat(),
    )
    return retry.id


#: How far back a chain of attempts is followed (the policy allows at most this many).
_CHAIN_LIMIT = 100


def _interruptions_before(session: Session, job: Job) -> lifecycle.Interruptions:
    """The interrupted runs that precede ``job`` in its chain of attempts."""
    total = in_a_row = steps = 0
    row = True
    previous = job.retry_of
    while previous is not None and steps < _CHAIN_LIMIT:
        earlier = session.get(Job, previous)
        if earlier is None:
            break
        steps += 1
        if lifecycle.is_interruption(earlier.status, earlier.reason):
            total += 1
            in_a_row += 1 if row else 0
        else:
            row = False
        previous = earlier.retry_of
    return lifecycle.Interruptions(total, in_a_row)


def _check_required(fields: Sequence[ConfField], values: dict[str, str]) -> None:
    missing = [f.keyname for f in fields if f.required and not values.get(f.keyname)]
    if missing:
        raise PreflightFailure(
            lifecycle.EXIT_CONFIG, f"required value missing: {', '.join(missing)}"
        )


#: Variables that name files the job writes, not reads.
OUTPUT_NAMES = frozenset({"RESULT_FILE"})


def _check_inputs(fields: Sequence[ConfField], values: dict[str, str]) -> None:
    for f in fields:
        if f.type != "file-path" or f.keyname in OUTPUT_NAMES:
            continue
        path = values.get(f.keyname)
        if path and not os.path.exists(path):
            raise PreflightFailure(
                lifecycle.EXIT_NO_INPUT, f"input file missing: {f.keyname}={path}"
            )


def _argv(app: Any, values: dict[str, str]) -> list[str]:
    from multiflexi.env.cmdline import build_argv, resolve_executable

    argv = build_argv(app.executable, app.cmdparams or "", values)
    if not argv:
        raise PreflightFailure(lifecycle.EXIT_CONFIG, "the application has no executable")
    resolved = resolve_executable(argv[0], values.get("PATH"))
    if resolved is None:
        if os.path.exists(argv[0]) or (
            "/" not in argv[0] and shutil.which(argv[0], mode=os.F_OK, path=values.get("PATH"))
        ):
            raise PreflightFailure(
                lifecycle.EXIT_NOT_EXECUTABLE, f"executable not executable: {argv[0]}"
            )
        raise PreflightFailure(lifecycle.EXIT_NOT_FOUND, not_found(argv[0], values.get("PATH")))
    return [resolved, *argv[1:]]


def not_found(program: str, path: str | None) -> str:
    """The reason "executable not found", with the PATH that was searched."""
    if "/" in program:
        return f"executable not found: {program}"
    searched = path if path is not None else os.defpath
    return f"executable not found: {program} (searched PATH={searched})"


def _never_started() -> ExecutionResult:
    """The result of a job stopped before its process was started."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return ExecutionResult(
        exit_code=None, signal=None, timed_out=False, pid=None, started=now, ended=now,
        wall_seconds=0.0, cpu_user=0.0, cpu_system=0.0, max_rss_kb=0,
        error="cancelled before it started", cancelled=True,
    )  # fmt: skip


def _make_workdir(workdir: Path) -> None:
    """A new, empty, private directory at ``workdir``. Anything found there already is
    not the job's: it is moved aside (``jobs/.leftover/``), never adopted."""
    import errno

    try:
        try:  # the usual case: the job root exists, the job's directory does not
            os.mkdir(workdir, 0o700)
        except FileNotFoundError:
            workdir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.mkdir(workdir, 0o700)
        except FileExistsError:
            # Empty and ours: made by this very preparation, tried again after a
            # database error.
            if reusable(workdir):
                return
            aside = move_aside(workdir)
            log.warning("action=leftover_moved_aside path=%s to=%s", workdir, aside)
            os.mkdir(workdir, 0o700)
    except OSError as exc:
        why = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        message = f"output directory not creatable: {workdir}: {why}"
        root = workdir.parent
        if exc.errno == errno.ENOSPC or (root.is_dir() and os.access(root, os.W_OK | os.X_OK)):
            # A full disk (it may be a job's doing, and pass) or a stray file in this
            # job's own place: the job fails, the executor goes on.
            raise PreflightFailure(lifecycle.EXIT_CANT_CREATE, message) from None
        # The job root itself is unusable, the host's fault: another executor may manage.
        raise ExecutorFault(message) from None


def _disk_full(path: Path) -> bool:
    try:
        st = os.statvfs(path if path.exists() else path.parent)
    except OSError:
        return False
    return st.f_bavail == 0


#: How a job's reason begins when its files could not be collected.
COLLECTION_FAILED = "artifact collection failed"


def _reason(
    result: ExecutionResult,
    status: JobStatus,
    prepared: Prepared,
    store_error: str | None,
    stop: StopRequest | None = None,
    collection: str | None = None,
) -> str:
    """The job's reason: why it ended as it did, and what its files' collection says."""
    why = _why(result, status, prepared, store_error, stop)
    if collection is None or why == lifecycle.STOPPED_REASON:
        return why  # an interrupted run is told by this reason alone: it runs again
    return f"{why}; {collection}" if why else collection


def _why(
    result: ExecutionResult,
    status: JobStatus,
    prepared: Prepared,
    store_error: str | None,
    stop: StopRequest | None,
) -> str:
    if store_error:
        return store_error
    if stop is not None:
        return stop.reason
    if result.limit_breach:
        return result.limit_breach
    if result.cancelled:
        return lifecycle.STOPPED_REASON
    if result.timed_out:
        return result.error or "timeout"
    if result.error:
        return result.error
    if status == JobStatus.SUCCESS:
        return ""
    if _disk_full(prepared.workdir):
        return "disk full"
    meaning = lifecycle.describe_exit(result.exit_code, result.signal, prepared.meanings)
    note = f" ({result.limit_note})" if result.limit_note else ""
    return f"exit code {result.exit_code}: {meaning}{note}"

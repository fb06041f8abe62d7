"""``multiflexi-executor``: claims due jobs and runs them in a bounded pool of threads.

Each step claims due jobs (``queue.claim_next``: atomic on every backend, and it keeps to
the overlap policy ``forbid`` in the database) while the pool has room, after cancelling
due jobs of ``skip`` templates whose previous run is still going. Idle, it sleeps until
the earliest not-before time, a NOTIFY (PostgreSQL), a finished job or a signal -- at most
``MULTIFLEXI_POLL_INTERVAL`` on SQLite and MariaDB. Every half lease it marks jobs of dead
workers ``lost`` and queues their retries; every few seconds it beats in table ``worker``;
every ``MULTIFLEXI_HOUSEKEEPING_INTERVAL`` it runs housekeeping if no other executor did;
at start and every hour it cleans its own job root of leftovers.

SIGTERM/SIGINT: stop claiming; running jobs get ``MULTIFLEXI_SHUTDOWN_GRACE`` seconds to
finish (the daemon beats meanwhile, state ``draining``), then they are cancelled (TERM,
kill grace, KILL to the process group; the job ends ``failed``, "terminated: the executor
was stopped", and runs again unless its template says ``on_interrupt=fail``). A second
signal cancels at once.
SIGHUP re-reads the environment file it started with (max parallel, poll interval).
Under systemd it notifies readiness, reloads and stops, and pets the watchdog from the
main loop (:mod:`.notify`).
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from multiflexi import queue, recovery, workers
from multiflexi.daemons.loop import QueueListener, one_line, parse_args, run_daemon, run_loop
from multiflexi.daemons.notify import Notifier
from multiflexi.daemons.pool import JobPool, Slot
from multiflexi.daemons.signals import DaemonSignals
from multiflexi.errors import ExecutorFault
from multiflexi.jobs.context import read_context
from multiflexi.jobs.lifecycle import origin
from multiflexi.monitoring import counters
from multiflexi.queue import Claim
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.config import Settings
    from multiflexi.jobs.runner import JobRunner
    from multiflexi.storage.database import Database
    from multiflexi.storage.pipeline import Executes

log = logging.getLogger("multiflexi.executor")

#: Longest idle sleep while LISTEN works: NOTIFY wakes us, this catches what it cannot
#: (a job of a busy ``forbid`` template that becomes claimable when another host finishes).
LISTEN_IDLE = 1.0
#: Paces housekeeping to once per interval in the cluster. Not the lock the housekeeping
#: run takes for itself ("housekeeping"), which only keeps two runs apart.
HOUSEKEEPING_LOCK = "housekeeping-interval"
#: How often an executor cleans its own job root of crash leftovers (also at start).
LOCAL_SWEEP_SECONDS = 3600.0
#: How long a stopping daemon lets a housekeeping round go on (its batches are short).
HOUSEKEEPING_EXIT_WAIT = 5.0


#: What a job's path imports on first use: loaded by a thread of their own right after
#: the daemon's first claim (which does not need them), so that neither the first claim
#: nor, usually, the first job waits ~80 ms for them.
_JOB_PATH_MODULES = (
    "multiflexi.artifacts.service",
    "multiflexi.companies.service",
    "multiflexi.credentials.service",
    "multiflexi.env.cmdline",
    "multiflexi.env.macros",
    "multiflexi.executors.native",
    "multiflexi.executors.registry",
    "multiflexi.jobs.masking",
    "multiflexi.jobs.service",
    "multiflexi.runtemplates.service",
)


class ExecutorDaemon:
    """The executor; ``serve()`` is the daemon, ``process()`` one pass over due jobs."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        worker_id: str,
        max_parallel: int | None = None,
        signals: DaemonSignals | None = None,
        limit: int | None = None,
        maintenance: bool = True,
        job_hooks: list[Any] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        from multiflexi.jobs.workdir import WorkdirSweeper

        self.db, self.settings, self.worker_id = db, settings, worker_id
        self.signals = signals or DaemonSignals()
        self.fixed_parallel, self.limit, self.maintenance = max_parallel, limit, maintenance
        self.notifier = notifier or Notifier()
        self.sweeper = WorkdirSweeper()
        self._job_hooks = job_hooks
        self._runner: JobRunner | None = None
        self._runner_lock = threading.Lock()
        #: What the first step does once its claim is made: the warm-up (see _warm_up),
        #: the LISTEN thread and the metrics server (their imports and connections
        #: would compete with the first claim for the interpreter lock).
        self._after_first_claim: list[Callable[[], None]] = []
        parallel = max_parallel or settings.max_parallel
        self.pool = JobPool(self._perform, parallel, self._job_done, refill=self._refill)
        #: Held while claiming: by the loop, or by a job's thread that claims its next job.
        self._claiming = threading.Lock()
        self.claim_until: datetime | None = None  # process(): only jobs due at its start
        self.claims = 0
        #: The ids claimed by process() (a daemon does not keep them: it runs for months).
        self.claimed: list[int] = []
        self.results: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.next_due: datetime | None = None
        self._draining = False
        self.listener: QueueListener | None = None
        start = self.started_at = utcnow()
        self._next_beat = self._next_recovery = self._next_housekeeping = start
        self._next_local_sweep = start
        #: Jobs claimed here (those no longer running are dropped at each beat): any
        #: other job running under our id since ``started_at`` is a claim whose commit we
        #: never heard of.
        self._mine: set[int] = set()
        self._housekeeper: threading.Thread | None = None
        #: Failed steps and chores, recorded in our ``worker`` row (``status`` shows it).
        self.errors = workers.ErrorRecord(db, worker_id)
        from multiflexi.monitoring.counters import DaemonProbe

        self.probe = DaemonProbe("executor", worker_id, self._gauges)
        #: Why this host cannot run jobs, found while running one: the daemon stops.
        self.fault: ExecutorFault | None = None

    @property
    def runner(self) -> JobRunner:
        """Runs the claimed jobs; built by the warm-up thread (or by the first job),
        not before the first claim: its modules and the hooks' take a tenth of the
        start-up."""
        if self._runner is None:
            with self._runner_lock:
                if self._runner is None:
                    from multiflexi.jobs.runner import JobRunner

                    self._runner = JobRunner(
                        self.db,
                        self.settings,
                        cancel=self.signals.cancel,
                        job_hooks=self._job_hooks,
                        sweeper=self.sweeper,
                    )
        return self._runner

    # -- one iteration -------------------------------------------------------------------

    def step(self, now: datetime) -> bool:
        """Claim due jobs while the pool has room, then maintenance when due. Claims come
        first: a job that became due waits for no chore (a recovery round takes a few
        queries)."""
        if self.signals.take_reload():
            self.reload()
        try:
            return self._claim_due(now)
        finally:
            if self._after_first_claim:
                starts, self._after_first_claim = self._after_first_claim, []
                for start in starts:
                    self._chore("start", start)
            if self.maintenance:
                self._maintain(now)

    def _claim_due(self, now: datetime) -> bool:
        try:
            return self._claim_while_free(now)
        finally:
            self.pool.claimed()

    def _claim_while_free(self, now: datetime) -> bool:
        if self.signals.stopping or self.exhausted or self.pool.free() == 0:
            return False
        if not self._draining:
            # Idle polling reads first: no write transaction while nothing is due.
            with self.db.read() as session:
                due, self.next_due = queue.due_state(session, self.claim_until or now)
            if not due:
                return False
        claimed = missed = False
        with self._claiming:
            while self.pool.free() > 0 and not self.signals.stopping and not self.exhausted:
                claim = self._claim_one()
                if claim is None:
                    missed = True
                    break
                self.pool.submit(claim)
                claimed = True
        if missed:
            # Due jobs that could not be claimed wait for a running job of their
            # template: those of ``skip`` templates are cancelled instead.
            for job_id in queue.skip_overlapping(self.db, now):
                log.info("action=skip job_id=%s reason=%s", job_id, "previous run still running")
        # While claims succeed, the next step claims straight away; after a miss, it polls.
        self._draining = claimed
        if not claimed:
            with self.db.read() as session:
                self.next_due = queue.due_state(session, self.claim_until or now)[1]
        return claimed

    def _claim_one(self) -> Claim | None:
        """Claim the most urgent due job for this executor; the caller holds ``_claiming``."""
        claim = queue.claim_next(
            self.db,
            self.worker_id,
            self.settings.lease_seconds,
            now=self.claim_until,
            then=read_context,
        )
        if claim is not None:
            self._count_claim(claim)
        return claim

    def _count_claim(self, claim: Claim) -> None:
        """A committed claim of ours; the caller holds ``_claiming``."""
        counters.inc("multiflexi_jobs_claimed")
        ctx = claim.preread
        job, rt, company = (ctx.job, ctx.rt, ctx.company) if ctx is not None else (None,) * 3
        log.info(
            "action=claim job_id=%s runtemplate_id=%s runtemplate=%s company=%s by=%s attempt=%s"
            " host=%s worker=%s",
            claim.job_id,
            getattr(rt, "id", None),
            getattr(rt, "name", None),
            getattr(company, "slug", None),
            origin(job.schedule_type) if job is not None else None,
            getattr(job, "attempt", None),
            queue.HOSTNAME,
            self.worker_id,
        )
        with self._lock:
            self._mine.add(claim.job_id)
        self.claims += 1
        if self.claim_until is not None:
            self.claimed.append(claim.job_id)

    def _may_follow(self) -> bool:
        """Whether a short job's thread may claim its next job itself: while due jobs
        keep coming (else the claiming loop polls), and not when stopping."""
        return self._draining and not self.signals.stopping

    def _refill(self) -> Claim | None:
        """The next job for the thread of a short job that is finished with, when its
        successor could not be claimed with its final status (see JobPool); None leaves
        the slot to the claiming loop: after a miss, while the loop claims, when
        stopping or failing."""
        if not self._may_follow():
            return None
        if not self._claiming.acquire(blocking=False):
            return None
        try:
            if self.exhausted:  # counted under the lock: --limit holds
                return None
            # Not the finished job's patience (its lease): a failing claim is the loop's.
            with self.db.patient(0.0):
                return self._claim_one()
        except Exception as exc:
            log.error("action=claim error=%s", one_line(exc))
            log.debug("action=claim", exc_info=True)
            return None
        finally:
            self._claiming.release()

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.claims >= self.limit

    def idle(self, now: datetime) -> float:
        """How long to sleep when nothing is claimable: until the next due job or chore."""
        poll = self.settings.poll_interval
        if self.listener is not None and self.listener.connected.is_set():
            poll = max(poll, LISTEN_IDLE)
        # A full pool waits for a finished job (which wakes us), not for the next due
        # time; process() only runs jobs due at its start.
        claimable = self.pool.free() > 0 and self.claim_until is None
        moments = [self.next_due if claimable else None]
        if self.maintenance:
            moments += [self._next_beat, self._next_recovery, self._next_housekeeping]
        waits = [(m - now).total_seconds() for m in moments if m is not None]
        return max(0.0, min([poll, *waits]))

    # -- jobs ----------------------------------------------------------------------------

    def _perform(self, claim: Claim, slot: Slot) -> None:
        started = time.monotonic()
        successor = _Successor(self, slot)
        try:
            status = str(
                self.runner.perform_job(
                    claim,
                    process_started=slot.started,
                    process_ended=slot.ended,
                    successor=successor,
                )
            )
        except ExecutorFault as fault:
            # This host cannot run jobs: the job went back to the queue, and the
            # executor stops (after its running jobs) rather than fail the next ones.
            self.fault = self.fault or fault
            self.signals.stop()
            status = "requeued"
        except Exception as exc:
            # Not only a log line: the job ends failed with the reason now (retried as its
            # template says), instead of waiting for its lease and being called lost.
            log.error("action=job_error job_id=%s error=%s", claim.job_id, one_line(exc))
            log.debug("action=job_error", exc_info=True)
            reason = f"internal error: {type(exc).__name__}: {one_line(exc)}"
            status = str(self.runner.fail_claimed(claim, reason))
        with self._lock:
            self.results[status] += 1
        log.debug(  # the job's end is logged once, by the runner (action=finish)
            "action=job_thread_done job_id=%s seconds=%.3f",
            claim.job_id,
            time.monotonic() - started,
        )

    def _job_done(self) -> None:
        self.signals.wake.set()  # a free slot: claim again now

    # -- chores --------------------------------------------------------------------------

    def _maintain(self, now: datetime) -> None:
        if now >= self._next_beat:
            self._next_beat = now + timedelta(seconds=workers.BEAT_SECONDS)
            self._chore("beat", self._beat)
            self.errors.flush()  # a failure the database could not take when it happened
            self.notifier.status(self._status_line())
            self._chore("give_back", self._give_back_unknown)
        if now >= self._next_recovery:
            self._next_recovery = now + timedelta(seconds=self.settings.lease_seconds / 2)
            self._chore("requeue_lost", lambda: self._recover(now))
        if now >= self._next_local_sweep:
            self._next_local_sweep = now + timedelta(seconds=LOCAL_SWEEP_SECONDS)
            self._chore("clean_job_root", lambda: self._clean_job_root(now))
        interval = self.settings.housekeeping_interval
        if interval <= 0:
            self._next_housekeeping = now + timedelta(days=1)
        elif now >= self._next_housekeeping:
            self._next_housekeeping = now + timedelta(seconds=interval)
            self._chore("housekeeping", lambda: self._housekeeping(interval, now))

    def _chore(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # one failing chore must not stop the claiming
            log.error("action=%s error=%s", name, one_line(exc))
            log.debug("action=%s", name, exc_info=True)
            self.errors.failed(name, exc)

    def _beat(self) -> None:
        workers.beat(self.db, self.worker_id)
        self.probe.beat()

    def _gauges(self) -> dict[str, tuple[str, float]]:
        """This executor's own state, for its metrics."""
        return {
            "multiflexi_executor_jobs_running": (
                "Jobs running in this executor",
                self.pool.running(),
            ),
            "multiflexi_executor_max_parallel": (
                "Jobs this executor runs at once",
                self.pool.limit,
            ),
        }

    def _give_back_unknown(self) -> None:
        """Requeue the jobs claimed under our id that no thread here runs. A claim whose
        commit reached the database while the connection broke (a server restart) is
        retried, and the retry claims another job: the first would wait, claimed and
        never started, until its lease ran out and recovery called it lost. Holds the
        claiming lock (a job's thread may claim its next job too), so every claim that
        returned is in ``_mine`` already and none lands between the read and the
        comparison. A job of ours stays there while it runs under our id, also after its
        thread gave up on it (lease lost, an error): whether it ran is for recovery to
        say."""
        with self._claiming:
            with self.db.read() as session:
                found = queue.claimed_since(session, self.worker_id, self.started_at)
            with self._lock:
                unknown = [job_id for job_id in found if job_id not in self._mine]
                self._mine.intersection_update(found)
        for job_id in unknown:
            if queue.give_back(self.db, job_id, self.worker_id):
                log.warning(
                    "action=give_back job_id=%s reason=%s", job_id, "claim never acknowledged"
                )

    def _clean_job_root(self, now: datetime) -> None:
        """Crash leftovers in this host's job root: every executor cleans its own, as the
        cluster-wide housekeeping runs on one host only."""
        from multiflexi.housekeeping.orphans import clean_local_dirs

        report = clean_local_dirs(self.db, self.settings, now=now)
        removed = report.counts["job_dirs_removed"] + report.counts["handoff_dirs_removed"]
        if removed or report.errors:
            log.info(
                "action=clean_job_root root=%s removed=%s errors=%s",
                self.settings.job_root,
                removed,
                len(report.errors),
            )
        for error in report.errors:
            log.warning("action=clean_job_root error=%s", one_line(Exception(error)))

    def _recover(self, now: datetime) -> None:
        recovery.requeue_lost(
            self.db, self.settings, now, job_hooks=self.runner.hooks, holder=self.worker_id
        )

    def _housekeeping(self, interval: int, now: datetime) -> None:
        if self._housekeeper is not None and self._housekeeper.is_alive():
            return
        try:
            module = importlib.import_module("multiflexi.housekeeping.service")
        except ImportError:
            log.debug("action=housekeeping skipped=%s", "module not installed")
            return
        # The lock is kept until it expires: housekeeping runs once per interval in the
        # whole cluster, whichever executor gets there first.
        if not workers.acquire_lock(self.db, HOUSEKEEPING_LOCK, self.worker_id, interval, now):
            log.debug("action=housekeeping skipped=%s", "another executor ran it")
            return

        def run() -> None:
            report = module.run_housekeeping(self.db, self.settings)
            skipped = report.get("skipped") if isinstance(report, dict) else None
            if skipped:
                log.info("action=housekeeping phase=end skipped=%s", skipped)
            else:
                log.info("action=housekeeping phase=end")

        def work() -> None:
            log.info("action=housekeeping phase=start")
            self._chore("housekeeping", run)

        self._housekeeper = threading.Thread(target=work, name="housekeeping", daemon=True)
        self._housekeeper.start()

    def reload(self) -> None:
        """SIGHUP: re-read the environment file the daemon started with; a bad file keeps
        the old settings."""
        from multiflexi.config import reload_settings

        self.notifier.reloading()
        try:
            fresh = reload_settings(self.settings)
        except Exception as exc:
            log.error("action=reload error=%s", one_line(exc))
            self.errors.failed("reload (the old settings stay)", exc)
            self.notifier.ready(f"reload failed, old settings kept: {one_line(exc)}")
            return
        self.settings = fresh
        self.pool.limit = self.fixed_parallel or fresh.max_parallel
        log.info(
            "action=reload max_parallel=%s poll_interval=%s timezone=%s",
            self.pool.limit,
            fresh.poll_interval,
            fresh.timezone,
        )
        self.notifier.ready(self._status_line())

    def _status_line(self) -> str:
        """What ``systemctl status`` shows."""
        return f"{self.pool.running()} of {self.pool.limit} job slots busy"

    # -- whole runs ----------------------------------------------------------------------

    def process(self) -> None:
        """Run the jobs due now (not those that become due meanwhile), then return."""
        self.claim_until = utcnow()
        try:
            while not self.signals.stopping:
                self.signals.wake.clear()
                ended = self.pool.ended()
                if self.step(utcnow()):
                    continue
                # Done when nothing runs that could unblock a due job -- and no job ended
                # while this step looked: a job of a ``forbid`` template that ended after
                # the claim missed its successor has freed that successor, and its thread
                # left the claiming to this loop.
                if self.pool.running() == 0 and self.pool.ended() == ended:
                    break
                self.signals.wake.wait(self.idle(utcnow()))
        finally:
            self.finish_chores(None)

    def finish_chores(self, timeout: float | None) -> bool:
        """Remove the finished jobs' directories still pending, and wait for a
        housekeeping round started here; False if it is still running after
        ``timeout``. Whoever closes the database after us must find no thread of ours
        in the middle of a transaction (a pooled connection taken away under it is never
        closed)."""
        self.sweeper.flush()
        housekeeper = self._housekeeper
        if housekeeper is None or not housekeeper.is_alive():
            return True
        log.info("action=housekeeping phase=wait timeout=%s", timeout)
        housekeeper.join(timeout)
        return not housekeeper.is_alive()

    def serve(self, once: bool = False) -> int:
        """The daemon: register, claim and run until a signal, drain, unregister."""
        workers.register(self.db, self.worker_id, "executor")
        log.info(
            "action=start worker=%s max_parallel=%s database=%s once=%s",
            self.worker_id,
            self.pool.limit,
            self.settings.describe_database(),
            once,
        )
        warm = threading.Thread(target=self._warm_up, name="warm-up", daemon=True)
        self._after_first_claim = [warm.start]
        try:
            if once:
                self._chore("requeue_lost", lambda: self._recover(utcnow()))
                self.process()
            else:
                self._after_first_claim.append(self._start_helpers)
                self.notifier.ready(self._status_line())
                run_loop(
                    self.step,
                    wake=self.signals.wake,
                    stopping=lambda: self.signals.stopping,
                    idle=self.idle,
                    on_error=lambda exc: self.errors.failed("step", exc),
                    notifier=self.notifier,
                )
        finally:
            self.notifier.stopping(f"stopping: {self.pool.running()} jobs running")
            self.shutdown()
            if not self.finish_chores(HOUSEKEEPING_EXIT_WAIT):
                # Its open transaction ends with the process; deleted batches stay deleted.
                log.warning(
                    "action=housekeeping phase=abandoned reason=%s", "still running at exit"
                )
            if self.listener is not None:
                self.listener.stop.set()
            self._chore("mark_stopped", lambda: workers.mark_stopped(self.db, self.worker_id))
            log.info(
                "action=stop worker=%s jobs=%s",
                self.worker_id,
                ",".join(f"{k}:{n}" for k, n in sorted(self.results.items())) or "none",
            )
        if self.fault is not None:
            raise self.fault  # one line on stderr, exit 1
        return 0

    def _warm_up(self) -> None:
        """Build the job runner and import what a job's path needs, then freeze what is
        loaded; in a thread of its own started after the first claim, so that the claim
        neither waits for this work nor for the interpreter lock it holds (each of the
        claim's round trips would wait for it again)."""
        try:
            self.runner  # noqa: B018 - built here rather than by the first job
            for name in _JOB_PATH_MODULES:
                importlib.import_module(name)
        except Exception as exc:  # the first job meets it again and says so
            log.error("action=warm_up error=%s", one_line(exc))
        # What is loaded now (modules, mapped classes, compiled statements) lives as long
        # as the daemon: kept out of the collector's full passes, which otherwise stop
        # every thread for tens of milliseconds to walk it again.
        gc.freeze()

    def _start_helpers(self) -> None:
        if self.db.dialect == "pgsql":
            self.listener = QueueListener(self.settings, self.signals.wake)
            self.listener.start()
        port = self.settings.metrics_port
        if port:
            from multiflexi.monitoring import metrics

            # This process's counters and state only: the cluster's numbers come from the
            # scheduler, else every executor would count them once more.
            self._chore(
                "metrics", lambda: metrics.serve(port, None, self.settings, daemon=self.probe)
            )

    def shutdown(self) -> None:
        """Let running jobs finish within the grace, then cancel them. The daemon keeps
        beating meanwhile, in state ``draining``: ``status`` must not call it dead."""
        running = self.pool.running()
        if not running:
            return
        grace = self.settings.shutdown_grace
        if self.signals.stopping:
            log.info("action=drain running=%s grace=%s", running, grace)
        done = threading.Event()
        beater = threading.Thread(
            target=self._beat_while_draining, args=(done,), name="drain-beat", daemon=True
        )
        beater.start()
        try:
            if not self.pool.join(grace, interrupt=self.signals.cancel):
                log.warning("action=cancel_jobs running=%s", self.pool.running())
                self.signals.cancel.set()
                # Cancelled jobs get TERM, kill grace, KILL, then record their end.
                self.pool.join(self.settings.kill_grace + 30)
        finally:
            done.set()
            beater.join()

    def _beat_while_draining(self, done: threading.Event) -> None:
        self._chore("beat", lambda: workers.mark_draining(self.db, self.worker_id))
        while not done.wait(workers.BEAT_SECONDS):
            self._chore("beat", self._beat)


class _Successor:
    """Claims the next job of a short job's thread in the transaction that commits the
    job's final status: one write transaction per job instead of two (trivial jobs,
    two executors: +12 % jobs/s on SQLite, +20 % on PostgreSQL; benchmarks/experiments.md).

    The claiming lock is taken (without waiting: if the loop claims, it is the loop's
    turn) in the transaction and kept until it has ended, so that the give-back of
    unknown claims never sees this one committed but not yet counted as ours. Each
    attempt of the transaction claims afresh; only a committed one is counted.
    """

    def __init__(self, daemon: ExecutorDaemon, slot: Slot) -> None:
        self.daemon, self.slot = daemon, slot
        self.locked = False
        self.looked = False
        self.claim_: Claim | None = None

    def claim(self, conn: Executes) -> None:
        daemon = self.daemon
        self.looked, self.claim_ = False, None
        if not self.locked:
            if not (self.slot.may_go_on() and daemon._may_follow()):
                return
            if not daemon._claiming.acquire(blocking=False):
                return
            self.locked = True
        if daemon.exhausted:  # counted under the lock: --limit holds
            return
        self.looked = True
        self.claim_ = queue.claim_next_in(
            conn,
            daemon.worker_id,
            daemon.settings.lease_seconds,
            now=daemon.claim_until,
            then=read_context,
        )

    def settle(self, committed: bool) -> None:
        try:
            if committed and self.looked:
                if self.claim_ is not None:
                    self.daemon._count_claim(self.claim_)
                self.slot.go_on_with(self.claim_)
        finally:
            self.claim_, self.looked = None, False
            if self.locked:
                self.locked = False
                self.daemon._claiming.release()


def run(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``multiflexi-executor``."""
    args = parse_args("multiflexi-executor", "Claim due MultiFlexi jobs and run them.", argv)
    run_daemon(
        "multiflexi-executor",
        args,
        lambda settings, db, signals, notifier: ExecutorDaemon(
            db,
            settings,
            worker_id=args.worker_id or queue.new_worker_id("executor"),
            max_parallel=args.max_parallel,
            signals=signals,
            notifier=notifier,
        ),
        prepare=True,
    )


if __name__ == "__main__":
    run()

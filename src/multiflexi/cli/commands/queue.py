"""queue:* commands: look at the queue, run what is due, clear it.

``queue:clear`` never deletes job records: waiting jobs become ``cancelled`` with a
reason, so the record of what was planned stays. ``--failed`` clears the queued new
attempts (retries) of failed and lost jobs and nothing else; removing old job records is
the retention policy's work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from multiflexi.cli.base import (
    cli_context,
    command,
    company_id_of,
    confirm,
    parse_int,
    repeat,
    watch_option,
)
from multiflexi.cli.output import emit, render_record, render_table

if TYPE_CHECKING:
    from datetime import datetime


def _overview_text(data: dict[str, Any]) -> str:
    statuses = ", ".join(f"{k} {v}" for k, v in data["statuses"].items())
    head: dict[str, Any] = {
        "jobs": statuses,
        "waiting": data["waiting"],
        "due now": data["due_now"],
    }
    if data.get("held"):
        head["held"] = (
            f"{data['held']} waiting job(s) of a disabled company or application or an"
            " inactive run template (see queue:list)"
        )
    oldest = data["oldest_due"]
    if oldest is not None:
        head["oldest due"] = (
            f"job {oldest['job_id']}, not before {oldest['not_before']:%Y-%m-%d %H:%M:%S %Z}"
            f" ({oldest['waiting_seconds']:.1f} s ago)"
        )
    parts = [render_record(head)]
    running = [
        {k: r[k] for k in ("job_id", "runtemplate", "app", "company", "worker", "host", "pid")}
        | {"since": r["begin"]}
        for r in data["running"]
    ]
    parts.append("\nRunning:\n" + (render_table(running) if running else "none"))
    if data["companies"]:
        parts.append("\nPer company:\n" + render_table(data["companies"]))
    return "\n".join(parts)


@command("queue:status", "queue:overview")
@watch_option
def queue_status(watch: float | None) -> None:
    """Counts by state, jobs due now, the oldest due job, running jobs and companies."""
    repeat(watch, _queue_status_once)


def _queue_status_once() -> None:
    from multiflexi.cli.output import localize
    from multiflexi.workers import queue_overview

    ctx = cli_context()
    with ctx.db.read() as session:
        data = queue_overview(session)
    text = None if ctx.fmt == "json" else _overview_text(localize(data, ctx.settings.timezone))
    emit(data, ctx.fmt, text=text)


@command("queue:list", "queue:ls")
@click.option("--limit", default="50", show_default=True)
@click.option("--offset", default="0", show_default=True)
def queue_list(limit: str, offset: str) -> None:
    """Waiting jobs in the order they run: not-before, template, app, company."""
    from multiflexi.workers import waiting_jobs

    ctx = cli_context()
    with ctx.db.read() as session:
        rows = waiting_jobs(
            session, limit=parse_int(limit, "--limit"), offset=parse_int(offset, "--offset")
        )
    if ctx.fmt != "json" and not rows:
        emit(rows, ctx.fmt, text="The queue is empty.")
        return
    emit(rows, ctx.fmt, tz=ctx.settings.timezone)


@command("queue:process", "queue:run")
@click.option("--limit", default=None, help="Run at most N jobs (at least 1; default: all due).")
@click.option("--concurrency", default="1", show_default=True, help="Jobs run at once.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Report each job as it ends (default: on a terminal).",
)
def queue_process(limit: str | None, concurrency: str, progress: bool | None) -> None:
    """Run the jobs due now in the foreground, then exit (the daemon's claim)."""
    import sys

    from multiflexi.daemons.executor import ExecutorDaemon
    from multiflexi.daemons.signals import DaemonSignals
    from multiflexi.errors import Invalid
    from multiflexi.queue import new_worker_id

    parallel = parse_int(concurrency, "--concurrency")
    if parallel < 1:
        raise Invalid(f"--concurrency must be at least 1, got {parallel}")
    most = parse_int(limit, "--limit") if limit is not None else None
    if most == 0:
        raise Invalid("--limit must be at least 1, got 0 (leave it out to run every due job)")
    ctx = cli_context()
    if progress is None:
        progress = ctx.fmt != "json" and sys.stderr.isatty()
    signals = DaemonSignals()
    daemon = ExecutorDaemon(
        ctx.db,
        ctx.settings,
        worker_id=new_worker_id("cli"),
        max_parallel=parallel,
        signals=signals,
        limit=most,
        maintenance=False,
    )
    reporter = ProgressReporter(daemon, ctx.db, ctx.settings.timezone) if progress else None
    # Ctrl-C as for the daemon: the first stops claiming and lets running jobs finish,
    # the second cancels them.
    with signals.installed():
        if reporter is not None:
            reporter.start()
        try:
            daemon.process()
        finally:
            daemon.shutdown()
            if reporter is not None:
                reporter.stop()
    if daemon.fault is not None:
        raise daemon.fault
    assert daemon.claim_until is not None
    _summary(daemon.claimed, dict(daemon.results), daemon.claim_until)


def _summary(claimed: list[int], results: dict[str, int], started: datetime) -> None:
    from multiflexi.jobs.service import job_outcomes
    from multiflexi.workers import left_due

    ctx = cli_context()
    with ctx.db.read() as session:
        outcomes = job_outcomes(session, claimed)
        held, waiting = left_due(session, started)
    unsuccessful = [o["job_id"] for o in outcomes if o["status"] != "success"]
    data = {
        "processed": len(claimed),
        "jobs": claimed,
        "results": results,
        "unsuccessful": unsuccessful,
        "outcomes": outcomes,
        # Due at the start and not run: held (disabled), or waiting for a run of their
        # template elsewhere (overlap forbid), or left by --limit or a signal.
        "held": held,
        "left_due": waiting,
    }
    if not claimed:
        text = "Processed 0 jobs: nothing was due."
    else:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(results.items()))
        text = f"Processed {len(claimed)} job(s) ({_ids(claimed)}): {counts}."
    if held:
        text += f" {held} due job(s) held (company or application disabled, template inactive)."
    if waiting:
        text += (
            f" {waiting} due job(s) not run (--limit, a signal, or a run of their template"
            " elsewhere)."
        )
    if unsuccessful:
        text += f"\nNot successful: {_ids(unsuccessful)} (see multiflexi-cli job:show ID)."
    emit(data, ctx.fmt, text=text)


def _ids(ids: list[int], most: int = 20) -> str:
    shown = ", ".join(str(i) for i in ids[:most])
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")


class ProgressReporter:
    """Reports the jobs of a foreground run on stderr as they end: a line per job (id,
    template, status, duration), or a progress bar when more than :attr:`BAR_FROM` are
    due. Reads only what the daemon publishes (its claimed ids and result counts) and the
    jobs' records; the run itself is not touched."""

    BAR_FROM = 20
    POLL = 0.25

    def __init__(self, daemon: Any, db: Any, tz: str) -> None:
        import threading

        self.daemon, self.db, self.tz = daemon, db, tz
        self.reported: set[int] = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self.bar: Any = None

    def start(self) -> None:
        from multiflexi.workers import queue_overview

        with self.db.read() as session:
            due = int(queue_overview(session)["due_now"])
        limit = self.daemon.limit
        total = min(due, limit) if limit is not None else due
        if total > self.BAR_FROM:
            from rich.progress import MofNCompleteColumn, Progress

            columns = (*Progress.get_default_columns(), MofNCompleteColumn())
            self.bar = Progress(*columns, transient=False, console=_stderr_console())
            self.task = self.bar.add_task("jobs", total=total)
            self.bar.start()
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self._report()  # the last ones
        if self.bar is not None:
            self.bar.stop()

    def _run(self) -> None:
        while not self.done.wait(self.POLL):
            try:
                self._report()
            except Exception:  # the display never stops the run
                continue

    def _report(self) -> None:
        from multiflexi.jobs.lifecycle import is_final
        from multiflexi.jobs.service import job_outcomes

        pending = [i for i in list(self.daemon.claimed) if i not in self.reported]
        if not pending:
            return
        with self.db.read() as session:
            outcomes = job_outcomes(session, pending)
        for outcome in outcomes:
            if not is_final(outcome["status"]):
                continue
            self.reported.add(outcome["job_id"])
            if self.bar is not None:
                self.bar.advance(self.task)
            else:
                click.echo(_outcome_line(outcome), err=True)


def _outcome_line(outcome: dict[str, Any]) -> str:
    from multiflexi.cli.output import human_duration, reason_text

    line = (
        f"job {outcome['job_id']}  {outcome['runtemplate'] or '-'}  {outcome['status']}"
        f"  {human_duration(outcome['duration'])}"
    )
    if outcome["status"] != "success":
        reason = reason_text(outcome["reason"], outcome["exitcode"])
        if outcome["exitcode"] is not None:
            line += f"  exit code {outcome['exitcode']}"
        if reason:
            line += f": {reason}"
    return line.rstrip()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@command("queue:clear", "queue:truncate")
@click.option(
    "--failed",
    is_flag=True,
    help="Clear only the queued retries of failed and lost jobs.",
)
@click.option("--company", "--company_id", "company", help="Only jobs of this company (id/slug).")
@click.option(
    "--runtemplate", "--runtemplate_id", "runtemplate", help="Only jobs of this run template."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def queue_clear(failed: bool, company: str | None, runtemplate: str | None, yes: bool) -> None:
    """Cancel waiting jobs (status cancelled, with a reason); records are kept."""
    from multiflexi.queue import cancel_jobs, waiting_ids
    from multiflexi.users import unix_login

    ctx = cli_context()
    company_id = company_id_of(company) if company else None
    rt_id = parse_int(runtemplate, "--runtemplate") if runtemplate else None
    with ctx.db.read() as session:
        if rt_id is not None:  # a typo is "not found", not "nothing to clear"
            from multiflexi.runtemplates.service import get_runtemplate

            get_runtemplate(session, rt_id)
        ids = waiting_ids(session, company_id=company_id, runtemplate_id=rt_id, retries_only=failed)
    what = "queued retr" + ("y" if len(ids) == 1 else "ies") if failed else "waiting job(s)"
    if ids:
        confirm(f"Cancel {len(ids)} {what}?", yes)
    verb = "retries cleared" if failed else "queue cleared"
    cancelled = cancel_jobs(ctx.db, ids, f"cancelled: {verb} by {unix_login()} (queue:clear)")
    data = {"cancelled": len(cancelled), "jobs": cancelled}
    text = f"Cancelled {len(cancelled)} {what}." if ids else f"No {what} to clear."
    emit(data, ctx.fmt, text=text)

"""queue:* commands: look at the queue, run what is due, clear it.

``queue:clear`` never deletes job records: waiting jobs become ``cancelled`` with a
reason, so the record of what was planned stays. ``--failed`` clears the queued new
attempts (retries) of failed and lost jobs and nothing else; removing old job records is
the retention policy's work.
"""

from __future__ import annotations

from typing import Any

import click

from multiflexi.cli.base import cli_context, command, confirm, parse_int
from multiflexi.cli.output import emit, render_record, render_table


def _overview_text(data: dict[str, Any]) -> str:
    statuses = ", ".join(f"{k} {v}" for k, v in data["statuses"].items())
    head: dict[str, Any] = {
        "jobs": statuses,
        "waiting": data["waiting"],
        "due now": data["due_now"],
    }
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
def queue_status() -> None:
    """Counts by state, jobs due now, the oldest due job, running jobs and companies."""
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
@click.option("--limit", default=None, help="Run at most N jobs.")
@click.option("--concurrency", default="1", show_default=True, help="Jobs run at once.")
def queue_process(limit: str | None, concurrency: str) -> None:
    """Run the jobs due now in the foreground, then exit (the daemon's claim)."""
    from multiflexi.daemons.executor import ExecutorDaemon
    from multiflexi.daemons.signals import DaemonSignals
    from multiflexi.queue import new_worker_id

    parallel = parse_int(concurrency, "--concurrency")
    if parallel < 1:
        from multiflexi.errors import Invalid

        raise Invalid(f"--concurrency must be at least 1, got {parallel}")
    most = parse_int(limit, "--limit") if limit is not None else None
    ctx = cli_context()
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
    # Ctrl-C as for the daemon: the first stops claiming and lets running jobs finish,
    # the second cancels them.
    with signals.installed():
        try:
            daemon.process()
        finally:
            daemon.shutdown()
    if daemon.fault is not None:
        raise daemon.fault
    results = dict(daemon.results)
    data = {"processed": len(daemon.claimed), "jobs": daemon.claimed, "results": results}
    summary = ", ".join(f"{n} {s}" for s, n in sorted(results.items())) or "nothing was due"
    emit(data, ctx.fmt, text=f"Processed {len(daemon.claimed)} job(s): {summary}.")


def _company_id(value: str) -> int:
    if value.isdigit():
        return int(value)
    from multiflexi.companies.service import find_company

    with cli_context().db.read() as session:
        return find_company(session, slug=value).id


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
    company_id = _company_id(company) if company else None
    rt_id = parse_int(runtemplate, "--runtemplate") if runtemplate else None
    with ctx.db.read() as session:
        ids = waiting_ids(session, company_id=company_id, runtemplate_id=rt_id, retries_only=failed)
    what = "queued retr" + ("y" if len(ids) == 1 else "ies") if failed else "waiting job(s)"
    if ids:
        confirm(f"Cancel {len(ids)} {what}?", yes)
    verb = "retries cleared" if failed else "queue cleared"
    cancelled = cancel_jobs(ctx.db, ids, f"cancelled: {verb} by {unix_login()} (queue:clear)")
    data = {"cancelled": len(cancelled), "jobs": cancelled}
    text = f"Cancelled {len(cancelled)} {what}." if ids else f"No {what} to clear."
    emit(data, ctx.fmt, text=text)

"""job:* commands and run-template:schedule."""

from __future__ import annotations

import sys
from typing import Any

import click

from multiflexi.cli.base import (
    cli_context,
    command,
    company_id_of,
    confirm,
    id_argument,
    parse_assignments,
    parse_int,
    repeat,
    resolve_id,
    watch_option,
)
from multiflexi.cli.output import emit

#: Width that the default ``job:list`` table keeps within (a terminal of 120 columns).
LIST_WIDTH = 120
#: Fixed widths of the cut columns of the default table.
TEMPLATE_WIDTH, COMPANY_WIDTH = 22, 16


def _list_rows(rows: list[dict[str, Any]], tz: str) -> list[dict[str, Any]]:
    """The default table: what an operator scans for, within :data:`LIST_WIDTH`."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from multiflexi.cli.output import human_duration, localize, reason_text, shorten, when_text

    now = datetime.now(UTC).astimezone(ZoneInfo(tz))
    out = []
    for row in localize(rows, tz):
        when = row["begin"] or row["created"]
        if row["not_before"] is not None and row["not_before"] > now:
            when = row["not_before"]  # waiting for its time: when it may start
        failed = row["status"] not in ("success", "scheduled", "running", "loaded")
        out.append(
            {
                "id": row["id"],
                "status": row["status"],
                "template": shorten(row["runtemplate"] or "", TEMPLATE_WIDTH),
                "company": shorten(row["company"] or "", COMPANY_WIDTH),
                "when": when_text(when, now),
                "duration": human_duration(row["duration"]),
                "exit": row["exitcode"],
                "reason": reason_text(row["reason"], row["exitcode"])
                if failed
                # why a waiting job is not claimed (multiflexi.jobs.holds)
                else (f"held: {row['held']}" if row.get("held") else ""),
            }
        )
    columns = ("id", "status", "template", "company", "when", "duration", "exit", "reason")
    used = sum(
        max(len(c), *(len(str(r[c] if r[c] is not None else "")) for r in out))
        for c in columns[:-1]
    )
    room = max(LIST_WIDTH - used - 2 * (len(columns) - 1), 10)
    return [{c: shorten(r[c], room) if c == "reason" else r[c] for c in columns} for r in out]


def _wide_rows(rows: list[dict[str, Any]], tz: str) -> list[dict[str, Any]]:
    from datetime import UTC, datetime

    from multiflexi.cli.output import age, human_duration, localize

    now = datetime.now(UTC)
    return [
        {
            **row,
            "age": age(row["created"], now),
            "duration": human_duration(row["duration"]),
        }
        for row in localize(rows, tz)
    ]


def _job_list_once(flt: Any, wide: bool) -> None:
    from multiflexi.jobs.listing import list_jobs, list_jobs_full
    from multiflexi.storage.fastread import Unavailable

    ctx = cli_context()
    try:
        rows = list_jobs(ctx.settings, flt)
    except Unavailable:
        rows = list_jobs_full(ctx.settings, flt)
    if ctx.fmt == "json":
        emit(rows, ctx.fmt)
    elif not rows:
        emit(rows, ctx.fmt, text="No jobs found.")
    else:
        tz = ctx.settings.timezone
        if wide:  # every column, as wide as it takes
            emit(_wide_rows(rows, tz), ctx.fmt, width=100_000)
        else:
            emit(_list_rows(rows, tz), ctx.fmt)


@command("job:list", "job:ls")
@click.option("--status", help="Only jobs in these states (comma-separated).")
@click.option("--company", help="Company id or slug.")
@click.option(
    "--runtemplate", "--template", "--runtemplate-id", "runtemplate", help="Run template id."
)
@click.option("--app", help="Application id or name.")
@click.option("--since", help="Created since: 30d, 2h, or a date.")
@click.option("--limit", default="50", show_default=True)
@click.option("--offset", default="0", show_default=True)
@click.option("--wide", "-w", is_flag=True, help="Every column, nothing cut.")
@watch_option
def job_list(
    status: str | None,
    company: str | None,
    runtemplate: str | None,
    app: str | None,
    since: str | None,
    limit: str,
    offset: str,
    wide: bool,
    watch: float | None,
) -> None:
    """List jobs, newest first: status, template, company, when (and how long ago),
    duration, exit code, and why a job failed."""
    from multiflexi.jobs.listing import JobFilter

    ctx = cli_context()
    if since:  # only then: its time-zone arithmetic takes a while to import
        from multiflexi.scheduling.when import parse_since
    flt = JobFilter(
        status=status,
        company=company,
        runtemplate_id=parse_int(runtemplate, "--runtemplate") if runtemplate else None,
        app=app,
        since=parse_since(since, ctx.settings.timezone) if since else None,
        limit=parse_int(limit, "--limit"),
        offset=parse_int(offset, "--offset"),
    )
    repeat(watch, lambda: _job_list_once(flt, wide))


#: How the links between a run and its next attempt read in the text view.
_LINKS = {"retry_of": "retry of", "retried_by": "retried by"}


def _show_text(record: dict[str, object], tails: dict[str, str]) -> str:
    from multiflexi.cli.output import reason_text, render_record, render_table, rounded

    head: dict[str, object] = {}
    exitcode = record.get("exitcode")
    for key, value in record.items():
        if key in ("artifacts", "actions", "exit_meaning", "output_tail"):
            continue
        if key == "reason":  # what the exit code line does not say already
            value = reason_text(str(value or ""), exitcode)  # type: ignore[arg-type]
            if not value or value == record.get("exit_meaning"):
                continue
        elif key == "exitcode":
            meaning = record.get("exit_meaning")
            value = f"{value} ({meaning})" if value is not None and meaning else value
        elif key in ("duration", "cpu_user", "cpu_system") and isinstance(value, float):
            value = f"{value:.3f} s"
        elif key in _LINKS:
            if value is not None:
                head[_LINKS[key]] = value
            continue
        head[key] = rounded(value)
    parts = [render_record(head)]
    arts = record["artifacts"]
    parts.append("\nArtifacts:\n" + (render_table(arts) if arts else "none"))  # type: ignore[arg-type]
    if record.get("artifacts_pruned"):
        parts.append("The content of this job's artifacts was pruned by the retention policy.")
    if record["actions"]:
        actions = [{k: rounded(v) for k, v in a.items()} for a in record["actions"]]  # type: ignore[attr-defined]
        parts.append("\nActions:\n" + render_table(actions))
    for stream, text in tails.items():
        if text:
            parts.append(f"\nLast lines of {stream}:\n{text.rstrip()}")
    return "\n".join(parts)


#: job:show --env: later layers win; ``shadowed``: what each value replaced.
ENV_COLUMNS = ("name", "value", "source", "shadowed", "secret")


@command("job:show", "job:get")
@id_argument()
@click.option("--env", "show_env", is_flag=True, help="Print the environment with sources.")
@click.option("--reveal", is_flag=True, help="Show secret values in clear (asks first).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before revealing secrets.")
@click.option("--lines", default="10", show_default=True, help="How many last output lines.")
def job_show(
    pos_id: str | None, opt_id: str | None, show_env: bool, reveal: bool, yes: bool, lines: str
) -> None:
    """Show a job: status, timings, exit code and meaning, metrics, command, artifacts."""
    from multiflexi.jobs.service import env_rows, get_job, job_record
    from multiflexi.secrets import Vault
    from multiflexi.storage import blobs

    ctx = cli_context()
    job_id = resolve_id(pos_id, opt_id, "job id")
    count = parse_int(lines, "--lines")
    with ctx.db.read() as s:
        job = get_job(s, job_id)
        record = job_record(s, job)
        if show_env:
            if reveal:
                confirm(f"Reveal the secret values of job {job_id}?", yes)
            record["env"] = env_rows(
                job, Vault.from_settings(ctx.settings, ctx.db) if reveal else None
            )
    tails: dict[str, str] = {}
    for art in record["artifacts"]:  # type: ignore[attr-defined]
        if art["filename"] in ("stdout.txt", "stderr.txt") and count > 0:
            data = blobs.read_tail(ctx.db, art["id"]).decode("utf-8", "replace")
            tails[art["filename"][:-4]] = "\n".join(data.splitlines()[-count:])
    if ctx.fmt == "json":
        record["output_tail"] = tails
        emit(record, ctx.fmt)
        return
    from multiflexi.cli.output import localize, render_table, shadows_text

    if show_env:  # the environment alone: the rest is what job:show without --env says
        rows = [{**row, "shadowed": shadows_text(row["shadowed"])} for row in record["env"]]  # type: ignore[attr-defined]
        emit(record, ctx.fmt, text=render_table(rows, ENV_COLUMNS))
        return
    emit(record, ctx.fmt, text=_show_text(localize(record, ctx.settings.timezone), tails))


@command("job:create")
@click.option(
    "--template",
    "--runtemplate",
    "--runtemplate_id",
    "template",
    required=True,
    help="Run template id.",
)
@click.option("--company", "--company_id", "company", help="Company id (must own the template).")
@click.option("--env", "env", multiple=True, metavar="K=V", help="One-off variable (repeatable).")
@click.option("--at", "--scheduled", "at", help="Not before: now, +10m, or a time.")
@click.option("--executor", help="Executor to use instead of the template's.")
def job_create(
    template: str, company: str | None, env: tuple[str, ...], at: str | None, executor: str | None
) -> None:
    """Create a job of a run template and queue it (status scheduled)."""
    from multiflexi.jobs.service import create_job
    from multiflexi.scheduling.when import parse_when

    ctx = cli_context()
    company_id = None
    if company is not None:
        company_id = company_id_of(company)
    when = parse_when(at, ctx.settings.timezone) if at else None
    job = create_job(
        ctx.db,
        ctx.settings,
        runtemplate_id=parse_int(template, "--template"),
        company_id=company_id,
        overrides=parse_assignments(env, "--env K=V"),
        at=when,
        executor=executor,
    )
    data = {
        "job_id": job.id,
        "status": job.status,
        "not_before": job.schedule,
        "runtemplate_id": job.runtemplate_id,
    }
    emit(data, ctx.fmt, text=f"Job {job.id} created ({job.status}).")


@command("run-template:schedule", "runtemplate:schedule")
@click.option("--id", "rt_id", required=True, help="Run template id.")
@click.option("--schedule_time", "--schedule-time", "when", default="now", help="now or a time.")
@click.option("--env", "env", multiple=True, metavar="K=V", help="One-off variable (repeatable).")
@click.option("--config", "config", multiple=True, metavar="K=V", help="Same as --env.")
@click.option("--executor", help="Executor to use instead of the template's.")
def runtemplate_schedule(
    rt_id: str, when: str, env: tuple[str, ...], config: tuple[str, ...], executor: str | None
) -> None:
    """Create a job of a run template and queue it."""
    from multiflexi.jobs.service import create_job
    from multiflexi.scheduling.when import parse_when

    ctx = cli_context()
    at = parse_when(when, ctx.settings.timezone)
    job = create_job(
        ctx.db,
        ctx.settings,
        runtemplate_id=parse_int(rt_id, "--id"),
        overrides={
            **parse_assignments(config, "--config K=V"),
            **parse_assignments(env, "--env K=V"),
        },
        at=at,
        executor=executor,
    )
    data = {
        "runtemplate_id": job.runtemplate_id,
        "scheduled": at,
        "executor": job.executor,
        "job_id": job.id,
    }
    emit(
        data,
        ctx.fmt,
        text=f"RunTemplate {job.runtemplate_id} scheduled for execution at {at.isoformat()}\nExecutor: {job.executor}\nJob ID: {job.id}",
    )


def _tee(stream: str, data: bytes) -> None:
    out = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
    out.write(data)
    out.flush()


class _Tee:
    """Shows a running job's output on our own stdout and stderr, until they go away (a
    dropped SSH session: EIO, a closed pipe): the job itself must not fail for that."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self, stream: str, data: bytes) -> None:
        if self.broken:
            return
        try:
            _tee(stream, data)
        except (OSError, ValueError):  # ValueError: the stream was closed
            self.broken = True


def _say(line: str) -> None:
    """A line on stderr that may have gone with the terminal."""
    try:
        click.echo(line, err=True)
    except (OSError, ValueError):
        pass


#: job:run's exit code for a job ended by its timeout, as timeout(1) has it.
EXIT_TIMEOUT = 124


@command("job:run", "job:execute")
@id_argument()
@click.option("--detach", is_flag=True, help="Only queue it for the executor daemon, now.")
@click.option("--quiet", "-q", is_flag=True, help="Do not stream the job's output.")
def job_run(pos_id: str | None, opt_id: str | None, detach: bool, quiet: bool) -> int:
    """Run a scheduled job now in the foreground; exit with the job's exit code.

    Exit codes: the job's own; 124 when its timeout ended it; 130, 143 or 129 when this
    command was interrupted by SIGINT (Ctrl-C), SIGTERM or SIGHUP -- the job's process
    group is then terminated (SIGTERM, MULTIFLEXI_KILL_GRACE, SIGKILL) and the job
    recorded ``cancelled``, "interrupted by SIGINT", with its output so far; 1 when
    the job failed without an exit code of its own, or was cancelled by ``job:cancel``.
    """
    from multiflexi.executors.base import ExecutionResult
    from multiflexi.jobs.cancel import Interrupts, StopEvent
    from multiflexi.jobs.runner import JobRunner
    from multiflexi.jobs.service import get_job, job_record
    from multiflexi.queue import claim_job, new_worker_id, release_now

    ctx = cli_context()
    job_id = resolve_id(pos_id, opt_id, "job id")
    if detach:
        release_now(ctx.db, job_id)
        emit({"job_id": job_id, "queued": True}, ctx.fmt, text=f"Job {job_id} queued to run now.")
        return 0
    stop = StopEvent()
    ended: list[ExecutionResult] = []
    # From before the claim: a signal that comes once the job is ours stops the job;
    # one that came before leaves it scheduled (the command ends before the claim).
    with Interrupts(stop).installed() as interrupts:
        if stop.is_set():  # pragma: no cover - a signal between two lines
            return interrupts.exit_code or 1
        claim = claim_job(ctx.db, job_id, new_worker_id("cli"), ctx.settings.lease_seconds)
        tee = None if quiet or ctx.fmt == "json" else _Tee()
        runner = JobRunner(ctx.db, ctx.settings, tee=tee, cancel=stop)
        status = runner.perform_job(claim, on_result=ended.append)
    with ctx.db.read() as s:
        job = get_job(s, job_id)
        record = job_record(s, job)
    if ctx.fmt == "json":
        try:
            emit(record, ctx.fmt)
        except (OSError, ValueError):
            pass
    else:
        from multiflexi.cli.output import reason_text

        line = f"Job {job_id} {status}"
        if job.exitcode is not None:
            line += f", exit code {job.exitcode}"
        reason = reason_text(job.reason, job.exitcode)
        if reason:
            line += f": {reason}"
        _say(line)
    if interrupts.exit_code is not None:
        return interrupts.exit_code
    if ended and ended[0].timed_out:
        return EXIT_TIMEOUT
    if job.exitcode is not None:
        return job.exitcode
    return 0 if status == "success" else 1


@command(
    "job:logs",
    "job:output",
    raw_output="the job's output byte-exact (job:show -f json has its record)",
)
@id_argument()
@click.option("--follow", "-F", is_flag=True, help="Keep printing new output until the job ends.")
@click.option(
    "--stream", type=click.Choice(["stdout", "stderr", "both"]), default="both", show_default=True
)
def job_logs(pos_id: str | None, opt_id: str | None, follow: bool, stream: str) -> None:
    """Print a job's output, byte-exact; with --follow, as it arrives."""
    from multiflexi.jobs.logs import follow_output

    ctx = cli_context()
    job_id = resolve_id(pos_id, opt_id, "job id")
    streams = ("stdout", "stderr") if stream == "both" else (stream,)
    follow_output(ctx.db, job_id, streams, follow=follow, write=_tee, note=_note)


def _note(message: str) -> None:
    click.echo(message, err=True)


@command("job:cancel", "job:stop")
@id_argument()
@click.option("--no-wait", is_flag=True, help="Only ask; do not wait for a running job to stop.")
@click.option(
    "--timeout",
    default=None,
    metavar="SECONDS",
    help="How long to wait for a running job to stop (default: heartbeat + kill grace + 30).",
)
def job_cancel(pos_id: str | None, opt_id: str | None, no_wait: bool, timeout: str | None) -> int:
    """Cancel a job: a waiting one now; a running one (on any host) is stopped by its
    executor within a heartbeat (SIGTERM, kill grace, SIGKILL) and recorded cancelled."""
    from multiflexi.jobs.cancel import cancel_job, stop_wait, wait_final

    ctx = cli_context()
    job_id = resolve_id(pos_id, opt_id, "job id")
    seconds = _seconds(
        timeout, "--timeout", stop_wait(ctx.settings.lease_seconds, ctx.settings.kill_grace)
    )
    state = cancel_job(ctx.db, job_id)
    data: dict[str, object] = {"job_id": job_id, "outcome": state.outcome, "status": state.status}
    if state.outcome == "final":
        data["message"] = f"Job {job_id} had already ended ({state.status}); nothing to cancel."
        emit(data, ctx.fmt, text=str(data["message"]))
        return 1 if state.status != "cancelled" else 0
    if state.outcome == "cancelled":
        emit(data, ctx.fmt, text=f"Job {job_id} cancelled (it had not started).")
        return 0
    where = f"worker {state.worker} on {state.host}" if state.host else f"worker {state.worker}"
    asked = f"Cancel of job {job_id} asked for; {where} stops it at its next heartbeat."
    if state.outcome == "pending":
        asked = f"Cancel of job {job_id} was asked for already by {state.by}; {where} stops it."
    data["worker"], data["host"], data["requested_by"] = state.worker, state.host, state.by
    if no_wait:
        emit(data, ctx.fmt, text=asked)
        return 0
    if ctx.fmt != "json":
        click.echo(asked)  # on its way; the outcome follows
    final = wait_final(ctx.db, job_id, seconds)
    data["status"] = final or "running"
    if final is None:
        from multiflexi.errors import ExecutionError

        raise ExecutionError(
            f"job {job_id} is still running after {seconds:g} s: {where} has not stopped it "
            "(if that executor is gone, recovery records the job cancelled once its lease "
            "runs out)"
        )
    with ctx.db.read() as s:
        from multiflexi.jobs.service import get_job

        reason = get_job(s, job_id).reason
    data["reason"] = reason
    if final == "cancelled":
        emit(data, ctx.fmt, text=f"Job {job_id} cancelled: {reason}")
        return 0
    emit(data, ctx.fmt, text=f"Job {job_id} ended {final} before it could be stopped: {reason}")
    return 1


def _seconds(raw: str | None, what: str, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        from multiflexi.errors import Invalid

        raise Invalid(f"{what} must be a number of seconds, got {raw!r}") from None
    if not 0 <= value <= 86400:
        from multiflexi.errors import Invalid

        raise Invalid(f"{what} must be between 0 and 86400 seconds, got {raw!r}")
    return value


@command("job:delete", "job:remove")
@id_argument()
@click.option(
    "--force",
    is_flag=True,
    help="Delete a running job too: it is cancelled first, and deleted once it has stopped.",
)
@click.option(
    "--timeout",
    default=None,
    metavar="SECONDS",
    help="With --force: how long to wait for a running job to stop.",
)
def job_delete(pos_id: str | None, opt_id: str | None, force: bool, timeout: str | None) -> None:
    """Delete a job with its output and artifacts; a running one only with --force, which
    cancels it first and waits until it has stopped (no process is left running)."""
    from multiflexi.jobs.cancel import stop_wait
    from multiflexi.jobs.service import delete_job

    ctx = cli_context()
    job_id = resolve_id(pos_id, opt_id, "job id")
    seconds = _seconds(
        timeout, "--timeout", stop_wait(ctx.settings.lease_seconds, ctx.settings.kill_grace)
    )
    stopped = delete_job(ctx.db, ctx.settings, job_id, force=force, wait=seconds)
    text = f"Job {job_id} deleted."
    if stopped:
        text = f"Job {job_id} cancelled ({stopped}) and deleted."
    emit({"deleted": True, "job_id": job_id, "cancelled": bool(stopped)}, ctx.fmt, text=text)

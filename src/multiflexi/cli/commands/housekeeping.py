"""storage:usage, prune, queue:fix and housekeeping: keeping the database in shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from multiflexi.cli.base import cli_context, command, confirm, parse_int
from multiflexi.cli.output import emit

#: Upstream's default for ``prune --jobs/--logs`` without ``--keep``.
UPSTREAM_KEEP = 1000


def human_bytes(value: int | None) -> str:
    """``1536`` -> ``1.5 KiB``: sizes as people read them."""
    size = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _sized(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Rows with their byte columns made readable, for text tables."""
    out = []
    for row in rows:
        shown = {k: row.get(k) for k in keys}
        for name in ("files_bytes", "output_bytes", "total_bytes", "pruned_bytes", "size", "bytes"):
            if name in shown:
                shown[name] = human_bytes(shown[name])
        out.append(shown)
    return out


_MEASURES = ("files_bytes", "output_bytes", "total_bytes", "pruned_bytes", "artifacts", "jobs")


def _usage_text(report: Mapping[str, Any]) -> str:
    from multiflexi.cli.output import render_record, render_table

    totals = report["totals"]
    growth = report["growth"]
    parts = [
        render_record(
            {
                "stored": human_bytes(totals["total_bytes"]),
                "files": human_bytes(totals["files_bytes"]),
                "output": human_bytes(totals["output_bytes"]),
                "pruned (no content)": human_bytes(totals["pruned_bytes"]),
                "artifacts": totals["artifacts"],
                "jobs with artifacts": totals["jobs"],
                f"added in {growth['days']} days": human_bytes(growth["bytes"]),
            }
        )
    ]
    sections = (
        ("By company", "by_company", ("company_id", "company", *_MEASURES)),
        ("By application", "by_app", ("app_id", "app", *_MEASURES)),
        ("By run template", "by_runtemplate", ("runtemplate_id", "runtemplate", *_MEASURES)),
        ("By month (UTC)", "by_month", ("month", *_MEASURES)),
        ("Largest artifacts", "largest", ("id", "job_id", "filename", "kind", "size", "created")),
    )
    for title, key, columns in sections:
        parts.append(f"\n{title}:\n" + render_table(_sized(report[key], columns), columns))
    busy = [d for d in growth["per_day"] if d["bytes"] or d["artifacts"]]
    parts.append(
        f"\nAdded per day, last {growth['days']} days (days with data):\n"
        + render_table(_sized(busy, ("day", "bytes", "artifacts")))
    )
    return "\n".join(parts)


@command("storage:usage", "storage:du")
@click.option("--company", help="Only this company (id or slug).")
@click.option("--top", default="10", show_default=True, help="How many largest artifacts.")
@click.option("--days", default="30", show_default=True, help="Growth window in days.")
def storage_usage(company: str | None, top: str, days: str) -> None:
    """Bytes of artifacts and output per company, application, template and month."""
    from multiflexi.housekeeping.usage import storage_usage as usage

    ctx = cli_context()
    report = usage(
        ctx.db, company=company, top=parse_int(top, "--top"), days=parse_int(days, "--days")
    )
    emit(report, ctx.fmt, text=None if ctx.fmt == "json" else _usage_text(report))


def _prune_text(result: Mapping[str, Any]) -> str:
    verb = (
        ("Would delete", "would prune", "would free")
        if result["dry_run"]
        else (
            "Deleted",
            "pruned",
            "freed",
        )
    )
    lines = [
        f"{verb[0]} {result['jobs_deleted']} jobs ({result['artifacts_deleted']} artifacts), "
        f"{verb[1]} {result['artifacts_pruned']} artifacts of "
        f"{result['jobs_artifacts_pruned']} jobs; {verb[2]} {human_bytes(result['bytes_freed'])}."
    ]
    if not result["dry_run"]:
        lines.append(
            f"{result['batches']} batches, longest {result['max_batch_seconds']:.3f} s, "
            f"total {result['seconds']:.1f} s."
        )
    if result.get("stopped"):
        lines.append(f"Stopped early: {result['stopped']}")
    space = result.get("space") or {}
    if space.get("action") not in (None, "none"):
        lines.append(
            f"Space: {space['action']}, reclaimed {human_bytes(space.get('reclaimed_bytes'))}."
        )
    elif space.get("note"):
        lines.append(f"Space: {space['note']}.")
    return "\n".join(lines)


@command("prune", "job:prune")
@click.option("--dry-run", is_flag=True, help="Show what would go; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--older-than", metavar="AGE", help="Age limit for every job (30d, 12h, 2w).")
@click.option("--keep", help="Always keep the newest N finished jobs of each template.")
@click.option("--company", help="Only jobs of this company (id or slug).")
@click.option("--runtemplate", "--template", "runtemplate", help="Only this run template.")
@click.option("--jobs", "jobs_mode", is_flag=True, help="Upstream: keep the newest --keep jobs.")
@click.option("--logs", "logs_mode", is_flag=True, help="Upstream: prune stdout/stderr only.")
@click.option("--vacuum", is_flag=True, help="Compact the database afterwards (locks tables).")
def prune(
    dry_run: bool,
    yes: bool,
    older_than: str | None,
    keep: str | None,
    company: str | None,
    runtemplate: str | None,
    jobs_mode: bool,
    logs_mode: bool,
    vacuum: bool,
) -> None:
    """Apply the retention policy: delete old jobs, prune old artifacts."""
    from multiflexi.housekeeping.policy import Forced, parse_age
    from multiflexi.housekeeping.prune import PruneRequest, apply_prune, plan_prune, preview
    from multiflexi.housekeeping.service import reclaim_space

    ctx = cli_context()
    count_only = jobs_mode or logs_mode
    keep_n = parse_int(keep, "--keep") if keep is not None else None
    if count_only and keep_n is None:
        keep_n = UPSTREAM_KEEP
    forced = Forced(
        older_than=parse_age(older_than) if older_than else None,
        keep=keep_n,
        count_only=count_only,
        logs_only=logs_mode and not jobs_mode,
    )
    request = PruneRequest(
        forced=forced,
        company=company,
        runtemplate_id=parse_int(runtemplate, "--runtemplate") if runtemplate else None,
    )
    plan = plan_prune(ctx.db, ctx.settings, request)
    scope = {
        "mode": "jobs" if jobs_mode else "logs" if logs_mode else "policy",
        "company": company,
        "runtemplate_id": request.runtemplate_id,
    }
    if dry_run:
        data = {**preview(plan).as_dict(), "space": None, "scope": scope}
        emit(data, ctx.fmt, text=None if ctx.fmt == "json" else _prune_text(data))
        return
    if not plan.delete and not plan.prune:  # nothing to do: nothing to ask
        data = {**preview(plan).as_dict(), "dry_run": False, "space": None, "scope": scope}
        emit(data, ctx.fmt, text="Nothing to prune: no job matches the retention rules.")
        return
    summary = (
        f"Delete {len(plan.delete)} jobs and prune the artifacts of {len(plan.prune)} jobs, "
        f"freeing {human_bytes(plan.bytes_delete + plan.bytes_prune)}"
    )
    confirm(summary + (", then compact the database?" if vacuum else "?"), yes)
    result = apply_prune(ctx.db, plan)
    data = {**result.as_dict(), "space": reclaim_space(ctx.db, full=vacuum), "scope": scope}
    emit(data, ctx.fmt, text=None if ctx.fmt == "json" else _prune_text(data))


def _orphans_text(report: Mapping[str, Any]) -> str:
    prefix = "Would fix" if report["dry_run"] else "Fixed"
    if not report["total"]:
        return "Nothing to fix." if not report["errors"] else "\n".join(report["errors"])
    lines = [f"{prefix}:"]
    for kind, count in report["fixed"].items():
        if count:
            shown = ", ".join(str(i) for i in report["ids"][kind][:10])
            more = " ..." if count > 10 else ""
            lines.append(f"  {kind.replace('_', ' ')}: {count} ({shown}{more})")
    lines.extend(f"error: {e}" for e in report["errors"])
    return "\n".join(lines)


@command("queue:fix", "queue:repair")
@click.option("--dry-run", is_flag=True, help="Show what would be fixed; change nothing.")
@click.option(
    "--after-restore",
    "--after_restore",
    "after_restore",
    is_flag=True,
    help="The database was just restored from a backup: jobs running at backup time "
    "become lost (and run again unless their template says on_interrupt=fail); due jobs "
    "of on_interrupt=fail templates are cancelled. Run it before starting the daemons.",
)
def queue_fix(dry_run: bool, after_restore: bool) -> None:
    """Repair lost jobs, orphan queue rows, unqueued jobs and leftover job directories."""
    from multiflexi.housekeeping.orphans import fix_orphans

    ctx = cli_context()
    restored: dict[str, Any] | None = None
    if after_restore:
        from multiflexi.housekeeping.restore import fix_after_restore

        restored = fix_after_restore(ctx.db, ctx.settings, dry_run=dry_run).as_dict()
    report = fix_orphans(ctx.db, ctx.settings, dry_run=dry_run).as_dict()
    if restored is not None:
        report = {
            **report,
            "fixed": {**restored["fixed"], **report["fixed"]},
            "ids": {**restored["ids"], **report["ids"]},
            "total": restored["total"] + report["total"],
            "errors": restored["errors"] + report["errors"],
        }
    emit(report, ctx.fmt, text=None if ctx.fmt == "json" else _orphans_text(report))


@command("housekeeping", "housekeeping:run")
@click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def housekeeping(dry_run: bool, yes: bool) -> None:
    """Run all housekeeping once: orphan repair, then the retention policy."""
    from multiflexi.housekeeping.service import run_housekeeping

    ctx = cli_context()
    if not dry_run:
        confirm("Repair orphans and prune by the configured retention policy?", yes)
    report = run_housekeeping(ctx.db, ctx.settings, dry_run=dry_run)
    if ctx.fmt == "json":
        emit(report, ctx.fmt)
        return
    if "skipped" in report:
        emit(report, ctx.fmt, text=f"Skipped: {report['skipped']} ({report.get('holder')}).")
        return
    prune_part = {**report["prune"], "space": report["space"]}
    text = _orphans_text(report["orphans"]) + "\n" + _prune_text(prune_part)
    emit(report, ctx.fmt, text=text)

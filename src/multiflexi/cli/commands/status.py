"""status: what this installation is and whether its daemons are alive."""

from __future__ import annotations

from typing import Any

from multiflexi.cli.base import cli_context, command, repeat, watch_option
from multiflexi.cli.output import emit, localize, render_record, render_table


def _text(data: dict[str, Any]) -> str:
    db = data["database"]
    state = "up to date" if db["up_to_date"] else f"needs db:migrate to {db['head']}"
    counts = data["counts"]
    jobs = ", ".join(f"{k} {v}" for k, v in counts["jobs"].items() if v) or "none"
    enc = data["encryption"]
    root = data["job_root"]
    head = {
        "version": data["version"],
        "database": f"{db['location']} (revision {db['revision'] or 'none'}, {state})",
        "timezone": data["timezone"],
        "master key": enc["message"] if enc["ok"] else f"PROBLEM: {enc['message']}",
        "job root": f"{root['path']} (writable)" if root["ok"] else f"PROBLEM: {root['problem']}",
        "companies": counts["companies"],
        "applications": counts["apps"],
        "run templates": counts["runtemplates"],
        "jobs": jobs,
        "queue": f"{counts['queue']} waiting, {counts['due_now']} due now",
    }
    daemons = [
        {k: d[k] for k in ("kind", "host", "pid", "state", "last_beat", "id")}
        | {"last_error": _last_error(d)}
        for d in data["daemons"]
    ]
    text = render_record(head) + "\n\nDaemons:\n" + (render_table(daemons) if daemons else "none")
    if any(d["state"] == "crashed" for d in daemons):
        text += (
            "\ncrashed: stopped beating without a clean stop (killed, host down or database"
            " unreachable); its running jobs turn lost when their leases run out"
        )
    return text + "\n\n" + _problems_text(data["problems"])


def _last_error(daemon: dict[str, Any]) -> str:
    if not daemon.get("last_error"):
        return ""
    when = daemon["last_error_at"]
    return f"{when:%Y-%m-%d %H:%M:%S} {daemon['last_error']}" if when else daemon["last_error"]


def _problems_text(problems: dict[str, Any]) -> str:
    """One line per broken run template (the first few), then the held jobs."""
    lines = []
    count = problems["unschedulable"]
    if count:
        lines.append(f"{count} run template(s) cannot be scheduled:")
        for p in problems["templates"]:
            since = f"{p['since']:%Y-%m-%d %H:%M %Z}".strip() if p["since"] else "?"
            lines.append(
                f"  run template {p['runtemplate_id']} ({p['company']}, {p['app']}) since"
                f" {since}: {p['error']}"
            )
        if count > len(problems["templates"]):
            lines.append(f"  ... and {count - len(problems['templates'])} more (runtemplate:list)")
    if problems["held_jobs"]:
        lines.append(
            f"{problems['held_jobs']} waiting job(s) held: company or application disabled, or"
            " run template inactive (queue:list)"
        )
    return "Problems:\n" + ("\n".join(lines) if lines else "none")


@command("status")
@watch_option
def status(watch: float | None) -> None:
    """Version, database, counts, daemons alive (from their heartbeats), time zone, keys."""
    repeat(watch, _status_once)


def _status_once() -> None:
    from multiflexi.workers import system_status

    ctx = cli_context()
    data = system_status(ctx.db, ctx.settings)
    text = None if ctx.fmt == "json" else _text(localize(data, ctx.settings.timezone))
    emit(data, ctx.fmt, text=text)

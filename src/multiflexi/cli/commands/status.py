"""status: what this installation is and whether its daemons are alive."""

from __future__ import annotations

from typing import Any

from multiflexi.cli.base import cli_context, command
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
        {k: d[k] for k in ("kind", "host", "pid", "last_beat", "alive", "id")}
        for d in data["daemons"]
    ]
    return render_record(head) + "\n\nDaemons:\n" + (render_table(daemons) if daemons else "none")


@command("status")
def status() -> None:
    """Version, database, counts, daemons alive (from their heartbeats), time zone, keys."""
    from multiflexi.workers import system_status

    ctx = cli_context()
    data = system_status(ctx.db, ctx.settings)
    text = None if ctx.fmt == "json" else _text(localize(data, ctx.settings.timezone))
    emit(data, ctx.fmt, text=text)

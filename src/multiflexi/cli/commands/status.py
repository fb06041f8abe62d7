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
    head = {
        "version": data["version"],
        "database": f"{db['location']} (revision {db['revision'] or 'none'}, {state})",
        "timezone": data["timezone"],
        "encryption": enc["master_key"] + (f" {enc['key_file']}" if enc["key_file"] else ""),
        "companies": counts["companies"],
        "applications": counts["apps"],
        "run templates": counts["runtemplates"],
        "jobs": jobs,
        "queue": f"{counts['queue']} waiting, {counts['due_now']} due now",
    }
    daemons = [
        {k: d[k] for k in ("kind", "host", "pid", "state", "last_beat", "id")}
        for d in data["daemons"]
    ]
    text = render_record(head) + "\n\nDaemons:\n" + (render_table(daemons) if daemons else "none")
    if any(d["state"] == "crashed" for d in daemons):
        text += (
            "\ncrashed: stopped beating without a clean stop (killed, host down or database"
            " unreachable); its running jobs turn lost when their leases run out"
        )
    return text


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

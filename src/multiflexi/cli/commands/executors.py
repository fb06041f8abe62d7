"""executor:list: the executors, and whether each can run jobs on this host."""

from __future__ import annotations

from multiflexi.cli.base import cli_context, command
from multiflexi.cli.output import emit, render_table

COLUMNS = ("name", "usable", "reason", "limits_mechanism", "limits_note")


@command("executor:list", "executors:list")
def executor_list() -> None:
    """List the executors, whether each is usable here (and why not), and how resource
    limits are enforced on this host."""
    from multiflexi.executors.registry import describe_executors

    ctx = cli_context()
    rows = describe_executors(ctx.settings.limits_mechanism)
    emit(rows, ctx.fmt, text=render_table(rows, COLUMNS))

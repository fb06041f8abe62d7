"""metrics: the Prometheus metrics, read from the database now."""

from __future__ import annotations

import sys

from multiflexi.cli.base import cli_context, command
from multiflexi.cli.output import emit


@command("metrics", "metrics:show")
def metrics() -> None:
    """Print Prometheus metrics (text exposition; -f json for a list of samples)."""
    from multiflexi.monitoring.metrics import render, samples

    ctx = cli_context()
    if ctx.fmt == "json":
        emit(samples(ctx.db), ctx.fmt)
        return
    sys.stdout.write(render(ctx.db).decode())
    sys.stdout.flush()

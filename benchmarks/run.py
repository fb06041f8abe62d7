#!/usr/bin/env python3
"""Run the MultiFlexi benchmarks; print one table of ratios and write it as JSON.

    .venv/bin/python benchmarks/run.py              # everything, < 10 minutes
    .venv/bin/python benchmarks/run.py --quick      # small sizes, < 1 minute
    .venv/bin/python benchmarks/run.py --only throughput,latency

Each figure is measured next to its baseline in the same run (see benchmarks/README.md).
The benchmark creates its own databases (SQLite in a temporary directory, ``mf_bench_<pid>``
on PostgreSQL and MariaDB) and removes them at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(HERE.parent))

from benchmarks import api, creation, execution, startup, tools  # noqa: E402
from benchmarks.common import (  # noqa: E402
    PROBE_IMPORT,
    PROBE_LOOP,
    Databases,
    Row,
    load1,
    speed_probe,
)
from benchmarks.executors import Harness, daemon_available  # noqa: E402

BENCHMARKS: dict[str, Callable[[Harness], list[Row]]] = {
    "throughput": execution.throughput,
    "latency": execution.latency,
    "creation": creation.creation,
    "big-output": execution.big_output,
    "scaling": execution.scaling,
    "cli": tools.cli,
    "scheduler": tools.scheduler,
    "api": api.api,
    "startup": startup.startup,
}


def machine() -> dict[str, Any]:
    """nproc, RAM and CPU model of this machine."""
    info: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version()}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def _met(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "**NO**")


def table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table, notes numbered below it."""
    head = ["benchmark", "measured", "baseline", "ratio", "target", "met?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for row in rows:
        measured = "not measured" if row.measured is None else f"{_number(row.measured)} {row.unit}"
        baseline = "—"
        if row.baseline is not None:
            baseline = f"{_number(row.baseline)} {row.baseline_unit} ({row.baseline_label})"
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}"
        name = row.benchmark
        if row.note:
            if row.note not in notes:
                notes.append(row.note)
            name += f" [{notes.index(row.note) + 1}]"
        cells = [name, measured, baseline, ratio, row.target or "—", _met(row.met)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py", description=__doc__.split("\n")[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="Small sizes (< 1 minute).")
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"Run only these: {', '.join(BENCHMARKS)}."
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="Run jobs in worker threads of this process instead of multiflexi-executor.",
    )
    parser.add_argument(
        "--keep", action="store_true", help="Keep the temporary directory (logs, SQLite files)."
    )
    parser.add_argument(
        "--render", metavar="JSON", help="Print the table of a saved run instead of running."
    )
    args = parser.parse_args(argv)
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark {unknown[0]!r}; valid: {', '.join(BENCHMARKS)}")
    args.names = names
    return args


def report(document: dict[str, Any]) -> str:
    """Header (date, machine, load) and table of a run, as Markdown."""
    m = document["machine"]
    before, after = document["load_before"], document["load_after"]
    lines = [
        f"Date: {document['date']} ({document['seconds']} s"
        + (", --quick" if document["quick"] else "")
        + f"); executor: {document['executor']}",
        "",
        f"Machine: {m.get('nproc')} CPUs ({m.get('cpu', '?')}), {m.get('ram_gib', '?')} GiB RAM, "
        f"Python {m.get('python', '?')}",
        "",
        f"Load average (1, 5, 15 min): before {before}, after {after}",
    ]
    if max(before[0], after[0]) > (m.get("nproc") or 1):
        lines[-1] += (
            " -- **above the number of CPUs: the machine was shared, figures are pessimistic**"
        )
    start, end = document.get("speed_before"), document.get("speed_after")
    if start and end:
        lines += [
            "",
            f"Speed probe (median of 3; before / after the run): {PROBE_LOOP / 1e6:g} M-iteration "
            f"Python loop {start['loop']} / {end['loop']} s, fresh `import {PROBE_IMPORT}` "
            f"{start['import']} / {end['import']} s -- this machine runs up to 3x slower "
            "in some hours; compare runs next to these figures",
        ]
    rows = [Row(**r) for r in document["rows"]]
    return "\n".join([*lines, "", table(rows)])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        print(report(json.loads(Path(args.render).read_text())))
        return 0
    use_daemon = not args.in_process and daemon_available()
    started = datetime.now(UTC)
    info: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "executor": "multiflexi-executor" if use_daemon else "in-process worker threads",
        "quick": args.quick,
        "benchmarks": args.names,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "speed_before": speed_probe(),
    }
    # SIGTERM unwinds like Ctrl-C: executors stopped, databases dropped, temp dir removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    root = Path(tempfile.mkdtemp(prefix="mf_bench_"))
    databases = Databases(root)
    harness = Harness(root, databases, args.quick, use_daemon)
    rows: list[Row] = []
    print(f"MultiFlexi benchmarks, executor: {info['executor']}", file=sys.stderr, flush=True)
    clock = time.monotonic()
    try:
        for name in args.names:
            print(f"running {name} (load {load1():.2f}) ...", file=sys.stderr, flush=True)
            began = time.monotonic()
            try:
                found = BENCHMARKS[name](harness)
            except Exception as exc:
                traceback.print_exc()
                found = [Row(name, None, "", note=f"error: {type(exc).__name__}: {exc}")]
            rows += found
            print(f"  {name}: {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
    finally:
        databases.drop_all()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    info["seconds"] = round(time.monotonic() - clock, 1)
    info["load_after"] = [round(x, 2) for x in os.getloadavg()]
    info["speed_after"] = speed_probe()
    document = {**info, "rows": [asdict(r) for r in rows]}
    print(report(document))
    _save(document, started, complete=not args.quick and not args.only)
    return 0


RESULTS_HEAD = """# Benchmark results

The last complete full run of `benchmarks/run.py`, written by it (also as `latest.json`).
What each figure means: README.md. Re-render a saved run with
`benchmarks/run.py --render benchmarks/results-<timestamp>.json`.

"""


def _save(document: dict[str, Any], started: datetime, *, complete: bool) -> None:
    """results-<timestamp>.json always; latest.json and results.md for a complete full run."""
    text = json.dumps(document, indent=2, default=str) + "\n"
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    paths = [HERE / f"results-{stamp}.json"]
    paths[0].write_text(text)
    if complete:
        paths += [HERE / "latest.json", HERE / "results.md"]
        paths[1].write_text(text)
        paths[2].write_text(RESULTS_HEAD + report(document) + "\n")
    print("\nwritten: " + ", ".join(str(p.relative_to(HERE.parent)) for p in paths))


if __name__ == "__main__":
    sys.exit(main())

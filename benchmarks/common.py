"""What every benchmark needs: result rows, statistics, throw-away databases.

Databases are the benchmark's own: SQLite files in a temporary directory, and on the
servers one database per backend named ``mf_bench_<pid>``, emptied between benchmarks and
dropped at the end.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from multiflexi.config import Settings, settings_from_values
from multiflexi.storage import scratch
from multiflexi.storage.database import Database

BACKEND_NAMES = {"sqlite": "SQLite", "pgsql": "PostgreSQL", "mysql": "MariaDB"}


class BenchError(Exception):
    """A benchmark could not produce its figure (a server missing, jobs that never end)."""


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    benchmark: str
    measured: float | None
    unit: str
    baseline: float | None = None
    baseline_unit: str = ""
    #: What the baseline is ("bare subprocess.run, 2 threads").
    baseline_label: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    #: One-minute load average when the benchmark began.
    load: float | None = None


def load1() -> float:
    return os.getloadavg()[0]


#: Iterations of :func:`speed_probe`'s loop.
PROBE_LOOP = 2_000_000
#: What :func:`speed_probe` imports in a fresh interpreter.
PROBE_IMPORT = "sqlalchemy.orm"


def speed_probe(rounds: int = 3) -> dict[str, float]:
    """How fast this machine runs Python right now, median of ``rounds``: ``loop``, the
    seconds of a fixed arithmetic loop (the CPU alone), and ``import``, the wall time of a
    fresh interpreter importing :data:`PROBE_IMPORT` (memory-heavy work like the job
    path's). On a shared virtual machine the second varies up to three times within a
    day while the first barely moves: a neighbour's load shows in caches and memory, not
    in the arithmetic."""
    loops = []
    for _ in range(rounds):
        start = time.perf_counter()
        total = 0
        for i in range(PROBE_LOOP):
            total += i
        loops.append(time.perf_counter() - start)
    imported = median_wall([sys.executable, "-c", f"import {PROBE_IMPORT}"], rounds)
    return {"loop": round(statistics.median(loops), 3), "import": round(imported, 3)}


def wall(argv: Sequence[str], env: Mapping[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        line = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise BenchError(f"{' '.join(argv[-3:])} exited {done.returncode}: {line[0]}")
    return elapsed


def median_wall(argv: Sequence[str], runs: int, env: Mapping[str, str] | None = None) -> float:
    """Median wall time of ``runs`` runs of a command, after one run to warm caches."""
    wall(argv, env)  # warm-up: byte-code compiled, files in the page cache
    return median([wall(argv, env) for _ in range(runs)])


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile, interpolated between the closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def program(name: str) -> str:
    """A console script of this installation (next to the running Python), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


# -- databases ------------------------------------------------------------------------------


class Databases:
    """Fresh, migrated databases on demand; :meth:`drop_all` removes the server ones."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = f"mf_bench_{os.getpid()}"
        self.created: dict[str, dict[str, str]] = {}
        self.failed: dict[str, str] = {}
        self._count = 0

    def open(self, backend: str, **extra: str) -> Database:
        """An empty database of ``backend`` with its own data directory."""
        self._count += 1
        data_dir = self.root / f"{backend}-{self._count}"
        values = {"MULTIFLEXI_DATA_DIR": str(data_dir), **extra}
        if backend == "sqlite":
            values["DB_DATABASE"] = str(data_dir / "bench.sqlite")
            return Database(settings_from_values(values))  # SQLite migrates itself
        if backend in self.failed:
            raise BenchError(self.failed[backend])
        if backend not in self.created:
            try:
                server = scratch.create(backend, self.name)
                self.created[backend] = server
            except Exception as exc:
                line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self.failed[backend] = f"{BACKEND_NAMES[backend]} not available: {line}"
                raise BenchError(self.failed[backend]) from exc
            return Database(settings_from_values({**server, **values}))
        db = Database(settings_from_values({**self.created[backend], **values}))
        scratch.empty(db)
        return db

    def drop_all(self) -> None:
        for backend in list(self.created):
            try:
                scratch.drop(backend, self.name)
            except Exception as exc:  # report, but go on dropping the others
                print(f"warning: could not drop {self.name} on {backend}: {exc}", file=sys.stderr)
            del self.created[backend]


def db_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The process environment of a CLI or daemon pointed at the benchmark's database."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "MULTIFLEXI_", "ENCRYPTION_"))
    }
    return {**inherited, **scratch.process_environment(settings), **extra}

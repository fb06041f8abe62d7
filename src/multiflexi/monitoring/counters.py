"""Counters of this process: incremented where the work is done, never recounted.

A counter that is recounted from the database drops when housekeeping deletes jobs, and
every daemon of a cluster would report the same number. These count what this process
did, from its start (Prometheus's ``rate()`` handles the reset at a restart), and sum
over processes: ``sum(rate(multiflexi_jobs_finished_total[5m]))`` is the cluster's
rate. No prometheus_client import here: the job path and the CLI pay for none of it;
:mod:`multiflexi.monitoring.metrics` turns them into metric families at a scrape.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Upper bounds (seconds) of the job duration histogram.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)

#: name -> (help, label names). The Prometheus name adds ``_total``.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "multiflexi_jobs_created": ("Jobs this process created, by who asked for them", ("by",)),
    "multiflexi_jobs_claimed": ("Jobs this process claimed from the queue", ()),
    "multiflexi_jobs_finished": (
        "Jobs this process ended, by final status (lost: marked lost by its recovery)",
        ("status",),
    ),
    "multiflexi_job_retries": (
        "Next attempts this process queued; interrupted=true for jobs the platform cut off",
        ("interrupted",),
    ),
    "multiflexi_actions": ("Post-run action outcomes in this process", ("action", "outcome")),
    "multiflexi_actions_failed": ("Post-run actions that failed in this process", ()),
}


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    count: int = 0
    total: float = 0.0


_lock = threading.Lock()
_values: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in COUNTERS}
_durations = _Histogram()


def inc(name: str, *labels: str, amount: float = 1.0) -> None:
    """Add ``amount`` to counter ``name`` (one of :data:`COUNTERS`) with these labels."""
    with _lock:
        series = _values[name]
        series[labels] = series.get(labels, 0.0) + amount


def observe_duration(seconds: float) -> None:
    """A finished job's wall-clock duration."""
    index = bisect.bisect_left(DURATION_BUCKETS, seconds)
    with _lock:
        for i in range(index, len(DURATION_BUCKETS)):
            _durations.buckets[i] += 1
        _durations.count += 1
        _durations.total += seconds


def counters() -> dict[str, dict[tuple[str, ...], float]]:
    """A copy of every counter's series."""
    with _lock:
        return {name: dict(series) for name, series in _values.items()}


def durations() -> tuple[list[tuple[float, int]], int, float]:
    """(cumulative buckets, count, sum) of the duration histogram."""
    with _lock:
        return (
            list(zip(DURATION_BUCKETS, _durations.buckets, strict=True)),
            _durations.count,
            _durations.total,
        )


@dataclass
class DaemonProbe:
    """What a daemon tells its own metrics: who it is, its live gauges, its last beat."""

    kind: str
    worker_id: str
    gauges: Callable[[], dict[str, tuple[str, float]]] = dict
    last_beat: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        self.last_beat = time.monotonic()

"""Daemon mechanics in-process: the loop, signals, the job pool, the log format."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from datetime import datetime

import pytest

from multiflexi.daemons.logging import UTCFormatter, level_from
from multiflexi.daemons.loop import Backoff, parse_args, run_loop
from multiflexi.daemons.signals import DaemonSignals
from multiflexi.errors import ConfigError


def test_run_loop_drains_while_steps_do_work_then_waits_for_a_wake_up() -> None:
    wake, done = threading.Event(), threading.Event()
    results = iter([True, True, False, True, False])
    calls: list[datetime] = []
    idles: list[float] = []

    def step(now: datetime) -> bool:
        calls.append(now)
        busy = next(results, False)
        if len(calls) == 3:
            threading.Timer(0.05, wake.set).start()  # a NOTIFY, a finished job...
        if len(calls) == 5:
            done.set()
        return busy

    def idle(now: datetime) -> float:
        idles.append(60.0)
        return 60.0  # only the wake-up can end this wait in time

    worker = threading.Thread(
        target=run_loop, kwargs={"step": step, "wake": wake, "stopping": done.is_set, "idle": idle}
    )
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert len(calls) == 5 and len(idles) == 1


def test_a_failing_step_is_retried_with_backoff_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    wake, done = threading.Event(), threading.Event()
    attempts: list[int] = []

    def step(now: datetime) -> bool:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("database went away")
        done.set()
        return False

    with caplog.at_level(logging.ERROR):
        run_loop(
            step,
            wake=wake,
            stopping=done.is_set,
            idle=lambda now: 0.0,
            backoff=Backoff(0.01, 0.02),
        )
    assert len(attempts) == 3
    assert (
        sum("action=step_failed error=database went away" in r.message for r in caplog.records) == 2
    )


def test_backoff_doubles_up_to_its_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 2.0)
    assert [backoff.next() for _ in range(4)] == [0.5, 1.0, 2.0, 2.0]
    backoff.reset()
    assert backoff.next() == 0.5


@pytest.fixture
def installed() -> Iterator[DaemonSignals]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    signals = DaemonSignals()
    signals.install()
    try:
        yield signals
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_signals_only_set_flags_and_events(installed: DaemonSignals) -> None:
    signal.raise_signal(signal.SIGHUP)
    assert installed.wake.wait(5)
    assert installed.take_reload() and not installed.take_reload()
    installed.wake.clear()
    signal.raise_signal(signal.SIGTERM)
    assert installed.wake.wait(5) and installed.stopping
    assert not installed.cancel.is_set()
    signal.raise_signal(signal.SIGTERM)
    assert installed.cancel.wait(5)


def test_log_lines_are_utc_level_and_key_values() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "action=claim job_id=%s", (5,), None)
    record.created = 1796328000.0  # 2026-12-03T20:00:00Z
    assert UTCFormatter().format(record) == "2026-12-03T20:00:00Z INFO action=claim job_id=5"


def test_the_log_level_comes_from_the_setting_or_debug() -> None:
    assert level_from(None, False) == logging.INFO
    assert level_from("warn", False) == logging.WARNING
    assert level_from("error", True) == logging.DEBUG
    with pytest.raises(ConfigError):
        level_from("chatty", False)


def test_daemon_arguments() -> None:
    args = parse_args("x", "", ["--once", "-e", "/etc/mf.env", "--max-parallel", "4"])
    assert (args.once, args.env_file, args.max_parallel, args.worker_id) == (
        True,
        "/etc/mf.env",
        4,
        None,
    )
    with pytest.raises(SystemExit) as exc:
        parse_args("x", "", ["--max-parallel", "0"])
    assert exc.value.code == 2


def test_log_values_are_logfmt_whatever_the_call_site_passes() -> None:
    record = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "action=finish job_id=%d ok=%s reason=%s error=%s path=%s seconds=%.3f none=%s",
        (5, True, 'exit code 3: "no" data', ValueError("bad\nthing"), "/a b/c", 1.23456, None),
        None,
    )
    record.created = 1796328000.0
    assert UTCFormatter().format(record) == (
        "2026-12-03T20:00:00Z INFO action=finish job_id=5 ok=true"
        ' reason="exit code 3: \\"no\\" data" error="bad thing" path="/a b/c" seconds=1.235'
        " none=-"
    )

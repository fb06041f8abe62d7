"""SIGHUP re-reads the environment file a daemon started with, also when systemd's
``EnvironmentFile=`` copied that file into the process environment."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from multiflexi.config import load_settings, reload_settings
from multiflexi.storage.database import Database
from tests.daemons.helpers import EXECUTOR, SCHEDULER, daemons, fake_systemd

FIRST = {"MULTIFLEXI_MAX_PARALLEL": "1", "MULTIFLEXI_TIMEZONE": "UTC"}


def write_env(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def test_a_variable_copied_from_the_file_follows_the_file_on_reload(tmp_path: Path) -> None:
    env_file = tmp_path / "multiflexi.env"
    first = {"MULTIFLEXI_MAX_PARALLEL": "1", "MULTIFLEXI_TIMEZONE": "America/New_York"}
    write_env(env_file, first)
    # As systemd's EnvironmentFile= leaves it: the file's values in the environment too,
    # and one variable the unit set on its own (Environment=).
    environ = {**first, "MULTIFLEXI_POLL_INTERVAL": "0.5"}
    started = load_settings(env_file, environ)
    assert (started.max_parallel, started.timezone) == (1, "America/New_York")
    write_env(env_file, {"MULTIFLEXI_MAX_PARALLEL": "4", "MULTIFLEXI_POLL_INTERVAL": "9"})
    again = reload_settings(started, environ)
    # The file wins where the environment only repeated it; a key gone from the file is
    # back to its default; the unit's own variable still wins.
    assert (again.max_parallel, again.timezone, again.poll_interval) == (4, "UTC", 0.5)
    write_env(env_file, {"MULTIFLEXI_MAX_PARALLEL": "2", "MULTIFLEXI_TIMEZONE": "Asia/Tokyo"})
    third = reload_settings(again, environ)  # a second reload still knows the copies
    assert (third.max_parallel, third.timezone) == (2, "Asia/Tokyo")


def test_a_variable_set_in_the_environment_on_its_own_wins_over_the_file(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "multiflexi.env"
    write_env(env_file, {"MULTIFLEXI_MAX_PARALLEL": "3"})
    started = load_settings(env_file, {"MULTIFLEXI_MAX_PARALLEL": "5"})
    assert started.max_parallel == 5
    write_env(env_file, {"MULTIFLEXI_MAX_PARALLEL": "5"})
    assert reload_settings(started, {"MULTIFLEXI_MAX_PARALLEL": "5"}).max_parallel == 5
    write_env(env_file, {"MULTIFLEXI_MAX_PARALLEL": "6"})
    assert reload_settings(started, {"MULTIFLEXI_MAX_PARALLEL": "5"}).max_parallel == 5


@pytest.mark.parametrize("copied", [False, True], ids=["dash-e", "dash-e+EnvironmentFile"])
def test_sighup_changes_max_parallel_and_time_zone_of_running_daemons(
    sqlite_db: Database, tmp_path: Path, copied: bool
) -> None:
    env_file = tmp_path / "multiflexi.env"
    write_env(env_file, FIRST)
    extra = FIRST if copied else {}
    argvs = [[EXECUTOR, "-e", str(env_file)], [SCHEDULER, "-e", str(env_file)]]
    with daemons(sqlite_db, tmp_path, argvs, **extra) as (ex, sched):
        ex.wait_for_log("action=start")
        sched.wait_for_log("action=start")
        assert "max_parallel=1" in ex.log() and "timezone=UTC" in sched.log()
        write_env(
            env_file, {"MULTIFLEXI_MAX_PARALLEL": "3", "MULTIFLEXI_TIMEZONE": "Europe/Prague"}
        )
        ex.signal(signal.SIGHUP)
        sched.signal(signal.SIGHUP)
        ex.wait_for_log("action=reload max_parallel=3 poll_interval=0.1 timezone=Europe/Prague")
        sched.wait_for_log("action=reload timezone=Europe/Prague")
        write_env(env_file, {"MULTIFLEXI_MAX_PARALLEL": "2"})
        ex.signal(signal.SIGHUP)
        sched.signal(signal.SIGHUP)
        ex.wait_for_log("action=reload max_parallel=2 poll_interval=0.1 timezone=UTC")
        sched.wait_for_log("action=reload timezone=UTC")
        for daemon in (ex, sched):
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(30) == 0, daemon.log()


def test_a_broken_file_on_reload_keeps_the_old_settings_and_says_so(
    sqlite_db: Database, tmp_path: Path
) -> None:
    env_file = tmp_path / "multiflexi.env"
    write_env(env_file, FIRST)
    argv = [SCHEDULER, "-e", str(env_file)]
    with (
        fake_systemd(abstract=True) as systemd,
        daemons(sqlite_db, tmp_path, [argv], NOTIFY_SOCKET=systemd.name) as (sched,),
    ):
        systemd.receive_until("READY")
        write_env(env_file, {"MULTIFLEXI_TIMEZONE": "Mars/Olympus"})
        sched.signal(signal.SIGHUP)
        sched.wait_for_log("action=reload error=\"unknown MULTIFLEXI_TIMEZONE 'Mars/Olympus'\"")
        status = systemd.receive_until("READY")["STATUS"]
        assert status.startswith("reload failed, old settings kept: unknown MULTIFLEXI_TIMEZONE")
        write_env(env_file, {"MULTIFLEXI_TIMEZONE": "Europe/Prague"})
        sched.signal(signal.SIGHUP)
        sched.wait_for_log("action=reload timezone=Europe/Prague")
        assert systemd.receive_until("READY")["STATUS"] == "scheduling in time zone Europe/Prague"
        sched.signal(signal.SIGTERM)
        assert sched.wait(30) == 0, sched.log()

"""systemd's notification protocol, spoken by real daemon processes to a real Unix
datagram socket standing in for systemd: READY=1 after start-up, WATCHDOG=1 from the
main loop, RELOADING=1/READY=1 around SIGHUP, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from multiflexi.daemons.notify import Notifier, socket_address, watchdog_seconds
from multiflexi.storage.database import Database
from tests.daemons.helpers import EXECUTOR, SCHEDULER, daemons, fake_systemd


@pytest.mark.parametrize(
    ("program", "abstract"),
    [(EXECUTOR, False), (SCHEDULER, True)],
    ids=["executor-path-socket", "scheduler-abstract-socket"],
)
def test_a_daemon_notifies_ready_pets_the_watchdog_and_says_it_stops(
    sqlite_db: Database, tmp_path: Path, program: str, abstract: bool
) -> None:
    env_file = tmp_path / "multiflexi.env"
    env_file.write_text("MULTIFLEXI_MAX_PARALLEL=2\n")
    with fake_systemd(abstract) as systemd:
        # A watchdog of 0.4 s: a pet every 0.1 s at the latest.
        extra = {"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": "400000"}
        argv = [program, "-e", str(env_file)]
        with daemons(sqlite_db, tmp_path, [argv], **extra) as (daemon,):
            ready = systemd.receive_until("READY")
            assert "action=start" in daemon.log()  # ready only after start-up
            assert ready["STATUS"]
            for _ in range(3):
                systemd.receive_until("WATCHDOG")
            env_file.write_text("MULTIFLEXI_MAX_PARALLEL=5\n")
            daemon.signal(signal.SIGHUP)
            reloading = systemd.receive_until("RELOADING")
            assert int(reloading["MONOTONIC_USEC"]) > 0
            again = systemd.receive_until("READY")
            if program == EXECUTOR:
                assert again["STATUS"] == "0 of 5 job slots busy"
            daemon.signal(signal.SIGTERM)
            systemd.receive_until("STOPPING")
            assert daemon.wait(30) == 0, daemon.log()


def test_without_a_watchdog_a_daemon_sends_no_pets(sqlite_db: Database, tmp_path: Path) -> None:
    with (
        fake_systemd(abstract=True) as systemd,
        daemons(sqlite_db, tmp_path, [[SCHEDULER]], NOTIFY_SOCKET=systemd.name) as (d,),
    ):
        systemd.receive_until("READY")
        d.signal(signal.SIGTERM)
        systemd.receive_until("STOPPING")
        assert d.wait(30) == 0, d.log()
    assert not any("WATCHDOG" in m for m in systemd.messages)


def test_socket_addresses_are_paths_or_abstract_names() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@/org/freedesktop/systemd1/notify/1") == (
        "\0/org/freedesktop/systemd1/notify/1"
    )
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None


def test_the_watchdog_is_only_ours_when_its_pid_is_ours_or_unset() -> None:
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000"}, 42) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_seconds({}, 42) is None


def test_the_notifier_takes_its_variables_out_of_the_environment() -> None:
    environ = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "8000000", "PATH": "/usr/bin"}
    notifier = Notifier.from_environ(environ)
    assert environ == {"PATH": "/usr/bin"}  # the jobs started later do not see them
    assert notifier.enabled and notifier.pet_every == 2.0


def test_pets_are_spaced_by_a_quarter_of_the_interval() -> None:
    now = [0.0]
    with fake_systemd(abstract=True) as systemd:
        notifier = Notifier(socket_address(systemd.name), watchdog=4.0, clock=lambda: now[0])
        for moment in (0.0, 0.5, 0.99, 1.0, 1.5, 2.2):
            now[0] = moment
            notifier.pet()
        notifier.status("done")
        systemd.receive_until("STATUS", "done")
        notifier.close()
    assert [m for m in systemd.messages if "WATCHDOG" in m] == [{"WATCHDOG": "1"}] * 3


def test_a_hung_step_stops_the_pets_so_systemd_can_restart_the_daemon() -> None:
    from multiflexi.daemons.loop import run_loop

    hang, release, stop = threading.Event(), threading.Event(), threading.Event()
    turns = [0]

    def step(_now: object) -> bool:
        turns[0] += 1
        if turns[0] == 3:
            hang.set()
            release.wait(30)  # a query that never returns
        return False

    with fake_systemd(abstract=True) as systemd:
        notifier = Notifier(socket_address(systemd.name), watchdog=0.2)  # a pet every 0.05 s
        loop = threading.Thread(
            target=run_loop,
            kwargs={
                "step": step,
                "wake": threading.Event(),
                "stopping": stop.is_set,
                "idle": lambda _now: 0.3,  # longer than a pet: cut into pet-sized slices
                "notifier": notifier,
            },
        )
        loop.start()
        try:
            for _ in range(3):
                systemd.receive_until("WATCHDOG")
            assert hang.wait(30)
            systemd.drain()  # the pets sent before it hung
            with pytest.raises(AssertionError, match="no WATCHDOG=1"):
                systemd.receive_until("WATCHDOG", timeout=1.0)
        finally:
            stop.set()
            release.set()
            loop.join(30)
            notifier.close()

"""Finished jobs' directories removed off the job's path (``WorkdirSweeper``): soon, in a
thread that comes and goes, all of them on ``flush``, and what a crash left aside."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from multiflexi.jobs import workdir
from multiflexi.jobs.workdir import REMOVING, WorkdirSweeper


def _dirs(root: Path, names: range, *, with_file: bool = False) -> list[Path]:
    made = []
    for name in names:
        path = root / str(name)
        path.mkdir(mode=0o700)
        if with_file:
            (path / "left.txt").write_text("left behind")
        made.append(path)
    return made


def _sweepers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "workdir-sweeper"]


def _wait(condition, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_discarded_directories_go_soon_in_a_thread_that_ends_when_idle(tmp_path: Path) -> None:
    sweeper = WorkdirSweeper()
    sweeper.IDLE_EXIT = 0.2
    before = set(_sweepers())
    dirs = _dirs(tmp_path, range(1, 6)) + _dirs(tmp_path, range(6, 8), with_file=True)
    for path in dirs:
        sweeper.discard(path)
    (thread,) = set(_sweepers()) - before  # one thread for all of them
    # Moved aside first, then removed there, and the place aside too.
    assert _wait(lambda: sorted(tmp_path.iterdir()) == [])
    thread.join(10)
    assert not thread.is_alive()  # idle: the thread has ended
    (late,) = _dirs(tmp_path, range(8, 9))
    sweeper.discard(late)  # a new thread for new work
    assert _wait(lambda: not late.exists())


def test_flush_removes_what_is_pending_before_it_returns(tmp_path: Path) -> None:
    sweeper = WorkdirSweeper()
    sweeper.GATHER = 30.0  # the thread would wait that long: flush must not
    dirs = _dirs(tmp_path, range(1, 4)) + _dirs(tmp_path, range(4, 5), with_file=True)
    for path in dirs:
        sweeper.discard(path)
    assert sweeper.pending == 4
    sweeper.flush()
    assert sweeper.pending == 0
    assert not any(p.exists() for p in dirs)


def test_what_a_crash_left_aside_goes_with_the_first_batch(tmp_path: Path) -> None:
    aside = tmp_path / REMOVING
    aside.mkdir()
    leftovers = _dirs(aside, range(100, 103), with_file=True)
    (mine,) = _dirs(tmp_path, range(1, 2))
    keep = _dirs(tmp_path, range(2, 3))  # a running job's directory: not ours to touch
    sweeper = WorkdirSweeper()
    sweeper.discard(mine)
    sweeper.flush()
    assert not mine.exists() and not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in keep)
    assert not aside.exists()


def test_a_directory_gone_already_or_unmovable_is_no_error(tmp_path: Path) -> None:
    sweeper = WorkdirSweeper()
    (gone,) = _dirs(tmp_path, range(1, 2))
    gone.rmdir()
    (blocked,) = _dirs(tmp_path, range(2, 3), with_file=True)
    (tmp_path / REMOVING).mkdir()
    (tmp_path / REMOVING / "2").mkdir()  # a leftover of the same name, not empty
    (tmp_path / REMOVING / "2" / "x").write_text("x")
    sweeper.discard(gone)
    sweeper.discard(blocked)
    sweeper.flush()
    assert not gone.exists() and not blocked.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_place_aside_that_another_executor_removes_meanwhile_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two executors share the job root's ``.removing/``: this one finds it there (the
    other's batch), and the other's batch removes it before this one looks inside."""
    aside = tmp_path / REMOVING
    aside.mkdir()
    real_scandir = os.scandir

    def other_executor_done_first(path: Any) -> Any:
        if Path(path) == aside:
            aside.rmdir()
        return real_scandir(path)

    monkeypatch.setattr(workdir.os, "scandir", other_executor_done_first)
    sweeper = WorkdirSweeper()
    (mine,) = _dirs(tmp_path, range(1, 2))
    sweeper.discard(mine)
    sweeper.flush()  # raised FileNotFoundError, and killed the sweeper's thread
    assert list(tmp_path.iterdir()) == []


def test_a_failing_batch_leaves_the_sweeper_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sweeper = WorkdirSweeper()
    sweeper.GATHER = 0.01
    failures = [OSError("unexpected")]
    real_open_aside = workdir._open_aside

    def fails_once(root: Path) -> None:
        if failures:
            raise failures.pop()
        real_open_aside(root)

    monkeypatch.setattr(workdir, "_open_aside", fails_once)
    (first,) = _dirs(tmp_path, range(1, 2))
    sweeper.discard(first)
    assert _wait(lambda: "action=remove_workdirs error=unexpected" in caplog.text)
    (second,) = _dirs(tmp_path, range(2, 3))
    sweeper.discard(second)  # the same thread goes on with the next batch
    assert _wait(lambda: not second.exists())
    assert first.exists()  # the failed batch's directory is left to housekeeping


def test_the_next_job_of_the_same_key_takes_a_pending_directory(tmp_path: Path) -> None:
    """Renamed to the new job's name instead of one ``rmdir`` and one ``mkdir``."""
    sweeper = WorkdirSweeper()
    sweeper.GATHER = 30.0
    older, newer, other = _dirs(tmp_path, range(1, 4))
    sweeper.discard(older, key=7)
    sweeper.discard(newer, key=7)
    sweeper.discard(other, key=8)
    inode = newer.stat().st_ino
    assert not sweeper.take(tmp_path / "10", None)  # no key: nobody's to take
    assert not sweeper.take(tmp_path / "10", 9)
    assert sweeper.take(tmp_path / "10", 7)  # the newest of the key's
    assert (tmp_path / "10").stat().st_ino == inode and not newer.exists()
    assert sweeper.pending == 2
    sweeper.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["10"]  # the taken one stays
    assert not sweeper.take(tmp_path / "11", 7)  # none pending any more


def test_only_an_empty_private_directory_of_ours_is_taken(tmp_path: Path) -> None:
    sweeper = WorkdirSweeper()
    sweeper.GATHER = 30.0
    with_subdir, opened_up, replaced = _dirs(tmp_path, range(1, 4))
    (with_subdir / "sub").mkdir()  # no file: the job's output went with its status
    opened_up.chmod(0o755)
    replaced.rmdir()  # the job put a link to elsewhere in its directory's place
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    replaced.symlink_to(elsewhere)
    for path in (with_subdir, opened_up, replaced):
        sweeper.discard(path, key=1)
        assert not sweeper.take(tmp_path / "new", 1)
        assert not (tmp_path / "new").exists()
    sweeper.flush()  # not taken: removed as ever
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]
    assert elsewhere.is_dir()  # the link went, not what it pointed to


def test_a_target_with_files_is_not_replaced(tmp_path: Path) -> None:
    """An earlier attempt of the new job left files in its directory: they stay, and the
    pending directory goes its usual way."""
    sweeper = WorkdirSweeper()
    sweeper.GATHER = 30.0
    spare, target = _dirs(tmp_path, range(1, 3))
    (target / "kept.txt").write_text("an earlier attempt's")
    sweeper.discard(spare, key=1)
    assert not sweeper.take(target, 1)
    assert (target / "kept.txt").read_text() == "an earlier attempt's"
    sweeper.flush()
    assert not spare.exists()

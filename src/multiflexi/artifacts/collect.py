"""Collecting a finished job's files as artifacts, whatever the job left behind.

A job's directory is the job's to fill, and a hostile or clumsy job can leave anything
in it. The collector therefore:

* opens **regular files only**. Each entry is looked at with ``lstat`` (no link is
  followed); a FIFO, socket, device, symbolic link or anything else is never opened
  -- opening a FIFO would wait for a writer forever -- and is recorded as a ``skipped``
  artifact with the reason. A regular file is opened ``O_NONBLOCK | O_NOFOLLOW``
  relative to its directory's descriptor and checked again with ``fstat`` (the same
  file, still regular), so that nothing swapped in meanwhile is read.
* keeps **any name**. A name is bytes on Linux; one that is not valid UTF-8 is stored
  byte for byte in ``raw_name`` and shown with its stray bytes escaped (``\\xff``).
* goes on after **one bad entry**: an entry that cannot be read is recorded as a
  ``failed`` artifact with the reason, and the next one is collected.
* keeps to a **budget**: at most ``MULTIFLEXI_ARTIFACT_MAX_FILES`` entries (10,000) and
  ``MULTIFLEXI_ARTIFACT_MAX_SECONDS`` (120 s) per job; beyond it the job's reason says
  ``artifact collection stopped after N files: ...``.
* stores **in batches**: small files (up to one chunk, 1 MiB) go into the database many
  rows per transaction, larger ones stream in chunks (``storage.blobs``). One
  transaction per file, a query per file for an artifact of the same name (which no
  index covers) and libmagic's text heuristics (about 1 ms a file) made 3,000 small
  files take 20 s; the same files now take well under a second of database work.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.engine import Connection

from multiflexi.artifacts.service import Pattern, note_for
from multiflexi.storage import blobs
from multiflexi.storage.models import Artifact, table_of
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.artifacts")

_ARTIFACTS = table_of(Artifact)
#: A batch is written when it holds this many rows or this many bytes of content.
BATCH_ROWS = 500
BATCH_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_FILES = 10_000
DEFAULT_MAX_SECONDS = 120.0

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_KINDS_OF_ENTRY = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)


def describe_type(mode: int) -> str:
    """What kind of file system entry ``mode`` is, in words."""
    for test, words in _KINDS_OF_ENTRY:
        if test(mode):
            return words
    return "not a regular file"


def display_name(raw: bytes) -> str:
    """A name as text: valid UTF-8 as it is, stray bytes written ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace")


def raw_name_of(raw: bytes) -> bytes | None:
    """The bytes to keep beside the shown name: None when the name is valid UTF-8."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return None


@dataclass(frozen=True)
class Budget:
    """How much one job's collection may take."""

    max_files: int = DEFAULT_MAX_FILES
    max_seconds: float = DEFAULT_MAX_SECONDS


@dataclass
class Collected:
    """What a collection did: rows stored per state, and why it stopped early, if it did."""

    stored: int = 0
    skipped: int = 0
    failed: int = 0
    stopped: str | None = None
    seen: int = field(default=0, repr=False)

    @property
    def note(self) -> str | None:
        """The line for the job's reason when the collection did not take everything."""
        return self.stopped


def has_files(workdir: Path, result_file: str | None) -> bool:
    """Whether the job left anything to collect: an entry other than a directory in its
    directory or below, or a result file outside it. Cheap: most jobs leave their
    directory empty."""
    for root, dirs, files in os.walk(workdir):
        if files or any(os.path.islink(os.path.join(root, name)) for name in dirs):
            return True
    outside = _outside_result(workdir, result_file)
    return outside is not None and os.path.lexists(outside)


def _resolved(path: str | Path) -> Path:
    """``path`` with its links resolved, as far as they can be: a job may have made a
    link loop of its RESULT_FILE (Python 3.11 raises RuntimeError for it)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _outside_result(workdir: Path, result_file: str | None) -> Path | None:
    if not result_file:
        return None
    result = _resolved(result_file)
    return None if result.is_relative_to(_resolved(workdir)) else result


def _result_inside(workdir: Path, result_file: str | None) -> bytes | None:
    """RESULT_FILE as a path relative to the job's directory, when it is inside it."""
    if not result_file:
        return None
    result, root = _resolved(result_file), _resolved(workdir)
    if not result.is_relative_to(root):
        return None
    return os.fsencode(result.relative_to(root).as_posix())


@dataclass(frozen=True)
class _Entry:
    """One entry of the job's directory: its relative path, and how to reach it."""

    rel: bytes
    dir_fd: int | None  # None: ``name`` is an absolute path (a result file outside)
    name: bytes
    kind: str


def _walk(workdir: Path, result_rel: bytes | None) -> Iterator[_Entry]:
    """Every non-directory entry under ``workdir``, files of a directory before its
    subdirectories, each sorted by name; no link is followed at any depth."""
    try:
        top = os.open(workdir, _OPEN_DIR)
    except OSError:
        return
    stack: list[tuple[int, bytes]] = [(top, b"")]
    try:
        while stack:
            fd, prefix = stack.pop()
            try:
                subdirs = []
                try:
                    names = sorted(os.fsencode(n) for n in os.listdir(fd))
                except OSError as exc:
                    log.warning("action=collect_list_failed dir=%r error=%s", prefix, exc)
                    continue
                for name in names:
                    rel = prefix + name
                    try:
                        st = os.lstat(name, dir_fd=fd)
                    except OSError:
                        continue  # gone since it was listed
                    if stat.S_ISDIR(st.st_mode):
                        subdirs.append(name)
                        continue
                    kind = "result" if rel == result_rel else "file"
                    yield _Entry(rel, fd, name, kind)
                for name in reversed(subdirs):  # popped in sorted order
                    try:
                        sub = os.open(name, _OPEN_DIR, dir_fd=fd)
                    except OSError as exc:
                        log.warning("action=collect_open_dir_failed error=%s", exc)
                        continue
                    stack.append((sub, prefix + name + b"/"))
            finally:
                os.close(fd)
    finally:
        for fd, _ in stack:  # a collection stopped early
            with contextlib.suppress(OSError):
                os.close(fd)


class _Batch:
    """Rows waiting for one write transaction."""

    def __init__(self, db: Database, job_id: int, done: Collected) -> None:
        self.db, self.job_id, self.done = db, job_id, done
        self.rows: list[dict[str, Any]] = []
        self.bytes = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.bytes += len(row["content"] or b"")
        if len(self.rows) >= BATCH_ROWS or self.bytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        rows, self.rows, self.bytes = self.rows, [], 0
        if not rows:
            return
        try:
            self.db.transact(lambda conn: self._write(conn, rows))
        except Exception as exc:
            if _database_away(exc):
                raise
            # One row the database refuses must not cost the others: one by one.
            log.warning("action=collect_batch_failed job_id=%s error=%s", self.job_id, exc)
            for row in rows:
                self._write_alone(row)
            return
        self._count(rows)

    def _write(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        # A retry after a commit whose answer was lost finds its rows there: each name
        # is collected once per job, so a row of the same name is ours.
        c = _ARTIFACTS.c
        there = {
            (name, raw, kind)
            for name, raw, kind in conn.execute(
                select(c.filename, c.raw_name, c.kind).where(
                    c.job_id == self.job_id,
                    c.kind.in_(("file", "result")),
                    c.filename.in_([row["filename"] for row in rows]),
                )
            )
        }
        fresh = [
            row for row in rows if (row["filename"], row["raw_name"], row["kind"]) not in there
        ]
        if fresh:
            conn.execute(_ARTIFACTS.insert(), fresh)

    def _write_alone(self, row: dict[str, Any]) -> None:
        try:
            self.db.transact(lambda conn: self._write(conn, [row]))
        except Exception as exc:
            if _database_away(exc):
                raise
            why = _why(exc)
            failed = {**row, "content": None, "size": 0, "sha256": "", "state": "failed"}
            failed["note"] = f"could not be stored: {why}"
            try:
                self.db.transact(lambda conn: self._write(conn, [failed]))
            except Exception as again:
                if _database_away(again):
                    raise
                log.error("action=collect_row_lost job_id=%s error=%s", self.job_id, again)
            self.done.failed += 1
            return
        self._count([row])

    def _count(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            state = row["state"]
            if state == "complete":
                self.done.stored += 1
            elif state == "skipped":
                self.done.skipped += 1
            else:
                self.done.failed += 1


def _database_away(exc: BaseException) -> bool:
    """A database that cannot be reached (for longer than the job's patience): the job's
    final write cannot be made either; its lease and recovery take it from here."""
    from multiflexi.errors import DatabaseError
    from multiflexi.storage.database import is_transient

    return isinstance(exc, DatabaseError) or is_transient(exc)


def _row(job_id: int, entry: _Entry, **values: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "filename": display_name(entry.rel),
        "raw_name": raw_name_of(entry.rel),
        "kind": entry.kind,
        "created": utcnow(),
        "content_type": "application/octet-stream",
        "content": None,
        "size": 0,
        "sha256": "",
        "state": "complete",
        "note": "",
        **values,
    }


class _NotRegular(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _open(entry: _Entry) -> int:
    """A descriptor of the entry if it is a regular file; :class:`_NotRegular` else."""
    before = os.lstat(entry.name, dir_fd=entry.dir_fd)
    if not stat.S_ISREG(before.st_mode):
        raise _NotRegular(describe_type(before.st_mode))
    fd = os.open(entry.name, _OPEN_FLAGS, dir_fd=entry.dir_fd)
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            raise _NotRegular("replaced while it was being collected")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _mime(head: bytes, name: str) -> str:
    from multiflexi.artifacts.mime import BY_EXTENSION, detect_mime

    # libmagic spends about 1 ms on text, and for these extensions the name wins over
    # whatever text it would find: ask it only when the content may be a binary.
    by_name = BY_EXTENSION.get(Path(name).suffix.lower())
    if by_name is not None and head and b"\0" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 3:  # not merely a character cut at the end
                return detect_mime(head=head, filename=name)
        return by_name
    return detect_mime(head=head, filename=name)


def collect(
    db: Database,
    *,
    job_id: int,
    workdir: Path,
    result_file: str | None,
    patterns: Sequence[Pattern],
    budget: Budget | None = None,
) -> Collected:
    """Store every regular file of the job's directory (and RESULT_FILE, also when it
    lies outside); record what was skipped or failed; stop at the budget."""
    limits = budget or Budget()
    done = Collected()
    batch = _Batch(db, job_id, done)

    def entries() -> Generator[_Entry, None, None]:
        yield from _walk(workdir, _result_inside(workdir, result_file))
        outside = _outside_result(workdir, result_file)
        if outside is not None and os.path.lexists(outside):
            raw = os.fsencode(outside)
            yield _Entry(os.fsencode(outside.name), None, raw, "result")

    with contextlib.closing(entries()) as found:
        _collect_all(db, job_id, found, batch, patterns, limits, done)
    batch.flush()
    if done.stopped:
        log.warning("action=collect_stopped job_id=%s reason=%s", job_id, done.stopped)
    return done


def _collect_all(
    db: Database,
    job_id: int,
    found: Iterator[_Entry],
    batch: _Batch,
    patterns: Sequence[Pattern],
    limits: Budget,
    done: Collected,
) -> None:
    started = time.monotonic()
    for entry in found:
        if done.seen >= limits.max_files:
            done.stopped = (
                f"artifact collection stopped after {done.seen} files: budget "
                f"MULTIFLEXI_ARTIFACT_MAX_FILES={limits.max_files} reached"
            )
            break
        if time.monotonic() - started > limits.max_seconds:
            done.stopped = (
                f"artifact collection stopped after {done.seen} files: budget "
                f"MULTIFLEXI_ARTIFACT_MAX_SECONDS={limits.max_seconds:g} reached"
            )
            break
        done.seen += 1
        name = display_name(entry.rel)
        try:
            item = _read(job_id, entry, name, patterns)
        except Exception as exc:  # one bad entry never stops the others
            item = _failed(job_id, entry, name, exc)
        if isinstance(item, dict):
            batch.add(item)  # written with the batch, outside of this entry's fate
            continue
        batch.flush()  # what came before it first: ids keep the order
        try:
            _store_large(db, job_id, item)
        except Exception as exc:
            if _database_away(exc):
                raise
            batch.add(_failed(job_id, entry, name, exc))
        else:
            done.stored += 1
        finally:
            item.stream.close()


def _failed(job_id: int, entry: _Entry, name: str, exc: BaseException) -> dict[str, Any]:
    why = _why(exc)
    log.warning("action=preserve_failed job_id=%s file=%r error=%s", job_id, name, why)
    return _row(job_id, entry, state="failed", note=f"could not be stored: {why}")


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Large:
    """A file of more than a chunk, open, to be streamed into chunks."""

    entry: _Entry
    name: str
    stream: BinaryIO
    mime: str
    note: str


def _read(
    job_id: int, entry: _Entry, name: str, patterns: Sequence[Pattern]
) -> dict[str, Any] | _Large:
    """The entry's artifact row: skipped, or with its content; or a :class:`_Large`."""
    try:
        fd = _open(entry)
    except _NotRegular as skip:
        note = f"not stored: {skip.why}; only regular files are kept"
        return _row(job_id, entry, state="skipped", note=note)
    stream = os.fdopen(fd, "rb")
    try:
        first = stream.read(blobs.CHUNK_SIZE + 1)
        note = note_for(name, patterns, entry.kind == "result")
        mime = _mime(first[:8192], name)
        if len(first) > blobs.CHUNK_SIZE:
            stream.seek(0)
            return _Large(entry, name, stream, mime, note)
    except BaseException:
        stream.close()
        raise
    stream.close()
    return _row(
        job_id,
        entry,
        content_type=mime,
        content=first,
        size=len(first),
        sha256=hashlib.sha256(first).hexdigest(),
        note=note,
    )


def _store_large(db: Database, job_id: int, large: _Large) -> None:
    blobs.store_stream(
        db,
        job_id=job_id,
        filename=large.name,
        raw_name=raw_name_of(large.entry.rel),
        stream=large.stream,
        content_type=large.mime,
        note=large.note,
        kind=large.entry.kind,
    )

"""Artifacts: preserve a job's result files, list them, and stream them back out."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.errors import NotFound
from multiflexi.storage import blobs
from multiflexi.storage.models import AppArtifact, Artifact
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.artifacts")

GENERIC_NOTE = "file produced by the job"
RESULT_NOTE = "result file (RESULT_FILE)"


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[str]
    note: str


def compile_patterns(rows: Sequence[AppArtifact]) -> list[Pattern]:
    out = []
    for row in rows:
        try:
            out.append(Pattern(re.compile(row.path), row.description or row.name or GENERIC_NOTE))
        except re.error:
            log.warning("action=bad_artifact_pattern app_id=%s pattern=%s", row.app_id, row.path)
    return out


def app_patterns(session: Session, app_id: int) -> list[Pattern]:
    rows = session.scalars(select(AppArtifact).where(AppArtifact.app_id == app_id)).all()
    return compile_patterns(rows)


def note_for(relpath: str, patterns: Sequence[Pattern], is_result: bool) -> str:
    for pattern in patterns:
        if pattern.regex.search(relpath):
            return pattern.note
    return RESULT_NOTE if is_result else GENERIC_NOTE


def files_to_preserve(workdir: Path, result_file: str | None) -> list[tuple[Path, str, bool]]:
    """(path, name to store, is RESULT_FILE) for every regular file of the job."""
    found: list[tuple[Path, str, bool]] = []
    result = Path(result_file).resolve() if result_file else None
    if workdir.is_dir():
        for root, dirs, files in os.walk(workdir, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                rel = path.relative_to(workdir).as_posix()
                found.append((path, rel, result is not None and path.resolve() == result))
    outside = result is not None and not result.is_relative_to(workdir.resolve())
    if result is not None and outside and result.is_file():
        found.append((result, result.name, True))
    return found


def _record_failure(db: Database, job_id: int, name: str, kind: str, why: str) -> None:
    def write(session: Session) -> None:
        session.add(
            Artifact(
                job_id=job_id,
                filename=name,
                content_type="application/octet-stream",
                note=f"could not be stored: {why}",
                kind=kind,
                state="failed",
                created=utcnow(),
            )
        )

    db.run(write)


def preserve_files(
    db: Database,
    *,
    job_id: int,
    app_id: int,
    workdir: Path,
    result_file: str | None,
    patterns: Sequence[Pattern] | None = None,
) -> int:
    """Store every file of the job's directory (and RESULT_FILE); returns how many were
    stored. A file that cannot be read is recorded as a failed artifact; the rest go on."""
    from multiflexi.artifacts.mime import detect_mime

    found = files_to_preserve(workdir, result_file)
    if found and patterns is None:
        with db.read() as session:
            patterns = app_patterns(session, app_id)
    stored = 0
    for path, name, is_result in found:
        kind = "result" if is_result else "file"
        try:
            if path.is_symlink():
                raise OSError(f"{name} is a symbolic link; links are not followed")
            with path.open("rb") as stream:
                head = stream.read(8192)
                stream.seek(0)
                mime = detect_mime(path, head=head, filename=name)
                blobs.store_stream(
                    db,
                    job_id=job_id,
                    filename=name,
                    stream=stream,
                    content_type=mime,
                    note=note_for(name, patterns or [], is_result),
                    kind=kind,
                )
            stored += 1
        except OSError as exc:
            why = exc.strerror or str(exc)
            log.warning("action=preserve_failed job_id=%s file=%s error=%s", job_id, name, why)
            _record_failure(db, job_id, name, kind, why)
    return stored


def get_artifact(session: Session, artifact_id: int) -> Artifact:
    art = session.get(Artifact, artifact_id)
    if art is None:
        raise NotFound(f"artifact {artifact_id} not found")
    return art


def artifact_record(art: Artifact) -> dict[str, Any]:
    return {
        "id": art.id,
        "job_id": art.job_id,
        "filename": art.filename,
        "content_type": art.content_type,
        "size": art.size,
        "sha256": art.sha256,
        "state": art.state,
        "kind": art.kind,
        "note": art.note,
        "created": art.created,
    }


def list_artifacts(session: Session, job_id: int) -> list[Artifact]:
    from multiflexi.storage.models import Job

    if session.get(Job, job_id) is None:
        raise NotFound(f"job {job_id} not found")
    return list(
        session.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.id))
    )


def stream_artifact(db: Database, artifact_id: int) -> Iterator[bytes]:
    return blobs.iter_content(db, artifact_id)


def stream_range(
    db: Database, artifact_id: int, first: int, last: int, *, batch: int = 2
) -> Iterator[bytes]:
    """Bytes ``first`` to ``last`` (inclusive) of the content. The chunk holding ``first``
    is found from the chunks' lengths, so a range near the end reads only the end; at most
    ``batch`` stored chunks are in memory at a time (a download's memory does not grow
    with the artifact)."""
    from sqlalchemy import func

    from multiflexi.storage.models import ArtifactChunk

    with db.read() as session:
        inline = session.scalar(select(Artifact.content).where(Artifact.id == artifact_id))
        sizes = session.execute(
            select(ArtifactChunk.seq, func.length(ArtifactChunk.data))
            .where(ArtifactChunk.artifact_id == artifact_id)
            .order_by(ArtifactChunk.seq)
        ).all()
    position = 0
    if inline:
        if first < len(inline):
            yield inline[first : last + 1]
        position = len(inline)
    start_seq = None
    for seq, length in sizes:
        if position + int(length) > first:
            start_seq = seq
            break
        position += int(length)
    if start_seq is None or position > last:
        return
    for _seq, chunk in blobs.iter_chunks(db, artifact_id, start_seq=start_seq, batch=batch):
        end = position + len(chunk)
        piece = chunk[max(0, first - position) : last + 1 - position]
        if piece:
            yield piece
        position = end
        if position > last:
            return


def save_artifact(db: Database, artifact_id: int, out: IO[bytes]) -> int:
    """Copy the content to a binary stream; returns the byte count."""
    total = 0
    for chunk in blobs.iter_content(db, artifact_id):
        out.write(chunk)
        total += len(chunk)
    out.flush()
    return total

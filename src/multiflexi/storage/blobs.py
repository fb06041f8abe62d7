"""Artifact content in chunks: written as it arrives, read back as a stream.

Content up to one chunk is kept inline in ``artifacts.content``; anything larger, and every
streamed output, goes into ``artifact_chunk`` rows of at most :data:`CHUNK_SIZE` bytes. A
gigabyte therefore moves through bounded memory, on every backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, NamedTuple

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from multiflexi.storage.models import Artifact, ArtifactChunk, table_of
from multiflexi.storage.types import utcnow

if TYPE_CHECKING:
    from multiflexi.storage.database import Database

CHUNK_SIZE = 1024 * 1024
_ARTIFACTS = table_of(Artifact)
_CHUNKS = table_of(ArtifactChunk)


class ChunkWriter:
    """Appends chunks to one artifact, each in its own short transaction.

    Core statements throughout: every job's output passes through here.
    """

    def __init__(self, db: Database, artifact_id: int, start_seq: int = 0) -> None:
        self.db = db
        self.artifact_id = artifact_id
        self.seq = start_seq
        self.size = 0
        self._hash = hashlib.sha256()

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        for offset in range(0, len(view), CHUNK_SIZE):
            piece = bytes(view[offset : offset + CHUNK_SIZE])
            row = {"artifact_id": self.artifact_id, "seq": self.seq, "data": piece}

            def write(conn: Connection, row: dict[str, object] = row) -> None:
                conn.execute(insert(_CHUNKS), row)

            try:
                self.db.transact(write)
            except IntegrityError:
                # A retry after a commit whose answer was lost (the connection broke)
                # finds its own chunk there: done. Anything else at this place is not ours.
                if self._stored_chunk(self.seq) != piece:
                    raise
            self.seq += 1
            self.size += len(piece)
            self._hash.update(piece)

    def _stored_chunk(self, seq: int) -> bytes | None:
        with self.db.read() as session:
            data = session.scalar(
                select(_CHUNKS.c.data).where(
                    _CHUNKS.c.artifact_id == self.artifact_id, _CHUNKS.c.seq == seq
                )
            )
        return None if data is None else bytes(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self, state: str = "complete", note: str | None = None) -> None:
        self.db.transact(lambda conn: self.finish_in(conn, b"", state, note))

    def finish_in(
        self, conn: Connection, tail: bytes, state: str = "complete", note: str | None = None
    ) -> None:
        """Store the last bytes and close the artifact inside the caller's transaction.

        Output that never reached a chunk goes inline (``artifacts.content``), so a job
        with a few lines of output costs no chunk rows at all.
        """
        size = self.size + len(tail)
        digest = self._hash.copy()
        digest.update(tail)
        values: dict[str, object] = {"size": size, "sha256": digest.hexdigest(), "state": state}
        if note is not None:
            values["note"] = note
        if tail and self.seq == 0 and len(tail) <= CHUNK_SIZE:
            values["content"] = tail
        elif tail:
            view = memoryview(tail)
            rows = [
                {
                    "artifact_id": self.artifact_id,
                    "seq": self.seq + n,
                    "data": bytes(view[offset : offset + CHUNK_SIZE]),
                }
                for n, offset in enumerate(range(0, len(view), CHUNK_SIZE))
            ]
            conn.execute(insert(_CHUNKS), rows)
        conn.execute(update(_ARTIFACTS).where(_ARTIFACTS.c.id == self.artifact_id).values(values))

    def committed(self, tail: bytes) -> None:
        """Account for ``tail`` after the transaction of :meth:`finish_in` committed."""
        self.size += len(tail)
        self._hash.update(tail)


def create_artifact(conn: Connection, **values: object) -> int:
    """Insert an artifact row (content, if any, inline) and return its id."""
    row = {"created": utcnow(), **values}
    key = conn.execute(insert(_ARTIFACTS).values(row)).inserted_primary_key
    assert key is not None
    return int(key[0])


class Stored(NamedTuple):
    """What a retry needs to know of an artifact row that is there already."""

    id: int
    state: str
    size: int
    sha256: str


def own_artifact(conn: Connection, job_id: int, kind: str, filename: str) -> Stored | None:
    """The job's artifact of this kind and name, if one is stored already.

    A job's writer names each of its artifacts once (a stream, a file of its directory):
    when a retried transaction finds one, it is the writer's own insert, committed by an
    attempt whose answer was lost (the connection broke). Reusing it keeps the job at one
    artifact per name instead of an empty twin that readers would find first.
    """
    c = _ARTIFACTS.c
    row = conn.execute(
        select(c.id, c.state, c.size, c.sha256)
        .where(c.job_id == job_id, c.kind == kind, c.filename == filename)
        .order_by(c.id)
        .limit(1)
    ).first()
    return None if row is None else Stored(*row)


def store_stream(
    db: Database,
    *,
    job_id: int,
    filename: str,
    stream: IO[bytes],
    content_type: str,
    note: str,
    kind: str = "file",
) -> Artifact:
    """Store a readable binary stream as a new artifact; small content goes inline."""
    first = stream.read(CHUNK_SIZE)
    following = stream.read(1) if len(first) == CHUNK_SIZE else b""
    digest = hashlib.sha256(first).hexdigest()

    def create(session: Session) -> Artifact:
        mine = own_artifact(session.connection(), job_id, kind, filename)
        state = "streaming" if following else "complete"
        if mine is not None and mine[1:] == (state, len(first), digest):
            found = session.get(Artifact, mine.id)  # ours, committed; its answer was lost
            assert found is not None
            return found
        art = Artifact(
            job_id=job_id,
            filename=filename,
            content_type=content_type,
            note=note,
            kind=kind,
            state=state,
            content=None if following else first,
            size=len(first),
            sha256=digest,
            created=utcnow(),
        )
        session.add(art)
        session.flush()
        return art

    art: Artifact = db.run(create)
    if following:
        writer = ChunkWriter(db, art.id)
        writer.append(first + following)
        while block := stream.read(CHUNK_SIZE):
            writer.append(block)
        writer.finish()
        art.size, art.sha256, art.state = writer.size, writer.sha256, "complete"
    return art


def iter_content(db: Database, artifact_id: int, *, start_seq: int = 0) -> Iterator[bytes]:
    """Yield the content of an artifact in order, a few chunks per query."""
    if start_seq == 0:
        with db.read() as session:
            inline = session.scalar(select(Artifact.content).where(Artifact.id == artifact_id))
        if inline:
            yield inline
    for _seq, data in iter_chunks(db, artifact_id, start_seq=start_seq):
        yield data


def iter_chunks(
    db: Database, artifact_id: int, *, start_seq: int = 0, batch: int = 8
) -> Iterator[tuple[int, bytes]]:
    """Yield (seq, data) of the chunk rows from ``start_seq`` on, ``batch`` per query."""
    seq = start_seq
    while True:
        with db.read() as session:
            rows = session.execute(
                select(ArtifactChunk.seq, ArtifactChunk.data)
                .where(ArtifactChunk.artifact_id == artifact_id, ArtifactChunk.seq >= seq)
                .order_by(ArtifactChunk.seq)
                .limit(batch)
            ).all()
        if not rows:
            return
        for row_seq, data in rows:
            yield row_seq, data
            seq = row_seq + 1


def chunk_count(db: Database, artifact_id: int) -> int:
    with db.read() as session:
        return int(
            session.scalar(select(func.count()).where(ArtifactChunk.artifact_id == artifact_id))
            or 0
        )


def delete_content(db: Database, artifact_id: int) -> None:
    def drop(session: Session) -> None:
        session.execute(delete(ArtifactChunk).where(ArtifactChunk.artifact_id == artifact_id))

    db.run(drop)


def read_tail(db: Database, artifact_id: int, max_bytes: int = 65536) -> bytes:
    """The last ``max_bytes`` of an artifact (for "last lines of output")."""
    with db.read() as session:
        inline = session.scalar(select(Artifact.content).where(Artifact.id == artifact_id))
        rows = session.execute(
            select(ArtifactChunk.data)
            .where(ArtifactChunk.artifact_id == artifact_id)
            .order_by(ArtifactChunk.seq.desc())
            .limit(2)
        ).all()
    data = b"".join(r[0] for r in reversed(rows)) if rows else (inline or b"")
    return data[-max_bytes:]


def max_seq(db: Database, artifact_id: int) -> int:
    """The highest chunk number stored so far, -1 when none."""
    with db.read() as session:
        value = session.scalar(
            select(func.max(ArtifactChunk.seq)).where(ArtifactChunk.artifact_id == artifact_id)
        )
    return -1 if value is None else int(value)

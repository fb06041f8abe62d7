"""Recording a running job's output: masked, buffered, stored in chunks as it arrives."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from multiflexi.storage.blobs import CHUNK_SIZE, ChunkWriter, create_artifact, own_artifact
from multiflexi.storage.database import Database
from multiflexi.storage.models import Artifact, table_of
from multiflexi.storage.types import utcnow

log = logging.getLogger("multiflexi.jobs")

#: Flush a stream when this much is buffered, or when the oldest byte is this old: the
#: live tail of a running job (`job:logs --follow`) is then at most a second behind.
FLUSH_BYTES = 1024 * 1024
FLUSH_SECONDS = 0.5


STREAMS = ("stdout", "stderr")
INSERT_ARTIFACT = insert(table_of(Artifact))


def _describe(stream: str) -> dict[str, str]:
    return {
        "filename": f"{stream}.txt",
        "content_type": "text/plain",
        "note": f"standard {'output' if stream == 'stdout' else 'error'} of the job",
        "kind": stream,
    }


class OutputRecorder:
    """An executor sink that stores stdout and stderr of one job.

    A stream's artifact is created when its first bytes are stored: most jobs print a
    few lines, and their whole output then costs one INSERT per stream, at the end.
    A storage failure (disk full, database gone for good) stops the job through
    ``cancel`` rather than letting the process write into the void.
    """

    def __init__(
        self,
        db: Database,
        job_id: int,
        *,
        secrets: Iterable[str] = (),
        cancel: threading.Event,
        on_tick: Callable[[], None] | None = None,
        tee: Callable[[str, bytes], None] | None = None,
    ) -> None:
        from multiflexi.jobs.masking import StreamMasker

        self.db = db
        self.job_id = job_id
        self.tee = tee
        self.writers: dict[str, ChunkWriter] = {}
        self.maskers = {s: StreamMasker(secrets) for s in STREAMS}
        self.buffers: dict[str, bytearray] = {s: bytearray() for s in STREAMS}
        self.cancel = cancel
        self.on_tick = on_tick
        self.last_flush = time.monotonic()
        self.error: str | None = None
        self._tails: dict[str, bytes] | None = None
        #: Recovery called the job lost while it ran here: it gave the job empty
        #: outputs where it found none, and what is left here goes into those.
        self.after_loss = False

    def write(self, stream: str, data: bytes) -> None:
        if self.error is not None:
            return
        buf = self.buffers[stream]
        masked = self.maskers[stream].feed(data)
        buf += masked
        if self.tee is not None and masked:
            self.tee(stream, masked)
        if len(buf) >= FLUSH_BYTES:
            self._flush(stream)

    def tick(self) -> None:
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            for stream in self.buffers:
                self._flush(stream)
            self.last_flush = time.monotonic()
        if self.on_tick is not None:
            self.on_tick()

    def _writer(self, stream: str) -> ChunkWriter:
        writer = self.writers.get(stream)
        if writer is None:
            values = {**_describe(stream), "job_id": self.job_id, "state": "streaming"}

            def create(conn: Connection) -> int:
                # Ours if still open: a retry after a commit whose answer was lost. One
                # that recovery closed (the job called lost meanwhile) is not written to.
                mine = own_artifact(conn, self.job_id, stream, f"{stream}.txt")
                if mine is not None and mine.state == "streaming":
                    return mine.id
                return create_artifact(conn, **values)

            artifact_id = self.db.transact(create)
            writer = self.writers[stream] = ChunkWriter(self.db, artifact_id)
        return writer

    def _flush(self, stream: str) -> None:
        buf = self.buffers[stream]
        if not buf or self.error is not None:
            return
        data = bytes(buf)
        buf.clear()
        try:
            self._writer(stream).append(data)
        except Exception as exc:
            self.error = f"output could not be stored: {exc}"
            log.error("action=store_output_failed stream=%s error=%s", stream, exc)
            self.cancel.set()

    def close(self) -> None:
        """Store what is left and mark both outputs complete, in one transaction."""
        self.seal()
        try:
            created = self.db.transact(self.store_in)
        except Exception as exc:
            log.error("action=finish_output_failed error=%s", exc)
            self.error = self.error or f"output could not be stored: {exc}"
            return
        self.stored(created)

    def seal(self) -> None:
        """End the streams: what the maskers held back joins the buffers. No more writes."""
        if self._tails is not None:
            return
        self._tails = {}
        for stream, masker in self.maskers.items():
            rest = masker.flush()
            if self.tee is not None and rest:
                self.tee(stream, rest)
            self.buffers[stream] += rest
            self._tails[stream] = bytes(self.buffers[stream]) if self.error is None else b""
            self.buffers[stream].clear()

    def store_in(self, conn: Connection) -> dict[str, ChunkWriter]:
        """Store the sealed tails and close both outputs inside the caller's transaction
        (the job's final write, when it has no result files). Returns the writers it
        created, for :meth:`stored` once the transaction committed."""
        assert self._tails is not None, "seal() first"
        # May run twice (a retried transaction): nothing of ours changes in here.
        state = self._state()
        created: dict[str, ChunkWriter] = {}
        inline = []
        for stream in STREAMS:
            tail, writer = self._tails[stream], self.writers.get(stream)
            if writer is None and self.after_loss:
                given = own_artifact(conn, self.job_id, stream, f"{stream}.txt")
                if given is not None and given.size == 0:
                    writer = created[stream] = ChunkWriter(self.db, given.id)
            if writer is None and len(tail) <= CHUNK_SIZE:
                inline.append(self._inline_row(stream, tail, state))
                continue
            if writer is None:
                values = {**_describe(stream), "job_id": self.job_id, "created": utcnow()}
                artifact_id = create_artifact(conn, **values, state="streaming")
                writer = created[stream] = ChunkWriter(self.db, artifact_id)
            writer.finish_in(conn, tail, state)
        if inline:  # the usual case: both outputs whole, in one statement
            conn.execute(INSERT_ARTIFACT, inline)
        return created

    def inline_rows(self) -> list[dict[str, object]] | None:
        """Both outputs as whole artifact rows, for :data:`INSERT_ARTIFACT` in the final
        transaction; None when one of them has gone to chunks (then :meth:`store_in`)."""
        assert self._tails is not None, "seal() first"
        if self.writers or any(len(tail) > CHUNK_SIZE for tail in self._tails.values()):
            return None
        state = self._state()
        return [self._inline_row(stream, self._tails[stream], state) for stream in STREAMS]

    def _state(self) -> str:
        return "complete" if self.error is None else "failed"

    def _inline_row(self, stream: str, tail: bytes, state: str) -> dict[str, object]:
        return {
            **_describe(stream),
            "job_id": self.job_id,
            "created": utcnow(),
            "content": tail or None,
            "size": len(tail),
            "sha256": hashlib.sha256(tail).hexdigest(),
            "state": state,
        }

    def stored(self, created: dict[str, ChunkWriter]) -> None:
        """The transaction of :meth:`store_in` committed."""
        assert self._tails is not None
        self.writers.update(created)
        for stream, writer in self.writers.items():
            writer.committed(self._tails[stream])

"""Recording a running job's output: masked, buffered, stored in chunks as it arrives."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from sqlalchemy.orm import Session

from multiflexi.storage.blobs import ChunkWriter
from multiflexi.storage.database import Database

log = logging.getLogger("multiflexi.jobs")

#: Flush a stream when this much is buffered, or when the oldest byte is this old: the
#: live tail of a running job (`job:logs --follow`) is then at most a second behind.
FLUSH_BYTES = 1024 * 1024
FLUSH_SECONDS = 0.5


class OutputRecorder:
    """An executor sink that stores stdout and stderr of one job.

    A storage failure (disk full, database gone for good) stops the job through
    ``cancel`` rather than letting the process write into the void.
    """

    def __init__(
        self,
        db: Database,
        artifact_ids: dict[str, int],
        *,
        secrets: Iterable[str] = (),
        cancel: threading.Event,
        on_tick: Callable[[], None] | None = None,
        tee: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.tee = tee
        from multiflexi.jobs.masking import StreamMasker

        self.db = db
        self.writers = {s: ChunkWriter(db, a) for s, a in artifact_ids.items()}
        self.maskers = {s: StreamMasker(secrets) for s in artifact_ids}
        self.buffers: dict[str, bytearray] = {s: bytearray() for s in artifact_ids}
        self.cancel = cancel
        self.on_tick = on_tick
        self.last_flush = time.monotonic()
        self.error: str | None = None

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

    def _flush(self, stream: str) -> None:
        buf = self.buffers[stream]
        if not buf or self.error is not None:
            return
        data = bytes(buf)
        buf.clear()
        try:
            self.writers[stream].append(data)
        except Exception as exc:
            self.error = f"output could not be stored: {exc}"
            log.error("action=store_output_failed stream=%s error=%s", stream, exc)
            self.cancel.set()

    def close(self) -> None:
        """Store what is left and mark both outputs complete, in one transaction."""
        tails: dict[str, bytes] = {}
        for stream, masker in self.maskers.items():
            rest = masker.flush()
            if self.tee is not None and rest:
                self.tee(stream, rest)
            self.buffers[stream] += rest
            tails[stream] = bytes(self.buffers[stream]) if self.error is None else b""
            self.buffers[stream].clear()
        state = "complete" if self.error is None else "failed"

        def finish(session: Session) -> None:
            for stream, writer in self.writers.items():
                writer.finish_in(session, tails[stream], state)

        try:
            self.db.run(finish)
        except Exception as exc:
            log.error("action=finish_output_failed error=%s", exc)
            self.error = self.error or f"output could not be stored: {exc}"
            return
        for stream, writer in self.writers.items():
            writer.committed(tails[stream])

    def sizes(self) -> dict[str, int]:
        return {s: w.size for s, w in self.writers.items()}

"""Reading a job's output back, and following it while the job runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select

from multiflexi.errors import NotFound
from multiflexi.jobs.lifecycle import is_final
from multiflexi.storage import blobs
from multiflexi.storage.models import Artifact, Job

if TYPE_CHECKING:
    from multiflexi.storage.database import Database

POLL_SECONDS = 0.2


def _state(db: Database, job_id: int, streams: Sequence[str]) -> tuple[str, dict[str, Artifact]]:
    with db.read() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        arts = session.scalars(
            select(Artifact).where(Artifact.job_id == job_id, Artifact.kind.in_(list(streams)))
        ).all()
        return job.status, {a.kind: a for a in arts}


def follow_output(
    db: Database,
    job_id: int,
    streams: Sequence[str],
    *,
    follow: bool,
    write: Callable[[str, bytes], None],
    poll: float = POLL_SECONDS,
    max_wait: float | None = None,
) -> None:
    """Write the stored output; with ``follow``, keep writing new chunks until the job
    has ended and its output is complete."""
    next_seq: dict[str, int] = {}
    started = time.monotonic()
    while True:
        status, arts = _state(db, job_id, streams)
        for stream in streams:
            art = arts.get(stream)
            if art is None:
                continue
            if stream not in next_seq:
                if art.content:
                    write(stream, art.content)
                next_seq[stream] = 0
            for chunk_seq, data in blobs.iter_chunks(db, art.id, start_seq=next_seq[stream]):
                write(stream, data)
                next_seq[stream] = chunk_seq + 1
        streaming = any(a.state == "streaming" for a in arts.values())
        if not follow or (is_final(status) and not streaming):
            return
        if max_wait is not None and time.monotonic() - started > max_wait:
            return
        time.sleep(poll)

"""Byte ranges of an artifact stored in chunks of different sizes (as output arrives)."""

from __future__ import annotations

import random

from multiflexi.artifacts.service import stream_range
from multiflexi.storage.blobs import ChunkWriter, create_artifact
from multiflexi.storage.database import Database
from tests.factories import make_setup


def test_every_range_of_an_artifact_in_uneven_chunks_is_exact(any_db: Database) -> None:
    from multiflexi.jobs.service import create_job

    _app, _company, rt = make_setup(any_db)
    job = create_job(any_db, any_db.settings, runtemplate_id=rt)
    rng = random.Random(7)
    with any_db.connection() as conn:
        art = create_artifact(
            conn, job_id=job.id, filename="out.bin", content_type="application/octet-stream",
            note="", kind="file", state="streaming", size=0, sha256="",
        )  # fmt: skip
    writer = ChunkWriter(any_db, art)
    content = b""
    for size in (1, 700, 13, 4096, 1, 250_000, 9):
        piece = rng.randbytes(size)
        writer.append(piece)
        content += piece
    writer.finish()
    total = len(content)
    spans = [(0, total - 1), (0, 0), (total - 1, total - 1), (700, 4809), (5, 5000)]
    spans += [tuple(sorted((rng.randrange(total), rng.randrange(total)))) for _ in range(30)]
    for first, last in spans:
        got = b"".join(stream_range(any_db, art, first, last, batch=1))
        assert got == content[first : last + 1], (first, last)
